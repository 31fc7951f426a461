#include "storage/dram_tier.hpp"

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {
namespace {

class DramExtent final : public Extent {
 public:
  DramExtent(std::unique_ptr<HostBlock> block, std::shared_ptr<LimitCounter> counter)
      : block_(std::move(block)), counter_(std::move(counter)) {}
  ~DramExtent() override { counter_->release(block_->size()); }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return block_->size(); }
  std::byte* host_data() override { return block_->data(); }

 private:
  std::unique_ptr<HostBlock> block_;
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace

Result<std::unique_ptr<Extent>> DramTier::allocate(std::uint64_t size, std::string_view,
                                                   std::string_view) {
  if (auto ok = counter_->reserve(size, "DRAM"); !ok) return tl::unexpected(ok.error());
  auto block = HostBlock::allocate(size);
  if (block == nullptr) {
    counter_->release(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("the system is out of memory allocating {} for a DRAM value",
                                  format_size(size)));
  }
  return std::make_unique<DramExtent>(std::move(block), counter_);
}

}  // namespace gswarm
