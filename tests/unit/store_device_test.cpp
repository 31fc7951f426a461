// The Store's device-location logic (limits, status, moves, errors, stats) on the
// fake device backend, so it runs on machines without GPUs.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "fake_device_backend.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

class StoreDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gswarm-device-test-" + std::to_string(std::random_device{}()));
    backend_ = std::make_shared<testing::FakeDeviceBackend>(3, 64 * kMiB);
    options_.disk_path = root_;
    options_.max_memory = 256 * kMiB;
    options_.devices = backend_;
    open();
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }
  void open() {
    store_.reset();
    auto s = Store::open(options_);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  static std::string pattern(std::size_t size, int seed) {
    std::string v(size, '\0');
    for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>(i * 31 + seed);
    return v;
  }
  static std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
  }
  std::string read_back(const std::string& key) {
    auto moved = store_->move(key, Location::dram());
    EXPECT_TRUE(moved) << moved.error().message;
    auto v = store_->read(key);
    EXPECT_TRUE(v) << v.error().message;
    return v ? std::string(v->text()) : std::string();
  }

  fs::path root_;
  std::shared_ptr<testing::FakeDeviceBackend> backend_;
  StoreOptions options_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreDeviceTest, MovesBetweenEveryPairOfLocations) {
  const std::vector<Location> all = {Location::dram(), Location::pinned_dram(), Location::device(0),
                                     Location::device(1), Location::disk()};
  int seed = 0;
  for (const auto& from : all) {
    for (const auto& to : all) {
      if (from == to) continue;
      const std::string key = from.name() + "->" + to.name();
      const std::string value = pattern(3 * kMiB + static_cast<std::size_t>(seed), seed);
      ++seed;
      ASSERT_TRUE(store_->write(key, bytes(value), from, "bytes")) << key;
      auto moved = store_->move(key, to);
      ASSERT_TRUE(moved) << key << ": " << moved.error().message;
      EXPECT_EQ(moved->source, from);
      EXPECT_EQ(moved->destination, to);
      auto where = store_->location(key);
      ASSERT_TRUE(where);
      EXPECT_EQ(where->primary, to) << key;
      EXPECT_EQ(where->replicas.size(), 1u) << key;
      EXPECT_EQ(read_back(key), value) << key;
      ASSERT_TRUE(store_->release(key));
    }
  }
  auto stats = store_->stats();
  EXPECT_EQ(stats.total_keys, 0u);
  for (const auto& d : stats.devices) EXPECT_EQ(d.used, 0u) << d.name;
  EXPECT_EQ(stats.pinned_used, 0u);
  EXPECT_EQ(stats.dram_used, 0u);
}

TEST_F(StoreDeviceTest, CopyMethodsFollowTheHostMemoryAndTopology) {
  const std::string value = pattern(kMiB, 1);
  ASSERT_TRUE(store_->write("k", bytes(value), Location::pinned_dram(), "bytes"));
  EXPECT_EQ(store_->move("k", Location::device(0))->method, "dma");
  EXPECT_EQ(store_->move("k", Location::device(1))->method, "nvlink");
  EXPECT_EQ(store_->move("k", Location::device(2))->method, "staged");
  EXPECT_EQ(store_->move("k", Location::dram())->method, "staged");
  EXPECT_EQ(store_->move("k", Location::disk())->method, "file");
  EXPECT_GE(backend_->pinned_copies.load(), 1);
  EXPECT_GE(backend_->staged_copies.load(), 1);
  EXPECT_EQ(backend_->peer_copies.load(), 2);
}

TEST_F(StoreDeviceTest, ReadOfADeviceKeyNamesItsLocation) {
  ASSERT_TRUE(store_->write("w", bytes("weights"), Location::device(1), "bytes"));
  auto r = store_->read("w");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kWrongLocation);
  EXPECT_NE(r.error().message.find("device:1"), std::string::npos);
}

TEST_F(StoreDeviceTest, DeviceLimitIsEnforcedAndNothingIsLost) {
  options_.max_device_memory = 2 * kMiB;
  open();
  const std::string small = pattern(kMiB, 2);
  ASSERT_TRUE(store_->write("k", bytes(small), Location::device(0), "bytes"));
  const std::string big = pattern(3 * kMiB, 3);
  auto r = store_->write("k", bytes(big), Location::device(0), "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOverLimit);
  EXPECT_NE(r.error().message.find("--max-device-memory"), std::string::npos);
  ASSERT_TRUE(store_->write("d", bytes(big), Location::dram(), "bytes"));
  auto m = store_->move("d", Location::device(0));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kOverLimit);
  EXPECT_EQ(store_->location("d")->primary, Location::dram());
  EXPECT_EQ(read_back("k"), small);
}

TEST_F(StoreDeviceTest, FailedCopyLeavesTheSourceIntact) {
  const std::string value = pattern(2 * kMiB, 4);
  ASSERT_TRUE(store_->write("k", bytes(value), Location::dram(), "bytes"));
  backend_->fail_next_copy();
  auto m = store_->move("k", Location::device(0));
  ASSERT_FALSE(m);
  EXPECT_EQ(m.error().code, ErrorCode::kIo);
  auto where = store_->location("k");
  ASSERT_TRUE(where);
  EXPECT_EQ(where->primary, Location::dram());
  EXPECT_EQ(where->replicas.size(), 1u);
  EXPECT_EQ(std::string(store_->read("k")->text()), value);
  EXPECT_EQ(store_->stats().devices[0].used, 0u);
}

TEST_F(StoreDeviceTest, MissingDevicesAreClearErrors) {
  auto r = store_->write("k", bytes("x"), Location::device(3), "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kDeviceUnavailable);
  EXPECT_NE(r.error().message.find("3 GPU device"), std::string::npos);
  ASSERT_TRUE(store_->write("k", bytes("x"), Location::dram(), "bytes"));
  EXPECT_EQ(store_->move("k", Location::device(7)).error().code, ErrorCode::kDeviceUnavailable);
}

TEST_F(StoreDeviceTest, StatsAndReadPointersPerDevice) {
  ASSERT_TRUE(store_->write("a", bytes(pattern(kMiB, 5)), Location::device(0), "bytes"));
  ASSERT_TRUE(store_->write("b", bytes(pattern(kMiB, 6)), Location::device(0), "bytes"));
  ASSERT_TRUE(store_->write("c", bytes(pattern(kMiB, 7)), Location::device(2), "bytes"));
  auto stats = store_->stats();
  ASSERT_EQ(stats.devices.size(), 3u);
  EXPECT_EQ(stats.device_backend, "fake");
  EXPECT_EQ(stats.devices[0].name, "device:0");
  EXPECT_EQ(stats.devices[0].used, 2 * kMiB);
  EXPECT_EQ(stats.devices[0].keys, 2u);
  EXPECT_EQ(stats.devices[0].total, 64 * kMiB);
  EXPECT_EQ(stats.devices[0].free, 62 * kMiB);
  EXPECT_EQ(stats.devices[2].keys, 1u);
  EXPECT_EQ(stats.device_keys, 3u);
  EXPECT_EQ(stats.location_counts["device:0"], 2u);
  auto where = store_->location("c");
  ASSERT_TRUE(where);
  auto rp = where->replicas[0].read_pointer;
  ASSERT_TRUE(rp);
  EXPECT_EQ(rp->kind, "cuda_ipc");
  EXPECT_EQ(rp->device, 2);
  EXPECT_EQ(rp->size, kMiB);
}

TEST_F(StoreDeviceTest, CopyKeepsTheSourceAndReleaseRemovesEveryReplica) {
  const std::string value = pattern(2 * kMiB, 8);
  ASSERT_TRUE(store_->write("k", bytes(value), Location::device(0), "bytes"));
  auto sent = store_->copy("k", Location::device(1), Location::device(0));
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_EQ(sent->method, "nvlink");
  auto where = store_->location("k");
  ASSERT_EQ(where->replicas.size(), 2u);
  EXPECT_EQ(where->primary, Location::device(0));
  EXPECT_EQ(where->replicas[1].location, Location::device(1));
  EXPECT_EQ(store_->stats().devices[1].used, 2 * kMiB);
  // Copying again changes nothing; copying from where the key is not is an error.
  EXPECT_EQ(store_->copy("k", Location::device(1))->method, "none");
  EXPECT_EQ(store_->copy("k", Location::device(2), Location::disk()).error().code,
            ErrorCode::kWrongLocation);
  // Moving to a location that already holds a replica keeps just that one.
  auto moved = store_->move("k", Location::device(1));
  ASSERT_TRUE(moved);
  EXPECT_EQ(moved->method, "none");
  EXPECT_EQ(store_->location("k")->replicas.size(), 1u);
  EXPECT_EQ(store_->stats().devices[0].used, 0u);
  ASSERT_TRUE(store_->copy("k", Location::disk()));
  ASSERT_TRUE(store_->release("k"));
  auto stats = store_->stats();
  EXPECT_EQ(stats.total_keys, 0u);
  EXPECT_EQ(stats.disk_used, 0u);
  EXPECT_EQ(stats.devices[1].used, 0u);
  EXPECT_EQ(stats.disk_keys, 0u);
}

}  // namespace
}  // namespace gswarm
