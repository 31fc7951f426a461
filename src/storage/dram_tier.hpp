// DramTier: values in host memory, counted against --max-memory. The only tier
// `read` serves.
//
// Small values (under kSmallValue) live on the heap in one allocation with their
// extent, so a small key costs a few dozen bytes beyond its value; they are
// shared with other processes as a sealed copy. Large values live in a shared
// segment of their own (shared_memory.hpp) that is handed out without a copy.
//
// The tier's counter also carries what the Store charges for key metadata
// (Store::charge_key), so --max-memory bounds all memory that grows with keys.
// Extents point back at the tier: it must outlive them (the Store outlives every
// value it hands out).
#pragma once

#include <atomic>
#include <memory>

#include "storage/tier.hpp"

namespace gswarm {

class DramTier final : public Tier {
 public:
  static constexpr std::uint64_t kSmallValue = std::uint64_t{1} << 20;

  explicit DramTier(std::uint64_t max_memory);
  ~DramTier() override;
  DramTier(const DramTier&) = delete;
  DramTier& operator=(const DramTier&) = delete;

  Location location() const override { return Location::dram(); }
  Result<ExtentRef> allocate(std::uint64_t size, std::string_view key,
                             std::string_view format) override;
  const LimitCounter& counter() const override { return counter_; }
  LimitCounter& counter() { return counter_; }
  // A new limit; freed blocks kept for reuse beyond the room it leaves go at once.
  void set_limit(std::uint64_t bytes);
  // Bytes of the values themselves (the counter adds headers and key metadata).
  std::uint64_t value_bytes() const { return value_bytes_.load(std::memory_order_relaxed); }

  // What the tier counts for a value of `size` bytes: the bytes, plus the extent
  // header that shares a small value's allocation.
  static std::uint64_t charge(std::uint64_t size);
  // What the limit leaves free; freed large blocks are kept for reuse within it.
  std::uint64_t headroom() const { return counter_.headroom(); }
  // Called by this tier's extents when they go.
  void give_back(std::uint64_t size) {
    counter_.release(charge(size));
    value_bytes_.fetch_sub(size, std::memory_order_relaxed);
  }

 private:
  LimitCounter counter_;
  std::atomic<std::uint64_t> value_bytes_{0};
  const std::uint32_t index_;  // in the table small extents name their tier by
};

// The read pointer of a host value: its bytes are handed out by descriptor over
// the server's local socket, from offset 0.
ReadPointer shm_read_pointer(std::uint64_t size);

}  // namespace gswarm
