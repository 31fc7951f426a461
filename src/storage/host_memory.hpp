// HostBlock: a block of host memory for one value or one staging buffer.
//
// Small blocks come from the C++ heap. Large blocks (>= kLargeBlock) are mmap'd,
// aligned to 2 MiB and advised for transparent huge pages, and pre-faulted, because
// writing into fresh pages costs more than the network copy itself. Freed large
// blocks go to a bounded process-wide cache and are reused by later allocations of
// a similar size, so a steady stream of large writes does not fault pages at all.
//
// Thread-safe: allocate() and the destructor may run on any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace gswarm {

class HostBlock {
 public:
  static constexpr std::size_t kLargeBlock = std::size_t{1} << 20;

  // Returns nullptr when the system is out of memory.
  static std::unique_ptr<HostBlock> allocate(std::size_t size);
  ~HostBlock();
  HostBlock(const HostBlock&) = delete;
  HostBlock& operator=(const HostBlock&) = delete;

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  std::size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_, size_}; }
  std::span<const std::byte> span() const { return {data_, size_}; }

  // Bytes held by the reuse cache (for /stats), and the cache's bound.
  static std::uint64_t cached_bytes();
  static void set_cache_limit(std::uint64_t bytes);

 private:
  HostBlock(std::byte* data, std::size_t size, std::size_t capacity, bool mapped)
      : data_(data), size_(size), capacity_(capacity), mapped_(mapped) {}
  std::byte* data_;
  std::size_t size_;
  std::size_t capacity_;  // mapped length (large blocks) or size (heap blocks)
  bool mapped_;
};

}  // namespace gswarm
