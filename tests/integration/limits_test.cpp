// Limits pushed past: bodies that declare more than they send, more connections
// than allowed, a process out of descriptors, answers too large to build whole,
// keys that cost more than their values. Each time the server holds memory
// within its limits plus a small per-connection overhead, says why it refuses,
// and keeps serving.
#include <sys/resource.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <gswarm/client.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::ProcessOptions;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

constexpr std::uint64_t MiB = 1 << 20;

std::string raw_headers(const std::string& target, std::uint64_t length,
                        const std::string& type = kOctet) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: " + type +
         "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

std::uint64_t stat_of(int port, const char* field) { return get_stats(port).value(field, 0ull); }

// Bodies declared huge and never sent take no memory until their bytes come,
// and the memory they may take is bounded by --max-buffer-memory; nothing is
// reserved from Content-Length alone.
TEST(LimitsTest, HugeDeclaredBodiesHoldNoMemory) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-memory", "64MB", "--max-buffer-memory", "32MB",
                                          "--log-level", "error"});
  const int port = server.port();
  ASSERT_TRUE(IsOk(write_raw(port, "before", binary_value(1000, 1))));
  const std::uint64_t before = resident_bytes(server.pid());
  ASSERT_GT(before, 0u);

  std::vector<std::unique_ptr<RawConnection>> hanging;
  auto open_with = [&](const std::string& head) {
    auto c = std::make_unique<RawConnection>(port);
    ASSERT_TRUE(c->connected());
    ASSERT_TRUE(c->send(head + std::string(1024, 'x')));
    hanging.push_back(std::move(c));
  };
  for (int i = 0; i < 6; ++i) {
    open_with(
        raw_headers("/write_extended?key=disk" + std::to_string(i) + "&location=disk", 1ull << 30));
  }
  for (int i = 0; i < 6; ++i) open_with(raw_headers("/write", 200 * MiB, "application/json"));
  // A DRAM value over --max-memory is refused before its bytes are read.
  RawConnection dram(port);
  ASSERT_TRUE(dram.send(raw_headers("/write_extended?key=big&location=dram", 2ull << 30)));
  std::string refused = dram.receive();
  EXPECT_NE(refused.find("507"), std::string::npos) << refused;

  // Some disk uploads find the budget full and are answered 503 at once; the
  // others wait for bytes that never come.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_GT(stat_of(port, "buffer_memory"), 0u);
  const std::uint64_t during = resident_bytes(server.pid());
  // The documented bound: --max-buffer-memory plus 64 KiB per connection.
  EXPECT_LT(during, before + 32 * MiB + 13 * 64 * 1024 + 8 * MiB)
      << "resident went from " << before << " to " << during << " bytes";
  EXPECT_LE(stat_of(port, "buffer_memory"), 32 * MiB);
  EXPECT_TRUE(healthy(port));
  ASSERT_TRUE(IsOk(write_raw(port, "during", "still serving")));
  EXPECT_EQ(fetch_bytes(port, "during").data, "still serving");

  hanging.clear();
  ASSERT_TRUE(wait_until([&] { return stat_of(port, "buffer_memory") == 0; }))
      << "buffers held after the clients left: " << stat_of(port, "buffer_memory");
  EXPECT_EQ(fetch_bytes(port, "before").data, binary_value(1000, 1));
  EXPECT_TRUE(value_files(dir.path() / "disk").empty());
}

// A disk value larger than --max-memory and --max-buffer-memory streams through
// bounded buffers, arrives whole and is readable by its read pointer.
TEST(LimitsTest, ADiskValueLargerThanEveryMemoryLimitStreams) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-memory", "16MB", "--max-buffer-memory", "16MB"});
  const std::string value = binary_value(48 * MiB, 7);
  auto w = write_raw(server.port(), "huge", value, "disk");
  ASSERT_TRUE(IsOk(w));
  json rp = body_json(location_of(server.port(), "huge"))["locations"][0]["read_pointer"];
  ASSERT_EQ(rp.value("kind", ""), "file");
  std::ifstream in(rp["path"].get<std::string>(), std::ios::binary);
  in.seekg(rp["offset"].get<std::streamoff>());
  std::string back(value.size(), '\0');
  in.read(back.data(), static_cast<std::streamsize>(back.size()));
  EXPECT_TRUE(back == value) << "the streamed value differs";
}

// A JSON body the buffer budget cannot take is a 503 that says why; a body over
// --max-request-size is a 413 before anything is read.
TEST(LimitsTest, JsonBodiesAreCountedAndCapped) {
  TempDir dir;
  TestServer server(dir.path() / "disk",
                    {"--max-buffer-memory", "1MB", "--max-request-size", "4MB"});
  const int port = server.port();
  auto busy = write_json(port, "k", std::string(2 * MiB, 'x'));
  EXPECT_TRUE(IsError(busy, 503, "unavailable"));
  EXPECT_NE(detail_of(busy).find("--max-buffer-memory"), std::string::npos) << detail_of(busy);
  RawConnection over(port);
  ASSERT_TRUE(over.send(raw_headers("/write", 5 * MiB, "application/json")));
  std::string answer = over.receive();
  EXPECT_NE(answer.find("413"), std::string::npos) << answer;
  EXPECT_NE(answer.find("--max-request-size"), std::string::npos) << answer;
  ASSERT_TRUE(IsOk(write_json(port, "small", "fits")));
  EXPECT_EQ(stat_of(port, "buffer_memory"), 0u);
}

// Beyond --max-connections a client is answered 503 and closed; once others
// leave, new ones are served again. (The connections that fill the server have
// each sent a request: those that never did make room instead, see below.)
TEST(LimitsTest, ConnectionsBeyondTheCapAreAnswered503) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-connections", "20", "--log-level", "error"});
  const int port = server.port();
  std::vector<std::unique_ptr<RawConnection>> idle;
  for (int i = 0; i < 20; ++i) {
    idle.push_back(std::make_unique<RawConnection>(port));
    ASSERT_TRUE(idle.back()->connected());
    ASSERT_TRUE(idle.back()->send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
    ASSERT_EQ(idle.back()->receive().rfind("HTTP/1.1 200", 0), 0u);  // kept alive
  }
  int refused = 0;
  for (int i = 0; i < 100; ++i) {
    RawConnection extra(port);
    ASSERT_TRUE(extra.connected());
    extra.send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    std::string answer = extra.receive_all(5);
    if (answer.find("HTTP/1.1 503") == 0) {
      ++refused;
      EXPECT_NE(answer.find("--max-connections"), std::string::npos) << answer;
    }
  }
  EXPECT_EQ(refused, 100);
  idle.resize(10);
  EXPECT_TRUE(wait_until([&] { return healthy(port); }));
  EXPECT_LE(stat_of(port, "connections"), 11u);
  EXPECT_EQ(stat_of(port, "max_connections"), 20u);
}

// A flood of connections that send half a request and stop: each is closed
// --header-timeout after it connected, one address holds at most
// --max-pending-per-address of them (its newest push out its oldest), and when
// the server is full a new connection pushes out the oldest of them wherever it
// is from. So a client with the token still gets in while the flood goes on.
TEST(LimitsTest, AHalfRequestFloodDoesNotLockOutATokenHolder) {
  TempDir dir;
  TestServer server(dir.path() / "disk",
                    {"--token", "fl00d-t0ken", "--max-connections", "40", "--header-timeout", "3",
                     "--max-pending-per-address", "8", "--log-level", "error"});
  const int port = server.port();
  const std::map<std::string, std::string> auth = {{"Authorization", "Bearer fl00d-t0ken"}};
  // From one address: only its 8 newest stay.
  std::vector<std::unique_ptr<RawConnection>> flood;
  for (int i = 0; i < 100; ++i) {
    flood.push_back(std::make_unique<RawConnection>(port));
    ASSERT_TRUE(flood.back()->connected());
    ASSERT_TRUE(flood.back()->send("GET /stats HTTP/1.1\r\nHost: 127.0."));
  }
  int connections = -1;
  EXPECT_TRUE(wait_until([&] {
    auto stats = http_request(port, "GET", "/stats", "", "application/json", auth);
    connections = body_json(stats).value("connections", -1);
    return stats.status == 200 && connections <= 9;
  })) << connections << " connections: the flood's stayed";
  // From many addresses, more than the server serves at once: the token holder
  // pushes out the oldest of them.
  std::vector<std::unique_ptr<RawConnection>> wide;
  for (int i = 0; i < 60; ++i) {
    const std::string from = "127.0.1." + std::to_string(1 + i % 30);
    wide.push_back(std::make_unique<RawConnection>(port, 0, from.c_str()));
    ASSERT_TRUE(wide.back()->connected()) << from;
    wide.back()->send("GET /stats HTTP/1.1\r\n");
  }
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(IsOk(http_request(port, "GET", "/stats", "", "application/json", auth)))
        << "a token holder was locked out by half-sent requests";
  }
  // A head that trickles in forever is cut off at --header-timeout, with a 408.
  RawConnection trickle(port);
  const auto start = std::chrono::steady_clock::now();
  std::string answer;
  for (int i = 0; i < 50 && answer.empty(); ++i) {
    if (!trickle.send("X")) break;
    answer = trickle.receive(4096, 0.2);
  }
  if (answer.empty()) answer = trickle.receive(4096, 5);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(answer.rfind("HTTP/1.1 408", 0), 0u) << answer;
  EXPECT_LT(took, 5.0) << "a trickled head held its connection " << took << " s";
  EXPECT_TRUE(healthy(port));
}

// Out of file descriptors (more clients than the process may open), accepting
// backs off instead of spinning: little CPU, a log line every few seconds at
// most, a 503 for a waiting client, and service again once clients leave.
TEST(LimitsTest, OutOfDescriptorsAcceptingBacksOff) {
  TempDir dir;
  const fs::path log = dir.path() / "server.log";
  TestServer server(
      dir.path() / "disk",
      // Idle connections from one address would push out each other beyond
      // --max-pending-per-address, before the descriptors ran out.
      ProcessOptions{{"--max-connections", "1000", "--threads", "1", "--max-pending-per-address", "0"},
                     0, 96, log.string()});
  const int port = server.port();
  std::vector<std::unique_ptr<RawConnection>> clients;
  for (int i = 0; i < 150; ++i) clients.push_back(std::make_unique<RawConnection>(port));
  ASSERT_TRUE(wait_until([&] { return open_descriptors(server.pid()) >= 90; }));
  const double cpu_before = cpu_seconds(server.pid());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const double cpu_used = cpu_seconds(server.pid()) - cpu_before;
  EXPECT_LT(cpu_used, 1.0) << "the server spun for " << cpu_used << " s of CPU in 3 s";
  std::ifstream in(log);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t lines = 0;
  for (std::size_t at = text.find("accept failed"); at != std::string::npos;
       at = text.find("accept failed", at + 1)) {
    ++lines;
  }
  EXPECT_GE(lines, 1u) << "running out of descriptors should be logged";
  EXPECT_LE(lines, 2u) << "the accept failure was logged " << lines << " times in about 3 s";
  // Some waiting client was told why.
  int told = 0;
  for (auto& c : clients) {
    c->send("GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  }
  for (auto& c : clients)
    told += c->receive(4096, 0.2).find("out of file descriptors") != std::string::npos;
  EXPECT_GE(told, 1);
  clients.clear();
  EXPECT_TRUE(wait_until([&] { return healthy(port); }, 15)) << "no service after the clients left";
}

// Tiny pinned values are packed like small DRAM values: they cost no file
// descriptor each, so thousands of them leave the server able to accept.
TEST(LimitsTest, ManySmallPinnedValuesCostNoDescriptorEach) {
  TempDir dir;
  TestServer server(dir.path() / "disk", ProcessOptions{{"--log-level", "error"}, 0, 256, ""});
  const int port = server.port();
  gswarm::Client client(server.address());
  for (int i = 0; i < 3000; ++i) {
    auto w = client.write_bytes("p" + std::to_string(i), std::string_view("x"), "pinned_dram");
    ASSERT_TRUE(w) << i << ": " << w.error().message;
  }
  EXPECT_LT(open_descriptors(server.pid()), 100u);
  EXPECT_EQ(stat_of(port, "pinned_keys"), 3000u);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(healthy(port));
  ASSERT_TRUE(IsOk(move_key(port, "p1234", "dram")));
  EXPECT_EQ(fetch_bytes(port, "p1234").data, "x");
}

// GET /locations pages with ?limit=&cursor=: every key once, in bounded answers.
TEST(LimitsTest, LocationsArePaged) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  gswarm::Client client(server.address());
  std::set<std::string> all;
  for (int i = 0; i < 2500; ++i) {
    std::string key = "page/" + std::to_string(i);
    ASSERT_TRUE(client.write(key, "1"));
    all.insert(key);
  }
  std::set<std::string> seen;
  std::string cursor;
  int pages = 0;
  while (true) {
    std::string target = "/locations?limit=1000" + (cursor.empty() ? "" : "&cursor=" + cursor);
    auto r = http_request(port, "GET", target);
    ASSERT_TRUE(IsOk(r));
    json page = body_json(r);
    ASSERT_TRUE(page["locations"].is_object());
    EXPECT_LE(page["locations"].size(), 1000u);
    EXPECT_EQ(page["count"], page["locations"].size());
    for (const auto& [key, replicas] : page["locations"].items()) {
      EXPECT_TRUE(seen.insert(key).second) << "key listed twice: " << key;
      EXPECT_EQ(replicas[0]["location"], "dram");
    }
    ++pages;
    if (page["next_cursor"].is_null()) break;
    cursor = page["next_cursor"].get<std::string>();
    ASSERT_LT(pages, 10);
  }
  EXPECT_EQ(seen, all);
  EXPECT_EQ(pages, 3);
  EXPECT_TRUE(IsError(http_request(port, "GET", "/locations?cursor=zz"), 400, "bad_request"));
  EXPECT_TRUE(IsError(http_request(port, "GET", "/locations?limit=0"), 400, "bad_request"));
  EXPECT_TRUE(IsError(http_request(port, "GET", "/locations?limit=1000000"), 400, "bad_request"));
  // Without a limit: everything, in one answer built a piece at a time.
  EXPECT_EQ(get_locations(port).size(), all.size());
}

// Large answers are sent in pieces: clients that do not read leave the server
// holding a piece each, not their whole answers.
TEST(LimitsTest, LargeAnswersAreStreamedNotBuilt) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--log-level", "error"});
  const int port = server.port();
  const std::string value = binary_value(48 * MiB, 3);
  ASSERT_TRUE(IsOk(write_raw(port, "big", value, "dram", "numpy")));
  const std::uint64_t before = resident_bytes(server.pid());
  std::vector<std::unique_ptr<RawConnection>> readers;
  for (int i = 0; i < 6; ++i) {
    readers.push_back(std::make_unique<RawConnection>(port, 64 * 1024));
    ASSERT_TRUE(readers.back()->send("GET /read_extended/big HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const std::uint64_t during = resident_bytes(server.pid());
  // Building six base64 answers would take 6 x 64 MiB.
  EXPECT_LT(during, before + 6 * 8 * MiB + 16 * MiB) << before << " -> " << during;
  EXPECT_TRUE(healthy(port));
  // The answer is whole and right.
  std::string answer;
  std::size_t body_at = std::string::npos;
  std::size_t length = 0;
  while (body_at == std::string::npos || answer.size() < body_at + 4 + length) {
    std::string more = readers[0]->receive(1 << 20, 10);
    ASSERT_FALSE(more.empty()) << "the answer stopped after " << answer.size() << " bytes";
    answer += more;
    if (body_at == std::string::npos && (body_at = answer.find("\r\n\r\n")) != std::string::npos) {
      auto at = answer.find("Content-Length: ");
      ASSERT_LT(at, body_at);
      length = std::stoull(answer.substr(at + 16));
    }
  }
  json j = json::parse(answer.substr(body_at + 4), nullptr, false);
  ASSERT_TRUE(j.is_object()) << answer.substr(0, 300);
  EXPECT_EQ(j["serialized_value"]["type"], "numpy");
  auto decoded = b64_decode(j["serialized_value"]["data"].get<std::string>());
  ASSERT_TRUE(decoded);
  EXPECT_TRUE(*decoded == value);
}

// Key metadata is counted in DRAM and bounded by its own allowance: keys of 4000
// bytes with 1-byte values fill a 1 MB --max-key-metadata after about 250 of
// them, whatever --max-memory leaves.
TEST(LimitsTest, KeyMetadataHasItsOwnBoundedAllowance) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-memory", "1GB", "--max-key-metadata", "1MB"});
  const int port = server.port();
  gswarm::Client client(server.address());
  int stored = 0;
  std::uint64_t metadata = 0;  // 48 bytes and the key's own, per key
  gswarm::Error refusal;
  for (int i = 0; i < 2000; ++i) {
    std::string key = std::to_string(i) + std::string(3990, 'k');
    auto w = client.write_bytes(key, std::string_view("v"), i % 2 == 0 ? "dram" : "disk");
    if (!w) {
      refusal = w.error();
      break;
    }
    ++stored;
    metadata += 48 + key.size();
  }
  EXPECT_GT(stored, 200);
  EXPECT_LT(stored, 262) << "4000-byte keys are not counted against a 1 MB allowance";
  EXPECT_EQ(refusal.code, gswarm::ErrorCode::kOverLimit);
  EXPECT_NE(refusal.message.find("--max-key-metadata"), std::string::npos) << refusal.message;
  // Releasing keys gives their metadata back.
  ASSERT_TRUE(client.release(std::to_string(0) + std::string(3990, 'k')));
  metadata -= 48 + 3991;
  EXPECT_TRUE(client.write_bytes("again", std::string_view("v"), "disk"));
  metadata += 48 + 5;
  EXPECT_EQ(stat_of(port, "metadata_size"), metadata);
  // DRAM's use includes it.
  EXPECT_GE(stat_of(port, "current_dram_size"), metadata);
}

// A DRAM over its limit (lowered below what it holds) refuses DRAM values but
// still takes new keys on disk: their metadata has its own allowance.
TEST(LimitsTest, AFullDramStillTakesDiskWrites) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-memory", "64MB"});
  gswarm::Client client(server.address());
  ASSERT_TRUE(client.write_bytes("held", std::string(8 * MiB, 'h')));
  ASSERT_TRUE(client.set_max_memory("1MB"));
  auto refused = client.write_bytes("dram-value", std::string_view("v"), "dram");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, gswarm::ErrorCode::kOverLimit);
  EXPECT_NE(refused.error().message.find("--max-memory"), std::string::npos);
  for (int i = 0; i < 20; ++i) {
    auto w = client.write_bytes("disk:" + std::to_string(i), std::string(4096, 'd'), "disk");
    ASSERT_TRUE(w) << w.error().message;
  }
  EXPECT_TRUE(IsOk(location_of(server.port(), "disk:7")));
  auto held = client.read_bytes("held");
  ASSERT_TRUE(held) << held.error().message;
}

// --max-memory bounds the process: segments kept for reuse after values are
// released live in the room the limit leaves and are shown in /stats, lowering
// the limit gives them back at once, and resident memory stays within the
// limit plus a fixed overhead (the program, buffers, one connection's pieces)
// through cycles of writes, moves and releases of sizes that do not repeat.
TEST(LimitsTest, ResidentMemoryStaysWithinMaxMemoryAndCachesShrinkWithIt) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--max-memory", "256MB", "--log-level", "error"});
  gswarm::Client client(server.address());
  constexpr std::uint64_t kOverhead = 96 * MiB;
  std::uint64_t most = 0;
  for (int round = 0; round < 4; ++round) {
    const std::size_t size = (40 + 13 * round) * MiB;
    for (int i = 0; i < 3; ++i) {
      const std::string key = "r" + std::to_string(round) + ":" + std::to_string(i);
      ASSERT_TRUE(client.write_bytes(key, std::string(size, static_cast<char>('a' + i))));
    }
    const std::string moved = "r" + std::to_string(round) + ":1";
    ASSERT_TRUE(IsOk(move_key(server.port(), moved, "disk")));
    ASSERT_TRUE(IsOk(move_key(server.port(), moved, "dram")));
    most = std::max(most, resident_bytes(server.pid()));
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(IsOk(release_key(server.port(), "r" + std::to_string(round) + ":" + std::to_string(i))));
    }
    most = std::max(most, resident_bytes(server.pid()));
  }
  EXPECT_LE(most, 256 * MiB + kOverhead) << "resident at most " << most << " bytes";
  const json stats = get_stats(server.port());
  EXPECT_LE(stats.value("current_dram_size", 0ull) + stats.value("host_cache_bytes", 0ull),
            256 * MiB);
  EXPECT_GT(stats.value("host_cache_bytes", 0ull), 0u) << stats.dump();
  EXPECT_GT(stats.value("resident_memory", 0ull), 0u) << stats.dump();

  // Lowered: the cache shrinks to what the new limit leaves, at once.
  ASSERT_TRUE(client.set_max_memory("32MB"));
  EXPECT_LE(stat_of(server.port(), "host_cache_bytes"), 32 * MiB);
  EXPECT_LE(resident_bytes(server.pid()), 32 * MiB + kOverhead);
  EXPECT_TRUE(client.write_bytes("after", std::string(MiB, 'z')));
}

}  // namespace
