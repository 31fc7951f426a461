#include "storage/tier.hpp"

#include <fmt/format.h>

#include "core/size.hpp"

namespace gswarm {

namespace {

bool fits(std::uint64_t bytes, std::uint64_t used, std::uint64_t limit) {
  return limit == 0 || (bytes <= limit && used <= limit - bytes);
}

Error over_limit(std::string_view what, std::uint64_t bytes, std::string_view limit_name,
                 std::uint64_t limit, std::uint64_t used) {
  return Error{ErrorCode::kOverLimit,
               fmt::format("not enough {0} space: storing {1} ({2} bytes) would pass {3} "
                           "(limit {4} = {5} bytes, in use {6} = {7} bytes)",
                           what, format_size(bytes), bytes, limit_name, format_size(limit), limit,
                           format_size(used), used)};
}

}  // namespace

Result<void> LimitCounter::reserve(std::uint64_t bytes, std::string_view what) {
  std::uint64_t used = used_.load(std::memory_order_relaxed);
  while (true) {
    std::uint64_t limit = limit_.load(std::memory_order_relaxed);
    if (!fits(bytes, used, limit)) {
      return tl::unexpected(over_limit(what, bytes, limit_name_, limit, used));
    }
    if (used_.compare_exchange_weak(used, used + bytes, std::memory_order_relaxed)) return {};
  }
}

Result<void> LimitCounter::check(std::uint64_t bytes, std::string_view what) const {
  std::uint64_t used = this->used();
  std::uint64_t limit = this->limit();
  if (!fits(bytes, used, limit)) {
    return tl::unexpected(over_limit(what, bytes, limit_name_, limit, used));
  }
  return {};
}

}  // namespace gswarm
