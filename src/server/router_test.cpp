#include "server/router.hpp"

#include <gtest/gtest.h>

namespace gswarm::server {
namespace {

TEST(Router, MatchesExactAndParameterRoutes) {
  EXPECT_EQ(match_route("POST", "/write").route->handler, &handle_write);
  auto read = match_route("GET", "/read/a%2Fb%20c");
  ASSERT_NE(read.route, nullptr);
  EXPECT_EQ(read.route->handler, &handle_read);
  EXPECT_EQ(read.param, "a/b c");
  EXPECT_EQ(match_route("GET", "/read/a+b").param, "a+b");  // '+' in a path is literal
}

TEST(Router, WrongMethodIs405WithAllow) {
  auto m = match_route("DELETE", "/read/x");
  ASSERT_EQ(m.route, nullptr);
  EXPECT_EQ(m.error.status, 405);
  ASSERT_EQ(m.error.headers.size(), 1u);
  EXPECT_EQ(m.error.headers[0].second, "GET");
}

TEST(Router, UnknownPathIs404AndBadEscapeIs400) {
  EXPECT_EQ(match_route("GET", "/nope").error.status, 404);
  EXPECT_EQ(match_route("GET", "/writes").error.status, 404);
  EXPECT_EQ(match_route("GET", "/read/%zz").error.status, 400);
}

TEST(Query, DecodesPairs) {
  auto q = parse_query("key=a%2Fb&location=disk&format=pickle&flag");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->at("key"), "a/b");
  EXPECT_EQ(q->at("location"), "disk");
  EXPECT_EQ(q->at("flag"), "");
  EXPECT_EQ(parse_query("key=a+b")->at("key"), "a b");
  EXPECT_FALSE(parse_query("key=%4"));
}

}  // namespace
}  // namespace gswarm::server

namespace gswarm::server {
namespace {

TEST(JsonString, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_string(std::string("\n\t\x01", 3)), "\"\\u000a\\u0009\\u0001\"");
  EXPECT_EQ(json_string("ключ/🔑"), "\"ключ/🔑\"");  // UTF-8 passes through
}

}  // namespace
}  // namespace gswarm::server
