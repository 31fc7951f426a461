// Node-to-node sends between real servers on loopback ports: every tier to every
// tier with the format kept, large values in parallel ranges, node names through
// static peers, failures of either side (refusals, a target that is down or
// silent, kill -9 of the target or the source in the middle), and the target's
// protocol for ranges pushed past its rules.
#include <sys/socket.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

constexpr std::uint64_t MiB = 1 << 20;

// The bytes of a key's disk replica, read from its file (the test runs as the
// server's user), for values too large to bring into DRAM.
std::string disk_bytes(int port, const std::string& key) {
  json where = body_json(location_of(port, key));
  for (const auto& r : where.value("locations", json::array())) {
    if (r.value("location", "") != "disk") continue;
    const json& rp = r["read_pointer"];
    std::ifstream in(rp["path"].get<std::string>(), std::ios::binary);
    in.seekg(static_cast<std::streamoff>(rp["offset"].get<std::uint64_t>()));
    std::string bytes(rp["size"].get<std::size_t>(), '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!in) return "(unreadable)";
    return bytes;
  }
  return "(no disk replica)";
}

std::string primary(int port, const std::string& key) {
  auto r = location_of(port, key);
  if (r.status != 200) return "(" + std::to_string(r.status) + ")";
  return body_json(r).value("location", "");
}

struct Pair {
  TempDir dir;
  TestServer target;
  TestServer source;
  Pair(std::vector<std::string> source_args = {}, std::vector<std::string> target_args = {})
      : target(dir.path() / "b", quiet(with_name("nodeB", target_args))),
        source(dir.path() / "a",
               quiet(with_name("nodeA", with_peer(target.port(), source_args)))) {}
  static std::vector<std::string> with_name(const char* name, std::vector<std::string> a) {
    a.insert(a.end(), {"--node-name", name});
    return a;
  }
  static std::vector<std::string> with_peer(int port, std::vector<std::string> a) {
    a.insert(a.end(), {"--peer", "nodeB=127.0.0.1:" + std::to_string(port)});
    return a;
  }
  std::string to(const std::string& location = "") const {
    return target.address() + (location.empty() ? "" : ":" + location);
  }
};

TEST(SendTest, EveryTierToEveryTierKeepsBytesFormatAndTheSource) {
  Pair p;
  const std::string bytes = binary_value(3 * MiB + 17, 5);
  for (std::string from : {"dram", "pinned_dram", "disk"}) {
    ASSERT_TRUE(IsOk(write_raw(p.source.port(), "k:" + from, bytes, from, "pickle")));
    for (std::string to : {"dram", "pinned_dram", "disk"}) {
      SCOPED_TRACE(from + " -> " + to);
      auto sent = send_key(p.source.port(), "k:" + from, p.to(to));
      ASSERT_TRUE(IsOk(sent));
      json answer = body_json(sent);
      EXPECT_EQ(answer["status"], "success");
      EXPECT_EQ(answer["method"], "standard");
      EXPECT_EQ(answer["source"], from);
      EXPECT_EQ(answer["destination"], to);
      EXPECT_EQ(answer["size"], bytes.size());
      EXPECT_EQ(answer["address"], p.target.address());
      EXPECT_GE(answer["transfer_time_ms"].get<double>(), 0);
      EXPECT_EQ(primary(p.target.port(), "k:" + from), to);
      auto back = move_key(p.target.port(), "k:" + from, "dram");
      ASSERT_TRUE(IsOk(back));
      Bytes got = fetch_bytes(p.target.port(), "k:" + from);
      EXPECT_EQ(got.format, "pickle");
      EXPECT_TRUE(got.data == bytes) << "the target's bytes differ";
      // Sending never moves the source.
      EXPECT_EQ(primary(p.source.port(), "k:" + from), from);
    }
  }
  // JSON values stay JSON.
  ASSERT_TRUE(IsOk(write_json(p.source.port(), "doc", json{{"a", 1}})));
  ASSERT_TRUE(IsOk(send_key(p.source.port(), "doc", p.to())));
  EXPECT_EQ(body_json(read_json(p.target.port(), "doc"))["value"], json({{"a", 1}}));
}

TEST(SendTest, LargeValuesGoInParallelRangesAndArriveWhole) {
  Pair p({"--parallel-threshold", "1MB"});
  const std::string bytes = binary_value(37 * MiB + 123, 9);
  for (std::string from : {"dram", "disk"}) {
    ASSERT_TRUE(IsOk(write_raw(p.source.port(), "big", bytes, from)));
    for (std::string to : {"dram", "disk"}) {
      for (int streams : {1, 3, 4}) {
        SCOPED_TRACE(from + " -> " + to + ", " + std::to_string(streams) + " streams");
        release_key(p.target.port(), "big");
        auto sent = send_key(p.source.port(), "big", p.to(to), {{"streams", streams}});
        ASSERT_TRUE(IsOk(sent));
        EXPECT_EQ(body_json(sent)["streams"], streams);
        if (to == "disk") {
          EXPECT_TRUE(disk_bytes(p.target.port(), "big") == bytes);
        } else {
          EXPECT_TRUE(fetch_bytes(p.target.port(), "big").data == bytes);
        }
      }
    }
  }
  EXPECT_EQ(get_stats(p.target.port())["incoming_transfers"], 0);
}

TEST(SendTest, AValueLargerThanHalfOfEitherMemoryLimitGoesDiskToDisk) {
  Pair p({"--max-memory", "64MB", "--parallel-threshold", "8MB"}, {"--max-memory", "64MB"});
  const std::string bytes = binary_value(100 * MiB, 3);
  ASSERT_TRUE(IsOk(write_raw(p.source.port(), "huge", bytes, "disk")));
  for (int streams : {1, 4}) {
    SCOPED_TRACE(std::to_string(streams) + " streams");
    release_key(p.target.port(), "huge");
    ASSERT_TRUE(IsOk(send_key(p.source.port(), "huge", p.to("disk"), {{"streams", streams}})));
    EXPECT_TRUE(disk_bytes(p.target.port(), "huge") == bytes);
  }
  // Into the target's DRAM it does not fit: its refusal comes back, the source stays.
  auto refused = send_key(p.source.port(), "huge", p.to("dram"));
  EXPECT_TRUE(IsError(refused, 507, "over_limit"));
  EXPECT_NE(detail_of(refused).find("--max-memory"), std::string::npos) << detail_of(refused);
  EXPECT_NE(detail_of(refused).find(p.target.address()), std::string::npos) << detail_of(refused);
  EXPECT_EQ(primary(p.source.port(), "huge"), "disk");
}

TEST(SendTest, DeleteSourceReleasesTheKeyOnlyOnceTheTargetHasIt) {
  Pair p({}, {"--max-memory", "1MB"});
  ASSERT_TRUE(IsOk(write_raw(p.source.port(), "small", "abc")));
  auto sent = send_key(p.source.port(), "small", "nodeB", {{"delete_source", true}});
  ASSERT_TRUE(IsOk(sent));
  EXPECT_EQ(body_json(sent)["source_deleted"], true);
  EXPECT_EQ(fetch_bytes(p.target.port(), "small").data, "abc");
  EXPECT_TRUE(IsError(location_of(p.source.port(), "small"), 404, "not_found"));

  // The target refuses (over its limit): the source is kept.
  ASSERT_TRUE(IsOk(write_raw(p.source.port(), "large", binary_value(4 * MiB))));
  auto refused = send_key(p.source.port(), "large", "nodeB", {{"delete_source", true}});
  EXPECT_TRUE(IsError(refused, 507, "over_limit"));
  EXPECT_EQ(primary(p.source.port(), "large"), "dram");
}

TEST(SendTest, NodeNamesResolveThroughPeersAndTheListSaysWhereFrom) {
  Pair p;
  TempDir dir;
  const fs::path peers = dir.path() / "peers";
  std::ofstream(peers) << "# name address\nnodeB 127.0.0.1:" << p.target.port()
                       << "\n\nnodeZ=10.255.255.1:9015  # not running\n";
  TestServer third(dir.path() / "c", quiet({"--node-name", "nodeC", "--peers-file", peers.string()}));

  ASSERT_TRUE(IsOk(write_raw(third.port(), "k", "from C")));
  ASSERT_TRUE(IsOk(send_key(third.port(), "k", "nodeB:disk")));
  EXPECT_EQ(primary(p.target.port(), "k"), "disk");

  auto nodes = body_json(http_request(third.port(), "GET", "/nodes"));
  EXPECT_EQ(nodes["node"], "nodeC");
  ASSERT_EQ(nodes["nodes"].size(), 3u) << nodes.dump();
  EXPECT_EQ(nodes["nodes"][0]["name"], "nodeC");
  EXPECT_EQ(nodes["nodes"][0]["source"], "self");
  EXPECT_EQ(nodes["nodes"][1]["name"], "nodeB");
  EXPECT_EQ(nodes["nodes"][1]["address"], p.target.address());
  EXPECT_EQ(nodes["nodes"][1]["source"], "static");
  EXPECT_EQ(nodes["nodes"][2]["name"], "nodeZ");

  auto unknown = send_key(third.port(), "k", "nodeQ:dram");
  EXPECT_TRUE(IsError(unknown, 404, "not_found"));
  EXPECT_NE(detail_of(unknown).find("nodeB"), std::string::npos) << detail_of(unknown);

  // A peers file with a bad line stops the server from starting, naming the line.
  std::ofstream(dir.path() / "bad") << "nodeB 127.0.0.1:9015\nnodeY\n";
  fs::create_directory(dir.path() / "d");
  Refusal bad = try_start(dir.path() / "d" / "disk", {"--peers-file", (dir.path() / "bad").string()});
  EXPECT_FALSE(bad.started);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.stderr_text.find("line 2"), std::string::npos) << bad.stderr_text;
}

TEST(SendTest, BadRequestsAreAnsweredBeforeAnythingMoves) {
  Pair p;
  ASSERT_TRUE(IsOk(write_raw(p.source.port(), "k", "v")));
  EXPECT_TRUE(IsError(send_key(p.source.port(), "missing", "localhost:dramm"), 404, "not_found"));
  auto typo = send_key(p.source.port(), "k", "localhost:dramm");
  EXPECT_TRUE(IsError(typo, 400, "invalid_location"));
  EXPECT_NE(detail_of(typo).find("pinned_dram"), std::string::npos) << detail_of(typo);
  EXPECT_TRUE(IsError(send_key(p.source.port(), "k", "host:99999"), 400, "bad_request"));
  EXPECT_TRUE(IsError(send_key(p.source.port(), "k", ""), 400, "bad_request"));
  EXPECT_TRUE(IsError(send_key(p.source.port(), "k", "nodeB", {{"streams", 0}}), 400, "bad_request"));
  EXPECT_TRUE(IsError(send_key(p.source.port(), "k", "nodeB", {{"source_location", "disk"}}), 409,
                      "wrong_location"));
  // The legacy /send: {key, url} -> {status, key, target}.
  auto legacy = http_request(p.source.port(), "POST", "/send",
                             json({{"key", "k"}, {"url", "http://" + p.target.address()}}).dump());
  ASSERT_TRUE(IsOk(legacy));
  EXPECT_EQ(body_json(legacy)["status"], "success");
  EXPECT_EQ(body_json(legacy)["key"], "k");
  EXPECT_EQ(fetch_bytes(p.target.port(), "k").data, "v");
}

TEST(SendTest, ATargetThatIsDownOrSilentFailsWithinTheTimeoutAndTheSourceStays) {
  TempDir dir;
  TestServer source(dir.path() / "a", quiet({"--peer-timeout", "1"}));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "k", binary_value(2 * MiB))));

  // Nothing listens there.
  auto refused = send_key(source.port(), "k", "127.0.0.1:" + std::to_string(unused_port()));
  EXPECT_TRUE(IsError(refused, 502, "peer_failed"));

  // Something listens but never answers.
  SilentListener silent;
  const auto started = std::chrono::steady_clock::now();
  auto stalled = send_key(source.port(), "k", silent.address());
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_TRUE(IsError(stalled, 504, "peer_timeout"));
  EXPECT_LT(seconds, 20) << "--peer-timeout 1 should end the send, not the test's patience";
  EXPECT_EQ(primary(source.port(), "k"), "dram");
  EXPECT_TRUE(healthy(source.port()));
}

TEST(SendTest, AStoppingServerDoesNotWaitForASilentTarget) {
  TempDir dir;
  auto source = std::make_unique<TestServer>(
      dir.path() / "a", quiet({"--peer-timeout", "600", "--drain-timeout", "1"}));
  ASSERT_TRUE(IsOk(write_raw(source->port(), "k", binary_value(2 * MiB))));
  SilentListener silent;
  const std::string target = silent.address();
  auto sending = std::async(std::launch::async, [&] {
    try {
      return send_key(source->port(), "k", target).status;
    } catch (const std::exception&) {
      return 0;  // the server closed the connection as it stopped
    }
  });
  ASSERT_TRUE(wait_until([&] {
    auto ops = body_json(http_request(source->port(), "GET", "/operations"));
    return !ops["operations"].empty() && ops["operations"][0]["state"] == "running";
  }));
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(source->stop(), 0);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_LT(seconds, 60) << "the send should end with the drain, not after --peer-timeout";
  const int status = sending.get();
  EXPECT_TRUE(status == 0 || status == 503) << status;
}

// Begins a transfer at `port` by hand, as a sender would.
std::string begin_transfer(int port, const std::string& key, std::uint64_t size,
                           const std::string& location = "dram") {
  auto r = http_request(port, "POST", "/transfers",
                        json({{"key", key}, {"size", size}, {"location", location}}).dump());
  EXPECT_TRUE(IsOk(r));
  return body_json(r).value("transfer", "");
}

HttpResponse put_range(int port, const std::string& id, std::uint64_t offset,
                       const std::string& bytes) {
  return http_request(port, "PUT", "/transfers/" + id + "?offset=" + std::to_string(offset), bytes,
                      kOctet);
}

TEST(SendTest, TheTargetHoldsRangesToTheirRules) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({}));
  for (std::string location : {"dram", "disk"}) {
    SCOPED_TRACE(location);
    const std::string bytes = binary_value(3 * MiB, 4);
    const std::string id = begin_transfer(target.port(), "r", bytes.size(), location);
    ASSERT_TRUE(IsOk(put_range(target.port(), id, MiB, bytes.substr(MiB, MiB))));
    EXPECT_TRUE(IsError(put_range(target.port(), id, MiB + 10, "xx"), 400, "bad_request"));
    EXPECT_TRUE(IsError(put_range(target.port(), id, 3 * MiB - 1, "xx"), 400, "bad_request"));
    EXPECT_TRUE(IsError(put_range(target.port(), "0123", 0, "xx"), 404, "not_found"));
    // Incomplete: not committed, nothing visible.
    EXPECT_TRUE(IsError(http_request(target.port(), "POST", "/transfers/" + id), 400, "bad_request"));
    EXPECT_TRUE(IsError(location_of(target.port(), "r"), 404, "not_found"));
    ASSERT_TRUE(IsOk(put_range(target.port(), id, 2 * MiB, bytes.substr(2 * MiB))));
    ASSERT_TRUE(IsOk(put_range(target.port(), id, 0, bytes.substr(0, MiB))));
    ASSERT_TRUE(IsOk(http_request(target.port(), "POST", "/transfers/" + id)));
    if (location == "disk") {
      ASSERT_TRUE(IsOk(move_key(target.port(), "r", "dram")));
    }
    EXPECT_TRUE(fetch_bytes(target.port(), "r").data == bytes);
    EXPECT_TRUE(IsError(http_request(target.port(), "POST", "/transfers/" + id), 404, "not_found"));
    ASSERT_TRUE(IsOk(release_key(target.port(), "r")));
  }
  // Aborted: gone, and its room given back.
  const std::uint64_t used = get_stats(target.port())["current_dram_size"];
  const std::string id = begin_transfer(target.port(), "a", 8 * MiB);
  EXPECT_GE(get_stats(target.port())["current_dram_size"].get<std::uint64_t>(), used + 8 * MiB);
  ASSERT_TRUE(IsOk(http_request(target.port(), "DELETE", "/transfers/" + id)));
  EXPECT_EQ(get_stats(target.port())["current_dram_size"], used);
  EXPECT_TRUE(IsError(put_range(target.port(), id, 0, "x"), 404, "not_found"));
  // JSON values are not taken in ranges (they are checked whole).
  EXPECT_TRUE(IsError(http_request(target.port(), "POST", "/transfers",
                                   json({{"key", "j"}, {"size", 10}, {"format", "json"}}).dump()),
                      400, "bad_request"));
  EXPECT_TRUE(IsError(http_request(target.port(), "POST", "/transfers",
                                   json({{"key", "j"}, {"size", 1ull << 50}}).dump()),
                      413, "too_large"));
}

TEST(SendTest, TransfersInProgressAreCapped) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({}));
  std::vector<std::string> ids;
  for (int i = 0; i < 1024; ++i) ids.push_back(begin_transfer(target.port(), "t" + std::to_string(i), 1));
  auto refused = http_request(target.port(), "POST", "/transfers",
                              json({{"key", "one-more"}, {"size", 1}}).dump());
  EXPECT_TRUE(IsError(refused, 429, "too_many_requests"));
  ASSERT_TRUE(IsOk(http_request(target.port(), "DELETE", "/transfers/" + ids.back())));
  begin_transfer(target.port(), "one-more", 1);
  EXPECT_EQ(get_stats(target.port())["incoming_transfers"], 1024);
  // Ids are unique and unpredictable-looking: 32 hex digits each.
  std::set<std::string> unique(ids.begin(), ids.end());
  EXPECT_EQ(unique.size(), ids.size());
  EXPECT_EQ(ids.front().size(), 32u);
}

TEST(SendTest, ASenderThatVanishesLeavesNothingAndItsRoomIsGivenBack) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({"--transfer-timeout", "1"}));
  const std::uint64_t used = get_stats(target.port())["current_dram_size"];
  // A range cut off in the middle fails the transfer at once.
  const std::string id = begin_transfer(target.port(), "cut", 16 * MiB);
  {
    RawConnection conn(target.port());
    ASSERT_TRUE(conn.send("PUT /transfers/" + id + "?offset=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                          "Content-Type: application/octet-stream\r\nContent-Length: " +
                          std::to_string(16 * MiB) + "\r\n\r\n" + std::string(MiB, 'x')));
  }
  EXPECT_TRUE(wait_until([&] { return get_stats(target.port())["incoming_transfers"] == 0; }));
  // A transfer that never gets a range is dropped after --transfer-timeout.
  begin_transfer(target.port(), "quiet", 16 * MiB, "disk");
  begin_transfer(target.port(), "quiet2", 16 * MiB);
  EXPECT_EQ(get_stats(target.port())["incoming_transfers"], 2);
  EXPECT_TRUE(wait_until([&] { return get_stats(target.port())["incoming_transfers"] == 0; }));
  EXPECT_EQ(get_stats(target.port())["current_dram_size"], used);
  EXPECT_EQ(get_stats(target.port())["disk_usage"], 0);
  for (const char* key : {"cut", "quiet", "quiet2"}) {
    EXPECT_TRUE(IsError(location_of(target.port(), key), 404, "not_found")) << key;
  }
  EXPECT_TRUE(fs::is_empty(dir.path() / "b" / "tmp"));
}

TEST(SendTest, KillingTheTargetOrTheSourceMidTransferLeavesNoPartialValue) {
  Pair p({"--parallel-threshold", "1MB"}, {"--transfer-timeout", "1"});
  const std::string bytes = binary_value(400 * MiB, 8);
  ASSERT_TRUE(IsOk(write_raw(p.source.port(), "big", bytes, "disk")));
  const fs::path target_disk = p.dir.path() / "b";

  // The target dies while the ranges arrive.
  auto sending = std::async(std::launch::async, [&] {
    return send_key(p.source.port(), "big", p.to("disk"), {{"streams", 4}});
  });
  ASSERT_TRUE(wait_until(
      [&] { return get_stats(p.target.port())["incoming_transfers"].get<int>() > 0; }, 30));
  p.target.kill9();
  auto failed = sending.get();
  EXPECT_GE(failed.status, 500) << describe(failed);
  EXPECT_EQ(primary(p.source.port(), "big"), "disk");
  TestServer restarted(target_disk, quiet({"--transfer-timeout", "1"}));
  EXPECT_TRUE(IsError(location_of(restarted.port(), "big"), 404, "not_found"));
  EXPECT_TRUE(fs::is_empty(target_disk / "tmp"));

  // The source dies while sending: the target drops what it was given.
  const std::uint64_t used = get_stats(restarted.port())["disk_usage"];
  auto sending2 = std::async(std::launch::async, [&] {
    try {  // its server is killed before it answers
      send_key(p.source.port(), "big", restarted.address() + ":disk", {{"streams", 4}});
    } catch (const std::exception&) {
    }
  });
  ASSERT_TRUE(wait_until(
      [&] { return get_stats(restarted.port())["incoming_transfers"].get<int>() > 0; }, 30));
  p.source.kill9();
  sending2.get();
  EXPECT_TRUE(wait_until(
      [&] { return get_stats(restarted.port())["incoming_transfers"] == 0; }, 30));
  EXPECT_TRUE(IsError(location_of(restarted.port(), "big"), 404, "not_found"));
  EXPECT_EQ(get_stats(restarted.port())["disk_usage"], used);
  EXPECT_TRUE(fs::is_empty(target_disk / "tmp"));
}

}  // namespace
