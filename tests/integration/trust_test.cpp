// Auth against the real server: with --token every endpoint but GET /health
// needs "Authorization: Bearer <token>"; the C++ client, read pointers and
// sends between servers carry it; a refused request changes nothing.
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

#include "test_server.hpp"

namespace gswarm::testing {
namespace {

using nlohmann::json;

constexpr const char* kToken = "test-token-4f1c9a7e2b";

std::map<std::string, std::string> bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

class TrustTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_{dir_.path() / "a", {"--token", kToken}};
};

TEST_F(TrustTest, EveryEndpointButHealthNeedsTheToken) {
  struct Call {
    std::string method, target, body;
  };
  const std::vector<Call> calls = {
      {"POST", "/write", R"({"key":"k","value":1})"},
      {"POST", "/write_extended", R"({"key":"k","value":1})"},
      {"GET", "/read/k", ""},
      {"GET", "/read_extended/k", ""},
      {"DELETE", "/release/k", ""},
      {"POST", "/send", R"({"key":"k","target":"127.0.0.1:1"})"},
      {"GET", "/stats", ""},
      {"POST", "/set_max_memory/1GB", ""},
      {"POST", "/move", R"({"key":"k","destination":"disk"})"},
      {"GET", "/operations", ""},
      {"GET", "/location/k", ""},
      {"GET", "/locations", ""},
      {"GET", "/nodes", ""},
      {"GET", "/metrics", ""},
      {"POST", "/transfers", R"({"key":"k","size":1})"},
      {"GET", "/api/v1/data", ""},
      {"DELETE", "/api/v1/data/x", ""},
      {"GET", "/no/such/endpoint", ""},
  };
  for (const auto& call : calls) {
    SCOPED_TRACE(call.method + " " + call.target);
    auto missing = http_request(server_.port(), call.method, call.target, call.body);
    EXPECT_EQ(missing.status, 401);
    EXPECT_EQ(json::parse(missing.body, nullptr, false).value("code", ""), "unauthorized");
    EXPECT_NE(missing.body.find("Authorization: Bearer"), std::string::npos) << missing.body;
    EXPECT_EQ(missing.headers["www-authenticate"], R"(Bearer realm="gswarm")");
    auto wrong = http_request(server_.port(), call.method, call.target, call.body,
                              "application/json", bearer("not-the-token"));
    EXPECT_EQ(wrong.status, 401);
    EXPECT_EQ(wrong.body.find(kToken), std::string::npos);
    auto right = http_request(server_.port(), call.method, call.target, call.body,
                              "application/json", bearer(kToken));
    EXPECT_NE(right.status, 401) << right.body;
  }
  EXPECT_EQ(http_request(server_.port(), "GET", "/health").status, 200);
}

TEST_F(TrustTest, ARefusedRequestChangesNothing) {
  Client client(server_.address(), ClientOptions{.token = kToken});
  ASSERT_TRUE(client.write("kept", R"("original")"));
  auto overwrite = http_request(server_.port(), "POST", "/write",
                                R"({"key":"kept","value":"replaced"})");
  EXPECT_EQ(overwrite.status, 401);
  auto release = http_request(server_.port(), "DELETE", "/release/kept");
  EXPECT_EQ(release.status, 401);
  auto limit = http_request(server_.port(), "POST", "/set_max_memory/1");
  EXPECT_EQ(limit.status, 401);
  auto raw = http_request(server_.port(), "POST", "/write_extended?key=raw&location=dram",
                          std::string(1 << 20, 'x'), "application/octet-stream");
  EXPECT_EQ(raw.status, 401);
  auto value = client.read("kept");
  ASSERT_TRUE(value) << value.error().message;
  EXPECT_EQ(*value, R"("original")");
  EXPECT_EQ(client.read("raw").error().code, ErrorCode::kNotFound);
  auto stats = json::parse(*client.stats());
  EXPECT_GT(stats["max_dram_size"].get<std::uint64_t>(), 1u);
}

TEST_F(TrustTest, TheClientSendsItsTokenOrGswarmToken) {
  ::unsetenv("GSWARM_TOKEN");
  Client anonymous(server_.address());
  auto refused = anonymous.write("k", "1");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthorized);
  EXPECT_NE(refused.error().message.find("GSWARM_TOKEN"), std::string::npos);

  Client wrong(server_.address(), ClientOptions{.token = "wrong"});
  EXPECT_EQ(wrong.write("k", "1").error().code, ErrorCode::kUnauthorized);

  ::setenv("GSWARM_TOKEN", kToken, 1);
  Client from_env(server_.address());
  ::unsetenv("GSWARM_TOKEN");
  ASSERT_TRUE(from_env.write("k", "1"));
  EXPECT_EQ(*from_env.read("k"), "1");
  auto health = anonymous.health();  // the one call open to all
  EXPECT_TRUE(health) << health.error().message;
}

TEST_F(TrustTest, ReadPointersNeedTheToken) {
  Client client(server_.address(), ClientOptions{.token = kToken});
  ASSERT_TRUE(client.write_bytes("shared", std::string(4096, 'v')));
  auto where = client.get_location("shared");
  ASSERT_TRUE(where) << where.error().message;
  const json rp = json::parse(where->replicas.at(0).read_pointer_json);
  const LocalServer socket{rp.at("socket").get<std::string>(), rp.at("pid").get<std::int64_t>(),
                           rp.at("uid").get<std::int64_t>()};
  ::unsetenv("GSWARM_TOKEN");
  auto without = open_read_pointer(socket, "shared");
  ASSERT_FALSE(without);
  EXPECT_EQ(without.error().code, ErrorCode::kUnauthorized);
  auto wrong = open_read_pointer(socket, "shared", "", "wrong");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, ErrorCode::kUnauthorized);
  auto with = open_read_pointer(socket, "shared", "", kToken);
  ASSERT_TRUE(with) << with.error().message;
  EXPECT_EQ(with->size(), 4096u);
}

TEST_F(TrustTest, SendsBetweenServersCarryTheToken) {
  TestServer same(dir_.path() / "b", {"--token", kToken});
  TestServer other(dir_.path() / "c", {"--token", "another-token-000"});
  Client client(server_.address(), ClientOptions{.token = kToken});
  // One connection, and several ranges (with a transfer's begin and commit).
  ASSERT_TRUE(client.write_bytes("small", std::string(1000, 's')));
  ASSERT_TRUE(client.write_bytes("large", std::string(3 << 20, 'L')));
  for (const char* key : {"small", "large"}) {
    SendOptions options;
    options.streams = std::string(key) == "large" ? 3 : 1;
    auto sent = client.send(key, same.address(), options);
    ASSERT_TRUE(sent) << key << ": " << sent.error().message;
  }
  Client there(same.address(), ClientOptions{.token = kToken});
  EXPECT_EQ(there.read_bytes("small")->data, std::string(1000, 's'));
  EXPECT_EQ(there.read_bytes("large")->data.size(), 3u << 20);

  auto refused = client.send("small", other.address());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("token"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(client.read_bytes("small"));  // the source stays
}

TEST(TrustStartTest, ATokenFileIsRead) {
  TempDir dir;
  const auto file = dir.path() / "token";
  {
    std::FILE* f = std::fopen(file.c_str(), "w");
    std::fputs("file-token-123456\n", f);
    std::fclose(f);
  }
  std::filesystem::permissions(file, std::filesystem::perms::owner_read |
                                         std::filesystem::perms::owner_write);
  TestServer server(dir.path() / "data", {"--token-file", file.string()});
  EXPECT_EQ(http_request(server.port(), "GET", "/stats").status, 401);
  EXPECT_EQ(
      http_request(server.port(), "GET", "/stats", "", "application/json", bearer("file-token-123456"))
          .status,
      200);
}

}  // namespace
}  // namespace gswarm::testing
