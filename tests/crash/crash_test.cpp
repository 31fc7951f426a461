// Crashes at every step of a dram -> disk move while another operation on the
// same key (a release, a write, a conflicting move) runs in between, each forced
// by test points, never by timing. Each case runs in a child process that ends
// with _Exit at the crash point: like kill -9, nothing is cleaned up and what was
// written stays with the kernel. The parent then reopens the disk root and checks
// that it holds the state after every acknowledged operation; an operation in
// flight at the crash may have taken effect or not, but a move that lost to an
// acknowledged write or release never comes back.
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "core/test_point.hpp"
#include "crash_store.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

constexpr int kCrashed = 42;
const std::string kA(64 * 1024, 'A');  // the value being moved
const std::string kB(48 * 1024, 'B');  // what a write puts there instead

// The points a dram -> disk move passes, in order.
const std::vector<std::string> kMovePoints = {
    "move.attached",  "move.copied", "disk.before_publish", "disk.after_rename",
    "disk.published", "move.sealed", "move.installed"};
// Where the mover is held while the other operation runs: every point but the
// one inside the publication lock, which that operation may need.
const std::vector<std::string> kHoldPoints = {"move.attached",       "move.copied",
                                              "disk.before_publish", "disk.published",
                                              "move.sealed",         "move.installed"};

// kEarlyWriteDisk: a disk write that took its file (and so its sequence number)
// before the move took its own, and finishes while the move waits.
enum class Op { kRelease, kWriteDisk, kEarlyWriteDisk, kWriteDram, kSecondMove };
enum class State { kAbsent, kA, kB };

std::string name_of(State s) {
  return s == State::kAbsent ? "absent" : s == State::kA ? "A on disk" : "B on disk";
}

// Points on the other operation's own path, where it can crash before its answer.
std::vector<std::string> op_points(Op op) {
  switch (op) {
    case Op::kRelease:
      return {"store.released"};
    case Op::kWriteDisk:
    case Op::kEarlyWriteDisk:
      return {"disk.before_publish", "disk.after_rename", "disk.published", "store.installed"};
    case Op::kWriteDram:
      return {"store.installed"};
    case Op::kSecondMove:
      return {};
  }
  return {};
}

// The disk after the operation took effect.
State after(Op op) {
  return op == Op::kWriteDisk || op == Op::kEarlyWriteDisk ? State::kB : State::kAbsent;
}

struct Plan {
  Op op;
  std::string hold;   // where the mover waits while the operation runs
  std::string crash;  // where to crash; empty: once everything has returned
  bool crash_in_op;   // the crash point is on the operation's path, not the mover's
};

std::string describe(const Plan& p) {
  const char* ops[] = {"release", "write to disk", "early write to disk", "write to dram",
                       "second move"};
  return std::string(ops[static_cast<int>(p.op)]) + " while the move waits at " + p.hold +
         ", crash " +
         (p.crash.empty() ? "at the end"
                          : (p.crash_in_op ? "in the operation at " : "in the move at ") + p.crash);
}

// A second move (to pinned_dram) conflicts with a move still copying; once the
// first one has installed its copy, the second one runs.
bool second_move_runs(const Plan& p) { return p.hold == "move.installed"; }

// What may be on disk after the crash.
std::set<State> allowed(const Plan& p) {
  const std::set<State> move_in_flight = {State::kAbsent, State::kA};
  if (p.op == Op::kSecondMove) {
    // Acknowledged, it took the key off disk (pinned values do not persist).
    if (second_move_runs(p)) return {State::kAbsent};
    // Refused, it changed nothing; the first move is acknowledged only at the end.
    return p.crash.empty() ? std::set<State>{State::kA} : move_in_flight;
  }
  if (p.crash_in_op) {
    std::set<State> s = move_in_flight;
    s.insert(after(p.op));
    return s;
  }
  return {after(p.op)};
}

class Gate {
 public:
  void open() {
    std::lock_guard lock(mutex_);
    open_ = true;
    cv_.notify_all();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

thread_local bool t_is_mover = false;

using crash::bytes;

// The child: plays the plan and never returns.
[[noreturn]] void play(const fs::path& root, const Plan& plan) {
  auto opened = Store::open(crash::store_options(root));
  if (!opened) std::_Exit(2);
  Store& store = **opened;
  if (!store.write("k", bytes(kA), Location::dram(), "bytes")) std::_Exit(3);

  Gate reached;
  Gate resume;
  std::atomic<bool> resumed{false};
  std::set<std::string> names(kMovePoints.begin(), kMovePoints.end());
  for (const auto& n : op_points(plan.op)) names.insert(n);
  names.insert("store.released");
  for (const auto& name : names) {
    test_points::set(name, [&, name] {
      if (t_is_mover && name == plan.hold && !resumed) {
        reached.open();
        resume.wait();
      }
      if (name != plan.crash) return;
      if (plan.crash_in_op ? !t_is_mover : (t_is_mover && resumed)) std::_Exit(kCrashed);
    });
  }

  std::optional<PendingWrite> early;
  if (plan.op == Op::kEarlyWriteDisk) {
    auto pending = store.prepare_write("k", Location::disk(), kB.size(), "bytes");
    if (!pending || !pending->append(bytes(kB))) std::_Exit(8);
    early.emplace(std::move(*pending));
  }
  std::thread mover([&] {
    t_is_mover = true;
    (void)store.move("k", Location::disk());
  });
  reached.wait();
  switch (plan.op) {
    case Op::kRelease:
      if (!store.release("k")) std::_Exit(4);
      break;
    case Op::kWriteDisk:
      if (!store.write("k", bytes(kB), Location::disk(), "bytes")) std::_Exit(5);
      break;
    case Op::kEarlyWriteDisk:
      if (!store.commit_write(std::move(*early))) std::_Exit(5);
      break;
    case Op::kWriteDram:
      if (!store.write("k", bytes(kB), Location::dram(), "bytes")) std::_Exit(6);
      break;
    case Op::kSecondMove: {
      auto m = store.move("k", Location::pinned_dram());
      if (second_move_runs(plan) ? !m : (m || m.error().code != ErrorCode::kConflict))
        std::_Exit(7);
      break;
    }
  }
  resumed = true;
  resume.open();
  mover.join();
  std::_Exit(kCrashed);
}

// The other race: an operation has taken a disk value out of the index and is
// about to unlink its file when a second operation on the key is acknowledged.
// The file must not come back after a crash: the second operation retires it too.
enum class First { kWriteDram, kRelease, kMoveToDram };
enum class Second { kRelease, kWriteDram, kWriteDisk };

struct RetirePlan {
  First first;
  Second second;
  std::string crash;     // empty: once everything has returned
  bool crash_in_second;  // else in the first operation, right after it resumes
};

const char* hold_point(First f) {
  return f == First::kWriteDram ? "store.installed"
         : f == First::kRelease ? "store.released"
                                : "move.installed";
}

std::vector<std::string> second_points(Second s) {
  switch (s) {
    case Second::kRelease:
      return {"store.released"};
    case Second::kWriteDram:
      return {"store.installed"};
    case Second::kWriteDisk:
      return {"disk.before_publish", "disk.after_rename", "disk.published", "store.installed"};
  }
  return {};
}

std::set<State> allowed(const RetirePlan& p) {
  const State after_second = p.second == Second::kWriteDisk ? State::kB : State::kAbsent;
  if (!p.crash_in_second) return {after_second};
  // Neither is acknowledged: A's file, the first one's effect (nothing on
  // disk), or the second one's.
  return {State::kA, State::kAbsent, after_second};
}

std::string describe(const RetirePlan& p) {
  const char* firsts[] = {"write to dram", "release", "move to dram"};
  const char* seconds[] = {"release", "write to dram", "write to disk"};
  return std::string(seconds[static_cast<int>(p.second)]) + " while a " +
         firsts[static_cast<int>(p.first)] + " of a disk key removes its file, crash " +
         (p.crash.empty()
              ? "at the end"
              : (p.crash_in_second ? "in the second operation at " : "in the first at ") + p.crash);
}

[[noreturn]] void play(const fs::path& root, const RetirePlan& plan) {
  auto opened = Store::open(crash::store_options(root));
  if (!opened) std::_Exit(2);
  Store& store = **opened;
  if (!store.write("k", bytes(kA), Location::disk(), "bytes")) std::_Exit(3);
  Gate reached;
  Gate resume;
  std::atomic<bool> resumed{false};
  const std::string hold = hold_point(plan.first);
  std::set<std::string> names = {"store.installed",     "store.released",    "move.installed",
                                 "disk.before_publish", "disk.after_rename", "disk.published"};
  for (const auto& name : names) {
    test_points::set(name, [&, name] {
      if (t_is_mover && name == hold && !resumed) {
        reached.open();
        resume.wait();
      }
      if (name != plan.crash) return;
      if (plan.crash_in_second ? !t_is_mover : (t_is_mover && resumed)) std::_Exit(kCrashed);
    });
  }
  std::thread first([&] {
    t_is_mover = true;
    switch (plan.first) {
      case First::kWriteDram:
        (void)store.write("k", bytes(kB), Location::dram(), "bytes");
        break;
      case First::kRelease:
        (void)store.release("k");
        break;
      case First::kMoveToDram:
        (void)store.move("k", Location::dram());
        break;
    }
  });
  reached.wait();
  switch (plan.second) {
    case Second::kRelease:
      // Not found (the first one released it) is an answer too: the key is gone.
      if (auto r = store.release("k"); !r && r.error().code != ErrorCode::kNotFound) std::_Exit(4);
      break;
    case Second::kWriteDram:
      if (!store.write("k", bytes(kB), Location::dram(), "bytes")) std::_Exit(5);
      break;
    case Second::kWriteDisk:
      if (!store.write("k", bytes(kB), Location::disk(), "bytes")) std::_Exit(6);
      break;
  }
  resumed = true;
  resume.open();
  first.join();
  std::_Exit(kCrashed);
}

class CrashTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "fast");
    spdlog::set_level(spdlog::level::err);
    root_ = fs::temp_directory_path() / ("gswarm-crash-" + std::to_string(std::random_device{}()));
  }
  void TearDown() override { fs::remove_all(root_); }

  // Reopens the root as a restarted server does and says what it holds for "k".
  State observe() {
    auto store = Store::open(crash::store_options(root_));
    EXPECT_TRUE(store) << store.error().message;
    if (!store) return State::kAbsent;
    EXPECT_TRUE(fs::is_empty(root_ / "tmp")) << "unfinished writes left behind";
    EXPECT_TRUE(fs::is_empty(root_ / "quarantine")) << "a crash left a damaged file";
    std::size_t files = 0;
    for (auto& f : fs::recursive_directory_iterator(root_ / "values")) files += f.is_regular_file();
    auto where = (*store)->location("k");
    if (!where) {
      EXPECT_EQ(where.error().code, ErrorCode::kNotFound);
      EXPECT_EQ(files, 0u) << "a file outlived its key";
      return State::kAbsent;
    }
    EXPECT_EQ(files, 1u);
    EXPECT_EQ(where->primary, Location::disk());
    if (!(*store)->move("k", Location::dram())) {
      ADD_FAILURE() << "the recovered value cannot be read";
      return State::kAbsent;
    }
    std::string text((*store)->read("k")->text());
    if (text == kA) return State::kA;
    EXPECT_EQ(text, kB) << "the recovered value is neither A nor B";
    return State::kB;
  }

  void run(Op op) {
    int cases = 0;
    for (const auto& hold : kHoldPoints) {
      std::vector<Plan> plans;
      for (const auto& p : op_points(op)) plans.push_back({op, hold, p, true});
      auto later = std::find(kMovePoints.begin(), kMovePoints.end(), hold);
      for (auto it = later; it != kMovePoints.end(); ++it) plans.push_back({op, hold, *it, false});
      plans.push_back({op, hold, "", false});
      for (const auto& plan : plans) {
        SCOPED_TRACE(describe(plan));
        fs::remove_all(root_);
        EXPECT_EXIT(play(root_, plan), ::testing::ExitedWithCode(kCrashed), "");
        const State found = observe();
        const auto ok = allowed(plan);
        EXPECT_TRUE(ok.count(found) > 0) << "after the crash the disk holds: " << name_of(found);
        ++cases;
      }
    }
    EXPECT_GE(cases, 30);
  }

  void run_retiring() {
    int cases = 0;
    for (First first : {First::kWriteDram, First::kRelease, First::kMoveToDram}) {
      for (Second second : {Second::kRelease, Second::kWriteDram, Second::kWriteDisk}) {
        std::vector<RetirePlan> plans;
        for (const auto& p : second_points(second)) plans.push_back({first, second, p, true});
        plans.push_back({first, second, hold_point(first), false});
        plans.push_back({first, second, "", false});
        for (const auto& plan : plans) {
          SCOPED_TRACE(describe(plan));
          fs::remove_all(root_);
          EXPECT_EXIT(play(root_, plan), ::testing::ExitedWithCode(kCrashed), "");
          const State found = observe();
          EXPECT_TRUE(allowed(plan).count(found) > 0)
              << "after the crash the disk holds: " << name_of(found);
          ++cases;
        }
      }
    }
    EXPECT_GE(cases, 30);
  }

  fs::path root_;
};

TEST_F(CrashTest, ReleaseDuringMove) { run(Op::kRelease); }
TEST_F(CrashTest, DiskWriteDuringMove) { run(Op::kWriteDisk); }
TEST_F(CrashTest, EarlierDiskWriteFinishingDuringMove) { run(Op::kEarlyWriteDisk); }
TEST_F(CrashTest, DramWriteDuringMove) { run(Op::kWriteDram); }
TEST_F(CrashTest, MoveDuringMove) { run(Op::kSecondMove); }
TEST_F(CrashTest, ChangeWhileAnotherRemovesTheDiskFile) { run_retiring(); }

}  // namespace
}  // namespace gswarm
