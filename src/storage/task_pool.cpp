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

void TaskPool::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
}

bool TaskPool::try_submit(std::function<void()> task, std::size_t max_queued) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= max_queued) return false;
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
  return true;
}

std::size_t TaskPool::queued() const {
  std::lock_guard lock(mutex_);
  return queue_.size();
}

void TaskPool::run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mutex_);
      ready_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace gswarm
