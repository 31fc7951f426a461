#include "core/size.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>

#include <fmt/format.h>

namespace gswarm {
namespace {

struct Unit {
  std::string_view suffix;
  std::uint64_t factor;
};

// Longest suffixes first so "KB" is not read as "B".
constexpr std::array kUnits = {
    Unit{"kib", kKiB}, Unit{"mib", kMiB}, Unit{"gib", kGiB}, Unit{"tib", kTiB},
    Unit{"kb", kKiB},  Unit{"mb", kMiB},  Unit{"gb", kGiB},  Unit{"tb", kTiB},
    Unit{"k", kKiB},   Unit{"m", kMiB},   Unit{"g", kGiB},   Unit{"t", kTiB},
    Unit{"b", 1},
};

tl::unexpected<Error> bad_size(std::string_view text) {
  return make_error(ErrorCode::kInvalidSize,
                    fmt::format("invalid size '{}': use a number of bytes or a number with "
                                "B, KB, MB, GB or TB (powers of 1024), e.g. 16GB",
                                text));
}

}  // namespace

Result<std::uint64_t> parse_size(std::string_view text) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  std::string_view rest = lower;
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);

  std::uint64_t factor = 1;
  for (const auto& unit : kUnits) {
    if (rest.size() > unit.suffix.size() && rest.ends_with(unit.suffix)) {
      factor = unit.factor;
      rest.remove_suffix(unit.suffix.size());
      while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
      break;
    }
  }
  if (rest.empty()) return bad_size(text);

  // Whole numbers exactly; fractions ("1.5GB") through double, rounded down.
  if (rest.find('.') == std::string_view::npos) {
    std::uint64_t number = 0;
    auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
    if (ec != std::errc() || ptr != rest.data() + rest.size()) return bad_size(text);
    if (number > std::numeric_limits<std::uint64_t>::max() / factor) return bad_size(text);
    return number * factor;
  }
  double number = 0;
  auto [ptr, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), number);
  if (ec != std::errc() || ptr != rest.data() + rest.size() || number < 0) return bad_size(text);
  double bytes = number * static_cast<double>(factor);
  if (bytes >= 1.8e19) return bad_size(text);
  return static_cast<std::uint64_t>(bytes);
}

std::string format_size(std::uint64_t bytes) {
  constexpr std::array<std::string_view, 5> kNames = {"B", "KB", "MB", "GB", "TB"};
  if (bytes < kKiB) return fmt::format("{} B", bytes);
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < kNames.size()) {
    value /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", value, kNames[unit]);
}

}  // namespace gswarm
