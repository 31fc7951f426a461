// GET /metrics (Prometheus text) and request ids, against real servers: every
// count follows what the test did, and every answer names its request.
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

#include "test_server.hpp"

namespace gswarm::testing {
namespace {

// "name{labels}" -> value, from the text format (comments skipped).
std::map<std::string, double> scrape(int port) {
  auto res = http_request(port, "GET", "/metrics");
  EXPECT_EQ(res.status, 200);
  EXPECT_EQ(res.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
  std::map<std::string, double> samples;
  std::istringstream in(res.body);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    auto space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

double at(const std::map<std::string, double>& samples, const std::string& name) {
  auto it = samples.find(name);
  return it == samples.end() ? -1 : it->second;
}

TEST(MetricsTest, CountsFollowWhatClientsDid) {
  TempDir dir;
  const std::string log = (dir.path() / "a.log").string();
  TestServer a(dir.path() / "a",
               ProcessOptions{.args = {"--log-level", "debug"}, .stderr_path = log});
  TestServer b(dir.path() / "b");
  Client client(a.address());
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(client.write("k" + std::to_string(i), "1"));
  ASSERT_TRUE(client.write_bytes("big", std::string(3 << 20, 'b')));
  ASSERT_TRUE(client.write_bytes("ondisk", std::string(1000, 'd'), "disk"));
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(client.read("missing"));
  SendOptions parallel;
  parallel.streams = 2;
  ASSERT_TRUE(client.send("big", b.address(), parallel));
  ASSERT_TRUE(client.send("k0", b.address()));

  auto m = scrape(a.port());
  EXPECT_EQ(at(m, R"(gswarm_requests_total{endpoint="POST /write",status="200"})"), 5);
  EXPECT_EQ(at(m, R"(gswarm_requests_total{endpoint="GET /read/{param}",status="404"})"), 3);
  EXPECT_EQ(at(m, R"(gswarm_errors_total{code="not_found"})"), 3);
  EXPECT_EQ(at(m, R"(gswarm_errors_total{code="bad_request"})"), 0);
  // The histogram: cumulative buckets ending in +Inf = count = the requests.
  const std::string ep = R"(endpoint="POST /write")";
  EXPECT_EQ(at(m, "gswarm_request_duration_seconds_count{" + ep + "}"), 5);
  EXPECT_EQ(at(m, "gswarm_request_duration_seconds_bucket{" + ep + R"(,le="+Inf"})"), 5);
  EXPECT_LE(at(m, "gswarm_request_duration_seconds_bucket{" + ep + R"(,le="0.001"})"),
            at(m, "gswarm_request_duration_seconds_bucket{" + ep + R"(,le="0.01"})"));
  EXPECT_GT(at(m, "gswarm_request_duration_seconds_sum{" + ep + "}"), 0);

  EXPECT_EQ(at(m, R"(gswarm_tier_keys{tier="dram"})"), 6);
  EXPECT_EQ(at(m, R"(gswarm_tier_keys{tier="disk"})"), 1);
  EXPECT_EQ(at(m, "gswarm_keys"), 7);
  EXPECT_GE(at(m, R"(gswarm_tier_bytes{tier="dram"})"), 3 << 20);
  EXPECT_GE(at(m, R"(gswarm_tier_bytes{tier="disk"})"), 1000);
  EXPECT_EQ(at(m, R"(gswarm_tier_limit_bytes{tier="dram"})"), 16.0 * (1ull << 30));
  EXPECT_EQ(at(m, R"(gswarm_moves{state="active"})"), 0);
  EXPECT_EQ(at(m, "gswarm_node_sent_bytes_total"), (3 << 20) + 1);
  EXPECT_GE(at(m, "gswarm_connections"), 1);
  EXPECT_GT(at(m, "gswarm_max_connections"), 0);

  auto mb = scrape(b.port());
  EXPECT_EQ(at(mb, "gswarm_node_received_bytes_total"), (3 << 20) + 1);
  EXPECT_EQ(at(mb, R"(gswarm_tier_keys{tier="dram"})"), 2);

  // The debug log has one line per request, with its id.
  auto answer = http_request(a.port(), "GET", "/read/k1");
  const std::string id = answer.headers["x-request-id"];
  ASSERT_FALSE(id.empty());
  a.stop();
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find(id + " GET /read/k1 -> 200"), std::string::npos) << text.substr(0, 2000);
}

TEST(MetricsTest, EveryAnswerCarriesARequestId) {
  TempDir dir;
  TestServer server(dir.path() / "a");
  std::set<std::string> ids;
  for (const char* target : {"/health", "/read/nothing", "/no/such", "/stats", "/metrics"}) {
    auto res = http_request(server.port(), "GET", target);
    ASSERT_TRUE(res.headers.contains("x-request-id")) << target;
    ids.insert(res.headers["x-request-id"]);
  }
  EXPECT_EQ(ids.size(), 5u);
  auto echoed = http_request(server.port(), "GET", "/health", "", "application/json",
                             {{"X-Request-Id", "trace-42.a_b:c"}});
  EXPECT_EQ(echoed.headers["x-request-id"], "trace-42.a_b:c");
  // An id that could not be logged or echoed safely is replaced.
  auto replaced = http_request(server.port(), "GET", "/health", "", "application/json",
                               {{"X-Request-Id", std::string(65, 'x')}});
  EXPECT_NE(replaced.headers["x-request-id"], std::string(65, 'x'));
  EXPECT_FALSE(replaced.headers["x-request-id"].empty());
}

}  // namespace
}  // namespace gswarm::testing
