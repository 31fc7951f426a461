#include "core/random.hpp"

#include <sys/random.h>

#include <cstdint>
#include <vector>

namespace gswarm {

std::string random_hex(std::size_t bytes) {
  std::vector<std::uint8_t> bits(bytes);
  auto* out = reinterpret_cast<char*>(bits.data());
  for (std::size_t got = 0; got < bytes;) {
    ssize_t n = ::getrandom(out + got, bytes - got, 0);
    if (n > 0) got += static_cast<std::size_t>(n);
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text;
  text.reserve(2 * bytes);
  for (std::uint8_t b : bits) {
    text += kDigits[b >> 4];
    text += kDigits[b & 15];
  }
  return text;
}

}  // namespace gswarm
