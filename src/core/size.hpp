// Memory sizes as the spec writes them: "16GB", "512MB", "1TB", "1024".
// Suffixes B, KB, MB, GB, TB are powers of 1024; a bare number is bytes.
// Case-insensitive; "K", "M", "G", "T" and "KiB"-style suffixes are accepted too.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

namespace gswarm {

[[nodiscard]] Result<std::uint64_t> parse_size(std::string_view text);

// Human form for messages: "16.0 GB", "512 B".
std::string format_size(std::uint64_t bytes);

inline constexpr std::uint64_t kKiB = 1024;
inline constexpr std::uint64_t kMiB = kKiB * 1024;
inline constexpr std::uint64_t kGiB = kMiB * 1024;
inline constexpr std::uint64_t kTiB = kGiB * 1024;

}  // namespace gswarm
