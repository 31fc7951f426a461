#include "storage/task_pool.hpp"

#include <pthread.h>

#include <algorithm>

namespace gswarm {

TaskPool::TaskPool(std::string name, int threads) : name_(std::move(name)) {
  const int n = std::max(threads, 1);
  threads_.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads_.emplace_back([this] { run(); });
    // Shows in top and gdb; the kernel keeps 15 characters.
    ::pthread_setname_np(threads_.back().native_handle(), name_.substr(0, 15).c_str());
  }
}

TaskPool::~TaskPool() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void TaskPool::submit(std::function<void()> task, TaskPriority priority) {
  {
    std::lock_guard lock(mutex_);
    queues_[static_cast<std::size_t>(priority)].push_back(std::move(task));
    ++queued_;
  }
  ready_.notify_one();
}

bool TaskPool::try_submit(std::function<void()> task, std::size_t max_queued,
                          TaskPriority priority) {
  {
    std::lock_guard lock(mutex_);
    if (queued_ >= max_queued) return false;
    queues_[static_cast<std::size_t>(priority)].push_back(std::move(task));
    ++queued_;
  }
  ready_.notify_one();
  return true;
}

std::size_t TaskPool::queued() const {
  std::lock_guard lock(mutex_);
  return queued_;
}

void TaskPool::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || queued_ > 0; });
      if (queued_ == 0) return;  // stopping and drained
      for (auto& queue : queues_) {
        if (queue.empty()) continue;
        task = std::move(queue.front());
        queue.pop_front();
        break;
      }
      --queued_;
    }
    task();
  }
}

}  // namespace gswarm
