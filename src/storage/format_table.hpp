// FormatTable: the process's format tags ("json", "bytes", "pickle", ...),
// interned so that an entry stores two bytes instead of a string. Entries hold a
// reference to their tag; a tag no entry uses is forgotten and its id reused, so
// a client inventing tags makes the table hold no more tags than there are keys
// (at most kCapacity at once: kOverLimit beyond).
//
// Thread-safe. name() takes no lock: the caller holds a reference to the id.
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
  static constexpr std::size_t kCapacity = 65536;

  // A reference to the id of `format` (a tag already validated by validate_format).
  [[nodiscard]] static Result<std::uint16_t> acquire(std::string_view format);
  // Gives back a reference acquire() returned.
  static void release(std::uint16_t id);
  // The tag of an id the caller holds a reference to.
  static std::string_view name(std::uint16_t id);
};

}  // namespace gswarm
