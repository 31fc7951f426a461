// Where a send goes: the TARGET of `gswarm data send KEY TARGET` and of
// POST /send_extended, parsed once at the edge.
//
//   host:port             another server by address (legacy /send also takes
//                         "http://host:port"); the value lands in dram
//   host:port:LOCATION    the same, into LOCATION (dram, pinned_dram, device:N, disk)
//   NODE                  a node by name (resolved through membership), dram
//   NODE:LOCATION         e.g. node2:device:1, node2:disk
//
// "host:port" is told from "NODE:LOCATION" by its second part being a number.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

#include "core/location.hpp"

namespace gswarm::cluster {

// A server's address: a host name or IP address and a port.
struct Address {
  std::string host;
  std::uint16_t port = 0;
  std::string text() const;
  friend bool operator==(const Address&, const Address&) = default;
};

// Parses "host:port" (IPv6 as "[::1]:port"). kBadRequest when malformed.
[[nodiscard]] Result<Address> parse_address(std::string_view text);

struct Target {
  std::optional<Address> address;  // an explicit server
  std::string node;                // or a node name (empty when address is set)
  Location location = Location::dram();
};

[[nodiscard]] Result<Target> parse_target(std::string_view text);

// Node names: 1 to 64 characters of [A-Za-z0-9._-].
[[nodiscard]] Result<void> validate_node_name(std::string_view name);

}  // namespace gswarm::cluster
