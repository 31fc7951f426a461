// Tier: one kind of storage (dram, pinned_dram, device:N, disk) with a byte limit.
//
// allocate() enforces the limit before anything is allocated: a request that would
// pass it fails with kOverLimit and a message giving the limit, the usage and the
// request, and nothing stored is touched. The bytes are accounted until the
// returned extent is destroyed.
//
// Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

#include "core/location.hpp"
#include "storage/extent.hpp"

namespace gswarm {

// Bytes in use against a limit. Extents hold a shared_ptr so the counter outlives
// the tier if an extent does.
class LimitCounter {
 public:
  LimitCounter(std::string limit_name, std::uint64_t limit)
      : limit_name_(std::move(limit_name)), limit_(limit) {}

  // Reserves `bytes` or explains why not. A limit of 0 means unlimited.
  [[nodiscard]] Result<void> reserve(std::uint64_t bytes, std::string_view what);
  // Whether `bytes` would fit now, with reserve()'s message when not.
  [[nodiscard]] Result<void> check(std::uint64_t bytes, std::string_view what) const;
  // Accounts bytes that already exist (found at start-up), whatever the limit.
  void add(std::uint64_t bytes) { used_.fetch_add(bytes, std::memory_order_relaxed); }
  void release(std::uint64_t bytes) { used_.fetch_sub(bytes, std::memory_order_relaxed); }

  std::uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  std::uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  // What the limit leaves beside what is used (no limit: any amount), e.g. for
  // caches of freed memory that must stay within it.
  std::uint64_t headroom() const {
    const std::uint64_t limit = this->limit(), used = this->used();
    if (limit == 0) return std::numeric_limits<std::uint64_t>::max();
    return limit > used ? limit - used : 0;
  }
  void set_limit(std::uint64_t limit) { limit_.store(limit, std::memory_order_relaxed); }

 private:
  const std::string limit_name_;  // the option that sets it, e.g. "--max-memory"
  std::atomic<std::uint64_t> limit_;
  std::atomic<std::uint64_t> used_{0};
};

struct TierUsage {
  std::uint64_t used = 0;
  std::uint64_t limit = 0;  // 0: unlimited
};

class Tier {
 public:
  virtual ~Tier() = default;
  virtual Location location() const = 0;
  // A new, unsealed extent of `size` bytes for `key`, or kOverLimit / kIo.
  [[nodiscard]] virtual Result<ExtentRef> allocate(std::uint64_t size, std::string_view key,
                                                   std::string_view format) = 0;
  // The tier's byte counter and limit.
  virtual const LimitCounter& counter() const = 0;
  TierUsage usage() const { return {counter().used(), counter().limit()}; }
};

}  // namespace gswarm
