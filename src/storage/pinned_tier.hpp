// PinnedTier: page-locked host memory (pinned_dram), the staging tier for GPU
// copies. Each value is a shared-memory segment of its own (so it has a read
// pointer), registered with the GPU driver (cudaHostRegister) when there is one
// and mlock'ed otherwise; the bytes count against --max-pinned. Not readable
// through `read` (spec), movable anywhere.
#pragma once

#include <memory>

#include "storage/device_backend.hpp"
#include "storage/tier.hpp"

namespace gswarm {

class PinnedTier final : public Tier {
 public:
  PinnedTier(std::uint64_t max_pinned, std::shared_ptr<DeviceBackend> backend);
  ~PinnedTier() override;

  Location location() const override { return Location::pinned_dram(); }
  Result<std::unique_ptr<Extent>> allocate(std::uint64_t size, std::string_view key,
                                           std::string_view format) override;
  const LimitCounter& counter() const override { return *counter_; }

  struct Cache;  // freed segments kept pinned for reuse (pinned_tier.cpp)

 private:
  std::shared_ptr<LimitCounter> counter_;
  std::shared_ptr<DeviceBackend> backend_;
  std::shared_ptr<Cache> cache_;  // extents return their segments here
};

}  // namespace gswarm
