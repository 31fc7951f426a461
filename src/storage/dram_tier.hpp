// DramTier: values in host memory, counted against --max-memory. The only tier
// `read` serves. The bytes live in shared memory (shared_memory.hpp), so every
// DRAM replica has a read pointer another local process can map.
#pragma once

#include <memory>

#include "storage/shared_memory.hpp"
#include "storage/tier.hpp"

namespace gswarm {

class DramTier final : public Tier {
 public:
  explicit DramTier(std::uint64_t max_memory)
      : counter_(std::make_shared<LimitCounter>("--max-memory", max_memory)) {}

  Location location() const override { return Location::dram(); }
  Result<std::unique_ptr<Extent>> allocate(std::uint64_t size, std::string_view key,
                                           std::string_view format) override;
  const LimitCounter& counter() const override { return *counter_; }
  void set_limit(std::uint64_t bytes) { counter_->set_limit(bytes); }

 private:
  std::shared_ptr<LimitCounter> counter_;
};

// The "shm" read pointer of a shared block; none for private fallback memory.
std::optional<ReadPointer> shm_read_pointer(const SharedBlock& block);

}  // namespace gswarm
