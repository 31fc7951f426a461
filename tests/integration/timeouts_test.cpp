// Timeouts measure time without progress (doc/http-api.md): a slow but steady
// client is served whatever the size of its transfer, a stalled one gets 408.
// Stopping takes bounded time whatever clients and copies do.
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t MiB = 1 << 20;

// Sends `body` in pieces of `piece` bytes, one every `gap`.
void send_slowly(RawConnection& conn, const std::string& body, std::size_t piece,
                 std::chrono::milliseconds gap) {
  for (std::size_t off = 0; off < body.size(); off += piece) {
    ASSERT_TRUE(conn.send(std::string_view(body).substr(off, piece)));
    std::this_thread::sleep_for(gap);
  }
}

// A 1.5 MiB body arriving steadily at about 512 KiB/s takes 3 s, three times
// --request-timeout: it is progress all along, so it is stored.
TEST(TimeoutsTest, ASlowSteadySenderIsServed) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--request-timeout", "1", "--log-level", "error"});
  for (const char* location : {"dram", "disk"}) {
    SCOPED_TRACE(location);
    const std::string value = binary_value(3 * MiB / 2, 3);
    RawConnection conn(server.port());
    ASSERT_TRUE(conn.send(std::string("POST /write_extended?key=slow&location=") + location +
                          " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
                          "Content-Length: " +
                          std::to_string(value.size()) + "\r\n\r\n"));
    send_slowly(conn, value, 64 * 1024, std::chrono::milliseconds(125));
    std::string answer = conn.receive(65536, 10);
    EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
    ASSERT_TRUE(IsOk(move_key(server.port(), "slow", "dram")));
    EXPECT_TRUE(fetch_bytes(server.port(), "slow").data == value);
  }
}

// A body that stops arriving gets 408 after --request-timeout.
TEST(TimeoutsTest, AStalledSenderGets408) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--request-timeout", "1", "--log-level", "error"});
  RawConnection conn(server.port());
  ASSERT_TRUE(
      conn.send("POST /write_extended?key=stall HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                "application/octet-stream\r\nContent-Length: 1000\r\n\r\nonly this"));
  std::string answer = conn.receive(65536, 10);
  EXPECT_EQ(answer.rfind("HTTP/1.1 408", 0), 0u) << answer;
  EXPECT_TRUE(IsError(location_of(server.port(), "stall"), 404, "not_found"));
}

// An 8 MiB answer read steadily at about 1.5 MB/s takes several times
// --request-timeout: it arrives whole.
TEST(TimeoutsTest, ASlowSteadyReaderIsServed) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--request-timeout", "1", "--log-level", "error"});
  const std::string value = binary_value(8 * MiB, 4);
  ASSERT_TRUE(IsOk(write_raw(server.port(), "big", value)));
  RawConnection conn(server.port(), 32 * 1024);
  ASSERT_TRUE(
      conn.send("GET /read_extended/big HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: "
                "application/octet-stream\r\n\r\n"));
  std::string received;
  while (true) {
    std::string piece = conn.receive(64 * 1024, 5);
    if (piece.empty()) break;
    received += piece;
    if (received.size() >= value.size() && received.find("\r\n\r\n") != std::string::npos &&
        received.size() - received.find("\r\n\r\n") - 4 >= value.size()) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(40));
  }
  auto body_at = received.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos);
  EXPECT_EQ(received.rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(received.size() - body_at - 4, value.size());
  EXPECT_TRUE(received.substr(body_at + 4) == value) << "the answer was cut short";
}

// SIGTERM while a client holds a half-sent body and a slow move runs: the
// server stops within --drain-timeout (plus the time to close), cancels the
// move and keeps its source.
TEST(TimeoutsTest, StoppingTakesBoundedTimeWhateverClientsDo) {
  TempDir dir;
  const std::string value = binary_value(32 * MiB, 8);
  {
    TestServer server(dir.path() / "disk",
                      {"--drain-timeout", "2", "--move-rate-limit", "1MB", "--log-level", "error"});
    const int port = server.port();
    ASSERT_TRUE(IsOk(write_raw(port, "kept", value, "disk")));
    RawConnection half(port);
    ASSERT_TRUE(
        half.send("POST /write_extended?key=half HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                  "application/octet-stream\r\nContent-Length: 1000000\r\n\r\npartial"));
    RawConnection idle(port);
    // A move that would take half a minute, on a connection of its own.
    std::thread mover([port] {
      try {
        (void)move_key(port, "kept", "dram");
      } catch (const std::exception&) {  // the server closes the connection: expected
      }
    });
    ASSERT_TRUE(wait_until([&] { return get_stats(port).value("active_moves", 0) == 1; }));
    const auto start = Clock::now();
    EXPECT_EQ(server.stop(), 0);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_LT(seconds, 8.0) << "stopping took " << seconds << " s with --drain-timeout 2";
    mover.join();
  }
  // The cancelled move kept its source.
  TestServer again(dir.path() / "disk");
  ASSERT_TRUE(IsOk(move_key(again.port(), "kept", "dram")));
  EXPECT_TRUE(fetch_bytes(again.port(), "kept").data == value);
  EXPECT_TRUE(IsError(location_of(again.port(), "half"), 404, "not_found"));
}

}  // namespace
