#include "core/location.hpp"

#include <charconv>

#include <fmt/format.h>

namespace gswarm {
namespace {

// Parses the N of "device:N" / "gpu:N"; device indices are small.
bool parse_index(std::string_view digits, int& out) {
  if (digits.empty() || digits.size() > 4) return false;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), out);
  return ec == std::errc() && ptr == digits.data() + digits.size() && out >= 0;
}

}  // namespace

Result<Location> Location::parse(std::string_view text) {
  if (text == "dram" || text == "cpu") return dram();
  if (text == "pinned_dram" || text == "pinned") return pinned_dram();
  if (text == "disk") return disk();
  if (text == "gpu") return device(0);
  for (std::string_view prefix : {"device:", "gpu:"}) {
    if (text.starts_with(prefix)) {
      int index = 0;
      if (parse_index(text.substr(prefix.size()), index)) return device(index);
      break;
    }
  }
  return make_error(ErrorCode::kInvalidLocation,
                    fmt::format("unknown location '{}': valid locations are {}", text,
                                kValidLocations));
}

std::string Location::name() const {
  switch (kind_) {
    case LocationKind::kDram:
      return "dram";
    case LocationKind::kPinnedDram:
      return "pinned_dram";
    case LocationKind::kDevice:
      return fmt::format("device:{}", device_);
    case LocationKind::kDisk:
      return "disk";
  }
  return "unknown";
}

}  // namespace gswarm
