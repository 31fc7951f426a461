#include "storage/tier.hpp"

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {

Result<void> LimitCounter::reserve(std::uint64_t bytes, std::string_view what) {
  std::uint64_t used = used_.load(std::memory_order_relaxed);
  while (true) {
    std::uint64_t limit = limit_.load(std::memory_order_relaxed);
    if (limit != 0 && (bytes > limit || used > limit - bytes)) {
      return make_error(ErrorCode::kOverLimit,
                        fmt::format("not enough {0} space: storing {1} ({2} bytes) would pass "
                                    "{3} (limit {4} = {5} bytes, in use {6} = {7} bytes)",
                                    what, format_size(bytes), bytes, limit_name_,
                                    format_size(limit), limit, format_size(used), used));
    }
    if (used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed)) return {};
  }
}

}  // namespace gswarm
