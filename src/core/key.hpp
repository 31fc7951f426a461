// Key rules shared by every front end: non-empty, at most kMaxKeyBytes bytes of
// valid UTF-8, no NUL. Anything else ('/', '..', spaces, emoji) is allowed; keys
// never become file names (the disk tier hashes them).
#pragma once

#include <cstddef>
#include <string_view>

#include <gswarm/error.hpp>

namespace gswarm {

inline constexpr std::size_t kMaxKeyBytes = 4096;

[[nodiscard]] Result<void> validate_key(std::string_view key);

bool is_valid_utf8(std::string_view text);

}  // namespace gswarm
