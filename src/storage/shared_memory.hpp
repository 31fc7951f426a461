// Shared host memory: the bytes of DRAM and pinned values live in memfd segments
// so that another process on this machine can map a value read-only, without a
// copy, from its read pointer ({"kind": "shm", "path": "/proc/<pid>/fd/<n>",
// "offset", "size"}; doc/read-pointers.md).
//
// - Large blocks (>= kLargeBlock) get a segment each, 2 MiB aligned and
//   pre-faulted; freed ones are cached (bounded) and reused for similar sizes,
//   so steady streams of large writes fault no pages.
// - Small blocks come from size-class slabs carved out of 64 MiB segments. Freed
//   slots are reused by the same class; slab memory is not returned to the system.
//
// When the process runs out of file descriptors, blocks fall back to private
// memory and have no read pointer: values are never refused for that.
//
// Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace gswarm {

struct SharedBlock {
  std::byte* data = nullptr;
  std::size_t size = 0;       // bytes asked for
  std::size_t capacity = 0;   // bytes reserved
  int fd = -1;                // segment's memfd; -1: private memory, no read pointer
  std::uint64_t offset = 0;   // of data within the segment
  bool slab = false;
};

class SharedMemory {
 public:
  static constexpr std::size_t kLargeBlock = std::size_t{1} << 20;

  // A block of `size` bytes, or a block with data == nullptr when out of memory.
  static SharedBlock allocate(std::size_t size);
  static void free(const SharedBlock& block);
  // A segment of its own (page-rounded, not cached), for memory that will be
  // page-locked: locking part of a shared slab would lock its neighbours too.
  static SharedBlock allocate_segment(std::size_t size);
  static void free_segment(const SharedBlock& block);

  // "/proc/<pid>/fd/<fd>": the path another local process opens to map a segment.
  static std::string segment_path(int fd);

  // Freed large blocks kept for reuse (for /stats), and their bound.
  static std::uint64_t cached_bytes();
  static void set_cache_limit(std::uint64_t bytes);
  // Raises the open-file limit to its hard maximum (each large block is a file).
  static void raise_fd_limit();
};

// Owns one SharedMemory block (staging buffers, values being received).
class SharedBuffer {
 public:
  // nullptr when out of memory.
  static std::unique_ptr<SharedBuffer> allocate(std::size_t size) {
    SharedBlock block = SharedMemory::allocate(size);
    if (block.data == nullptr) return nullptr;
    return std::unique_ptr<SharedBuffer>(new SharedBuffer(block));
  }
  ~SharedBuffer() { SharedMemory::free(block_); }
  SharedBuffer(const SharedBuffer&) = delete;
  SharedBuffer& operator=(const SharedBuffer&) = delete;

  std::byte* data() { return block_.data; }
  std::size_t size() const { return block_.size; }
  std::span<std::byte> span() { return {block_.data, block_.size}; }

 private:
  explicit SharedBuffer(SharedBlock block) : block_(block) {}
  SharedBlock block_;
};

}  // namespace gswarm
