// Who may use the server (doc/security.md): the bearer token (--token) and
// protected mode. Decided per request from plain values, before any body is
// read, so that the rules are unit-tested and fuzzed without a socket.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <gswarm/error.hpp>

namespace gswarm::server {

struct AccessPolicy {
  std::string token;            // empty: no token is asked for
  bool loopback_only = false;   // protected mode in force: other machines get 403
  std::string bound_to;         // the --host the server listens on, for messages
  // Browsers (doc/security.md): a request with an Origin header comes from a
  // web page and is refused unless its origin is one of these (--allow-origin,
  // "*" for any).
  std::vector<std::string> allowed_origins;
  // Without a token, the Host a request names must be an IP address,
  // "localhost", one of this machine's names or one of these (--allow-host):
  // a DNS-rebinding page reaches the server under a name of its own.
  std::vector<std::string> allowed_hosts;
  std::vector<std::string> own_names;  // the host name, --node-name, --advertise-address's host
};

// What check_access looks at, from the request's head.
struct AccessRequest {
  bool from_loopback = true;
  std::string_view method;
  std::string_view path;
  std::string_view authorization;  // the Authorization header
  std::string_view host;           // the Host header (empty: none)
  std::string_view origin;         // the Origin header; nullopt-like when !has_origin
  bool has_origin = false;
};

// Whether a request may go on: nullopt when it may, else the error to answer
// (kUnauthorized for a missing or wrong token; kForbidden for a client from
// another machine in protected mode, a web page's origin that is not allowed,
// or, without a token, a Host that is not this machine's). GET /health needs no
// token.
std::optional<Error> check_access(const AccessPolicy& policy, const AccessRequest& request);

// The host of a Host header ("name:port", "[v6]:port", "name"), lower-cased.
std::string host_of(std::string_view host_header);

// Compares a presented token with the expected one in time that depends only on
// the expected token's length, never on where the two first differ.
bool token_matches(std::string_view expected, std::string_view given);

// A token as --token, --token-file or GSWARM_TOKEN give it: printable ASCII
// without spaces (it travels in a header line). kBadRequest with the reason.
[[nodiscard]] Result<void> validate_token(std::string_view token);

// 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
bool is_loopback(const boost::asio::ip::address& address);

}  // namespace gswarm::server
