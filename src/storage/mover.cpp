#include "storage/mover.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "core/size.hpp"
#include "storage/host_memory.hpp"

namespace gswarm {

Mover::Mover(int threads) {
  threads_.reserve(static_cast<std::size_t>(std::max(threads, 1)));
  for (int i = 0; i < std::max(threads, 1); ++i) threads_.emplace_back([this] { run(); });
}

Mover::~Mover() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  ready_.notify_all();
  for (auto& t : threads_) t.join();
}

void Mover::submit(std::function<void()> task) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(task));
  }
  ready_.notify_one();
}

void Mover::run() {
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

namespace {

// Large enough to amortise per-chunk costs, small enough for smooth progress.
constexpr std::uint64_t kChunk = 8 * kMiB;

}  // namespace

Result<void> copy_extent(const Extent& src, Extent& dst, std::atomic<std::uint64_t>& progress,
                         std::uint64_t bytes_per_second) {
  const std::uint64_t size = src.size();
  if (dst.size() != size) return make_error(ErrorCode::kInternal, "copy between unequal extents");
  const std::byte* src_host = src.host_data();
  std::byte* dst_host = dst.host_data();
  std::unique_ptr<HostBlock> staging;
  if (src_host == nullptr && dst_host == nullptr) {
    staging = HostBlock::allocate(static_cast<std::size_t>(std::min(size, kChunk)));
    if (!staging) return make_error(ErrorCode::kOverLimit, "out of memory for a staging buffer");
  }
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t offset = 0; offset < size;) {
    const std::uint64_t n = std::min(kChunk, size - offset);
    Result<void> step;
    if (src_host != nullptr && dst_host != nullptr) {
      std::memcpy(dst_host + offset, src_host + offset, n);
    } else if (src_host != nullptr) {
      step = dst.write(offset, {src_host + offset, n});
    } else if (dst_host != nullptr) {
      step = src.read(offset, {dst_host + offset, n});
    } else {
      std::span<std::byte> buf{staging->data(), n};
      step = src.read(offset, buf);
      if (step) step = dst.write(offset, buf);
    }
    if (!step) return step;
    offset += n;
    progress.fetch_add(n, std::memory_order_relaxed);
    if (bytes_per_second > 0) {
      auto due = start + std::chrono::duration<double>(static_cast<double>(offset) /
                                                       static_cast<double>(bytes_per_second));
      std::this_thread::sleep_until(due);
    }
  }
  if (dst_host != nullptr) return src.verify({dst_host, size});
  return {};
}

}  // namespace gswarm
