// Many clients at once on an overlapping set of keys: writes (dram and disk),
// reads, moves between dram and disk, releases. Every value carries its writer,
// sequence number and a checksum, so any read is checked to be exactly one
// acknowledged write of that key (never a mix of two, never a torn value), and the
// server's bookkeeping (/stats against /locations) must add up at the end.
#include <gswarm/client.hpp>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::Client;
using gswarm::ErrorCode;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;

constexpr int kThreads = 32;
constexpr int kOpsPerThread = 300;
constexpr int kKeys = 16;

std::string key_name(int k) { return "shared/key-" + std::to_string(k); }

// Identity of one write: key index, writer, sequence number within the writer.
using WriteId = std::tuple<int, int, int>;

// "GSW|k<key>|w<writer>|s<seq>|n<len>|" + len deterministic bytes + "|" + checksum.
std::string make_value(int key, int writer, int seq, std::size_t len) {
  std::string header = "GSW|k" + std::to_string(key) + "|w" + std::to_string(writer) + "|s" +
                       std::to_string(seq) + "|n" + std::to_string(len) + "|";
  std::string out = header + binary_value(len, static_cast<std::uint32_t>(key * 1000003 + writer * 7919 + seq));
  char sum[17];
  std::snprintf(sum, sizeof sum, "%016llx", static_cast<unsigned long long>(fnv1a(out)));
  out += "|";
  out += sum;
  return out;
}

// The write a value came from, if it is exactly a value make_value() produces.
std::optional<WriteId> identify(const std::string& data) {
  int key = -1, writer = -1, seq = -1;
  unsigned long long len = 0;
  if (std::sscanf(data.c_str(), "GSW|k%d|w%d|s%d|n%llu|", &key, &writer, &seq, &len) != 4) return std::nullopt;
  if (key < 0 || writer < 0 || seq < 0 || len > (1u << 24)) return std::nullopt;
  if (make_value(key, writer, seq, len) != data) return std::nullopt;
  return WriteId{key, writer, seq};
}

std::string error_text(const gswarm::Error& e) {
  return std::string(gswarm::error_code_name(e.code)) + ": " + e.message;
}

struct Shared {
  std::mutex mutex;
  std::set<WriteId> acknowledged;
  std::vector<std::string> failures;
  std::atomic<int> reads_ok{0}, writes_ok{0}, moves_ok{0}, releases_ok{0};

  void fail(std::string what) {
    std::lock_guard lock(mutex);
    failures.push_back(std::move(what));
  }
};

void worker(const std::string& address, int id, Shared& shared, std::vector<std::pair<int, WriteId>>& seen) {
  Client client(address);
  std::mt19937 rng(static_cast<unsigned>(0xC0FFEE + id));
  int seq = 0;
  for (int op = 0; op < kOpsPerThread; ++op) {
    const int k = static_cast<int>(rng() % kKeys);
    const std::string key = key_name(k);
    const unsigned roll = rng() % 100;
    const std::string where = "thread " + std::to_string(id) + " op " + std::to_string(op) + " key " + key;
    if (roll < 35) {
      const std::size_t len = rng() % 4 == 0 ? rng() % 64 : rng() % 20000;
      const int s = seq++;
      const std::string value = make_value(k, id, s, len);
      const char* location = rng() % 2 == 0 ? "dram" : "disk";
      auto written = client.write_bytes(key, value, location, "bytes");
      if (!written) {
        shared.fail(where + ": write to " + location + " failed: " + error_text(written.error()));
        continue;
      }
      if (*written != value.size()) {
        shared.fail(where + ": write acknowledged " + std::to_string(*written) + " bytes of " +
                    std::to_string(value.size()));
      }
      {
        std::lock_guard lock(shared.mutex);
        shared.acknowledged.insert(WriteId{k, id, s});
      }
      ++shared.writes_ok;
    } else if (roll < 70) {
      auto read = client.read_bytes(key);
      if (!read) {
        auto code = read.error().code;
        if (code != ErrorCode::kNotFound && code != ErrorCode::kWrongLocation) {
          shared.fail(where + ": read failed unexpectedly: " + error_text(read.error()));
        }
        continue;
      }
      if (read->format != "bytes") shared.fail(where + ": read format '" + read->format + "'");
      auto origin = identify(read->data);
      if (!origin) {
        shared.fail(where + ": read " + std::to_string(read->data.size()) +
                    " bytes that are no value ever written (torn or mixed): " + read->data.substr(0, 40));
      } else if (std::get<0>(*origin) != k) {
        shared.fail(where + ": read a value written to another key: " + read->data.substr(0, 40));
      } else {
        seen.emplace_back(op, *origin);
      }
      ++shared.reads_ok;
    } else if (roll < 88) {
      const char* destination = rng() % 2 == 0 ? "dram" : "disk";
      auto moved = client.move(key, destination);
      if (!moved) {
        auto code = moved.error().code;
        if (code != ErrorCode::kNotFound && code != ErrorCode::kConflict) {
          shared.fail(where + ": move to " + destination + " failed unexpectedly: " + error_text(moved.error()));
        }
        continue;
      }
      if (moved->destination != destination || moved->key != key) {
        shared.fail(where + ": move answered key '" + moved->key + "' destination '" + moved->destination + "'");
      }
      ++shared.moves_ok;
    } else if (roll < 95) {
      auto released = client.release(key);
      if (!released) {
        if (released.error().code != ErrorCode::kNotFound) {
          shared.fail(where + ": release failed unexpectedly: " + error_text(released.error()));
        }
        continue;
      }
      ++shared.releases_ok;
    } else {
      auto location = client.get_location(key);
      if (!location) {
        if (location.error().code != ErrorCode::kNotFound) {
          shared.fail(where + ": location failed unexpectedly: " + error_text(location.error()));
        }
        continue;
      }
      if (location->key != key || location->replicas.empty()) {
        shared.fail(where + ": location answered key '" + location->key + "' with " +
                    std::to_string(location->replicas.size()) + " replicas");
      } else if (location->replicas.front().location != location->location) {
        shared.fail(where + ": primary '" + location->location + "' is not the first replica");
      }
    }
  }
}

TEST(ConcurrencyTest, MixedOperationsStayConsistent) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--log-level", "warn"});
  Shared shared;
  std::vector<std::vector<std::pair<int, WriteId>>> seen(kThreads);
  {
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back(worker, server.address(), t, std::ref(shared), std::ref(seen[t]));
    }
    for (auto& t : threads) t.join();
  }

  for (std::size_t i = 0; i < shared.failures.size() && i < 30; ++i) ADD_FAILURE() << shared.failures[i];
  EXPECT_TRUE(shared.failures.empty()) << shared.failures.size() << " operations went wrong";
  // The mix really happened.
  EXPECT_GT(shared.writes_ok.load(), 1000);
  EXPECT_GT(shared.reads_ok.load(), 100);
  EXPECT_GT(shared.moves_ok.load(), 100);
  EXPECT_GT(shared.releases_ok.load(), 10);

  // Every successful read returned a value some write of that key had (or later got)
  // acknowledged.
  std::size_t unacknowledged = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (const auto& [op, id] : seen[t]) {
      if (!shared.acknowledged.contains(id)) {
        if (++unacknowledged <= 10) {
          ADD_FAILURE() << "thread " << t << " op " << op << " read key " << std::get<0>(id) << " value from writer "
                        << std::get<1>(id) << " seq " << std::get<2>(id) << ", a write that was never acknowledged";
        }
      }
    }
  }
  EXPECT_EQ(unacknowledged, 0u);

  // Quiescent now: /stats must agree with /locations. Values released or replaced
  // may be freed just after their last response went out, so allow a short settle.
  const int port = server.port();
  json stats, locations;
  std::uint64_t dram_bytes = 0, dram_keys = 0, disk_keys = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    locations = get_locations(port);
    stats = get_stats(port);
    dram_bytes = dram_keys = disk_keys = 0;
    for (const auto& [key, replicas] : locations.items()) {
      if (!replicas.is_array() || replicas.empty()) continue;
      const auto& primary = replicas[0];
      if (primary.value("location", "") == "dram") {
        dram_bytes += primary.value("size", 0ull);
        ++dram_keys;
      } else if (primary.value("location", "") == "disk") {
        ++disk_keys;
      }
    }
    if (stats.value("dram_value_size", 0ull) == dram_bytes &&
        stats.value("total_keys", 0ull) == locations.size())
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(stats.value("total_keys", 0ull), locations.size()) << stats.dump();
  EXPECT_EQ(stats.value("dram_keys", 0ull) + stats.value("disk_keys", 0ull), stats.value("total_keys", 0ull))
      << stats.dump();
  EXPECT_EQ(stats.value("dram_keys", 0ull), dram_keys) << stats.dump();
  EXPECT_EQ(stats.value("disk_keys", 0ull), disk_keys) << stats.dump();
  EXPECT_EQ(stats.value("dram_value_size", 0ull), dram_bytes) << stats.dump();
  EXPECT_EQ(stats.value("active_moves", 1ull), 0u) << stats.dump();
  EXPECT_LE(locations.size(), static_cast<std::size_t>(kKeys));

  // Every key left holds one complete replica with an acknowledged value, and the
  // disk root holds exactly one file per disk key.
  std::size_t disk_files = value_files(dir.path() / "disk").size();
  EXPECT_EQ(disk_files, disk_keys) << "disk value files do not match the disk keys";
  EXPECT_TRUE(files_under(dir.path() / "disk" / "tmp").empty());
  for (const auto& [key, replicas] : locations.items()) {
    ASSERT_TRUE(replicas.is_array());
    ASSERT_EQ(replicas.size(), 1u) << key << ": " << replicas.dump();
    EXPECT_EQ(replicas[0].value("copy_status", ""), "complete") << key;
    auto moved = move_key(port, key, "dram");
    ASSERT_EQ(moved.status, 200) << key << ": " << describe(moved);
    Bytes b = fetch_bytes(port, key);
    ASSERT_EQ(b.status, 200) << key;
    EXPECT_EQ(b.data.size(), replicas[0].value("size", 0ull)) << key;
    auto origin = identify(b.data);
    ASSERT_TRUE(origin.has_value()) << key << " holds a torn value";
    EXPECT_EQ(key_name(std::get<0>(*origin)), key);
    EXPECT_TRUE(shared.acknowledged.contains(*origin)) << key << " holds an unacknowledged value";
  }
  EXPECT_TRUE(healthy(port));
}

}  // namespace
