#include "server/access.hpp"

#include <gtest/gtest.h>

namespace gswarm::server {
namespace {

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
  EXPECT_FALSE(check_access(policy, false, "GET", "/health", ""));
  auto missing = check_access(policy, true, "GET", "/stats", "");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->code, ErrorCode::kUnauthorized);
  EXPECT_NE(missing->message.find("Authorization: Bearer"), std::string::npos);
  EXPECT_NE(missing->message.find("GSWARM_TOKEN"), std::string::npos);
  // Only GET /health is open: other methods on that path are not.
  EXPECT_TRUE(check_access(policy, true, "POST", "/health", ""));
  EXPECT_TRUE(check_access(policy, true, "GET", "/health/x", ""));
  EXPECT_TRUE(check_access(policy, true, "GET", "/metrics", "Bearer wrong"));
  EXPECT_TRUE(check_access(policy, true, "GET", "/stats", "Basic s3cret"));
  EXPECT_TRUE(check_access(policy, true, "GET", "/stats", "s3cret"));
  EXPECT_TRUE(check_access(policy, true, "GET", "/stats", "Bearer s3cre"));
  EXPECT_TRUE(check_access(policy, true, "GET", "/stats", "Bearer"));
  EXPECT_FALSE(check_access(policy, true, "GET", "/stats", "Bearer s3cret"));
  EXPECT_FALSE(check_access(policy, false, "GET", "/stats", "bearer  s3cret "));
  auto wrong = check_access(policy, true, "DELETE", "/release/k", "Bearer nope");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->code, ErrorCode::kUnauthorized);
  EXPECT_EQ(wrong->message.find("s3cret"), std::string::npos);  // never echoes the token
}

TEST(AccessTest, ProtectedModeServesThisMachineOnly) {
  AccessPolicy policy{.token = "", .loopback_only = true, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check_access(policy, true, "POST", "/write", ""));
  auto remote = check_access(policy, false, "GET", "/health", "");
  ASSERT_TRUE(remote);
  EXPECT_EQ(remote->code, ErrorCode::kForbidden);
  EXPECT_NE(remote->message.find("--token"), std::string::npos);
  EXPECT_NE(remote->message.find("--protected-mode no"), std::string::npos);
  EXPECT_NE(remote->message.find("0.0.0.0"), std::string::npos);
  AccessPolicy open{.token = "", .loopback_only = false, .bound_to = "0.0.0.0"};
  EXPECT_FALSE(check_access(open, false, "POST", "/write", ""));
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

}  // namespace
}  // namespace gswarm::server
