// The HTTP surface as clients of the original server expect it: reads that
// miss keep their status and say "found": false; /locations takes a glob and
// pages through it.
#include <chrono>
#include <set>
#include <thread>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;

class SurfaceTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_{dir_.path() / "data"};
  int port() const { return server_.port(); }
};

TEST_F(SurfaceTest, AReadThatMissesSaysFoundFalse) {
  EXPECT_TRUE(IsReadMiss(read_json(port(), "no/such key"), 404, "not_found", "no/such key"));
  EXPECT_TRUE(IsReadMiss(read_extended_json(port(), "missing"), 404, "not_found", "missing"));
  ASSERT_TRUE(IsOk(write_raw(port(), "cold", "bytes on disk", "disk")));
  EXPECT_TRUE(IsReadMiss(read_json(port(), "cold"), 409, "wrong_location", "cold"));
  EXPECT_TRUE(IsReadMiss(read_raw(port(), "cold"), 409, "wrong_location", "cold"));
  // A hit says "found": true, as before.
  ASSERT_TRUE(IsOk(write_json(port(), "hot", 42)));
  auto hit = read_json(port(), "hot");
  EXPECT_EQ(body_json(hit).value("found", false), true) << describe(hit);
}

std::set<std::string> keys_of(const json& answer) {
  std::set<std::string> keys;
  for (const auto& [key, replicas] : answer.at("locations").items()) keys.insert(key);
  return keys;
}

TEST_F(SurfaceTest, LocationsTakeAGlobAndPageThroughIt) {
  const std::vector<std::string> keys = {"job/1/a", "job/2/a", "job/10/a", "job/2/b", "other:x",
                                         "job/[x]/a"};
  for (const auto& key : keys) ASSERT_TRUE(IsOk(write_json(port(), key, key)));

  auto streamed = http_request(port(), "GET", "/locations?pattern=" + url_encode("job/*/a"));
  ASSERT_TRUE(IsOk(streamed));
  EXPECT_EQ(keys_of(body_json(streamed)),
            (std::set<std::string>{"job/1/a", "job/2/a", "job/10/a", "job/[x]/a"}));

  // One key a page: the cursor goes through every match once.
  std::set<std::string> paged;
  std::string cursor;
  for (int pages = 0; pages < 10; ++pages) {
    std::string target = "/locations?limit=1&pattern=" + url_encode("job/?/a");
    if (!cursor.empty()) target += "&cursor=" + url_encode(cursor);
    auto page = http_request(port(), "GET", target);
    ASSERT_TRUE(IsOk(page));
    json j = body_json(page);
    for (const auto& key : keys_of(j)) EXPECT_TRUE(paged.insert(key).second) << key;
    if (j["next_cursor"].is_null()) break;
    cursor = j["next_cursor"].get<std::string>();
  }
  EXPECT_EQ(paged, (std::set<std::string>{"job/1/a", "job/2/a"}));

  auto none = http_request(port(), "GET", "/locations?limit=10&pattern=nothing*");
  ASSERT_TRUE(IsOk(none));
  EXPECT_TRUE(keys_of(body_json(none)).empty());
  EXPECT_EQ(body_json(none).value("count", 1), 0);

  auto huge = http_request(port(), "GET", "/locations?pattern=" + std::string(9000, '*'));
  EXPECT_TRUE(IsError(huge, 400, "bad_request"));
  EXPECT_TRUE(healthy(port()));
}

TEST_F(SurfaceTest, OpenApiDescribesTheEndpoints) {
  auto doc = http_request(port(), "GET", "/openapi.json");
  ASSERT_TRUE(IsOk(doc));
  EXPECT_NE(doc.headers["content-type"].find("application/json"), std::string::npos);
  json j = body_json(doc);
  EXPECT_EQ(j.value("openapi", "").substr(0, 2), "3.");
  for (const char* path : {"/write", "/read/{key}", "/locations", "/operations/{id}", "/api/v1/data"}) {
    EXPECT_TRUE(j["paths"].contains(path)) << path;
  }
  EXPECT_TRUE(j["paths"]["/operations/{id}"].contains("delete"));
}

// DELETE /operations/{id} on what cannot be cancelled says why.
TEST_F(SurfaceTest, CancellingWhatCannotBeCancelled) {
  EXPECT_TRUE(IsError(http_request(port(), "DELETE", "/operations/12345"), 404, "not_found"));
  EXPECT_TRUE(IsError(http_request(port(), "DELETE", "/operations/x"), 400, "bad_request"));
  ASSERT_TRUE(IsOk(write_json(port(), "k", 1)));
  auto started = http_request(port(), "POST", "/move",
                              json({{"key", "k"}, {"destination", "disk"}, {"wait", false}}).dump());
  ASSERT_EQ(started.status, 202) << describe(started);
  const auto id = body_json(started)["operation_id"].get<std::uint64_t>();
  for (int i = 0; i < 200; ++i) {  // a 1-byte move ends at once
    if (body_json(http_request(port(), "GET", "/operations/" + std::to_string(id)))["state"] == "done") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(IsError(http_request(port(), "DELETE", "/operations/" + std::to_string(id)), 409,
                      "conflict"));
}

}  // namespace
