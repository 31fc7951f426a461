#include "storage/store.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

namespace gswarm {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gswarm-store-test-" + std::to_string(std::random_device{}()));
    options_.disk_path = root_;
    options_.max_memory = 64 * kMiB;
    store_ = open();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }
  std::unique_ptr<Store> open() {
    auto s = Store::open(options_);
    EXPECT_TRUE(s) << s.error().message;
    return std::move(*s);
  }
  static std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
  }
  std::string read_text(std::string_view key) {
    auto v = store_->read(key);
    EXPECT_TRUE(v) << v.error().message;
    return v ? std::string(v->text()) : std::string();
  }

  fs::path root_;
  StoreOptions options_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, WriteReadOverwriteRelease) {
  ASSERT_TRUE(store_->write("k", bytes("one"), Location::dram(), "bytes"));
  EXPECT_EQ(read_text("k"), "one");
  ASSERT_TRUE(store_->write("k", bytes("second"), Location::dram(), "json"));
  EXPECT_EQ(read_text("k"), "second");
  EXPECT_EQ(store_->read("k")->format, "json");
  EXPECT_EQ(store_->stats().total_keys, 1u);
  EXPECT_EQ(store_->stats().dram_value_bytes, 6u);
  // The key's metadata counts against --max-memory with the value.
  EXPECT_EQ(store_->stats().metadata_bytes, Store::kKeyOverhead + 1);
  EXPECT_GT(store_->stats().dram_used, 6u + Store::kKeyOverhead);
  ASSERT_TRUE(store_->release("k"));
  EXPECT_EQ(store_->read("k").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->release("k").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(store_->stats().dram_used, 0u);
  EXPECT_EQ(store_->stats().metadata_bytes, 0u);
  EXPECT_EQ(store_->stats().total_keys, 0u);
}

TEST_F(StoreTest, ReadServesDramOnly) {
  ASSERT_TRUE(store_->write("d", bytes("on disk"), Location::disk(), "bytes"));
  auto r = store_->read("d");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kWrongLocation);
  EXPECT_NE(r.error().message.find("disk"), std::string::npos);
  EXPECT_NE(r.error().message.find("move-data"), std::string::npos);
}

TEST_F(StoreTest, MoveRoundTripKeepsBytesAndSwitchesLocation) {
  std::string value(3 * kMiB + 17, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 131 + 7);
  ASSERT_TRUE(store_->write("big", bytes(value), Location::dram(), "bytes"));
  auto to_disk = store_->move("big", Location::disk());
  ASSERT_TRUE(to_disk) << to_disk.error().message;
  EXPECT_EQ(to_disk->source, Location::dram());
  EXPECT_EQ(to_disk->destination, Location::disk());
  ASSERT_TRUE(to_disk->read_pointer);
  EXPECT_EQ(to_disk->read_pointer->kind, "file");
  EXPECT_EQ(store_->stats().dram_value_bytes, 0u);
  EXPECT_EQ(store_->stats().dram_used, store_->stats().metadata_bytes);
  EXPECT_EQ(store_->stats().disk_keys, 1u);
  auto where = store_->location("big");
  ASSERT_TRUE(where);
  ASSERT_EQ(where->replicas.size(), 1u);
  EXPECT_EQ(where->primary, Location::disk());

  ASSERT_TRUE(store_->move("big", Location::dram()));
  EXPECT_EQ(read_text("big"), value);
  EXPECT_EQ(store_->stats().disk_keys, 0u);
  EXPECT_EQ(store_->stats().disk_used, 0u);
  // Moving to where the key is succeeds and changes nothing.
  auto same = store_->move("big", Location::dram());
  ASSERT_TRUE(same);
  EXPECT_EQ(same->source, Location::dram());
}

TEST_F(StoreTest, OverLimitChangesNothing) {
  ASSERT_TRUE(store_->write("k", bytes("small"), Location::dram(), "bytes"));
  std::string big(65 * kMiB, 'x');
  auto r = store_->write("k", bytes(big), Location::dram(), "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOverLimit);
  EXPECT_NE(r.error().message.find("--max-memory"), std::string::npos);
  EXPECT_EQ(read_text("k"), "small");

  // A disk value too big for DRAM cannot be moved there; it stays on disk.
  ASSERT_TRUE(store_->write("d", bytes(big), Location::disk(), "bytes"));
  auto m = store_->move("d", Location::dram());
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kOverLimit);
  auto where = store_->location("d");
  ASSERT_TRUE(where);
  EXPECT_EQ(where->primary, Location::disk());
  EXPECT_EQ(where->replicas.size(), 1u);

  store_->set_max_memory(128 * kMiB);
  EXPECT_TRUE(store_->move("d", Location::dram()));
}

TEST_F(StoreTest, DiskValuesSurviveReopen) {
  ASSERT_TRUE(store_->write("persist/me", bytes("hello disk"), Location::disk(), "pickle"));
  ASSERT_TRUE(store_->write("volatile", bytes("gone"), Location::dram(), "bytes"));
  ASSERT_TRUE(store_->write("twice", bytes("v1"), Location::disk(), "bytes"));
  ASSERT_TRUE(store_->write("twice", bytes("v2"), Location::disk(), "bytes"));
  store_.reset();
  store_ = open();
  EXPECT_EQ(store_->stats().total_keys, 2u);
  EXPECT_EQ(store_->read("volatile").error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(store_->move("persist/me", Location::dram()));
  EXPECT_EQ(read_text("persist/me"), "hello disk");
  EXPECT_EQ(store_->read("persist/me")->format, "pickle");
  ASSERT_TRUE(store_->move("twice", Location::dram()));
  EXPECT_EQ(read_text("twice"), "v2");
}

TEST_F(StoreTest, WriteDuringMoveWinsAndMoveReportsConflict) {
  store_.reset();
  options_.move_rate_limit = 16 * kMiB;  // a 16 MiB move takes about a second
  store_ = open();
  std::string value(16 * kMiB, 'a');
  ASSERT_TRUE(store_->write("k", bytes(value), Location::dram(), "bytes"));
  Result<MoveOutcome> moved;
  std::thread mover([&] { moved = store_->move("k", Location::disk()); });
  // Wait until the destination replica shows as copying.
  bool seen_copying = false;
  for (int i = 0; i < 2000 && !seen_copying; ++i) {
    auto where = store_->location("k");
    seen_copying = where && where->replicas.size() == 2 &&
                   where->replicas[1].status == CopyStatus::kCopying;
    if (!seen_copying) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_TRUE(seen_copying);
  EXPECT_EQ(read_text("k"), value);  // readers still see the whole old value
  EXPECT_EQ(store_->move("k", Location::disk()).error().code, ErrorCode::kConflict);
  ASSERT_TRUE(store_->write("k", bytes("new"), Location::dram(), "bytes"));
  mover.join();
  ASSERT_FALSE(moved);
  EXPECT_EQ(moved.error().code, ErrorCode::kConflict);
  EXPECT_EQ(read_text("k"), "new");
  EXPECT_EQ(store_->stats().disk_used, 0u);  // the abandoned copy is gone
}

TEST_F(StoreTest, PinnedDramIsWritableMovableAndNotReadable) {
  ASSERT_TRUE(store_->write("p", bytes("pinned bytes"), Location::pinned_dram(), "bytes"));
  EXPECT_EQ(store_->read("p").error().code, ErrorCode::kWrongLocation);
  EXPECT_EQ(store_->stats().pinned_used, 64u);  // a small value counts as its 64-byte slot
  EXPECT_EQ(store_->stats().pinned_keys, 1u);
  ASSERT_TRUE(store_->move("p", Location::disk()));
  ASSERT_TRUE(store_->move("p", Location::pinned_dram()));
  ASSERT_TRUE(store_->move("p", Location::dram()));
  EXPECT_EQ(read_text("p"), "pinned bytes");
  EXPECT_EQ(store_->stats().pinned_used, 0u);
}

TEST_F(StoreTest, PinnedLimitIsEnforced) {
  store_.reset();
  options_.max_pinned = 4 * kKiB;
  store_ = open();
  std::string big(8 * kKiB, 'x');
  auto r = store_->write("p", bytes(big), Location::pinned_dram(), "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOverLimit);
  EXPECT_NE(r.error().message.find("--max-pinned"), std::string::npos);
}

TEST_F(StoreTest, UnavailableLocationsAreClearErrors) {
  auto r = store_->write("k", bytes("x"), Location::device(0), "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kDeviceUnavailable);
  EXPECT_FALSE(store_->write("", bytes("x"), Location::dram(), "bytes"));
  EXPECT_FALSE(store_->write("k", bytes("x"), Location::dram(), "bad format"));
}

}  // namespace
}  // namespace gswarm
