// Random identifiers from the kernel's generator (getrandom): ids that cannot be
// guessed from others (transfers) or that stay unique across restarts (chunks).
#pragma once

#include <cstddef>
#include <string>

namespace gswarm {

// `bytes` random bytes as 2 * `bytes` lowercase hex digits.
std::string random_hex(std::size_t bytes);

}  // namespace gswarm
