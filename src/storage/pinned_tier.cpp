#include "storage/pinned_tier.hpp"

#include <sys/mman.h>

#include <cstring>

#include <fmt/format.h>

#include "core/size.hpp"
#include "storage/dram_tier.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

class PinnedExtent final : public Extent {
 public:
  PinnedExtent(SharedBlock block, std::shared_ptr<DeviceBackend> registered,
               std::shared_ptr<LimitCounter> counter)
      : block_(block), registered_(std::move(registered)), counter_(std::move(counter)) {}
  ~PinnedExtent() override {
    if (registered_) registered_->unregister_host(block_.data);
    SharedMemory::free_segment(block_);  // unmapping also unlocks
    counter_->release(block_.size);
  }

  Location location() const override { return Location::pinned_dram(); }
  std::uint64_t size() const override { return block_.size; }
  std::byte* host_data() override { return block_.data; }
  bool page_locked() const override { return true; }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(block_); }

 private:
  SharedBlock block_;
  std::shared_ptr<DeviceBackend> registered_;  // set when the GPU driver pinned it
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

Result<std::unique_ptr<Extent>> PinnedTier::allocate(std::uint64_t size, std::string_view,
                                                     std::string_view) {
  if (auto ok = counter_->reserve(size, "pinned memory"); !ok) return tl::unexpected(ok.error());
  SharedBlock block = SharedMemory::allocate_segment(size);
  if (block.data == nullptr) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("out of memory allocating {} of pinned memory", format_size(size)));
  }
  // With a GPU driver, registering the pages pins them and makes them DMA-able;
  // without one, mlock keeps them resident, which is what pinned means then.
  if (backend_->register_host(block.data, block.capacity)) {
    return std::make_unique<PinnedExtent>(block, backend_, counter_);
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
  return std::make_unique<PinnedExtent>(block, nullptr, counter_);
}

}  // namespace gswarm
