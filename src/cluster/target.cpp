#include "cluster/target.hpp"

#include <algorithm>
#include <charconv>

#include <fmt/format.h>

namespace gswarm::cluster {
namespace {

bool all_digits(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
    return c >= '0' && c <= '9';
  });
}

Result<std::uint16_t> parse_port(std::string_view text, std::string_view whole) {
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || value == 0 || value > 65535) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("'{}' has no valid port: give host:port, e.g. localhost:9016",
                                  whole));
  }
  return static_cast<std::uint16_t>(value);
}

bool valid_host(std::string_view host) {
  return !host.empty() && host.size() <= 253 &&
         std::all_of(host.begin(), host.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == '_' || c == ':';
         });
}

// "ADDRESS" or "ADDRESS:LOCATION", the address ending at `address_end`.
Result<Target> address_target(std::string_view text, std::size_t address_end) {
  Target target;
  auto address = parse_address(text.substr(0, address_end));
  if (!address) return tl::unexpected(address.error());
  target.address = std::move(*address);
  if (address_end != std::string_view::npos) {
    auto location = Location::parse(text.substr(address_end + 1));
    if (!location) return tl::unexpected(location.error());
    target.location = *location;
  }
  return target;
}

}  // namespace

std::string Address::text() const {
  if (host.find(':') != std::string::npos) return fmt::format("[{}]:{}", host, port);
  return fmt::format("{}:{}", host, port);
}

Result<Address> parse_address(std::string_view text) {
  Address address;
  std::string_view rest;
  if (text.starts_with('[')) {  // [IPv6]:port
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("'{}' is not an address: give [IPv6]:port", text));
    }
    address.host = std::string(text.substr(1, close - 1));
    rest = text.substr(close + 2);
  } else {
    auto colon = text.find(':');
    if (colon == std::string_view::npos) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("'{}' is not an address: give host:port", text));
    }
    address.host = std::string(text.substr(0, colon));
    rest = text.substr(colon + 1);
  }
  if (!valid_host(address.host)) {
    return make_error(ErrorCode::kBadRequest, fmt::format("'{}' has no valid host name", text));
  }
  auto port = parse_port(rest, text);
  if (!port) return tl::unexpected(port.error());
  address.port = *port;
  return address;
}

Result<void> validate_node_name(std::string_view name) {
  const bool ok = !name.empty() && name.size() <= 64 &&
                  std::all_of(name.begin(), name.end(), [](char c) {
                    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                           (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
                  });
  if (!ok) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("'{}' is not a node name: use 1 to 64 letters, digits, '.', '-' "
                                  "or '_'",
                                  name));
  }
  return {};
}

Result<Target> parse_target(std::string_view text) {
  // The legacy /send takes a URL.
  for (std::string_view scheme : {"http://", "HTTP://"}) {
    if (text.starts_with(scheme)) text.remove_prefix(scheme.size());
  }
  while (text.ends_with('/')) text.remove_suffix(1);
  if (text.empty()) {
    return make_error(ErrorCode::kBadRequest,
                      "the target is empty: give host:port, a node name or node:location");
  }
  if (text.starts_with('[')) {  // [IPv6]:port[:LOCATION]
    auto close = text.find(']');
    return address_target(text, close == std::string_view::npos ? close : text.find(':', close + 2));
  }
  Target target;
  const auto first = text.find(':');
  if (first == std::string_view::npos) {
    if (auto ok = validate_node_name(text); !ok) return tl::unexpected(ok.error());
    target.node = std::string(text);
    return target;
  }
  const auto second = text.find(':', first + 1);
  const std::string_view after = text.substr(first + 1, second - first - 1);
  if (all_digits(after)) return address_target(text, second);  // host:port[:LOCATION]
  // NODE:LOCATION
  const std::string_view node = text.substr(0, first);
  if (auto ok = validate_node_name(node); !ok) return tl::unexpected(ok.error());
  auto location = Location::parse(text.substr(first + 1));
  if (!location) {
    return make_error(ErrorCode::kInvalidLocation,
                      fmt::format("target '{}': unknown location '{}'; valid locations are {} "
                                  "(or give host:port)",
                                  text, text.substr(first + 1), kValidLocations));
  }
  target.node = std::string(node);
  target.location = *location;
  return target;
}

}  // namespace gswarm::cluster
