#include "storage/task_pool.hpp"

#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

namespace gswarm {
namespace {

TEST(TaskPoolTest, AFreeThreadTakesTheHighestPriorityFirstAndKeepsOrderWithinOne) {
  TaskPool pool("test-pool", 1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> busy;
  pool.submit([&busy, released] {  // holds the only thread while the queue fills
    busy.set_value();
    released.wait();
  });
  busy.get_future().wait();

  std::mutex mutex;
  std::vector<std::string> order;
  auto task = [&](std::string name) {
    return [&, name] {
      std::lock_guard lock(mutex);
      order.push_back(name);
    };
  };
  pool.submit(task("low-1"), TaskPriority::kLow);
  pool.submit(task("normal-1"));
  pool.submit(task("high-1"), TaskPriority::kHigh);
  ASSERT_TRUE(pool.try_submit(task("low-2"), 10, TaskPriority::kLow));
  ASSERT_TRUE(pool.try_submit(task("high-2"), 10, TaskPriority::kHigh));
  EXPECT_EQ(pool.queued(), 5u);
  // The limit counts waiting tasks of every priority.
  EXPECT_FALSE(pool.try_submit(task("refused"), 5, TaskPriority::kHigh));

  release.set_value();
  while (pool.queued() > 0) std::this_thread::yield();
  std::promise<void> drained;
  pool.submit([&drained] { drained.set_value(); }, TaskPriority::kLow);
  drained.get_future().wait();
  EXPECT_EQ(order, (std::vector<std::string>{"high-1", "high-2", "normal-1", "low-1", "low-2"}));
}

}  // namespace
}  // namespace gswarm
