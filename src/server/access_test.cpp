#include "server/access.hpp"

#include <optional>

#include <gtest/gtest.h>

namespace gswarm::server {
namespace {

// A request as check_access sees it; no Host and no Origin unless given.
std::optional<Error> check(const AccessPolicy& policy, bool from_loopback, std::string_view method,
                           std::string_view path, std::string_view authorization,
                           std::string_view host = "",
                           std::optional<std::string_view> origin = std::nullopt) {
  return check_access(policy, AccessRequest{.from_loopback = from_loopback,
                                            .method = method,
                                            .path = path,
                                            .authorization = authorization,
                                            .host = host,
                                            .origin = origin.value_or(""),
                                            .has_origin = origin.has_value()});
}

TEST(AccessTest, TokenComparisonNeedsEveryByte) {
  EXPECT_TRUE(token_matches("abc123", "abc123"));
  EXPECT_FALSE(token_matches("abc123", "abc124"));
  EXPECT_FALSE(token_matches("abc123", "abc12"));
  EXPECT_FALSE(token_matches("abc123", "abc1234"));
  EXPECT_FALSE(token_matches("abc123", ""));
  EXPECT_FALSE(token_matches("abc123", std::string_view("abc123\0", 7)));
  EXPECT_FALSE(token_matches("x", "X"));
}

TEST(AccessTest, WithATokenEveryRequestButHealthMustCarryIt) {
  AccessPolicy policy{.token = "s3cret", .loopback_only = false, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check(policy, false, "GET", "/health", ""));
  auto missing = check(policy, true, "GET", "/stats", "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->code, ErrorCode::kUnauthorized);
  EXPECT_NE(missing->message.find("Authorization: Bearer"), std::string::npos);
  EXPECT_NE(missing->message.find("GSWARM_TOKEN"), std::string::npos);
  // Only GET /health is open: other methods on that path are not.
  EXPECT_TRUE(check(policy, true, "POST", "/health", ""));
  EXPECT_TRUE(check(policy, true, "GET", "/health/x", ""));
  EXPECT_TRUE(check(policy, true, "GET", "/metrics", "Bearer wrong"));
  EXPECT_TRUE(check(policy, true, "GET", "/stats", "Basic s3cret"));
  EXPECT_TRUE(check(policy, true, "GET", "/stats", "s3cret"));
  EXPECT_TRUE(check(policy, true, "GET", "/stats", "Bearer s3cre"));
  EXPECT_TRUE(check(policy, true, "GET", "/stats", "Bearer"));
  EXPECT_FALSE(check(policy, true, "GET", "/stats", "Bearer s3cret"));
  EXPECT_FALSE(check(policy, false, "GET", "/stats", "bearer  s3cret "));
  auto wrong = check(policy, true, "DELETE", "/release/k", "Bearer nope");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->code, ErrorCode::kUnauthorized);
  EXPECT_EQ(wrong->message.find("s3cret"), std::string::npos);  // never echoes the token
}

TEST(AccessTest, ProtectedModeServesThisMachineOnly) {
  AccessPolicy policy{.token = "", .loopback_only = true, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check(policy, true, "POST", "/write", ""));
  auto remote = check(policy, false, "GET", "/health", "");
  ASSERT_TRUE(remote);
  EXPECT_EQ(remote->code, ErrorCode::kForbidden);
  EXPECT_NE(remote->message.find("--token"), std::string::npos);
  EXPECT_NE(remote->message.find("--protected-mode no"), std::string::npos);
  EXPECT_NE(remote->message.find("0.0.0.0"), std::string::npos);
  AccessPolicy open{.token = "", .loopback_only = false, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check(open, false, "POST", "/write", ""));
}

TEST(AccessTest, TokensAreHeaderSafe) {
  EXPECT_TRUE(validate_token("abc-123_XYZ.~+/="));
  EXPECT_FALSE(validate_token(""));
  EXPECT_FALSE(validate_token("two words"));
  EXPECT_FALSE(validate_token("line\r\nX-Injected: 1"));
  EXPECT_FALSE(validate_token(std::string(4097, 'a')));
  EXPECT_TRUE(validate_token(std::string(4096, 'a')));
}

TEST(AccessTest, LoopbackAddresses) {
  namespace ip = boost::asio::ip;
  EXPECT_TRUE(is_loopback(ip::make_address("127.0.0.1")));
  EXPECT_TRUE(is_loopback(ip::make_address("127.3.2.1")));
  EXPECT_TRUE(is_loopback(ip::make_address("::1")));
  EXPECT_TRUE(is_loopback(ip::make_address("::ffff:127.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("0.0.0.0")));
  EXPECT_FALSE(is_loopback(ip::make_address("10.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("::ffff:10.0.0.1")));
  EXPECT_FALSE(is_loopback(ip::make_address("::")));
}

TEST(AccessTest, WebPagesAreRefusedUnlessTheirOriginIsAllowed) {
  AccessPolicy policy{.token = "", .loopback_only = false, .bound_to = "127.0.0.1"};
  // What a page on another site sends: its origin, and the server's address as Host.
  auto page = check(policy, true, "POST", "/write", "", "127.0.0.1:9015", "http://evil.example");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->code, ErrorCode::kForbidden);
  EXPECT_NE(page->message.find("--allow-origin http://evil.example"), std::string::npos)
      << page->message;
  EXPECT_TRUE(check(policy, true, "GET", "/health", "", "localhost", "null"));
  EXPECT_TRUE(check(policy, true, "GET", "/stats", "", "localhost", ""));
  policy.allowed_origins = {"http://localhost:3000"};
  EXPECT_FALSE(check(policy, true, "POST", "/write", "", "localhost:9015", "http://localhost:3000"));
  EXPECT_FALSE(check(policy, true, "POST", "/write", "", "localhost:9015", "HTTP://LOCALHOST:3000/"));
  EXPECT_TRUE(check(policy, true, "POST", "/write", "", "localhost:9015", "http://localhost:3001"));
  // A token does not let a page in: browsers do not send it, but a page may guess.
  AccessPolicy with_token{.token = "s3cret", .loopback_only = false, .bound_to = "0.0.0.0"};
  EXPECT_TRUE(check(with_token, true, "GET", "/stats", "Bearer s3cret", "h", "http://a.example"));
  with_token.allowed_origins = {"*"};
  EXPECT_FALSE(check(with_token, true, "GET", "/stats", "Bearer s3cret", "h", "http://a.example"));
}

TEST(AccessTest, WithoutATokenOnlyThisMachinesNamesAndAddressesAreAnswered) {
  AccessPolicy policy{.token = "",
                      .loopback_only = false,
                      .bound_to = "0.0.0.0",
                      .allowed_hosts = {"gswarm.internal"},
                      .own_names = {"node1"}};
  for (std::string_view host : {"127.0.0.1:9015", "127.0.0.1", "10.1.2.3:80", "[::1]:9015", "[::1]",
                                "localhost:9015", "LocalHost", "localhost.", "node1:9015", "NODE1",
                                "gswarm.internal:9015", ""}) {
    EXPECT_FALSE(check(policy, true, "GET", "/read/k", "", host)) << host;
  }
  // DNS rebinding: a page's own name now points here.
  auto rebound = check(policy, true, "GET", "/read/k", "", "attacker.example:9015");
  ASSERT_TRUE(rebound);
  EXPECT_EQ(rebound->code, ErrorCode::kForbidden);
  EXPECT_NE(rebound->message.find("--allow-host attacker.example"), std::string::npos)
      << rebound->message;
  EXPECT_NE(rebound->message.find("--token"), std::string::npos);
  EXPECT_TRUE(check(policy, true, "GET", "/read/k", "", "localhost.attacker.example"));
  EXPECT_TRUE(check(policy, true, "GET", "/read/k", "", "127.0.0.1.nip.io"));
  // With a token the name does not matter: a rebinding page has no token.
  AccessPolicy with_token{.token = "s3cret", .loopback_only = false, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check(with_token, true, "GET", "/read/k", "Bearer s3cret", "any.example"));
}

TEST(AccessTest, HostOfAHostHeader) {
  EXPECT_EQ(host_of("Example.COM:9015"), "example.com");
  EXPECT_EQ(host_of("[::1]:80"), "[::1]");
  EXPECT_EQ(host_of("[::1]"), "[::1]");
  EXPECT_EQ(host_of("name"), "name");
  EXPECT_EQ(host_of("name.:1"), "name");
}

}  // namespace
}  // namespace gswarm::server
