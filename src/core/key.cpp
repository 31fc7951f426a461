#include "core/key.hpp"

#include <fmt/format.h>

namespace gswarm {

bool is_valid_utf8(std::string_view text) {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int extra = 0;
    std::uint32_t cp = 0;
    if ((c & 0xE0) == 0xC0) {
      extra = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      extra = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      extra = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (end - p <= extra) return false;
    for (int i = 1; i <= extra; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    // Reject overlong forms, surrogates and values past U+10FFFF.
    static constexpr std::uint32_t kMin[] = {0, 0x80, 0x800, 0x10000};
    if (cp < kMin[extra] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += extra + 1;
  }
  return true;
}

Result<void> validate_key(std::string_view key) {
  if (key.empty()) return make_error(ErrorCode::kInvalidKey, "key must not be empty");
  if (key.size() > kMaxKeyBytes) {
    return make_error(ErrorCode::kInvalidKey,
                      fmt::format("key is {} bytes; the limit is {} bytes", key.size(),
                                  kMaxKeyBytes));
  }
  if (key.find('\0') != std::string_view::npos) {
    return make_error(ErrorCode::kInvalidKey, "key must not contain NUL characters");
  }
  if (!is_valid_utf8(key)) return make_error(ErrorCode::kInvalidKey, "key must be valid UTF-8");
  return {};
}

}  // namespace gswarm
