#include "storage/pinned_tier.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace gswarm {
namespace {

constexpr std::uint64_t kMiB = 1 << 20;

// Freed segments stay pinned for reuse, but pinned and cached together never
// lock more than --max-pinned: values of ever new sizes must not grow the
// cache past the limit (found by the soak test: 146 MiB locked, limit 128).
TEST(PinnedTierTest, TheReuseCacheStaysWithinTheLimit) {
  const std::uint64_t limit = 8 * kMiB;
  PinnedTier tier(limit, no_device_backend());
  for (int round = 0; round < 20; ++round) {
    std::vector<ExtentRef> values;
    // Sizes no cached segment fits (each over 1.25x the last), so every round
    // pins new memory.
    std::uint64_t size = kMiB + static_cast<std::uint64_t>(round) * 96 * 1024;
    for (int i = 0; i < 3; ++i, size = size * 13 / 10) {
      auto extent = tier.allocate(size, "k", "bytes");
      if (!extent) {
        ASSERT_EQ(extent.error().code, ErrorCode::kOverLimit) << extent.error().message;
        break;
      }
      values.push_back(std::move(*extent));
      EXPECT_LE(tier.counter().used() + tier.cached_bytes(), limit + 64 * 1024)
          << "round " << round;
    }
    values.clear();
    EXPECT_LE(tier.cached_bytes(), limit) << "round " << round;
  }
}

}  // namespace
}  // namespace gswarm
