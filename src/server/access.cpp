#include "server/access.hpp"

#include <fmt/format.h>

namespace gswarm::server {

bool token_matches(std::string_view expected, std::string_view given) {
  // Every byte of `expected` is looked at whatever `given` holds.
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    diff |= static_cast<unsigned char>(expected[i]) ^ g;
  }
  // Keeps the compiler from turning the loop into an early exit.
  volatile unsigned char result = diff;
  return result == 0;
}

Result<void> validate_token(std::string_view token) {
  if (token.empty()) return make_error(ErrorCode::kBadRequest, "the token is empty");
  if (token.size() > 4096) {
    return make_error(ErrorCode::kBadRequest, "the token is longer than 4096 characters");
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return make_error(ErrorCode::kBadRequest,
                        "the token may hold printable ASCII characters only, no spaces");
    }
  }
  return {};
}

bool is_loopback(const boost::asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, address.to_v6())
        .is_loopback();
  }
  return address.is_loopback();
}

std::optional<Error> check_access(const AccessPolicy& policy, bool from_loopback,
                                  std::string_view method, std::string_view path,
                                  std::string_view authorization) {
  if (policy.loopback_only && !from_loopback) {
    return Error{ErrorCode::kForbidden,
                 fmt::format("protected mode: this server has no token and listens on {}, so it "
                             "serves clients on its own machine only. To let other machines in, "
                             "restart it with --token (or GSWARM_TOKEN) and give clients the same "
                             "token, or bind it to 127.0.0.1, or turn this off with "
                             "--protected-mode no",
                             policy.bound_to)};
  }
  if (policy.token.empty()) return std::nullopt;
  if (method == "GET" && path == "/health") return std::nullopt;
  constexpr std::string_view kScheme = "bearer ";
  std::string_view given = authorization;
  bool bearer = given.size() >= kScheme.size();
  for (std::size_t i = 0; bearer && i < kScheme.size(); ++i) {
    bearer = (given[i] | 0x20) == kScheme[i];
  }
  if (!bearer) {
    return Error{ErrorCode::kUnauthorized,
                 "this server needs a token: send the header 'Authorization: Bearer <token>' "
                 "(gswarm CLI: --token or GSWARM_TOKEN; Python: DataServer(address, token=...))"};
  }
  given.remove_prefix(kScheme.size());
  while (!given.empty() && given.front() == ' ') given.remove_prefix(1);
  while (!given.empty() && given.back() == ' ') given.remove_suffix(1);
  if (!token_matches(policy.token, given)) {
    return Error{ErrorCode::kUnauthorized,
                 "the token is not this server's (its --token); check GSWARM_TOKEN or --token"};
  }
  return std::nullopt;
}

}  // namespace gswarm::server
