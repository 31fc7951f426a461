#include "storage/shared_memory.hpp"

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <array>
#include <map>
#include <mutex>
#include <vector>

#include <fmt/format.h>

namespace gswarm {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kSegment = std::size_t{64} << 20;  // slab segments
constexpr std::size_t kRun = std::size_t{1} << 20;       // a class takes a segment 1 MiB at a time

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

// A memfd of `length` bytes mapped shared and pre-faulted; nullptr on failure
// (fd then -1).
std::byte* map_segment(std::size_t length, int& fd) {
  fd = ::memfd_create("gswarm-dram", MFD_CLOEXEC);
  if (fd < 0) return nullptr;
  if (::ftruncate(fd, static_cast<off_t>(length)) != 0) {
    ::close(fd);
    fd = -1;
    return nullptr;
  }
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    ::close(fd);
    fd = -1;
    return nullptr;
  }
  ::madvise(p, length, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  if (::madvise(p, length, MADV_POPULATE_WRITE) != 0)
#endif
  {
    auto* bytes = static_cast<volatile std::byte*>(p);
    for (std::size_t off = 0; off < length; off += 4096) bytes[off] = std::byte{0};
  }
  return static_cast<std::byte*>(p);
}

// Private memory, for when no memfd can be had.
std::byte* map_private(std::size_t length) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
}

// ---- large blocks --------------------------------------------------------------

struct CachedBlock {
  std::byte* data;
  int fd;
};

struct LargeCache {
  std::mutex mutex;
  std::multimap<std::size_t, CachedBlock> blocks;  // by capacity; guarded by mutex
  std::uint64_t bytes = 0;                          // guarded by mutex
  std::uint64_t limit = std::uint64_t{1} << 30;     // guarded by mutex
};

LargeCache& large_cache() {
  static LargeCache cache;
  return cache;
}

void unmap(std::byte* data, std::size_t capacity, int fd) {
  ::munmap(data, capacity);
  if (fd >= 0) ::close(fd);
}

SharedBlock allocate_large(std::size_t size) {
  SharedBlock block;
  block.size = size;
  std::size_t capacity = round_up(size, kHugePage);
  {
    auto& c = large_cache();
    std::lock_guard lock(c.mutex);
    auto it = c.blocks.lower_bound(capacity);
    if (it != c.blocks.end() && it->first <= capacity + capacity / 4) {
      block.capacity = it->first;
      block.data = it->second.data;
      block.fd = it->second.fd;
      c.bytes -= it->first;
      c.blocks.erase(it);
      return block;
    }
  }
  block.capacity = capacity;
  block.data = map_segment(capacity, block.fd);
  if (block.data == nullptr) block.data = map_private(capacity);
  return block;
}

void free_large(const SharedBlock& block) {
  auto& c = large_cache();
  {
    std::lock_guard lock(c.mutex);
    if (c.bytes + block.capacity <= c.limit) {
      c.blocks.emplace(block.capacity, CachedBlock{block.data, block.fd});
      c.bytes += block.capacity;
      return;
    }
  }
  unmap(block.data, block.capacity, block.fd);
}

// ---- small blocks: size-class slabs ---------------------------------------------

// Classes: multiples of 64 B up to 1 KiB, then four steps per power of two up to
// 1 MiB (at most 25% slack).
std::vector<std::size_t> make_classes() {
  std::vector<std::size_t> classes;
  for (std::size_t s = 64; s <= 1024; s += 64) classes.push_back(s);
  for (std::size_t base = 1024; base < SharedMemory::kLargeBlock; base *= 2) {
    for (std::size_t step = 1; step <= 4; ++step) classes.push_back(base + base / 4 * step);
  }
  return classes;
}

struct Segment {
  std::byte* data;
  int fd;
};

struct SizeClass {
  std::size_t slot = 0;
  std::mutex mutex;
  std::vector<SharedBlock> free;  // guarded by mutex
};

struct Slabs {
  Slabs() : sizes(make_classes()), classes(sizes.size()) {
    for (std::size_t i = 0; i < sizes.size(); ++i) classes[i].slot = sizes[i];
  }
  std::vector<std::size_t> sizes;
  std::vector<SizeClass> classes;
  std::mutex segments_mutex;
  std::vector<Segment> segments;  // guarded by segments_mutex
  std::size_t used_in_last = kSegment;  // guarded by segments_mutex

  // A fresh 1 MiB run from the current segment (a new one when it is full).
  bool take_run(Segment& segment, std::uint64_t& offset) {
    std::lock_guard lock(segments_mutex);
    if (used_in_last + kRun > kSegment) {
      Segment s;
      s.data = map_segment(kSegment, s.fd);
      if (s.data == nullptr) return false;
      segments.push_back(s);
      used_in_last = 0;
    }
    segment = segments.back();
    offset = used_in_last;
    used_in_last += kRun;
    return true;
  }
};

Slabs& slabs() {
  static Slabs instance;
  return instance;
}

SharedBlock allocate_small(std::size_t size) {
  Slabs& s = slabs();
  auto it = std::lower_bound(s.sizes.begin(), s.sizes.end(), std::max<std::size_t>(size, 1));
  SizeClass& cls = s.classes[static_cast<std::size_t>(it - s.sizes.begin())];
  std::lock_guard lock(cls.mutex);
  if (cls.free.empty()) {
    Segment segment;
    std::uint64_t run = 0;
    if (!s.take_run(segment, run)) return {};
    for (std::uint64_t off = run; off + cls.slot <= run + kRun; off += cls.slot) {
      cls.free.push_back(SharedBlock{segment.data + off, 0, cls.slot, segment.fd, off, true});
    }
  }
  SharedBlock block = cls.free.back();
  cls.free.pop_back();
  block.size = size;
  return block;
}

void free_small(const SharedBlock& block) {
  Slabs& s = slabs();
  auto it = std::lower_bound(s.sizes.begin(), s.sizes.end(), block.capacity);
  SizeClass& cls = s.classes[static_cast<std::size_t>(it - s.sizes.begin())];
  std::lock_guard lock(cls.mutex);
  cls.free.push_back(block);
}

}  // namespace

SharedBlock SharedMemory::allocate(std::size_t size) {
  if (size < kLargeBlock) {
    SharedBlock block = allocate_small(size);
    if (block.data != nullptr) return block;
    // No segment could be mapped: private heap memory, without a read pointer.
    block.data = static_cast<std::byte*>(::operator new(std::max<std::size_t>(size, 1), std::nothrow));
    block.size = block.capacity = size;
    return block;
  }
  return allocate_large(size);
}

void SharedMemory::free(const SharedBlock& block) {
  if (block.data == nullptr) return;
  if (block.slab) return free_small(block);
  if (block.capacity < kLargeBlock) return ::operator delete(block.data);
  free_large(block);
}

SharedBlock SharedMemory::allocate_segment(std::size_t size) {
  SharedBlock block;
  block.size = size;
  block.capacity = std::max<std::size_t>(round_up(size, 4096), 4096);
  block.data = map_segment(block.capacity, block.fd);
  if (block.data == nullptr) block.data = map_private(block.capacity);
  return block;
}

void SharedMemory::free_segment(const SharedBlock& block) {
  if (block.data != nullptr) unmap(block.data, block.capacity, block.fd);
}

std::string SharedMemory::segment_path(int fd) {
  return fmt::format("/proc/{}/fd/{}", ::getpid(), fd);
}

std::uint64_t SharedMemory::cached_bytes() {
  auto& c = large_cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

void SharedMemory::set_cache_limit(std::uint64_t bytes) {
  auto& c = large_cache();
  std::lock_guard lock(c.mutex);
  c.limit = bytes;
  while (c.bytes > c.limit && !c.blocks.empty()) {
    auto it = c.blocks.begin();
    unmap(it->second.data, it->first, it->second.fd);
    c.bytes -= it->first;
    c.blocks.erase(it);
  }
}

void SharedMemory::raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
}

}  // namespace gswarm
