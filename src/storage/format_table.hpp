// FormatTable: the process's format tags ("json", "bytes", "pickle", ...),
// interned so that an entry stores two bytes instead of a string. Tags are few
// in practice; the table holds up to kCapacity distinct ones and refuses more
// (kOverLimit), which bounds what a client inventing tags can make it hold.
//
// Thread-safe; name() takes no lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include <gswarm/error.hpp>

namespace gswarm {

class FormatTable {
 public:
  static constexpr std::uint16_t kJson = 0;
  static constexpr std::uint16_t kBytes = 1;
  static constexpr std::size_t kCapacity = 4096;

  // The id of `format` (a tag already validated by validate_format).
  [[nodiscard]] static Result<std::uint16_t> intern(std::string_view format);
  // The tag of an id intern() returned; valid for the life of the process.
  static std::string_view name(std::uint16_t id);
};

}  // namespace gswarm
