// TaskPool: a named group of threads that run blocking storage work, so that
// network threads never block on I/O. The Store has two: `movers` copy values
// between tiers (moves and sends, which may run for minutes), and `io` does the
// short blocking steps of requests (disk writes, releases), so that a release or
// a small disk write never waits behind large copies.
//
// Tasks carry a priority: a free thread takes the oldest task of the highest
// priority waiting (data pool moves ask for "high" or "low"; everything else is
// normal). A task already running is never interrupted.
//
// Thread-safe. The destructor finishes queued tasks, then joins its threads.
#pragma once

#include <condition_variable>
#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gswarm {

enum class TaskPriority : std::uint8_t { kHigh = 0, kNormal = 1, kLow = 2 };

class TaskPool {
 public:
  TaskPool(std::string name, int threads);
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Runs `task` on one of the pool's threads. Tasks must not wait for other
  // tasks of the same pool.
  void submit(std::function<void()> task, TaskPriority priority = TaskPriority::kNormal);
  // Like submit, unless `max_queued` tasks (of any priority) are already
  // waiting: then false.
  [[nodiscard]] bool try_submit(std::function<void()> task, std::size_t max_queued,
                                TaskPriority priority = TaskPriority::kNormal);

  int threads() const { return static_cast<int>(threads_.size()); }
  std::size_t queued() const;
  const std::string& name() const { return name_; }

 private:
  void run();

  const std::string name_;
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::array<std::deque<std::function<void()>>, 3> queues_;  // by priority; guarded by mutex_
  std::size_t queued_ = 0;                                   // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::vector<std::thread> threads_;
};

}  // namespace gswarm
