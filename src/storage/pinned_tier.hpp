// PinnedTier: page-locked host memory (pinned_dram), the staging tier for GPU
// copies. Without a CUDA driver it is mmap'd and mlock'ed; the bytes count
// against --max-pinned. Not readable through `read` (spec), movable anywhere.
#pragma once

#include <memory>

#include "storage/tier.hpp"

namespace gswarm {

class PinnedTier final : public Tier {
 public:
  explicit PinnedTier(std::uint64_t max_pinned)
      : counter_(std::make_shared<LimitCounter>("--max-pinned", max_pinned)) {}

  Location location() const override { return Location::pinned_dram(); }
  Result<std::unique_ptr<Extent>> allocate(std::uint64_t size, std::string_view key,
                                           std::string_view format) override;
  TierUsage usage() const override { return {counter_->used(), counter_->limit()}; }

 private:
  std::shared_ptr<LimitCounter> counter_;
};

}  // namespace gswarm
