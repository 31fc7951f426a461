#include "storage/pinned_tier.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <vector>

#include <fmt/format.h>

#include "core/size.hpp"
#include "storage/dram_tier.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

constexpr std::size_t kSlabSegment = std::size_t{2} << 20;  // pinned one at a time

// Size classes of the slabs: multiples of 64 B up to 1 KiB, then four steps per
// power of two up to kSmallValue (at most 25% slack).
std::vector<std::size_t> make_classes() {
  std::vector<std::size_t> classes;
  for (std::size_t s = 64; s <= 1024; s += 64) classes.push_back(s);
  for (std::size_t base = 1024; base < PinnedTier::kSmallValue; base *= 2) {
    for (std::size_t step = 1; step <= 4; ++step) classes.push_back(base + base / 4 * step);
  }
  return classes;
}

Error cannot_pin(std::uint64_t size, int err) {
  return Error{ErrorCode::kOverLimit,
               fmt::format("cannot lock {} of pinned memory: {} (raise the memlock limit, "
                           "`ulimit -l`, or lower --max-pinned)",
                           format_size(size), std::strerror(err))};
}

}  // namespace

// Where pinned memory comes from and goes back to. Pinning costs far more than
// the copy it enables, so nothing pinned is unpinned while it may be reused.
struct PinnedTier::Pool {
  explicit Pool(std::shared_ptr<DeviceBackend> b) : backend(std::move(b)), sizes(make_classes()) {
    free_slots.resize(sizes.size());
  }
  ~Pool() {
    for (auto& [cap, s] : segments) release(s);
    for (auto& [data, registered] : slab_segments) {
      if (registered) backend->unregister_host(data);
      ::munmap(data, kSlabSegment);
    }
  }

  // Pins `length` bytes at `data`: true and `registered` set, or false and errno.
  bool pin(std::byte* data, std::size_t length, bool& registered) {
    registered = backend->register_host(data, length);
    return registered || ::mlock(data, length) == 0;
  }

  // ---- segments: values of kSmallValue and more ----
  struct Segment {
    SharedBlock block;
    bool registered;
  };
  static constexpr std::uint64_t kCacheLimit = std::uint64_t{1} << 30;

  void release(const Segment& s) {
    if (s.registered) backend->unregister_host(s.block.data);
    SharedMemory::free_segment(s.block);  // unmapping also unlocks
  }
  std::optional<Segment> take(std::size_t capacity) {
    std::lock_guard lock(mutex);
    auto it = segments.lower_bound(capacity);
    if (it == segments.end() || it->first > capacity + capacity / 4) return std::nullopt;
    Segment s = it->second;
    cached -= it->first;
    segments.erase(it);
    return s;
  }
  // Keeps a freed segment for reuse while the cache fits in `room`: what
  // --max-pinned leaves beside the values (pinned memory is locked memory, so
  // the cache must not hold more than the limit allows).
  void give(const Segment& s, bool exported, std::uint64_t room) {
    if (!exported) {
      std::lock_guard lock(mutex);
      if (cached + s.block.capacity <= std::min(room, kCacheLimit)) {
        segments.emplace(s.block.capacity, s);
        cached += s.block.capacity;
        return;
      }
    }
    release(s);
  }
  // Unpins cached segments, largest first, until the cache fits in `room`.
  void trim(std::uint64_t room) {
    std::vector<Segment> dropped;
    {
      std::lock_guard lock(mutex);
      while (cached > room && !segments.empty()) {
        auto last = std::prev(segments.end());
        cached -= last->first;
        dropped.push_back(last->second);
        segments.erase(last);
      }
    }
    for (const auto& s : dropped) release(s);
  }

  // ---- slabs: values under kSmallValue ----
  std::size_t class_of(std::size_t size) const {
    return static_cast<std::size_t>(
        std::lower_bound(sizes.begin(), sizes.end(), std::max<std::size_t>(size, 1)) -
        sizes.begin());
  }
  // A slot of class `c`, or nullptr with errno set when no memory could be
  // pinned (ENOSPC: slabs would lock more than `limit` bytes; 0: no limit).
  std::byte* take_slot(std::size_t c, std::uint64_t limit) {
    std::lock_guard lock(mutex);
    auto& slots = free_slots[c];
    if (slots.empty()) {
      if (limit != 0 && (slab_segments.size() + 1) * kSlabSegment > limit) {
        errno = ENOSPC;
        return nullptr;
      }
      void* p = ::mmap(nullptr, kSlabSegment, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
      if (p == MAP_FAILED) return nullptr;
      auto* data = static_cast<std::byte*>(p);
      bool registered = false;
      if (!pin(data, kSlabSegment, registered)) {
        int err = errno;
        ::munmap(p, kSlabSegment);
        errno = err;
        return nullptr;
      }
      slab_segments.emplace_back(data, registered);
      for (std::size_t off = 0; off + sizes[c] <= kSlabSegment; off += sizes[c]) {
        slots.push_back(data + off);
      }
    }
    std::byte* slot = slots.back();
    slots.pop_back();
    return slot;
  }
  void give_slot(std::size_t c, std::byte* slot) {
    std::lock_guard lock(mutex);
    free_slots[c].push_back(slot);
  }
  std::uint64_t slab_bytes() {
    std::lock_guard lock(mutex);
    return slab_segments.size() * kSlabSegment;
  }

  std::shared_ptr<DeviceBackend> backend;
  const std::vector<std::size_t> sizes;
  std::mutex mutex;
  std::multimap<std::size_t, Segment> segments;            // guarded by mutex
  std::uint64_t cached = 0;                                // guarded by mutex
  std::vector<std::vector<std::byte*>> free_slots;         // by class; guarded by mutex
  std::vector<std::pair<std::byte*, bool>> slab_segments;  // guarded by mutex
};

namespace {

// A small pinned value in a slab slot; the slot's whole size is counted.
class SlabPinnedExtent final : public Extent {
 public:
  SlabPinnedExtent(std::byte* data, std::uint32_t size, std::uint32_t size_class,
                   std::shared_ptr<PinnedTier::Pool> pool, std::shared_ptr<LimitCounter> counter)
      : size_(size),
        class_(size_class),
        data_(data),
        pool_(std::move(pool)),
        counter_(std::move(counter)) {}
  ~SlabPinnedExtent() override {
    pool_->give_slot(class_, data_);
    counter_->release(pool_->sizes[class_]);
  }

  Location location() const override { return Location::pinned_dram(); }
  std::uint64_t size() const override { return size_; }
  std::byte* host_data() override { return data_; }
  bool page_locked() const override { return true; }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(size_); }

 private:
  std::uint32_t size_;
  std::uint32_t class_;
  std::byte* data_;
  std::shared_ptr<PinnedTier::Pool> pool_;
  std::shared_ptr<LimitCounter> counter_;
};

// A larger pinned value: a shared segment of its own.
class SegmentPinnedExtent final : public Extent {
 public:
  SegmentPinnedExtent(PinnedTier::Pool::Segment segment, std::shared_ptr<PinnedTier::Pool> pool,
                      std::shared_ptr<LimitCounter> counter)
      : segment_(segment), pool_(std::move(pool)), counter_(std::move(counter)) {}
  ~SegmentPinnedExtent() override {
    counter_->release(segment_.block.size);
    pool_->give(segment_, exported_.load(std::memory_order_relaxed), counter_->headroom());
  }

  Location location() const override { return Location::pinned_dram(); }
  std::uint64_t size() const override { return segment_.block.size; }
  std::byte* host_data() override { return segment_.block.data; }
  bool page_locked() const override { return true; }
  std::optional<ReadPointer> read_pointer() const override {
    return shm_read_pointer(segment_.block.size);
  }
  Result<ExportedValue> export_read_only() const override {
    exported_.store(true, std::memory_order_relaxed);
    return SharedMemory::export_read_only(segment_.block, /*may_shrink=*/false);
  }

 private:
  PinnedTier::Pool::Segment segment_;
  std::shared_ptr<PinnedTier::Pool> pool_;
  std::shared_ptr<LimitCounter> counter_;
  mutable std::atomic<bool> exported_{false};  // handed out: never reuse the segment
};

}  // namespace

PinnedTier::PinnedTier(std::uint64_t max_pinned, std::shared_ptr<DeviceBackend> backend)
    : counter_(std::make_shared<LimitCounter>("--max-pinned", max_pinned)),
      pool_(std::make_shared<Pool>(std::move(backend))) {}

PinnedTier::~PinnedTier() = default;

std::uint64_t PinnedTier::cached_bytes() const {
  std::lock_guard lock(pool_->mutex);
  return pool_->cached;
}

Result<ExtentRef> PinnedTier::allocate(std::uint64_t size, std::string_view, std::string_view) {
  if (size < kSmallValue) {
    const std::size_t c = pool_->class_of(size);
    const std::uint64_t slot_size = pool_->sizes[c];
    if (auto ok = counter_->reserve(slot_size, "pinned memory"); !ok)
      return tl::unexpected(ok.error());
    std::byte* slot = pool_->take_slot(c, counter_->limit());
    if (slot == nullptr) {
      int err = errno;
      counter_->release(slot_size);
      if (err == ENOSPC) {
        return make_error(
            ErrorCode::kOverLimit,
            fmt::format("not enough pinned memory: the slabs that hold small pinned "
                        "values already lock {} (--max-pinned {}); release some "
                        "small pinned values or raise --max-pinned",
                        format_size(pool_->slab_bytes()), format_size(counter_->limit())));
      }
      return tl::unexpected(cannot_pin(kSlabSegment, err));
    }
    return ExtentRef(new SlabPinnedExtent(slot, static_cast<std::uint32_t>(size),
                                          static_cast<std::uint32_t>(c), pool_, counter_));
  }
  if (auto ok = counter_->reserve(size, "pinned memory"); !ok) return tl::unexpected(ok.error());
  const std::size_t capacity = (size + 4095) / 4096 * 4096;
  if (auto cached = pool_->take(capacity)) {
    cached->block.size = size;
    return ExtentRef(new SegmentPinnedExtent(*cached, pool_, counter_));
  }
  // New pinned memory: the cache gives back what the limit no longer leaves it.
  pool_->trim(counter_->headroom());
  SharedBlock block = SharedMemory::allocate_segment(size);
  if (block.data == nullptr) {
    counter_->release(size);
    return make_error(
        ErrorCode::kOverLimit,
        fmt::format("out of memory allocating {} of pinned memory", format_size(size)));
  }
  // With a GPU driver, registering the pages pins them and makes them DMA-able;
  // without one, mlock keeps them resident, which is what pinned means then.
  bool registered = false;
  if (!pool_->pin(block.data, block.capacity, registered)) {
    int err = errno;
    SharedMemory::free_segment(block);
    counter_->release(size);
    return tl::unexpected(cannot_pin(size, err));
  }
  return ExtentRef(new SegmentPinnedExtent(Pool::Segment{block, registered}, pool_, counter_));
}

}  // namespace gswarm
