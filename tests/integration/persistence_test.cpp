// The disk tier across restarts: clean shutdowns, SIGKILL in the middle of writes,
// hostile keys that look like paths, and corrupt files found at start-up.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <random>
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

const std::vector<std::string> kQuiet = {"--log-level", "error"};

// Moves the key to DRAM and returns its bytes and format (status 0 when either step failed).
Bytes bring_back(int port, const std::string& key) {
  auto moved = move_key(port, key, "dram");
  if (moved.status != 200) {
    ADD_FAILURE() << "move of '" << key << "' to dram: " << describe(moved);
    return {};
  }
  return fetch_bytes(port, key);
}

std::string location_name(int port, const std::string& key) {
  auto r = location_of(port, key);
  if (r.status != 200) return "(" + std::to_string(r.status) + ")";
  return body_json(r).value("location", "");
}

TEST(PersistenceTest, DiskValuesSurviveACleanRestart) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  std::string all_bytes;
  for (int i = 0; i < 256; ++i) all_bytes += static_cast<char>(i);
  const std::map<std::string, std::string> raw = {
      {"bin:all-bytes", all_bytes},
      {"bin:nuls", std::string(1000, '\0')},
      {"bin:one", "x"},
      {"bin:large", binary_value(8 * 1024 * 1024, 77)},
      {"bin:odd-size", binary_value(65537, 78)},
  };
  const std::string pickle("\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01""a\x94K\x01s.", 22);
  const json doc = {{"name", "john"}, {"scores", {1, 2.5, -3}}, {"nested", {{"ok", true}, {"none", nullptr}}},
                    {"text", "ünïcode \"quoted\"\n"}};
  {
    TestServer server(disk, kQuiet);
    const int port = server.port();
    for (const auto& [k, v] : raw) ASSERT_TRUE(IsOk(write_raw(port, k, v, "disk"))) << k;
    ASSERT_TRUE(IsOk(write_raw(port, "fmt:pickle", pickle, "disk", "pickle")));
    ASSERT_TRUE(IsOk(write_raw(port, "fmt:numpy", binary_value(4096, 5), "disk", "numpy.float32")));
    ASSERT_TRUE(IsOk(write_json(port, "json:doc", doc, "disk")));
    ASSERT_TRUE(IsOk(write_json(port, "json:number", 42, "disk")));
    // A value written to DRAM then moved to disk persists too; a DRAM value does not.
    ASSERT_TRUE(IsOk(write_raw(port, "moved:to-disk", binary_value(3000, 6), "dram")));
    ASSERT_TRUE(IsOk(move_key(port, "moved:to-disk", "disk")));
    ASSERT_TRUE(IsOk(write_json(port, "volatile", "gone after restart")));
    // An overwritten disk value persists with its newest bytes only.
    ASSERT_TRUE(IsOk(write_raw(port, "overwritten", "old", "disk")));
    ASSERT_TRUE(IsOk(write_raw(port, "overwritten", "new!", "disk")));
    EXPECT_EQ(server.stop(), 0) << "clean shutdown should exit 0";
  }
  EXPECT_TRUE(files_under(disk / "tmp").empty());
  TestServer server(disk, kQuiet);
  const int port = server.port();
  json stats = get_stats(port);
  EXPECT_EQ(stats.value("total_keys", 0ull), raw.size() + 6) << stats.dump();
  EXPECT_EQ(stats.value("disk_keys", 0ull), raw.size() + 6) << stats.dump();
  EXPECT_TRUE(IsError(location_of(port, "volatile"), 404, "not_found"));
  EXPECT_EQ(value_files(disk).size(), raw.size() + 6);

  for (const auto& [k, v] : raw) {
    SCOPED_TRACE(k);
    EXPECT_EQ(location_name(port, k), "disk");
    auto loc = body_json(location_of(port, k));
    EXPECT_EQ(loc["locations"][0].value("size", 0ull), v.size());
    Bytes b = bring_back(port, k);
    EXPECT_EQ(b.status, 200);
    EXPECT_EQ(b.data.size(), v.size());
    EXPECT_TRUE(b.data == v) << "bytes differ after restart";
    EXPECT_EQ(b.format, "bytes");
  }
  Bytes p = bring_back(port, "fmt:pickle");
  EXPECT_TRUE(p.data == pickle);
  EXPECT_EQ(p.format, "pickle");
  Bytes n = bring_back(port, "fmt:numpy");
  EXPECT_TRUE(n.data == binary_value(4096, 5));
  EXPECT_EQ(n.format, "numpy.float32");
  ASSERT_TRUE(IsOk(move_key(port, "json:doc", "dram")));
  auto r = read_json(port, "json:doc");
  ASSERT_EQ(r.status, 200) << describe(r);
  EXPECT_EQ(body_json(r)["value"], doc);
  ASSERT_TRUE(IsOk(move_key(port, "json:number", "dram")));
  EXPECT_EQ(body_json(read_json(port, "json:number"))["value"], 42);
  EXPECT_TRUE(bring_back(port, "moved:to-disk").data == binary_value(3000, 6));
  EXPECT_EQ(bring_back(port, "overwritten").data, "new!");
}

// A writer loops over disk writes; the server is SIGKILLed at a random moment.
// After a restart on the same disk path every acknowledged write is there, intact.
TEST(PersistenceTest, AcknowledgedDiskWritesSurviveKill9) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  auto server = std::make_unique<TestServer>(disk, kQuiet);
  const int port = server->port();

  struct Written {
    std::string bytes;
    bool is_json = false;
  };
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::string, Written> acknowledged;  // key -> newest acknowledged value
  std::optional<std::pair<std::string, Written>> in_flight;
  int acks = 0;
  std::atomic<bool> stop{false};
  std::string writer_error;

  std::random_device rd;
  const unsigned seed = rd();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  const int kill_after = 5 + static_cast<int>(rng() % 40);

  std::thread writer([&, wseed = rng()] {
    std::mt19937 wrng(wseed);
    const std::size_t sizes[] = {1, 17, 4096, 65536, 300000, 1 << 20};
    for (int i = 0; !stop.load(); ++i) {
      const std::string key = "crash/" + std::to_string(i % 24);  // keys get overwritten too
      const std::size_t size = sizes[wrng() % 6] - (wrng() % 2);
      Written w;
      w.is_json = wrng() % 3 == 0;
      if (w.is_json) {
        w.bytes = json({{"i", i}, {"pad", std::string(size, 'j')}}).dump();
      } else {
        w.bytes = binary_value(size + 1, static_cast<std::uint32_t>(i));
      }
      {
        std::lock_guard lock(mutex);
        in_flight.emplace(key, w);
      }
      HttpResponse r;
      try {
        r = w.is_json ? write_json(port, key, json::parse(w.bytes), "disk") : write_raw(port, key, w.bytes, "disk");
      } catch (const std::exception& e) {
        return;  // the server is gone
      }
      std::lock_guard lock(mutex);
      if (r.status != 200) {
        if (!stop.load()) writer_error = "write " + key + ": " + describe(r);
        cv.notify_all();
        return;
      }
      acknowledged[key] = w;
      in_flight.reset();
      ++acks;
      cv.notify_all();
    }
  });

  {
    std::unique_lock lock(mutex);
    bool reached = cv.wait_for(lock, std::chrono::seconds(120),
                               [&] { return acks >= kill_after || !writer_error.empty(); });
    ASSERT_TRUE(reached) << "the writer made no progress";
  }
  ASSERT_TRUE(writer_error.empty()) << writer_error;
  std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20000));
  stop = true;
  server->kill9();
  writer.join();
  EXPECT_TRUE(writer_error.empty()) << writer_error;
  ASSERT_GE(acks, kill_after);

  server = std::make_unique<TestServer>(disk, kQuiet);
  const int port2 = server->port();
  EXPECT_TRUE(files_under(disk / "tmp").empty()) << "tmp/ not cleaned at start-up";
  json locations = get_locations(port2);
  for (const auto& [key, replicas] : locations.items()) {
    const bool known = acknowledged.contains(key) || (in_flight && in_flight->first == key);
    EXPECT_TRUE(known) << "key '" << key << "' was never written";
  }
  EXPECT_EQ(value_files(disk).size(), locations.size()) << "one value file per key expected";
  auto matches = [](const Written& w, const Bytes& b) {
    if (w.is_json) {
      json got = json::parse(b.data, nullptr, false);
      return b.format == "json" && !got.is_discarded() && got == json::parse(w.bytes);
    }
    return b.format == "bytes" && b.data == w.bytes;
  };
  for (const auto& [key, w] : acknowledged) {
    SCOPED_TRACE(key);
    ASSERT_TRUE(locations.contains(key)) << "acknowledged key lost";
    EXPECT_EQ(locations[key][0].value("location", ""), "disk");
    Bytes b = bring_back(port2, key);
    ASSERT_EQ(b.status, 200);
    const bool newest = matches(w, b);
    const bool unacked = in_flight && in_flight->first == key && matches(in_flight->second, b);
    EXPECT_TRUE(newest || unacked) << "content of " << b.data.size() << " bytes is neither the acknowledged value ("
                                   << w.bytes.size() << " bytes) nor the write in flight";
  }
  if (in_flight && !acknowledged.contains(in_flight->first) && locations.contains(in_flight->first)) {
    Bytes b = bring_back(port2, in_flight->first);
    EXPECT_TRUE(matches(in_flight->second, b)) << "the unacknowledged write is there but partial";
  }
  EXPECT_TRUE(healthy(port2));
}

// Keys that look like paths never become paths: everything stays inside the root.
TEST(PersistenceTest, PathLikeKeysStayInsideTheDiskRoot) {
  TempDir dir;
  const fs::path root = dir.path() / "nest" / "deeper" / "root";
  const std::vector<std::string> keys = {"../../etc/passwd", "/abs/path", "../../../../../../tmp/gswarm-escape",
                                         "..",               ".",         "a/../../b",
                                         "..\\..\\windows",  "values/../tmp/x.tmp", "/"};
  {
    TestServer server(root, kQuiet);
    const int port = server.port();
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto r = write_raw(port, keys[i], "payload " + std::to_string(i) + std::string(100, '\0'), "disk");
      ASSERT_TRUE(IsOk(r)) << keys[i];
      EXPECT_EQ(body_json(r).value("key", ""), keys[i]);
    }
    ASSERT_TRUE(IsOk(write_json(port, "../json", {{"k", 1}}, "disk")));
    // Nothing outside the root: the temp dir holds the root's ancestors and the root only.
    for (auto it = fs::recursive_directory_iterator(dir.path()); it != fs::recursive_directory_iterator(); ++it) {
      const fs::path rel = fs::relative(it->path(), dir.path());
      const std::string s = rel.string();
      const bool ancestor = s == "nest" || s == "nest/deeper" || s == "nest/deeper/root";
      const bool inside = s.starts_with("nest/deeper/root/");
      EXPECT_TRUE(ancestor || inside) << "file outside the disk root: " << s;
    }
    EXPECT_FALSE(fs::exists("/abs/path"));
    EXPECT_FALSE(fs::exists("/tmp/gswarm-escape"));
    // No file name carries a key.
    for (const auto& f : files_under(root)) {
      EXPECT_EQ(f.find("passwd"), std::string::npos) << f;
      EXPECT_EQ(f.find("abs"), std::string::npos) << f;
    }
    EXPECT_EQ(value_files(root).size(), keys.size() + 1);
    // Moved to DRAM and back to disk, before and after a restart.
    for (std::size_t i = 0; i < keys.size(); ++i) {
      Bytes b = bring_back(port, keys[i]);
      EXPECT_EQ(b.data, "payload " + std::to_string(i) + std::string(100, '\0')) << keys[i];
      ASSERT_TRUE(IsOk(move_key(port, keys[i], "disk"))) << keys[i];
    }
    EXPECT_EQ(server.stop(), 0);
  }
  TestServer server(root, kQuiet);
  const int port = server.port();
  EXPECT_EQ(get_stats(port).value("disk_keys", 0ull), keys.size() + 1);
  for (std::size_t i = 0; i < keys.size(); ++i) {
    auto loc = location_of(port, keys[i]);
    ASSERT_EQ(loc.status, 200) << keys[i] << ": " << describe(loc);
    EXPECT_EQ(body_json(loc).value("key", ""), keys[i]);
    Bytes b = bring_back(port, keys[i]);
    EXPECT_EQ(b.data, "payload " + std::to_string(i) + std::string(100, '\0')) << keys[i];
  }
  ASSERT_TRUE(IsOk(move_key(port, "../json", "dram")));
  EXPECT_EQ(body_json(read_json(port, "../json"))["value"], (json{{"k", 1}}));
  for (auto it = fs::recursive_directory_iterator(dir.path()); it != fs::recursive_directory_iterator(); ++it) {
    const std::string s = fs::relative(it->path(), dir.path()).string();
    EXPECT_TRUE(s == "nest" || s == "nest/deeper" || s == "nest/deeper/root" || s.starts_with("nest/deeper/root/"))
        << "file outside the disk root: " << s;
  }
}

// The file holding a disk key, from its read pointer (doc/disk-format.md).
struct FileRef {
  fs::path path;
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};
std::optional<FileRef> file_of(int port, const std::string& key) {
  json loc = body_json(location_of(port, key));
  if (!loc.is_object() || !loc.contains("locations") || loc["locations"].empty()) return std::nullopt;
  const json& rp = loc["locations"][0]["read_pointer"];
  if (!rp.is_object() || rp.value("kind", "") != "file") return std::nullopt;
  return FileRef{rp.value("path", ""), rp.value("offset", 0ull), rp.value("size", 0ull)};
}

void flip_byte(const fs::path& file, std::uint64_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  ASSERT_TRUE(f) << "cannot open " << file;
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

TEST(PersistenceTest, CorruptFilesAreDetected) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  const std::string good = binary_value(50000, 1);
  const std::string payload = binary_value(50000, 2);
  std::optional<FileRef> corrupt_payload, corrupt_header, truncated;
  {
    TestServer server(disk, kQuiet);
    const int port = server.port();
    ASSERT_TRUE(IsOk(write_raw(port, "good", good, "disk")));
    ASSERT_TRUE(IsOk(write_raw(port, "bad-payload", payload, "disk")));
    ASSERT_TRUE(IsOk(write_raw(port, "bad-header", binary_value(1000, 3), "disk")));
    ASSERT_TRUE(IsOk(write_raw(port, "truncated", binary_value(1000, 4), "disk")));
    corrupt_payload = file_of(port, "bad-payload");
    corrupt_header = file_of(port, "bad-header");
    truncated = file_of(port, "truncated");
    ASSERT_TRUE(corrupt_payload && corrupt_header && truncated) << "disk replicas need a file read pointer";
    EXPECT_EQ(corrupt_payload->size, payload.size());
    EXPECT_EQ(server.stop(), 0);
  }
  ASSERT_TRUE(fs::exists(corrupt_payload->path));
  {
    // The payload really is where the read pointer says.
    std::ifstream f(corrupt_payload->path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    ASSERT_EQ(all.size(), corrupt_payload->offset + payload.size());
    ASSERT_TRUE(all.substr(corrupt_payload->offset) == payload);
  }
  flip_byte(corrupt_payload->path, corrupt_payload->offset + 1234);
  flip_byte(corrupt_header->path, 8);  // payload size field
  fs::resize_file(truncated->path, fs::file_size(truncated->path) - 10);

  TestServer server(disk, {"--log-level", "off"});
  const int port = server.port();
  // Damaged headers and truncated files are dropped at start-up.
  EXPECT_TRUE(IsError(location_of(port, "bad-header"), 404, "not_found"));
  EXPECT_TRUE(IsError(location_of(port, "truncated"), 404, "not_found"));
  EXPECT_FALSE(fs::exists(corrupt_header->path)) << "dropped file left behind";
  EXPECT_FALSE(fs::exists(truncated->path)) << "dropped file left behind";
  EXPECT_EQ(get_stats(port).value("total_keys", 0ull), 2u);

  // The payload damage is found when the value is copied into memory.
  EXPECT_EQ(location_name(port, "bad-payload"), "disk");
  auto moved = move_key(port, "bad-payload", "dram");
  EXPECT_TRUE(IsError(moved, 500, "io_error"));
  EXPECT_NE(detail_of(moved).find("checksum"), std::string::npos) << detail_of(moved);
  // The key stays where it was, on disk, with one complete replica; DRAM holds nothing.
  auto loc = body_json(location_of(port, "bad-payload"));
  EXPECT_EQ(loc.value("location", ""), "disk") << loc.dump();
  EXPECT_EQ(loc["locations"].size(), 1u) << loc.dump();
  EXPECT_EQ(get_stats(port).value("dram_value_size", 1ull), 0u);
  EXPECT_TRUE(IsError(read_json(port, "bad-payload"), 409, "wrong_location"));

  // The server keeps serving, the good value included.
  EXPECT_TRUE(healthy(port));
  Bytes b = bring_back(port, "good");
  EXPECT_TRUE(b.data == good);
  ASSERT_TRUE(IsOk(write_raw(port, "after", "still works", "disk")));
  EXPECT_EQ(bring_back(port, "after").data, "still works");
  // Releasing the damaged key removes its file.
  EXPECT_TRUE(IsOk(release_key(port, "bad-payload")));
  EXPECT_FALSE(fs::exists(corrupt_payload->path));
}

}  // namespace
