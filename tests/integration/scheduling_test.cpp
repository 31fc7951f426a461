// Quick work (a release, a small disk write, metadata) runs on threads that long
// copies never occupy, and asynchronous moves queue only up to a bound.
#include <future>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;

constexpr std::uint64_t MiB = 1 << 20;

std::uint64_t start_async_move(int port, const std::string& key, const std::string& destination) {
  auto r = http_request(port, "POST", "/move",
                        json({{"key", key}, {"destination", destination}, {"wait", false}}).dump());
  EXPECT_EQ(r.status, 202) << describe(r);
  return body_json(r).value("operation_id", 0ull);
}

std::string state_of(int port, std::uint64_t id) {
  return body_json(http_request(port, "GET", "/operations/" + std::to_string(id)))
      .value("state", "");
}

// Four slow moves occupy every mover thread; a release and a small disk write
// finish while all four are still copying (they used to queue behind them).
TEST(SchedulingTest, QuickWorkDoesNotWaitBehindMoves) {
  TempDir dir;
  TestServer server(dir.path() / "disk",
                    {"--move-threads", "4", "--move-rate-limit", "2MB", "--log-level", "error"});
  const int port = server.port();
  std::vector<std::uint64_t> moves;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(
        IsOk(write_raw(port, "slow" + std::to_string(i), binary_value(16 * MiB, i), "dram")));
  }
  ASSERT_TRUE(IsOk(write_raw(port, "unrelated", "x", "dram")));
  for (int i = 0; i < 4; ++i)
    moves.push_back(start_async_move(port, "slow" + std::to_string(i), "disk"));
  ASSERT_TRUE(wait_until([&] {
    for (auto id : moves) {
      if (state_of(port, id) != "running") return false;
    }
    return true;
  }));
  ASSERT_TRUE(IsOk(release_key(port, "unrelated")));
  ASSERT_TRUE(IsOk(write_raw(port, "small-disk", "small", "disk")));
  ASSERT_TRUE(IsOk(location_of(port, "small-disk")));
  for (auto id : moves) {
    EXPECT_EQ(state_of(port, id), "running") << "the quick requests waited for a move to finish";
  }
}

// Asynchronous moves beyond --max-queued-moves are refused with 429 and a
// message that says what to do; the server goes on serving.
TEST(SchedulingTest, TheQueueOfAsynchronousMovesIsBounded) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--move-threads", "1", "--max-queued-moves", "3",
                                          "--move-rate-limit", "1MB", "--log-level", "error"});
  const int port = server.port();
  for (int i = 0; i < 6; ++i) {
    ASSERT_TRUE(IsOk(write_raw(port, "m" + std::to_string(i), binary_value(8 * MiB, i), "dram")));
  }
  auto running = start_async_move(port, "m0", "disk");
  ASSERT_TRUE(wait_until([&] { return state_of(port, running) == "running"; }));
  for (int i = 1; i <= 3; ++i) start_async_move(port, "m" + std::to_string(i), "disk");
  auto refused =
      http_request(port, "POST", "/move",
                   json({{"key", "m4"}, {"destination", "disk"}, {"wait", false}}).dump());
  EXPECT_TRUE(IsError(refused, 429, "too_many_requests"));
  EXPECT_NE(detail_of(refused).find("wait"), std::string::npos) << detail_of(refused);
  EXPECT_EQ(body_json(location_of(port, "m4")).value("location", ""), "dram");
  EXPECT_TRUE(healthy(port));
  EXPECT_EQ(get_stats(port).value("queued_moves", 0ull), 3u);
}

}  // namespace
