// Mover: the pool of threads that run blocking storage work (copies between
// tiers, disk writes and reads) so that network threads never block on I/O.
//
// Thread-safe. The destructor finishes queued tasks, then joins its threads.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <gswarm/error.hpp>

#include "storage/extent.hpp"

namespace gswarm {

class Mover {
 public:
  explicit Mover(int threads);
  ~Mover();
  Mover(const Mover&) = delete;
  Mover& operator=(const Mover&) = delete;

  // Runs `task` on a mover thread. Tasks must not wait for other mover tasks.
  void submit(std::function<void()> task);
  int threads() const { return static_cast<int>(threads_.size()); }

 private:
  void run();

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> queue_;  // guarded by mutex_
  bool stopping_ = false;                    // guarded by mutex_
  std::vector<std::thread> threads_;
};

// Copies all of `src` into `dst` (same size) in chunks, adding the bytes done to
// `progress`, and returns how: "memcpy" (host to host), "file" (through a disk
// file), "dma" (page-locked host memory to or from a device), "staged" (pageable
// host memory through the device backend's pinned staging buffers), or the
// device-to-device method ("local", "nvlink", "p2p", "staged").
// `bytes_per_second` > 0 paces the copy. When `dst` holds the whole value in host
// memory, `src` checks it against its own checksum.
[[nodiscard]] Result<std::string> copy_extent(const Extent& src, Extent& dst,
                                              std::atomic<std::uint64_t>& progress,
                                              std::uint64_t bytes_per_second = 0);

}  // namespace gswarm
