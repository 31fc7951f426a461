#include "storage/dram_tier.hpp"

#include <fmt/format.h>

#include "core/size.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

class DramExtent final : public Extent {
 public:
  DramExtent(SharedBlock block, std::shared_ptr<LimitCounter> counter)
      : block_(block), counter_(std::move(counter)) {}
  ~DramExtent() override {
    SharedMemory::free(block_);
    counter_->release(block_.size);
  }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return block_.size; }
  std::byte* host_data() override { return block_.data; }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(block_); }

 private:
  SharedBlock block_;
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

std::optional<ReadPointer> shm_read_pointer(const SharedBlock& block) {
  if (block.fd < 0) return std::nullopt;
  ReadPointer rp;
  rp.kind = "shm";
  rp.path = SharedMemory::segment_path(block.fd);
  rp.offset = block.offset;
  rp.size = block.size;
  return rp;
}

Result<std::unique_ptr<Extent>> DramTier::allocate(std::uint64_t size, std::string_view,
                                                   std::string_view) {
  if (auto ok = counter_->reserve(size, "DRAM"); !ok) return tl::unexpected(ok.error());
  SharedBlock block = SharedMemory::allocate(size);
  if (block.data == nullptr) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("the system is out of memory allocating {} for a DRAM value",
                                  format_size(size)));
  }
  return std::make_unique<DramExtent>(block, counter_);
}

}  // namespace gswarm
