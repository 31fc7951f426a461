#include "server/access.hpp"

#include <algorithm>
#include <cctype>

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

std::string host_of(std::string_view host_header) {
  std::string_view host = host_header;
  if (host.starts_with('[')) {
    host = host.substr(0, host.find(']') == std::string_view::npos ? host.size()
                                                                   : host.find(']') + 1);
  } else if (auto colon = host.rfind(':'); colon != std::string_view::npos) {
    host = host.substr(0, colon);
  }
  std::string out(host);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (out.ends_with('.') && out.size() > 1) out.pop_back();  // "localhost." is localhost
  return out;
}

namespace {

bool is_ip_literal(std::string_view host) {
  boost::system::error_code ec;
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  (void)boost::asio::ip::make_address(std::string(host), ec);
  return !ec;
}

bool same_name(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

bool listed(const std::vector<std::string>& names, std::string_view name) {
  return std::any_of(names.begin(), names.end(),
                     [&](const std::string& n) { return same_name(n, name); });
}

std::optional<Error> check_origin(const AccessPolicy& policy, std::string_view origin) {
  if (listed(policy.allowed_origins, "*")) return std::nullopt;
  std::string_view bare = origin;
  while (bare.ends_with('/')) bare.remove_suffix(1);
  if (bare != "null" && listed(policy.allowed_origins, bare)) return std::nullopt;
  return Error{ErrorCode::kForbidden,
               fmt::format("requests from web pages are refused: this one comes from {} (its "
                           "Origin header). Start the server with --allow-origin {} to let that "
                           "page use it",
                           origin.empty() ? std::string_view("an unnamed origin") : origin,
                           origin.empty() || origin == "null" ? std::string_view("ORIGIN")
                                                              : bare)};
}

std::optional<Error> check_host(const AccessPolicy& policy, std::string_view host_header) {
  if (host_header.empty()) return std::nullopt;  // not a browser: they always send one
  const std::string host = host_of(host_header);
  if (host == "localhost" || is_ip_literal(host) || listed(policy.own_names, host) ||
      listed(policy.allowed_hosts, host)) {
    return std::nullopt;
  }
  return Error{ErrorCode::kForbidden,
               fmt::format("this server has no token and does not answer to the name '{}' (the "
                           "request's Host): a web page can make a name of its own point here. "
                           "Use an IP address or localhost, start the server with --allow-host {} "
                           "to answer to that name, or give it a --token",
                           host, host)};
}

}  // namespace

std::optional<Error> check_access(const AccessPolicy& policy, const AccessRequest& request) {
  if (policy.loopback_only && !request.from_loopback) {
    return Error{ErrorCode::kForbidden,
                 fmt::format("protected mode: this server has no token and listens on {}, so it "
                             "serves clients on its own machine only. To let other machines in, "
                             "restart it with --token (or GSWARM_TOKEN) and give clients the same "
                             "token, or bind it to 127.0.0.1, or turn this off with "
                             "--protected-mode no",
                             policy.bound_to)};
  }
  if (request.has_origin) {
    if (auto refused = check_origin(policy, request.origin)) return refused;
  }
  if (policy.token.empty()) return check_host(policy, request.host);
  if (request.method == "GET" && request.path == "/health") return std::nullopt;
  constexpr std::string_view kScheme = "bearer ";
  std::string_view given = request.authorization;
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
