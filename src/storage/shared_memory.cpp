#include "storage/shared_memory.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <new>

#include <fmt/format.h>

namespace gswarm {
namespace {

constexpr std::size_t kHugePage = std::size_t{2} << 20;
constexpr std::size_t kPage = 4096;
constexpr unsigned kExportSeals = F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK | F_SEAL_GROW;

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

std::atomic<std::uint64_t> g_fd_budget{std::numeric_limits<std::uint64_t>::max()};
std::atomic<std::uint64_t> g_fds_in_use{0};

// Takes one descriptor from the budget, or says there is none left.
bool take_fd() {
  std::uint64_t used = g_fds_in_use.load(std::memory_order_relaxed);
  do {
    if (used >= g_fd_budget.load(std::memory_order_relaxed)) return false;
  } while (!g_fds_in_use.compare_exchange_weak(used, used + 1, std::memory_order_relaxed));
  return true;
}

void give_fd(int fd) {
  if (fd < 0) return;
  ::close(fd);
  g_fds_in_use.fetch_sub(1, std::memory_order_relaxed);
}

// A memfd of `length` bytes mapped shared and pre-faulted; nullptr on failure
// (fd then -1).
std::byte* map_segment(std::size_t length, int& fd) {
  fd = -1;
  if (!take_fd()) return nullptr;
  fd = ::memfd_create("gswarm-value", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) {
    g_fds_in_use.fetch_sub(1, std::memory_order_relaxed);
    return nullptr;
  }
  void* p = MAP_FAILED;
  if (::ftruncate(fd, static_cast<off_t>(length)) == 0) {
    p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  }
  if (p == MAP_FAILED) {
    give_fd(fd);
    fd = -1;
    return nullptr;
  }
  ::madvise(p, length, MADV_HUGEPAGE);
#ifdef MADV_POPULATE_WRITE
  if (::madvise(p, length, MADV_POPULATE_WRITE) != 0)
#endif
  {
    auto* bytes = static_cast<volatile std::byte*>(p);
    for (std::size_t off = 0; off < length; off += kPage) bytes[off] = std::byte{0};
  }
  return static_cast<std::byte*>(p);
}

// Private memory, for when no memfd can be had.
std::byte* map_private(std::size_t length) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : static_cast<std::byte*>(p);
}

void unmap(std::byte* data, std::size_t capacity, int fd) {
  ::munmap(data, capacity);
  give_fd(fd);
}

struct CachedBlock {
  std::byte* data;
  int fd;
};

struct SegmentCache {
  std::mutex mutex;
  std::multimap<std::size_t, CachedBlock> blocks;  // by capacity; guarded by mutex
  std::uint64_t bytes = 0;                         // guarded by mutex
  std::uint64_t limit = UINT64_MAX;                 // guarded by mutex
};

SegmentCache& cache() {
  static SegmentCache instance;
  return instance;
}

// Opens `fd`'s file again, read-only: a new open file description, so the
// receiver cannot reach the write access of ours.
Result<UniqueFd> reopen_read_only(int fd) {
  UniqueFd out(::open(fmt::format("/proc/self/fd/{}", fd).c_str(), O_RDONLY | O_CLOEXEC));
  if (!out) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot open a read-only descriptor: {}", std::strerror(errno)));
  }
  return out;
}

}  // namespace

SharedBlock SharedMemory::allocate(std::size_t size) {
  SharedBlock block;
  block.size = size;
  const std::size_t capacity = round_up(std::max<std::size_t>(size, 1), kHugePage);
  {
    auto& c = cache();
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

void SharedMemory::free(const SharedBlock& block, bool exported, std::uint64_t cache_room) {
  if (block.data == nullptr) return;
  if (!exported && block.fd >= 0) {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    if (c.bytes + block.capacity <= std::min(c.limit, cache_room)) {
      c.blocks.emplace(block.capacity, CachedBlock{block.data, block.fd});
      c.bytes += block.capacity;
      return;
    }
  }
  unmap(block.data, block.capacity, block.fd);
}

SharedBlock SharedMemory::allocate_segment(std::size_t size) {
  SharedBlock block;
  block.size = size;
  block.capacity = round_up(std::max<std::size_t>(size, 1), kPage);
  block.data = map_segment(block.capacity, block.fd);
  if (block.data == nullptr) block.data = map_private(block.capacity);
  return block;
}

void SharedMemory::free_segment(const SharedBlock& block) {
  if (block.data != nullptr) unmap(block.data, block.capacity, block.fd);
}

Result<ExportedValue> SharedMemory::export_read_only(const SharedBlock& block, bool may_shrink) {
  const std::size_t end = round_up(block.size, kPage);
  if (block.fd < 0 || (end < block.capacity && !may_shrink)) {
    return sealed_copy({block.data, block.size});
  }
  // Idempotent, so a second export of the same value does no harm.
  std::memset(block.data + block.size, 0, end - block.size);
  if (end < block.capacity &&
      ::ftruncate(block.fd, static_cast<off_t>(std::max(end, kPage))) != 0) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot trim a shared segment: {}", std::strerror(errno)));
  }
  if (::fcntl(block.fd, F_ADD_SEALS, kExportSeals) != 0) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot seal a shared segment: {}", std::strerror(errno)));
  }
  auto fd = reopen_read_only(block.fd);
  if (!fd) return tl::unexpected(fd.error());
  return ExportedValue{std::move(*fd), 0, block.size};
}

Result<ExportedValue> SharedMemory::sealed_copy(std::span<const std::byte> bytes) {
  UniqueFd fd(::memfd_create("gswarm-value", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  auto fail = [](std::string_view what) {
    return make_error(ErrorCode::kIo, fmt::format("cannot {} a shared copy of the value: {}", what,
                                                  std::strerror(errno)));
  };
  if (!fd) return fail("create");
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes.size())) != 0) return fail("size");
  for (std::size_t off = 0; off < bytes.size();) {
    ssize_t n = ::pwrite(fd.get(), bytes.data() + off, bytes.size() - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("fill");
    off += static_cast<std::size_t>(n);
  }
  if (::fcntl(fd.get(), F_ADD_SEALS, kExportSeals | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return fail("seal");
  }
  auto read_only = reopen_read_only(fd.get());
  if (!read_only) return tl::unexpected(read_only.error());
  return ExportedValue{std::move(*read_only), 0, bytes.size()};
}

std::uint64_t SharedMemory::cached_bytes() {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  return c.bytes;
}

void SharedMemory::set_cache_limit(std::uint64_t bytes) {
  {
    auto& c = cache();
    std::lock_guard lock(c.mutex);
    c.limit = bytes;
  }
  trim_cache(bytes);
}

void SharedMemory::trim_cache(std::uint64_t keep) {
  auto& c = cache();
  std::lock_guard lock(c.mutex);
  while (c.bytes > keep && !c.blocks.empty()) {
    auto it = c.blocks.begin();
    unmap(it->second.data, it->first, it->second.fd);
    c.bytes -= it->first;
    c.blocks.erase(it);
  }
}

std::uint64_t SharedMemory::raise_fd_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 1024;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur == RLIM_INFINITY ? std::numeric_limits<std::uint64_t>::max()
                                         : static_cast<std::uint64_t>(limit.rlim_cur);
}

void SharedMemory::set_fd_budget(std::uint64_t descriptors) {
  g_fd_budget.store(descriptors, std::memory_order_relaxed);
}

std::uint64_t SharedMemory::fds_in_use() { return g_fds_in_use.load(std::memory_order_relaxed); }

std::unique_ptr<HostBuffer> HostBuffer::allocate(std::size_t size) {
  std::unique_ptr<std::byte[]> data(new (std::nothrow) std::byte[std::max<std::size_t>(size, 1)]);
  if (!data) return nullptr;
  return std::unique_ptr<HostBuffer>(new HostBuffer(std::move(data), size));
}

}  // namespace gswarm
