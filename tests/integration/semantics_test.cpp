// The KV semantics of doc/http-api.md against the real server: locations and
// moves (including slow moves observed while they run), limits, stats and
// response shapes, key encoding, extended reads and writes, graceful shutdown.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

constexpr std::uint64_t MiB = 1024 * 1024;

class SemanticsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  fs::path disk() const { return dir_.path() / "disk"; }
  std::unique_ptr<TestServer> start(std::vector<std::string> args = {}) {
    args.insert(args.end(), {"--log-level", "warn"});
    return std::make_unique<TestServer>(disk(), args);
  }
};

// Checks the documented Replica shape and returns it.
void expect_replica_shape(const json& r) {
  ASSERT_TRUE(r.is_object()) << r.dump();
  EXPECT_TRUE(r.contains("location") && r["location"].is_string()) << r.dump();
  EXPECT_TRUE(r.contains("size") && r["size"].is_number_unsigned()) << r.dump();
  EXPECT_TRUE(r.contains("last_accessed") && r["last_accessed"].is_number()) << r.dump();
  EXPECT_TRUE(r.contains("copy_status") && r["copy_status"].is_string()) << r.dump();
  EXPECT_TRUE(r.contains("copy_progress") && r["copy_progress"].is_number()) << r.dump();
  EXPECT_TRUE(r.contains("read_pointer")) << r.dump();
  if (r.contains("copy_status")) {
    const std::string s = r["copy_status"];
    EXPECT_TRUE(s == "complete" || s == "copying" || s == "error") << s;
  }
  if (r.contains("copy_progress") && r["copy_progress"].is_number()) {
    EXPECT_GE(r["copy_progress"].get<double>(), 0.0);
    EXPECT_LE(r["copy_progress"].get<double>(), 1.0);
  }
}

// /location of a key that is at rest: one complete replica at `where`.
void expect_at_rest(int port, const std::string& key, const std::string& where, std::uint64_t size) {
  auto r = location_of(port, key);
  ASSERT_EQ(r.status, 200) << describe(r);
  json j = body_json(r);
  EXPECT_EQ(j.value("key", ""), key);
  EXPECT_EQ(j.value("location", ""), where) << j.dump();
  ASSERT_TRUE(j.contains("locations") && j["locations"].is_array()) << j.dump();
  ASSERT_EQ(j["locations"].size(), 1u) << j.dump();
  const json& rep = j["locations"][0];
  expect_replica_shape(rep);
  EXPECT_EQ(rep.value("location", ""), where);
  EXPECT_EQ(rep.value("copy_status", ""), "complete");
  EXPECT_EQ(rep.value("copy_progress", 0.0), 1.0);
  EXPECT_EQ(rep.value("size", 0ull), size);
}

// Polls /location until the key shows a destination replica "copying" (or the
// move is over). Returns whether it was seen.
bool wait_for_copying(int port, const std::string& key, const std::string& destination,
                      const std::future<HttpResponse>& move) {
  for (int i = 0; i < 20000; ++i) {
    if (move.wait_for(std::chrono::seconds(0)) == std::future_status::ready) return false;
    json j = body_json(location_of(port, key));
    if (j.is_object() && j.contains("locations")) {
      for (const auto& r : j["locations"]) {
        if (r.value("location", "") == destination && r.value("copy_status", "") == "copying") return true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

std::future<HttpResponse> move_async(int port, const std::string& key, const std::string& destination) {
  return std::async(std::launch::async, [=] {
    try {
      return move_key(port, key, destination);
    } catch (const std::exception& e) {
      HttpResponse failed;
      failed.status = -1;
      failed.body = std::string("no answer: ") + e.what();
      return failed;
    }
  });
}

TEST_F(SemanticsTest, ReadOfDiskKeyIsWrongLocation) {
  auto server = start();
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_json(port, "on-disk", "v", "disk")));
  auto r = read_json(port, "on-disk");
  EXPECT_TRUE(IsError(r, 409, "wrong_location"));
  EXPECT_NE(detail_of(r).find("disk"), std::string::npos) << detail_of(r);
  EXPECT_NE(detail_of(r).find("move-data"), std::string::npos) << detail_of(r);
  auto ext = read_extended_json(port, "on-disk");
  EXPECT_TRUE(IsError(ext, 409, "wrong_location"));
  EXPECT_TRUE(IsError(read_raw(port, "on-disk"), 409, "wrong_location"));
}

TEST_F(SemanticsTest, MovesKeepBytes) {
  auto server = start();
  const int port = server->port();
  const std::string value = binary_value(MiB + 3, 11);
  auto w = write_raw(port, "mover", value, "dram", "blob");
  ASSERT_TRUE(IsOk(w));
  json wj = body_json(w);
  EXPECT_EQ(wj, (json{{"status", "success"}, {"key", "mover"}, {"location", "dram"}, {"size", value.size()},
                      {"format", "blob"}}));
  expect_at_rest(port, "mover", "dram", value.size());

  auto m = move_key(port, "mover", "disk");
  ASSERT_TRUE(IsOk(m));
  json mj = body_json(m);
  EXPECT_EQ(mj.value("status", ""), "success");
  EXPECT_EQ(mj.value("key", ""), "mover");
  EXPECT_EQ(mj.value("source", ""), "dram");
  EXPECT_EQ(mj.value("destination", ""), "disk");
  EXPECT_EQ(mj.value("size", 0ull), value.size());
  EXPECT_TRUE(mj.contains("seconds") && mj["seconds"].is_number()) << mj.dump();
  ASSERT_TRUE(mj.contains("read_pointer")) << mj.dump();
  EXPECT_TRUE(mj["read_pointer"].is_object() || mj["read_pointer"].is_null()) << mj.dump();
  expect_at_rest(port, "mover", "disk", value.size());
  EXPECT_EQ(value_files(disk()).size(), 1u);
  EXPECT_EQ(get_stats(port).value("dram_value_size", 1ull), 0u);

  auto back = move_key(port, "mover", "dram");
  ASSERT_TRUE(IsOk(back));
  EXPECT_EQ(body_json(back).value("source", ""), "disk");
  EXPECT_EQ(body_json(back).value("destination", ""), "dram");
  expect_at_rest(port, "mover", "dram", value.size());
  EXPECT_TRUE(value_files(disk()).empty()) << "the disk copy should be gone after the move to dram";
  Bytes b = fetch_bytes(port, "mover");
  EXPECT_EQ(b.status, 200);
  EXPECT_TRUE(b.data == value);
  EXPECT_EQ(b.format, "blob");
  EXPECT_EQ(get_stats(port).value("dram_value_size", 0ull), value.size());

  // JSON values too.
  const json doc = {{"a", {1, 2, {{"b", nullptr}}}}, {"s", "x\u00e9"}};
  ASSERT_TRUE(IsOk(write_json(port, "doc", doc)));
  ASSERT_TRUE(IsOk(move_key(port, "doc", "disk")));
  ASSERT_TRUE(IsOk(move_key(port, "doc", "dram")));
  EXPECT_EQ(body_json(read_json(port, "doc"))["value"], doc);
}

TEST_F(SemanticsTest, MoveToWhereItIsSucceedsAndChangesNothing) {
  auto server = start();
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "here", "dram bytes", "dram")));
  ASSERT_TRUE(IsOk(write_raw(port, "there", "disk bytes", "disk")));
  const auto files = value_files(disk());
  auto m1 = move_key(port, "here", "dram");
  ASSERT_TRUE(IsOk(m1));
  EXPECT_EQ(body_json(m1).value("destination", ""), "dram");
  auto m2 = move_key(port, "there", "disk");
  ASSERT_TRUE(IsOk(m2));
  EXPECT_EQ(body_json(m2).value("destination", ""), "disk");
  expect_at_rest(port, "here", "dram", 10);
  expect_at_rest(port, "there", "disk", 10);
  EXPECT_EQ(value_files(disk()), files) << "a no-op move rewrote the disk file";
  EXPECT_EQ(fetch_bytes(port, "here").data, "dram bytes");
}

TEST_F(SemanticsTest, SlowMoveShowsCopyingReplicaAndServesOldBytes) {
  auto server = start({"--move-rate-limit", "8MB"});
  const int port = server->port();
  const std::string value = binary_value(32 * MiB, 21);
  ASSERT_TRUE(IsOk(write_raw(port, "slow", value, "dram")));
  auto move = move_async(port, "slow", "disk");
  ASSERT_TRUE(wait_for_copying(port, "slow", "disk", move)) << "never saw the disk replica copying";

  int copying_seen = 0, reads = 0;
  double last_progress = -1;
  bool active_seen = false;
  while (move.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
    json j = body_json(location_of(port, "slow"));
    ASSERT_TRUE(j.is_object()) << "location failed during the move";
    bool copying_now = false;
    for (const auto& r : j["locations"]) copying_now = copying_now || r.value("copy_status", "") == "copying";
    if (copying_now) {
      // While the copy runs the source stays the primary, complete and readable.
      EXPECT_EQ(j.value("location", ""), "dram") << "primary switched before the copy finished: " << j.dump();
      EXPECT_EQ(j["locations"].size(), 2u) << j.dump();
    }
    for (const auto& r : j["locations"]) {
      expect_replica_shape(r);
      if (r.value("location", "") == "dram") {
        EXPECT_EQ(r.value("copy_status", ""), "complete") << j.dump();
      } else if (r.value("location", "") == "disk") {
        if (r.value("copy_status", "") == "copying") {
          ++copying_seen;
          double p = r.value("copy_progress", -1.0);
          EXPECT_GE(p, 0.0);
          EXPECT_LE(p, 1.0);
          EXPECT_GE(p, last_progress) << "copy progress went backwards";
          last_progress = p;
        }
      }
    }
    if (!active_seen) active_seen = get_stats(port).value("active_moves", 0ull) >= 1;
    if (copying_now && reads < 3) {
      Bytes b = fetch_bytes(port, "slow");
      if (b.status == 200) {
        EXPECT_TRUE(b.data == value) << "read during the move returned " << b.data.size() << " other bytes";
        ++reads;
      } else {
        // Only possible when the move finished just now: the key is then at rest on disk.
        EXPECT_EQ(b.status, 409) << "read during the move: " << b.data.substr(0, 200);
        json after = body_json(location_of(port, "slow"));
        EXPECT_EQ(after.value("location", ""), "disk") << after.dump();
        EXPECT_EQ(after["locations"].size(), 1u) << after.dump();
      }
    }
  }
  EXPECT_GE(copying_seen, 1);
  EXPECT_GE(reads, 1) << "no read completed during the move";
  EXPECT_TRUE(active_seen) << "/stats active_moves never counted the move";
  auto moved = move.get();
  ASSERT_TRUE(IsOk(moved));
  EXPECT_EQ(body_json(moved).value("destination", ""), "disk");
  expect_at_rest(port, "slow", "disk", value.size());
  EXPECT_EQ(get_stats(port).value("active_moves", 1ull), 0u);
}

TEST_F(SemanticsTest, WriteDuringSlowMoveWinsAndMoveConflicts) {
  auto server = start({"--move-rate-limit", "8MB"});
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "contested", binary_value(16 * MiB, 31), "dram")));
  auto move = move_async(port, "contested", "disk");
  ASSERT_TRUE(wait_for_copying(port, "contested", "disk", move));
  ASSERT_TRUE(IsOk(write_raw(port, "contested", "the new value", "dram")));
  auto moved = move.get();
  EXPECT_TRUE(IsError(moved, 409, "conflict"));
  Bytes b = fetch_bytes(port, "contested");
  EXPECT_EQ(b.data, "the new value");
  expect_at_rest(port, "contested", "dram", 13);
  EXPECT_TRUE(value_files(disk()).empty()) << "the abandoned copy was left on disk";
  EXPECT_TRUE(files_under(disk() / "tmp").empty()) << "the abandoned copy was left in tmp/";
  EXPECT_EQ(get_stats(port).value("dram_value_size", 0ull), 13u);
}

TEST_F(SemanticsTest, ReleaseDuringSlowMoveRemovesTheKey) {
  auto server = start({"--move-rate-limit", "8MB"});
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "doomed", binary_value(16 * MiB, 41), "dram")));
  auto move = move_async(port, "doomed", "disk");
  ASSERT_TRUE(wait_for_copying(port, "doomed", "disk", move));
  auto released = release_key(port, "doomed");
  ASSERT_TRUE(IsOk(released));
  EXPECT_EQ(body_json(released), (json{{"status", "success"}, {"key", "doomed"}}));
  auto moved = move.get();
  EXPECT_TRUE(IsError(moved, 409, "conflict"));
  EXPECT_TRUE(IsError(location_of(port, "doomed"), 404, "not_found"));
  EXPECT_TRUE(value_files(disk()).empty());
  EXPECT_TRUE(files_under(disk() / "tmp").empty());
  json stats = get_stats(port);
  EXPECT_EQ(stats.value("total_keys", 1ull), 0u);
  EXPECT_EQ(stats.value("current_dram_size", 1ull), 0u);  // no value, no key metadata
}

TEST_F(SemanticsTest, SecondMoveOfAMovingKeyConflicts) {
  auto server = start({"--move-rate-limit", "8MB"});
  const int port = server->port();
  const std::string value = binary_value(16 * MiB, 51);
  ASSERT_TRUE(IsOk(write_raw(port, "busy", value, "dram")));
  auto move = move_async(port, "busy", "disk");
  ASSERT_TRUE(wait_for_copying(port, "busy", "disk", move));
  EXPECT_TRUE(IsError(move_key(port, "busy", "disk"), 409, "conflict"));
  ASSERT_TRUE(IsOk(move.get()));
  expect_at_rest(port, "busy", "disk", value.size());
}

TEST_F(SemanticsTest, OverLimitWriteKeepsThePreviousValue) {
  auto server = start({"--max-memory", "1MB"});
  const int port = server->port();
  const std::string small = binary_value(1000, 61);
  ASSERT_TRUE(IsOk(write_raw(port, "k", small, "dram")));
  ASSERT_TRUE(IsOk(write_json(port, "j", "small json")));
  const std::uint64_t used = get_stats(port).value("current_dram_size", 0ull);

  // Raw overwrite, 2 MB (the body is sent in full while the answer is read).
  const std::string big = binary_value(2 * MiB, 62);
  RawOutcome out = raw_exchange(port,
                                "POST /write_extended?key=k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                "application/octet-stream\r\nContent-Length: " +
                                    std::to_string(big.size()) + "\r\nConnection: close\r\n\r\n" + big);
  ASSERT_TRUE(out.answered) << "no answer to the over-limit write";
  EXPECT_TRUE(IsError(out.response, 507, "over_limit"));
  const std::string detail = detail_of(out.response);
  EXPECT_TRUE(mentions_size(detail, MiB)) << "detail should give the limit: " << detail;
  EXPECT_TRUE(mentions_size(detail, used)) << "detail should give the usage (" << used << "): " << detail;
  EXPECT_TRUE(mentions_size(detail, big.size())) << "detail should give the request size: " << detail;

  // JSON overwrite over the limit.
  auto jw = write_json(port, "j", std::string(MiB + 10, 'x'));
  EXPECT_TRUE(IsError(jw, 507, "over_limit"));
  EXPECT_TRUE(mentions_size(detail_of(jw), MiB)) << detail_of(jw);

  Bytes b = fetch_bytes(port, "k");
  EXPECT_TRUE(b.data == small) << "the previous value changed";
  EXPECT_EQ(body_json(read_json(port, "j"))["value"], "small json");
  json stats = get_stats(port);
  EXPECT_EQ(stats.value("current_dram_size", 0ull), used);
  EXPECT_EQ(stats.value("total_keys", 0ull), 2u);
  EXPECT_TRUE(healthy(port));
}

TEST_F(SemanticsTest, DiskToDramMoveOverLimitIsRefused) {
  auto server = start({"--max-memory", "1MB"});
  const int port = server->port();
  const std::string value = binary_value(2 * MiB, 71);
  ASSERT_TRUE(IsOk(write_raw(port, "heavy", value, "disk")));
  ASSERT_TRUE(IsOk(write_raw(port, "light", binary_value(12345, 72), "dram")));
  // In use: the light value, its header and both keys' metadata.
  const std::uint64_t used = get_stats(port).value("current_dram_size", 0ull);
  EXPECT_GT(used, 12345u);
  auto m = move_key(port, "heavy", "dram");
  EXPECT_TRUE(IsError(m, 507, "over_limit"));
  EXPECT_TRUE(mentions_size(detail_of(m), MiB)) << "detail should give the limit: " << detail_of(m);
  EXPECT_TRUE(mentions_size(detail_of(m), used)) << "detail should give the usage: " << detail_of(m);
  EXPECT_TRUE(mentions_size(detail_of(m), value.size())) << "detail should give the request: " << detail_of(m);
  expect_at_rest(port, "heavy", "disk", value.size());
  EXPECT_EQ(get_stats(port).value("dram_value_size", 0ull), 12345u);
  // Raising the limit lets the same move through.
  auto set = http_request(port, "POST", "/set_max_memory/8MB");
  ASSERT_TRUE(IsOk(set));
  EXPECT_EQ(body_json(set), (json{{"status", "success"}, {"max_memory", 8 * MiB}}));
  ASSERT_TRUE(IsOk(move_key(port, "heavy", "dram")));
  EXPECT_TRUE(fetch_bytes(port, "heavy").data == value);
}

TEST_F(SemanticsTest, SetMaxMemory) {
  auto server = start({"--max-memory", "64MB"});
  const int port = server->port();
  EXPECT_EQ(get_stats(port).value("max_size", 0ull), 64 * MiB);
  auto r = http_request(port, "POST", "/set_max_memory/32GB");
  ASSERT_TRUE(IsOk(r));
  json answer = body_json(r);
  EXPECT_EQ(answer.value("status", ""), "success");
  EXPECT_EQ(answer.value("max_memory", 0ull), 32ull << 30);
  json stats = get_stats(port);
  EXPECT_EQ(stats.value("max_size", 0ull), 32ull << 30);
  EXPECT_EQ(stats.value("max_dram_size", 0ull), 32ull << 30);
  // A limit beyond the machine's memory is allowed (the spec sets 32GB), with a
  // warning that names the machine's memory, in the answer and in /stats.
  const std::uint64_t machine = stats.value("machine_memory", 0ull);
  ASSERT_GT(machine, 0u);
  if (machine < (32ull << 30)) {
    EXPECT_NE(answer.value("warning", "").find("machine"), std::string::npos) << answer.dump();
    ASSERT_TRUE(stats.contains("warnings") && stats["warnings"].size() == 1) << stats.dump();
  } else {
    EXPECT_FALSE(answer.contains("warning")) << answer.dump();
  }
  // A "limit" no machine has is refused, and the limit stays.
  EXPECT_TRUE(IsError(http_request(port, "POST", "/set_max_memory/18446744073709551615"), 400,
                      "invalid_size"));
  EXPECT_TRUE(IsError(http_request(port, "POST", "/set_max_memory/2048TB"), 400, "invalid_size"));
  EXPECT_EQ(get_stats(port).value("max_size", 0ull), 32ull << 30);

  r = http_request(port, "POST", "/set_max_memory/1048576");
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(body_json(r).value("max_memory", 0ull), MiB);
  EXPECT_EQ(get_stats(port).value("max_size", 0ull), MiB);

  // Lowering below the usage evicts nothing; further DRAM writes get 507 until usage drops.
  ASSERT_TRUE(IsOk(write_raw(port, "resident", binary_value(600000, 81), "dram")));
  ASSERT_TRUE(IsOk(http_request(port, "POST", "/set_max_memory/100000")));
  EXPECT_TRUE(fetch_bytes(port, "resident").data == binary_value(600000, 81)) << "lowering the limit evicted";
  EXPECT_TRUE(IsError(write_raw(port, "more", "y", "dram"), 507, "over_limit"));
  ASSERT_TRUE(IsOk(release_key(port, "resident")));
  EXPECT_TRUE(IsOk(write_raw(port, "more", "y", "dram")));
}

TEST_F(SemanticsTest, ReleaseRemovesEveryLocation) {
  auto server = start();
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "r-dram", "a", "dram")));
  ASSERT_TRUE(IsOk(write_raw(port, "r-disk", "b", "disk")));
  ASSERT_TRUE(IsOk(write_raw(port, "r-moved", "c", "dram")));
  ASSERT_TRUE(IsOk(move_key(port, "r-moved", "disk")));
  ASSERT_TRUE(IsOk(write_raw(port, "keep", "d", "disk")));
  EXPECT_EQ(value_files(disk()).size(), 3u);
  for (const std::string key : {"r-dram", "r-disk", "r-moved"}) {
    auto r = release_key(port, key);
    ASSERT_TRUE(IsOk(r)) << key;
    EXPECT_EQ(body_json(r), (json{{"status", "success"}, {"key", key}}));
    EXPECT_TRUE(IsError(location_of(port, key), 404, "not_found")) << key;
    EXPECT_TRUE(IsError(read_json(port, key), 404, "not_found")) << key;
    EXPECT_TRUE(IsError(release_key(port, key), 404, "not_found")) << key;
  }
  json all = get_locations(port);
  EXPECT_EQ(all.size(), 1u) << all.dump();
  EXPECT_TRUE(all.contains("keep"));
  EXPECT_EQ(value_files(disk()).size(), 1u) << "released disk values left files behind";
  json stats = get_stats(port);
  EXPECT_EQ(stats.value("total_keys", 0ull), 1u);
  EXPECT_EQ(stats.value("disk_keys", 0ull), 1u);
  EXPECT_EQ(stats.value("dram_keys", 1ull), 0u);
  EXPECT_EQ(stats.value("dram_value_size", 1ull), 0u);
}

TEST_F(SemanticsTest, StatsHaveEveryDocumentedField) {
  auto server = start({"--max-memory", "64MB", "--move-threads", "3"});
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "s1", std::string(1000, 'a'), "dram")));
  ASSERT_TRUE(IsOk(write_json(port, "s2", {{"k", "v"}})));
  ASSERT_TRUE(IsOk(write_raw(port, "s3", std::string(5000, 'b'), "disk")));
  auto r = http_request(port, "GET", "/stats");
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.headers["content-type"].find("application/json"), std::string::npos);
  json top = body_json(r);
  ASSERT_TRUE(top.is_object() && top.contains("stats")) << r.body;
  const json& s = top["stats"];
  const char* counts[] = {"current_size",    "max_size",   "current_dram_size", "max_dram_size",
                          "current_pinned_size", "max_pinned_size", "total_keys", "persistent_keys",
                          "volatile_keys",   "dram_keys",  "pinned_keys",       "disk_keys",
                          "device_keys",     "disk_usage", "pending_operations", "max_disk_size",
                          "active_moves",    "move_threads"};
  for (const char* f : counts) {
    EXPECT_TRUE(s.contains(f) && s[f].is_number_unsigned()) << f << ": " << s.dump();
  }
  for (const char* f : {"usage_percent", "dram_usage_percent"}) {
    EXPECT_TRUE(s.contains(f) && s[f].is_number()) << f;
  }
  EXPECT_TRUE(s.contains("location_counts") && s["location_counts"].is_object());
  EXPECT_TRUE(s.contains("gpu_stats") && s["gpu_stats"].is_object());
  EXPECT_EQ(s.value("gpu_stats", json::array()), json::object()) << "no GPUs here";
  EXPECT_TRUE(s.contains("disk_path") && s["disk_path"].is_string());
  ASSERT_TRUE(s.contains("memory_info") && s["memory_info"].is_object());
  for (const char* f : {"total", "available", "used", "percent"}) {
    EXPECT_TRUE(s["memory_info"].contains(f) && s["memory_info"][f].is_number()) << "memory_info." << f;
  }
  if (::testing::Test::HasFailure()) return;
  // Values.
  EXPECT_EQ(s["max_size"], 64 * MiB);
  EXPECT_EQ(s["max_dram_size"], 64 * MiB);
  EXPECT_EQ(s["total_keys"], 3u);
  EXPECT_EQ(s["dram_keys"], 2u);
  EXPECT_EQ(s["disk_keys"], 1u);
  EXPECT_EQ(s["persistent_keys"], 1u);
  EXPECT_EQ(s["volatile_keys"], 2u);
  EXPECT_EQ(s["device_keys"], 0u);
  EXPECT_EQ(s["pinned_keys"], 0u);
  EXPECT_EQ(s["location_counts"].value("dram", 0ull), 2u);
  EXPECT_EQ(s["location_counts"].value("disk", 0ull), 1u);
  const std::uint64_t json_size = json({{"k", "v"}}).dump().size();
  EXPECT_EQ(s["dram_value_size"], 1000 + json_size);
  // Every key's metadata (48 bytes and its name) counts against --max-memory, in
  // whatever tier its value is.
  EXPECT_EQ(s["metadata_size"], 3 * (48 + 2));
  EXPECT_GE(s["current_dram_size"].get<std::uint64_t>(),
            s["dram_value_size"].get<std::uint64_t>() + s["metadata_size"].get<std::uint64_t>());
  EXPECT_EQ(s["current_size"], s["current_dram_size"]);
  EXPECT_GE(s["disk_usage"].get<std::uint64_t>(), 5000u);
  EXPECT_EQ(s["move_threads"], 3u);
  EXPECT_EQ(s["active_moves"], 0u);
  EXPECT_EQ(fs::weakly_canonical(s["disk_path"].get<std::string>()), fs::weakly_canonical(disk()));
  EXPECT_NEAR(s["dram_usage_percent"].get<double>(),
              100.0 * s["current_dram_size"].get<double>() / (64.0 * MiB), 1e-6);
  EXPECT_GT(s["memory_info"]["total"].get<double>(), 0.0);
}

TEST_F(SemanticsTest, LocationAndLocationsShapes) {
  auto server = start();
  const int port = server->port();
  ASSERT_TRUE(IsOk(write_raw(port, "in-dram", std::string(10, 'a'), "dram")));
  ASSERT_TRUE(IsOk(write_raw(port, "on-disk", std::string(20, 'b'), "disk")));
  auto r = location_of(port, "on-disk");
  ASSERT_EQ(r.status, 200);
  json j = body_json(r);
  EXPECT_EQ(j.value("key", ""), "on-disk");
  EXPECT_EQ(j.value("location", ""), "disk");
  ASSERT_TRUE(j.contains("locations") && j["locations"].is_array() && j["locations"].size() == 1) << j.dump();
  expect_replica_shape(j["locations"][0]);
  const json& rp = j["locations"][0]["read_pointer"];
  ASSERT_TRUE(rp.is_object()) << "a disk replica has a file read pointer: " << j.dump();
  EXPECT_EQ(rp.value("kind", ""), "file");
  EXPECT_EQ(rp.value("size", 0ull), 20u);
  EXPECT_TRUE(fs::exists(rp.value("path", ""))) << rp.dump();

  auto all = http_request(port, "GET", "/locations");
  ASSERT_EQ(all.status, 200);
  json top = body_json(all);
  ASSERT_TRUE(top.is_object() && top.contains("locations") && top["locations"].is_object()) << all.body;
  EXPECT_EQ(top.size(), 1u);
  const json& locs = top["locations"];
  EXPECT_EQ(locs.size(), 2u);
  for (const auto& [key, replicas] : locs.items()) {
    ASSERT_TRUE(replicas.is_array() && replicas.size() == 1) << key;
    expect_replica_shape(replicas[0]);
  }
  EXPECT_EQ(locs["in-dram"][0].value("location", ""), "dram");
  EXPECT_EQ(locs["in-dram"][0].value("size", 0ull), 10u);
  EXPECT_EQ(locs["on-disk"][0].value("location", ""), "disk");
  EXPECT_EQ(locs["on-disk"][0].value("size", 0ull), 20u);
}

TEST_F(SemanticsTest, ReservedCharactersInKeysRoundTrip) {
  auto server = start();
  const int port = server->port();
  const std::vector<std::string> keys = {"a/b",       "with space", "ключ ユニコード 🔑", "a+b",      "100%",
                                         "%41",       "?q=1&x=2",   "#frag",            "a%2Fb",    "tab\tin",
                                         "trailing/", "//double",   "semi;colon",       "quote\"s", "back\\slash"};
  for (const auto& key : keys) {
    SCOPED_TRACE(key);
    auto w = write_json(port, key, json{{"for", key}});
    ASSERT_TRUE(IsOk(w));
    EXPECT_EQ(body_json(w).value("key", ""), key);
    auto r = http_request(port, "GET", "/read/" + url_encode(key));
    ASSERT_EQ(r.status, 200) << describe(r);
    json rj = body_json(r);
    EXPECT_EQ(rj, (json{{"key", key}, {"value", {{"for", key}}}, {"found", true}}));
    auto loc = http_request(port, "GET", "/location/" + url_encode(key));
    ASSERT_EQ(loc.status, 200) << describe(loc);
    EXPECT_EQ(body_json(loc).value("key", ""), key);
  }
  // The raw form carries the key in the query string.
  ASSERT_TRUE(IsOk(write_raw(port, "raw+key & more/=?", "raw")));
  EXPECT_EQ(fetch_bytes(port, "raw+key & more/=?").data, "raw");
  // '+' in a path is a literal plus, not a space.
  auto plus = http_request(port, "GET", "/read/a+b");
  ASSERT_EQ(plus.status, 200) << describe(plus);
  EXPECT_EQ(body_json(plus).value("key", ""), "a+b");
  // Keys that differ only by encoding stay distinct.
  EXPECT_EQ(body_json(read_json(port, "a%2Fb"))["value"]["for"], "a%2Fb");
  EXPECT_EQ(body_json(read_json(port, "a/b"))["value"]["for"], "a/b");
  json all = get_locations(port);
  for (const auto& key : keys) EXPECT_TRUE(all.contains(key)) << key;
  for (const auto& key : keys) {
    auto rel = http_request(port, "DELETE", "/release/" + url_encode(key));
    EXPECT_TRUE(IsOk(rel)) << key;
    EXPECT_EQ(body_json(rel).value("key", ""), key);
    EXPECT_TRUE(IsError(read_json(port, key), 404, "not_found")) << key;
  }
  EXPECT_EQ(get_stats(port).value("total_keys", 0ull), 1u);
}

TEST_F(SemanticsTest, ReadExtendedForms) {
  auto server = start();
  const int port = server->port();
  const json doc = {{"x", {1, 2, 3}}, {"y", "z"}};
  ASSERT_TRUE(IsOk(write_json(port, "doc", doc)));
  const std::string bytes = binary_value(777, 91);
  ASSERT_TRUE(IsOk(write_raw(port, "raw", bytes)));
  ASSERT_TRUE(IsOk(write_raw(port, "tagged", "abc", "dram", "numpy")));

  auto j = read_extended_json(port, "doc");
  ASSERT_EQ(j.status, 200) << describe(j);
  EXPECT_EQ(body_json(j), (json{{"key", "doc"}, {"serialized_value", {{"type", "json"}, {"data", doc}}},
                                {"found", true}}));
  auto o = read_raw(port, "doc");
  ASSERT_EQ(o.status, 200);
  EXPECT_EQ(o.headers["content-type"], "application/octet-stream");
  EXPECT_EQ(o.headers["x-gswarm-format"], "json");
  EXPECT_EQ(json::parse(o.body), doc);

  auto rj = read_extended_json(port, "raw");
  ASSERT_EQ(rj.status, 200) << describe(rj);
  json rjj = body_json(rj);
  EXPECT_EQ(rjj.value("key", ""), "raw");
  EXPECT_EQ(rjj.value("found", false), true);
  EXPECT_EQ(rjj["serialized_value"].value("type", ""), "bytes");
  auto decoded = b64_decode(rjj["serialized_value"].value("data", ""));
  ASSERT_TRUE(decoded.has_value()) << "data is not base64";
  EXPECT_TRUE(*decoded == bytes);
  auto ro = read_raw(port, "raw");
  ASSERT_EQ(ro.status, 200);
  EXPECT_EQ(ro.headers["content-type"], "application/octet-stream");
  EXPECT_EQ(ro.headers["x-gswarm-format"], "bytes");
  EXPECT_TRUE(ro.body == bytes);

  EXPECT_EQ(body_json(read_extended_json(port, "tagged"))["serialized_value"],
            (json{{"type", "numpy"}, {"data", b64_encode("abc")}}));
  EXPECT_EQ(read_raw(port, "tagged").headers["x-gswarm-format"], "numpy");
  // /read only serves JSON values.
  EXPECT_TRUE(IsError(read_json(port, "raw"), 409, "wrong_format"));
  EXPECT_TRUE(IsError(read_json(port, "tagged"), 409, "wrong_format"));
}

TEST_F(SemanticsTest, WriteExtendedJsonAndPickle) {
  auto server = start();
  const int port = server->port();
  const json data = {{"list", {1, "two", 3.5}}, {"nested", {{"null", nullptr}}}};
  auto w = http_request(port, "POST", "/write_extended",
                        json({{"key", "ext-json"}, {"serialized_value", {{"type", "json"}, {"data", data}}}}).dump());
  ASSERT_TRUE(IsOk(w));
  json wj = body_json(w);
  EXPECT_EQ(wj.value("status", ""), "success");
  EXPECT_EQ(wj.value("key", ""), "ext-json");
  EXPECT_EQ(wj.value("location", ""), "dram");
  EXPECT_EQ(wj.value("format", ""), "json");
  EXPECT_TRUE(wj.contains("size") && wj["size"].is_number_unsigned());
  EXPECT_EQ(body_json(read_json(port, "ext-json"))["value"], data);

  // pickle.dumps({'a': 1, 'b': [1, 2]}, protocol=4): the server keeps the bytes opaque.
  const std::string pickle("\x80\x04\x95\x15\x00\x00\x00\x00\x00\x00\x00}\x94(\x8c\x01""a\x94K\x01\x8c\x01""b\x94]"
                           "\x94(K\x01K\x02""eu.",
                           32);
  const std::string b64 = b64_encode(pickle);
  for (const std::string location : {"dram", "disk"}) {
    SCOPED_TRACE(location);
    const std::string key = "ext-pickle-" + location;
    auto p = http_request(port, "POST", "/write_extended",
                          json({{"key", key}, {"location", location},
                                {"serialized_value", {{"type", "pickle"}, {"data", b64}}}})
                              .dump());
    ASSERT_TRUE(IsOk(p));
    EXPECT_EQ(body_json(p), (json{{"status", "success"}, {"key", key}, {"location", location},
                                  {"size", pickle.size()}, {"format", "pickle"}}));
    if (location == "disk") {
      ASSERT_TRUE(IsOk(move_key(port, key, "dram")));
    }
    auto back = read_extended_json(port, key);
    ASSERT_EQ(back.status, 200) << describe(back);
    json bj = body_json(back);
    EXPECT_EQ(bj["serialized_value"].value("type", ""), "pickle");
    auto decoded = b64_decode(bj["serialized_value"].value("data", ""));
    ASSERT_TRUE(decoded.has_value());
    EXPECT_TRUE(*decoded == pickle);
    auto raw = read_raw(port, key);
    EXPECT_TRUE(raw.body == pickle);
    EXPECT_EQ(raw.headers["x-gswarm-format"], "pickle");
    EXPECT_TRUE(IsError(read_json(port, key), 409, "wrong_format"));
  }
  // Empty bytes are a value like any other.
  auto e = http_request(port, "POST", "/write_extended",
                        R"({"key": "ext-empty", "serialized_value": {"type": "bytes", "data": ""}})");
  ASSERT_TRUE(IsOk(e));
  EXPECT_EQ(body_json(e).value("size", 1ull), 0u);
  auto er = read_raw(port, "ext-empty");
  EXPECT_EQ(er.status, 200);
  EXPECT_TRUE(er.body.empty());
}

TEST_F(SemanticsTest, EmptyRawValueRoundTrips) {
  auto server = start();
  const int port = server->port();
  for (const std::string location : {"dram", "disk"}) {
    SCOPED_TRACE(location);
    auto w = write_raw(port, "empty-" + location, "", location);
    ASSERT_TRUE(IsOk(w));
    EXPECT_EQ(body_json(w).value("size", 1ull), 0u);
    EXPECT_EQ(body_json(w).value("format", ""), "bytes");
    if (location == "disk") {
      ASSERT_TRUE(IsOk(move_key(port, "empty-" + location, "dram")));
    }
    auto r = read_raw(port, "empty-" + location);
    EXPECT_EQ(r.status, 200) << describe(r);
    EXPECT_TRUE(r.body.empty());
  }
}

TEST_F(SemanticsTest, AsynchronousMoveReportsItsOperation) {
  auto server = start();
  const int port = server->port();
  const std::string value = binary_value(100000, 95);
  ASSERT_TRUE(IsOk(write_raw(port, "async", value)));
  auto r = http_request(port, "POST", "/move", R"({"key": "async", "destination": "disk", "wait": false})");
  ASSERT_EQ(r.status, 202) << describe(r);
  json j = body_json(r);
  EXPECT_EQ(j.value("status", ""), "accepted");
  EXPECT_EQ(j.value("key", ""), "async");
  EXPECT_EQ(j.value("destination", ""), "disk");
  ASSERT_TRUE(j.contains("operation_id") && j["operation_id"].is_number_unsigned());
  const std::string url = "/operations/" + std::to_string(j["operation_id"].get<std::uint64_t>());
  EXPECT_EQ(j.value("operation_url", ""), url);
  json op;
  for (int i = 0; i < 2000; ++i) {
    auto o = http_request(port, "GET", url);
    ASSERT_EQ(o.status, 200) << describe(o);
    op = body_json(o);
    const std::string state = op.value("state", "");
    ASSERT_TRUE(state == "queued" || state == "running" || state == "done" || state == "failed") << op.dump();
    if (state == "done" || state == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(op.value("state", ""), "done") << op.dump();
  EXPECT_EQ(op.value("kind", ""), "move");
  EXPECT_EQ(op.value("source", ""), "dram");
  EXPECT_EQ(op.value("bytes_total", 0ull), value.size());
  EXPECT_EQ(op.value("progress", 0.0), 1.0);
  EXPECT_TRUE(op.contains("error") && op["error"].is_null()) << op.dump();
  expect_at_rest(port, "async", "disk", value.size());
  auto list = body_json(http_request(port, "GET", "/operations"));
  ASSERT_TRUE(list.contains("operations") && list["operations"].is_array());
  EXPECT_EQ(list["operations"].size(), 1u);
}

TEST_F(SemanticsTest, GracefulShutdownFinishesASlowMove) {
  const std::string value = binary_value(16 * MiB, 99);
  {
    auto server = start({"--move-rate-limit", "8MB"});
    const int port = server->port();
    ASSERT_TRUE(IsOk(write_raw(port, "in-flight", value, "dram")));
    ASSERT_TRUE(IsOk(write_raw(port, "settled", "on disk", "disk")));
    auto move = move_async(port, "in-flight", "disk");
    ASSERT_TRUE(wait_for_copying(port, "in-flight", "disk", move));
    EXPECT_EQ(server->stop(), 0) << "SIGTERM during a move should still exit 0";
    auto moved = move.get();
    EXPECT_TRUE(IsOk(moved)) << "the move in flight should finish and be answered";
  }
  EXPECT_TRUE(files_under(disk() / "tmp").empty());
  auto server = start();
  const int port = server->port();
  EXPECT_TRUE(files_under(disk() / "tmp").empty());
  json all = get_locations(port);
  EXPECT_EQ(all.size(), 2u) << all.dump();
  expect_at_rest(port, "in-flight", "disk", value.size());
  EXPECT_EQ(value_files(disk()).size(), 2u);
  ASSERT_TRUE(IsOk(move_key(port, "in-flight", "dram")));
  EXPECT_TRUE(fetch_bytes(port, "in-flight").data == value);
  ASSERT_TRUE(IsOk(move_key(port, "settled", "dram")));
  EXPECT_EQ(fetch_bytes(port, "settled").data, "on disk");
}

}  // namespace
