// Percent-encoding for URLs built by the client and by servers calling each other.
#pragma once

#include <string>
#include <string_view>

namespace gswarm {

// Percent-encodes `text` for a path segment or query value: every byte except the
// unreserved characters A-Z a-z 0-9 - . _ ~ becomes %XX ('/' and '+' included).
// (Also declared in <gswarm/client.hpp>.)
std::string url_encode(std::string_view text);

}  // namespace gswarm
