// What a move reports while it runs, and cancelling it at each step, forced by
// test points rather than timing: every step names its phase (allocating,
// copying, verifying, syncing, finishing) with the bytes copied so far, and a
// cancel that arrives before the copy is installed leaves the source as the
// only replica and no file behind.
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/test_point.hpp"
#include "crash_store.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

const std::string kValue(3 * 1024 * 1024 + 17, 'v');
const std::vector<std::string> kPoints = {"move.attached", "move.copied", "move.sealed",
                                          "move.installed"};

class MoveProgressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("gswarm-progress-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    auto opened = Store::open(crash::store_options(root_));
    ASSERT_TRUE(opened) << opened.error().message;
    store_ = std::move(*opened);
  }
  void TearDown() override {
    test_points::clear_all();
    store_.reset();
    fs::remove_all(root_);
  }

  void write(Location where) {
    std::span<const std::byte> bytes{reinterpret_cast<const std::byte*>(kValue.data()),
                                     kValue.size()};
    ASSERT_TRUE(store_->write("k", bytes, where, "bytes"));
  }

  // The one operation there is, as the mover sees it at a test point.
  OperationInfo current() { return store_->operations().list().front(); }

  OperationInfo wait_for(std::uint64_t id) {
    for (int i = 0; i < 3000; ++i) {
      auto op = store_->operations().get(id);
      if (op && op->state != OperationState::kQueued && op->state != OperationState::kRunning) {
        return *op;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ADD_FAILURE() << "the move did not end";
    return {};
  }

  std::vector<std::string> replicas() {
    std::vector<std::string> out;
    auto where = store_->location("k");
    if (!where) return out;
    for (const auto& r : where->replicas) out.push_back(r.location.name());
    return out;
  }

  fs::path root_;
  std::unique_ptr<Store> store_;
};

TEST_F(MoveProgressTest, EveryStepSaysWhatItIsDoing) {
  const std::string n = std::to_string(kValue.size());
  struct Case {
    Location from, to;
    std::vector<std::string> expected;
  };
  const std::vector<Case> cases = {
      {Location::disk(),
       Location::dram(),
       {"move.attached allocating 0", "move.copied verifying " + n, "move.sealed verifying " + n,
        "move.installed finishing " + n}},
      {Location::dram(),
       Location::disk(),
       {"move.attached allocating 0", "move.copied copying " + n, "move.sealed syncing " + n,
        "move.installed finishing " + n}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.from.name() + " -> " + c.to.name());
    write(c.from);
    std::vector<std::string> seen;
    for (const auto& point : kPoints) {
      test_points::set(point, [&, point] {
        OperationInfo op = current();
        EXPECT_EQ(op.state, OperationState::kRunning);
        seen.push_back(point + " " + std::string(copy_phase_name(op.phase)) + " " +
                       std::to_string(op.bytes_done));
      });
    }
    auto id = store_->start_move("k", c.to);
    ASSERT_TRUE(id);
    EXPECT_EQ(wait_for(*id).state, OperationState::kDone);
    EXPECT_EQ(seen, c.expected);
    test_points::clear_all();
  }
}

TEST_F(MoveProgressTest, ACancelBeforeTheCopyIsInstalledKeepsOnlyTheSource) {
  for (const std::string point : {"move.attached", "move.copied", "move.sealed"}) {
    for (const Location from : {Location::dram(), Location::disk()}) {
      const Location to = from == Location::dram() ? Location::disk() : Location::dram();
      SCOPED_TRACE(point + ", " + from.name() + " -> " + to.name());
      write(from);
      test_points::set(point, [&] { ASSERT_TRUE(store_->operations().cancel(current().id)); });
      auto id = store_->start_move("k", to);
      ASSERT_TRUE(id);
      OperationInfo op = wait_for(*id);
      test_points::clear_all();
      EXPECT_EQ(op.state, OperationState::kCancelled);
      ASSERT_TRUE(op.error.has_value());
      EXPECT_NE(op.error->message.find("cancelled by a client"), std::string::npos);
      EXPECT_EQ(replicas(), std::vector<std::string>{from.name()});
      // No file of the cancelled copy: the disk holds the value only when it was the source.
      const StoreStats stats = store_->stats();
      EXPECT_EQ(stats.disk_keys, from == Location::disk() ? 1u : 0u);
      EXPECT_EQ(stats.disk_used == 0, from != Location::disk()) << stats.disk_used;
      auto again = store_->operations().cancel(*id);
      ASSERT_FALSE(again);
      EXPECT_EQ(again.error().code, ErrorCode::kConflict);
    }
  }
}

TEST_F(MoveProgressTest, ACancelAfterTheCopyIsInstalledIsTooLate) {
  write(Location::dram());
  test_points::set("move.installed",
                   [&] { ASSERT_TRUE(store_->operations().cancel(current().id)); });
  auto id = store_->start_move("k", Location::disk());
  ASSERT_TRUE(id);
  EXPECT_EQ(wait_for(*id).state, OperationState::kDone);
  EXPECT_EQ(replicas(), std::vector<std::string>{"disk"});
}

}  // namespace
}  // namespace gswarm
