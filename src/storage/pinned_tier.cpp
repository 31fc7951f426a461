#include "storage/pinned_tier.hpp"

#include <sys/mman.h>

#include <cstring>
#include <map>
#include <mutex>
#include <optional>

#include <fmt/format.h>

#include "core/size.hpp"
#include "storage/dram_tier.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

}  // namespace

// Freed pinned segments, still locked or registered, kept for reuse: pinning
// costs far more than the copy it enables.
struct PinnedTier::Cache {
  struct Segment {
    SharedBlock block;
    bool registered;
  };
  static constexpr std::uint64_t kLimit = std::uint64_t{1} << 30;
  std::mutex mutex;
  std::multimap<std::size_t, Segment> segments;  // by capacity; guarded by mutex
  std::uint64_t bytes = 0;                        // guarded by mutex
  std::shared_ptr<DeviceBackend> backend;

  ~Cache() {
    for (auto& [cap, s] : segments) release(s);
  }
  void release(const Segment& s) {
    if (s.registered) backend->unregister_host(s.block.data);
    SharedMemory::free_segment(s.block);  // unmapping also unlocks
  }
  std::optional<Segment> take(std::size_t capacity) {
    std::lock_guard lock(mutex);
    auto it = segments.lower_bound(capacity);
    if (it == segments.end() || it->first > capacity + capacity / 4) return std::nullopt;
    Segment s = it->second;
    bytes -= it->first;
    segments.erase(it);
    return s;
  }
  void give(const Segment& s) {
    {
      std::lock_guard lock(mutex);
      if (bytes + s.block.capacity <= kLimit) {
        segments.emplace(s.block.capacity, s);
        bytes += s.block.capacity;
        return;
      }
    }
    release(s);
  }
};

namespace {

class PinnedExtent final : public Extent {
 public:
  PinnedExtent(SharedBlock block, bool registered, std::shared_ptr<PinnedTier::Cache> cache,
               std::shared_ptr<LimitCounter> counter)
      : block_(block), registered_(registered), cache_(std::move(cache)),
        counter_(std::move(counter)) {}
  ~PinnedExtent() override {
    cache_->give({block_, registered_});
    counter_->release(block_.size);
  }

  Location location() const override { return Location::pinned_dram(); }
  std::uint64_t size() const override { return block_.size; }
  std::byte* host_data() override { return block_.data; }
  bool page_locked() const override { return true; }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(block_); }

 private:
  SharedBlock block_;
  bool registered_;  // the GPU driver pinned it (else mlock)
  std::shared_ptr<PinnedTier::Cache> cache_;
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

PinnedTier::PinnedTier(std::uint64_t max_pinned, std::shared_ptr<DeviceBackend> backend)
    : counter_(std::make_shared<LimitCounter>("--max-pinned", max_pinned)),
      backend_(std::move(backend)),
      cache_(std::make_shared<Cache>()) {
  cache_->backend = backend_;
}

PinnedTier::~PinnedTier() = default;

Result<std::unique_ptr<Extent>> PinnedTier::allocate(std::uint64_t size, std::string_view,
                                                     std::string_view) {
  if (auto ok = counter_->reserve(size, "pinned memory"); !ok) return tl::unexpected(ok.error());
  const std::size_t capacity = std::max<std::size_t>((size + 4095) / 4096 * 4096, 4096);
  if (auto cached = cache_->take(capacity)) {
    cached->block.size = size;
    return std::make_unique<PinnedExtent>(cached->block, cached->registered, cache_, counter_);
  }
  SharedBlock block = SharedMemory::allocate_segment(size);
  if (block.data == nullptr) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("out of memory allocating {} of pinned memory", format_size(size)));
  }
  // With a GPU driver, registering the pages pins them and makes them DMA-able;
  // without one, mlock keeps them resident, which is what pinned means then.
  if (backend_->register_host(block.data, block.capacity)) {
    return std::make_unique<PinnedExtent>(block, true, cache_, counter_);
  }
  if (::mlock(block.data, block.capacity) != 0) {
    int err = errno;
    SharedMemory::free_segment(block);
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("cannot lock {} of pinned memory: {} (raise the memlock limit, "
                                  "`ulimit -l`, or lower --max-pinned)",
                                  format_size(size), std::strerror(err)));
  }
  return std::make_unique<PinnedExtent>(block, false, cache_, counter_);
}

}  // namespace gswarm
