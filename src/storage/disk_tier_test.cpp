#include "storage/disk_tier.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <random>

#include "core/size.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

class DiskTierTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gswarm-disk-test-" + std::to_string(std::random_device{}()));
  }
  void TearDown() override { fs::remove_all(root_); }

  std::unique_ptr<DiskTier> open(std::uint64_t max = 0) {
    auto t = DiskTier::open(root_, max);
    EXPECT_TRUE(t) << t.error().message;
    return std::move(*t);
  }
  static std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
  }
  ExtentRef store(DiskTier& tier, std::string_view key, std::string_view value) {
    auto e = tier.allocate(value.size(), key, "bytes");
    EXPECT_TRUE(e);
    EXPECT_TRUE((*e)->write(0, bytes(value)));
    EXPECT_TRUE((*e)->seal());
    return std::move(*e);
  }
  // Value files and temporaries (not the root's lock file).
  std::vector<fs::path> files(const fs::path& under = {}) {
    std::vector<fs::path> out;
    for (auto& f : fs::recursive_directory_iterator(under.empty() ? root_ : root_ / under)) {
      if (f.is_regular_file() && f.path() != root_ / "lock") out.push_back(f.path());
    }
    return out;
  }

  fs::path root_;
};

TEST_F(DiskTierTest, FileNamesComeFromTheKeyHashInsideTheRoot) {
  auto tier = open();
  auto e = store(*tier, "../../etc/passwd", "x");
  auto all = files();
  ASSERT_EQ(all.size(), 1u);
  auto rel = fs::relative(all[0], root_).string();
  EXPECT_TRUE(rel.starts_with("values/")) << rel;
  EXPECT_EQ(rel.find("passwd"), std::string::npos);
  EXPECT_EQ(e->read_pointer()->path, all[0].string());
}

TEST_F(DiskTierTest, RecoverRemovesItsOwnLeftoversAndQuarantinesTheRest) {
  {
    auto tier = open();
    auto a = store(*tier, "a", "first");
    auto b = store(*tier, "a", "second");  // newer sequence for the same key
    auto c = store(*tier, "c", "corrupt me");
    // Damage c's header.
    auto path = c->read_pointer()->path;
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
    f.close();
    // What a crash mid-write leaves: temporaries that were never renamed.
    std::ofstream(root_ / "tmp" / "stray.tmp") << "partial";
    std::ofstream(root_ / "tmp" / "0123456789abcdef0123456789abcdef-0000000000000009.tmp") << "GSWV12345";
  }
  auto tier = open();
  auto recovered = tier->recover();
  ASSERT_TRUE(recovered);
  ASSERT_EQ(recovered->size(), 1u);
  EXPECT_EQ((*recovered)[0].key, "a");
  std::string out(6, '\0');
  ASSERT_TRUE((*recovered)[0].extent->read(0, {reinterpret_cast<std::byte*>(out.data()), 6}));
  EXPECT_EQ(out, "second");
  EXPECT_TRUE(fs::is_empty(root_ / "tmp"));
  // The superseded file and the unfinished write were gswarm's: removed. The
  // damaged file and the unknown one are set aside, never deleted.
  EXPECT_EQ(files("values").size(), 1u);
  std::vector<std::string> kept;
  for (const auto& f : files("quarantine")) kept.push_back(f.filename().string());
  std::sort(kept.begin(), kept.end());
  ASSERT_EQ(kept.size(), 2u);
  EXPECT_EQ(kept[1], "stray.tmp");
  EXPECT_TRUE(kept[0].ends_with(".gsv")) << kept[0];
}

TEST_F(DiskTierTest, VerifyCatchesPayloadCorruption) {
  auto tier = open();
  auto e = store(*tier, "k", "payload");
  std::string copy = "payload";
  EXPECT_TRUE(e->verify(bytes(copy)));
  copy[0] = 'P';
  auto bad = e->verify(bytes(copy));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kIo);
}

TEST_F(DiskTierTest, ARootServesOneTierAtATime) {
  auto first = open();
  auto second = DiskTier::open(root_, 0);
  ASSERT_FALSE(second);
  EXPECT_EQ(second.error().code, ErrorCode::kUnavailable);
  EXPECT_NE(second.error().message.find("in use by another gswarm process"), std::string::npos);
  first.reset();
  EXPECT_TRUE(DiskTier::open(root_, 0));  // free again once the first is gone
}

TEST_F(DiskTierTest, LimitIsCheckedBeforeWriting) {
  auto tier = open(1 * kKiB);
  auto r = tier->allocate(2 * kKiB, "k", "bytes");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kOverLimit);
  EXPECT_NE(r.error().message.find("--max-disk"), std::string::npos);
  EXPECT_TRUE(files().empty());
}

TEST_F(DiskTierTest, DiscardRemovesTheFileAndReleasesTheBytes) {
  auto tier = open();
  auto e = store(*tier, "k", "value");
  EXPECT_GT(tier->usage().used, 0u);
  e->discard();
  e.reset();
  EXPECT_EQ(tier->usage().used, 0u);
  EXPECT_TRUE(files().empty());
}

// A copy discarded while it is still being written (its key was overwritten or
// released) never appears, even if its writer goes on to seal it.
TEST_F(DiskTierTest, DiscardBeforeSealKeepsTheFileFromEverAppearing) {
  auto tier = open();
  auto e = tier->allocate(5, "k", "bytes");
  ASSERT_TRUE(e);
  ASSERT_TRUE((*e)->write(0, bytes("val")));
  (*e)->discard();
  auto more = (*e)->write(3, bytes("ue"));
  ASSERT_FALSE(more);
  EXPECT_EQ(more.error().code, ErrorCode::kConflict);
  EXPECT_FALSE((*e)->seal());
  e->reset();
  EXPECT_TRUE(files().empty());
  EXPECT_EQ(tier->usage().used, 0u);
}

TEST_F(DiskTierTest, ErrorsNameNoServerPath) {
  auto tier = open();
  auto e = store(*tier, "k", "payload");
  fs::remove(e->read_pointer()->path);
  std::string out(7, '\0');
  auto r = e->read(0, {reinterpret_cast<std::byte*>(out.data()), out.size()});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, ErrorCode::kIo);
  EXPECT_EQ(r.error().message.find(root_.string()), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find(".gsv"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("values"), std::string::npos) << r.error().message;
}

}  // namespace
}  // namespace gswarm
