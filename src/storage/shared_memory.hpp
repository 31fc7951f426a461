// Shared host memory: large DRAM and pinned values live in memfd segments of
// their own, so that another process on this machine can be handed a value
// read-only and without a copy (doc/read-pointers.md).
//
// - A segment holds exactly one value. Segments are 2 MiB aligned and
//   pre-faulted; freed ones are cached (bounded) and reused for similar sizes, so
//   steady streams of large writes fault no pages. A segment that was handed to
//   another process (export_read_only) is sealed against writes by anyone but
//   this process's existing mapping and is never reused for another value.
// - Each segment costs a file descriptor. Segments draw on an fd budget (set from
//   the process's limit at start-up, leaving room for connections); beyond it,
//   values get private memory and are exported by copy instead. Values are never
//   refused for lack of descriptors.
// - Small values do not come from here: they live on the heap (dram_tier.cpp) or
//   in pinned slabs (pinned_tier.cpp), and are exported as a sealed copy.
//
// Thread-safe.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include <gswarm/error.hpp>

namespace gswarm {

// An owned file descriptor.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(std::exchange(other.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

struct SharedBlock {
  std::byte* data = nullptr;
  std::size_t size = 0;      // bytes asked for
  std::size_t capacity = 0;  // bytes mapped
  int fd = -1;               // the segment's memfd; -1: private memory
};

// A read-only descriptor of one value's bytes, for another local process.
struct ExportedValue {
  UniqueFd fd;               // opened read-only; the bytes cannot be written through it
  std::uint64_t offset = 0;  // of the value in the file
  std::uint64_t size = 0;
};

class SharedMemory {
 public:
  // A segment of `size` bytes (2 MiB aligned, pre-faulted, possibly reused), or
  // a block with data == nullptr when out of memory.
  static SharedBlock allocate(std::size_t size);
  // Returns a block from allocate(). `exported`: it was handed out, so it is
  // unmapped instead of cached. It is kept for reuse (a new segment of this size
  // costs populating it: ~1 s per 2 GB) only while all the cached blocks fit in
  // `cache_room`: the owner's limit leaves them room.
  static void free(const SharedBlock& block, bool exported = false,
                   std::uint64_t cache_room = UINT64_MAX);
  // Unmaps cached blocks until at most `keep` bytes are cached.
  static void trim_cache(std::uint64_t keep);
  // A segment of its own (page-rounded, never cached), for memory that will be
  // page-locked.
  static SharedBlock allocate_segment(std::size_t size);
  static void free_segment(const SharedBlock& block);

  // Seals the block's segment against writes through any new mapping or
  // descriptor (F_SEAL_FUTURE_WRITE) and opens it read-only for another process.
  // The segment is first cut to the value (zeroing the rest of its last page), so
  // that it shows nothing a previous user of the segment left; `may_shrink`
  // false (pages pinned by a driver) exports a sealed copy when that would take
  // shrinking. A block without a segment is exported as a sealed copy too.
  [[nodiscard]] static Result<ExportedValue> export_read_only(const SharedBlock& block,
                                                              bool may_shrink);
  // A new sealed segment holding a copy of `bytes`, opened read-only.
  [[nodiscard]] static Result<ExportedValue> sealed_copy(std::span<const std::byte> bytes);

  // Freed segments kept for reuse (for /stats), and their bound (default: no
  // bound beyond the room free() is given).
  static std::uint64_t cached_bytes();
  static void set_cache_limit(std::uint64_t bytes);
  // Raises the open-file limit to its hard maximum and returns the new limit.
  static std::uint64_t raise_fd_limit();
  // How many descriptors segments may hold at once (default: unlimited).
  static void set_fd_budget(std::uint64_t descriptors);
  static std::uint64_t fds_in_use();
};

// A heap buffer of fixed size (staging for copies between tiers that the CPU
// cannot address).
class HostBuffer {
 public:
  // nullptr when out of memory.
  static std::unique_ptr<HostBuffer> allocate(std::size_t size);
  std::byte* data() { return data_.get(); }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_.get(), size_}; }

 private:
  HostBuffer(std::unique_ptr<std::byte[]> data, std::size_t size)
      : data_(std::move(data)), size_(size) {}
  std::unique_ptr<std::byte[]> data_;
  std::size_t size_;
};

}  // namespace gswarm
