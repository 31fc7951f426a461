#include "storage/host_memory.hpp"

#include <sys/mman.h>

#include <cstring>
#include <map>
#include <mutex>
#include <new>

namespace gswarm {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// Freed large mappings, by capacity. Guarded by mutex.
struct BlockCache {
  std::mutex mutex;
  std::multimap<std::size_t, std::byte*> blocks;
  std::uint64_t bytes = 0;
  std::uint64_t limit = std::uint64_t{1} << 30;
};

BlockCache& cache() {
  static BlockCache instance;
  return instance;
}

// Takes a cached block whose capacity fits `capacity` without wasting more than a
// quarter of it.
std::byte* take_cached(std::size_t& capacity) {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  auto it = c.blocks.lower_bound(capacity);
  if (it == c.blocks.end() || it->first > capacity + capacity / 4) return nullptr;
  std::byte* p = it->second;
  capacity = it->first;
  c.bytes -= it->first;
  c.blocks.erase(it);
  return p;
}

bool put_cached(std::byte* p, std::size_t capacity) {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  if (c.bytes + capacity > c.limit) return false;
  c.blocks.emplace(capacity, p);
  c.bytes += capacity;
  return true;
}

std::byte* map_block(std::size_t capacity) {
  // Over-map by one huge page so the block can start on a 2 MiB boundary.
  std::size_t length = capacity + kHugePage;
  void* raw = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  auto base = reinterpret_cast<std::uintptr_t>(raw);
  auto aligned = round_up(base, kHugePage);
  if (aligned > base) ::munmap(raw, aligned - base);
  std::size_t tail = (base + length) - (aligned + capacity);
  if (tail > 0) ::munmap(reinterpret_cast<void*>(aligned + capacity), tail);
  auto* p = reinterpret_cast<std::byte*>(aligned);
  ::madvise(p, capacity, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  if (::madvise(p, capacity, MADV_POPULATE_WRITE) == 0) return p;
#endif
  // Older kernels: touch one byte per page.
  for (std::size_t off = 0; off < capacity; off += 4096) p[off] = std::byte{0};
  return p;
}

}  // namespace

std::unique_ptr<HostBlock> HostBlock::allocate(std::size_t size) {
  if (size < kLargeBlock) {
    auto* p = static_cast<std::byte*>(::operator new(size == 0 ? 1 : size, std::nothrow));
    if (p == nullptr) return nullptr;
    return std::unique_ptr<HostBlock>(new HostBlock(p, size, size, false));
  }
  std::size_t capacity = round_up(size, kHugePage);
  std::byte* p = take_cached(capacity);
  if (p == nullptr) p = map_block(capacity);
  if (p == nullptr) return nullptr;
  return std::unique_ptr<HostBlock>(new HostBlock(p, size, capacity, true));
}

HostBlock::~HostBlock() {
  if (!mapped_) {
    ::operator delete(data_);
    return;
  }
  if (!put_cached(data_, capacity_)) ::munmap(data_, capacity_);
}

std::uint64_t HostBlock::cached_bytes() {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

void HostBlock::set_cache_limit(std::uint64_t bytes) {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  c.limit = bytes;
  while (c.bytes > c.limit && !c.blocks.empty()) {
    auto it = c.blocks.begin();
    ::munmap(it->second, it->first);
    c.bytes -= it->first;
    c.blocks.erase(it);
  }
}

}  // namespace gswarm
