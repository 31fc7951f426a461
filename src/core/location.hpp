// Location: where a replica's bytes live. Parsed once at the edge, then passed
// around as a value. Wire names: "dram", "pinned_dram", "device:N", "disk".
// The data pool's aliases ("cpu", "gpu", "gpu:N") parse to the same values.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

namespace gswarm {

enum class LocationKind : std::uint8_t { kDram, kPinnedDram, kDevice, kDisk };

class Location {
 public:
  constexpr Location() = default;
  static constexpr Location dram() { return Location(LocationKind::kDram, 0); }
  static constexpr Location pinned_dram() { return Location(LocationKind::kPinnedDram, 0); }
  static constexpr Location device(int index) { return Location(LocationKind::kDevice, index); }
  static constexpr Location disk() { return Location(LocationKind::kDisk, 0); }

  // Parses a wire name. Does not check that a device exists: the Store does.
  [[nodiscard]] static Result<Location> parse(std::string_view text);

  constexpr LocationKind kind() const { return kind_; }
  constexpr int device_index() const { return device_; }
  // True for tiers whose bytes the CPU can address directly.
  constexpr bool host_addressable() const {
    return kind_ == LocationKind::kDram || kind_ == LocationKind::kPinnedDram;
  }
  std::string name() const;

  friend constexpr bool operator==(const Location&, const Location&) = default;
  friend constexpr auto operator<=>(const Location&, const Location&) = default;

 private:
  constexpr Location(LocationKind kind, int device) : kind_(kind), device_(device) {}
  LocationKind kind_ = LocationKind::kDram;
  int device_ = 0;
};

// The message listing valid location names, used in errors.
inline constexpr std::string_view kValidLocations = "dram, pinned_dram, device:N, disk";

}  // namespace gswarm
