// Standard base64 (RFC 4648, with padding), as the original server's clients send
// serialized values inside JSON.
#pragma once

#include <string>
#include <string_view>

#include <gswarm/error.hpp>

namespace gswarm {

std::string base64_encode(std::string_view bytes);
// kBadRequest on characters outside the alphabet or bad padding.
[[nodiscard]] Result<std::string> base64_decode(std::string_view text);

}  // namespace gswarm
