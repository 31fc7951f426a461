// PinnedTier: page-locked host memory (pinned_dram), the staging tier for GPU
// copies. Pages are registered with the GPU driver (cudaHostRegister) when there
// is one and mlock'ed otherwise; the bytes count against --max-pinned. Not
// readable through `read` (spec), movable anywhere.
//
// Small values (under kSmallValue) are packed into pinned slabs, as small DRAM
// values are packed on the heap: many tiny pinned values cost no descriptor and
// no pinning call each. A small value counts as its slot's size (64 bytes at
// least); slab memory stays locked for reuse, and the slabs together lock at
// most --max-pinned. Larger values get a shared segment of their own, which
// another local process can be handed without a copy; freed segments stay
// pinned for reuse only within the room --max-pinned leaves beside the values.
#pragma once

#include <memory>

#include "storage/device_backend.hpp"
#include "storage/tier.hpp"

namespace gswarm {

class PinnedTier final : public Tier {
 public:
  static constexpr std::uint64_t kSmallValue = std::uint64_t{64} << 10;

  PinnedTier(std::uint64_t max_pinned, std::shared_ptr<DeviceBackend> backend);
  ~PinnedTier() override;

  Location location() const override { return Location::pinned_dram(); }
  Result<ExtentRef> allocate(std::uint64_t size, std::string_view key,
                             std::string_view format) override;
  const LimitCounter& counter() const override { return *counter_; }
  // Bytes of freed segments kept pinned for reuse.
  std::uint64_t cached_bytes() const;

  struct Pool;  // pinned slabs and freed segments kept pinned for reuse (pinned_tier.cpp)

 private:
  std::shared_ptr<LimitCounter> counter_;
  std::shared_ptr<Pool> pool_;  // extents return their memory here
};

}  // namespace gswarm
