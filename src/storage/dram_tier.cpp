#include "storage/dram_tier.hpp"

#include <array>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>

#include <fmt/format.h>

#include "core/size.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

// Live DRAM tiers, so that a small extent names its tier in 12 bits instead of
// a pointer: with its size it fits in the 4 bytes Extent leaves free, and a
// 10-byte value takes a 32-byte allocation instead of 48.
constexpr std::size_t kMaxTiers = 4096;
std::array<std::atomic<DramTier*>, kMaxTiers> g_tiers{};

std::uint32_t register_tier(DramTier* tier) {
  for (std::uint32_t i = 0; i < kMaxTiers; ++i) {
    DramTier* expected = nullptr;
    if (g_tiers[i].compare_exchange_strong(expected, tier)) return i;
  }
  std::fprintf(stderr, "gswarm: more than %zu DRAM tiers in one process\n", kMaxTiers);
  std::abort();
}

// A small value: this header and the bytes in one heap allocation.
class SmallDramExtent final : public Extent {
 public:
  static_assert(DramTier::kSmallValue <= (1u << 20), "sizes must fit in 20 bits");

  static SmallDramExtent* create(std::uint32_t tier, std::uint32_t size) {
    void* memory = ::operator new(sizeof(SmallDramExtent) + size, std::nothrow);
    if (memory == nullptr) return nullptr;
    return new (memory) SmallDramExtent(tier, size);
  }
  // Unsized: the allocation is larger than the class.
  static void operator delete(void* p) { ::operator delete(p); }
  ~SmallDramExtent() override {
    g_tiers[packed_ >> 20].load(std::memory_order_relaxed)->give_back(size());
  }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return packed_ & ((1u << 20) - 1); }
  std::byte* host_data() override { return reinterpret_cast<std::byte*>(this + 1); }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(size()); }

 private:
  SmallDramExtent(std::uint32_t tier, std::uint32_t size) : packed_(tier << 20 | size) {}
  std::uint32_t packed_;  // tier index (12 bits), size (20 bits); in Extent's tail padding
};
static_assert(sizeof(SmallDramExtent) == 16);

// A large value: a shared segment of its own, handed out without a copy.
class LargeDramExtent final : public Extent {
 public:
  LargeDramExtent(DramTier* tier, SharedBlock block) : tier_(tier), block_(block) {}
  ~LargeDramExtent() override {
    tier_->give_back(block_.size);
    SharedMemory::free(block_, exported_.load(std::memory_order_relaxed), tier_->headroom());
  }

  Location location() const override { return Location::dram(); }
  std::uint64_t size() const override { return block_.size; }
  std::byte* host_data() override { return block_.data; }
  std::optional<ReadPointer> read_pointer() const override { return shm_read_pointer(block_.size); }
  Result<ExportedValue> export_read_only() const override {
    exported_.store(true, std::memory_order_relaxed);
    return SharedMemory::export_read_only(block_, /*may_shrink=*/true);
  }

 private:
  DramTier* tier_;
  SharedBlock block_;
  mutable std::atomic<bool> exported_{false};  // handed out: never reuse the segment
};

}  // namespace

DramTier::DramTier(std::uint64_t max_memory)
    : counter_("--max-memory", max_memory), index_(register_tier(this)) {}

DramTier::~DramTier() { g_tiers[index_].store(nullptr, std::memory_order_relaxed); }

void DramTier::set_limit(std::uint64_t bytes) {
  counter_.set_limit(bytes);
  SharedMemory::trim_cache(headroom());
}

std::uint64_t DramTier::charge(std::uint64_t size) {
  return size < kSmallValue ? size + sizeof(SmallDramExtent) : size;
}

ReadPointer shm_read_pointer(std::uint64_t size) {
  ReadPointer rp;
  rp.kind = "shm";
  rp.size = size;
  return rp;
}

Result<ExtentRef> DramTier::allocate(std::uint64_t size, std::string_view, std::string_view) {
  if (auto ok = counter_.reserve(charge(size), "DRAM"); !ok) return tl::unexpected(ok.error());
  value_bytes_.fetch_add(size, std::memory_order_relaxed);
  ExtentRef extent;
  if (size < kSmallValue) {
    extent.reset(SmallDramExtent::create(index_, static_cast<std::uint32_t>(size)));
  } else if (SharedBlock block = SharedMemory::allocate(size); block.data != nullptr) {
    extent.reset(new LargeDramExtent(this, block));
    // Freed blocks kept for reuse live in the room --max-memory leaves: give
    // back those that the values now need.
    SharedMemory::trim_cache(headroom());
  }
  if (!extent) {
    give_back(size);
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("the system is out of memory allocating {} for a DRAM value",
                                  format_size(size)));
  }
  return extent;
}

}  // namespace gswarm
