// Who may use the server (doc/security.md): the bearer token (--token) and
// protected mode. Decided per request from plain values, before any body is
// read, so that the rules are unit-tested and fuzzed without a socket.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>
#include <gswarm/error.hpp>

namespace gswarm::server {

struct AccessPolicy {
  std::string token;            // empty: no token is asked for
  bool loopback_only = false;   // protected mode in force: other machines get 403
  std::string bound_to;         // the --host the server listens on, for messages
};

// Whether a request may go on: nullopt when it may, else the error to answer
// (kUnauthorized for a missing or wrong token, kForbidden for a client from
// another machine in protected mode). GET /health needs no token.
std::optional<Error> check_access(const AccessPolicy& policy, bool from_loopback,
                                  std::string_view method, std::string_view path,
                                  std::string_view authorization);

// Compares a presented token with the expected one in time that depends only on
// the expected token's length, never on where the two first differ.
bool token_matches(std::string_view expected, std::string_view given);

// A token as --token, --token-file or GSWARM_TOKEN give it: printable ASCII
// without spaces (it travels in a header line). kBadRequest with the reason.
[[nodiscard]] Result<void> validate_token(std::string_view token);

// 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
bool is_loopback(const boost::asio::ip::address& address);

}  // namespace gswarm::server
