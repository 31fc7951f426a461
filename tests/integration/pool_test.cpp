// The data pool over HTTP against real servers: the spec's endpoints and shapes,
// every kind of source (files under --source-root, http:// URLs, KV keys,
// uploads) with their checksums, confinement of file sources, references,
// priorities on a saturated mover queue, transfers to another node, metadata
// across a kill -9, chunk keys guarded from the KV endpoints, and a table of bad
// input after which the server still serves and stored chunks are unchanged.
#include <netinet/in.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

constexpr std::uint64_t MiB = 1 << 20;

std::string checksum_of(const std::string& bytes) {
  char text[32];
  std::snprintf(text, sizeof text, "xxh3:%016llx",
                static_cast<unsigned long long>(XXH3_64bits(bytes.data(), bytes.size())));
  return text;
}

std::string random_bytes(std::size_t n, unsigned seed = 7) {
  std::mt19937_64 rng(seed);
  std::string out(n, '\0');
  for (auto& c : out) c = static_cast<char>(rng());
  return out;
}

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

HttpResponse create(int port, json body) {
  return http_request(port, "POST", "/api/v1/data", body.dump());
}

HttpResponse upload(int port, const std::string& bytes, const std::string& query = "device=dram") {
  return http_request(port, "POST", "/api/v1/data?" + query, bytes, kOctet);
}

HttpResponse info(int port, const std::string& id) {
  return http_request(port, "GET", "/api/v1/data/" + id);
}

std::string chunk_id(const HttpResponse& r) {
  EXPECT_EQ(r.status, 200) << describe(r);
  return body_json(r).value("chunk_id", "");
}

// Polls GET /operations/{id} until it is done or failed; its last answer.
json wait_operation(int port, std::uint64_t id) {
  for (int i = 0; i < 3000; ++i) {
    auto r = http_request(port, "GET", "/operations/" + std::to_string(id));
    json j = body_json(r);
    if (j.value("state", "") == "done" || j.value("state", "") == "failed") return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ADD_FAILURE() << "operation " << id << " did not end";
  return json::object();
}

std::string primary_device(int port, const std::string& id) {
  json j = body_json(info(port, id));
  if (!j.contains("locations") || j["locations"].empty()) return "(none)";
  return j["locations"][0].value("device", "");
}

// Where a KV key's primary replica is.
std::string primary(int port, const std::string& key) {
  return body_json(location_of(port, key)).value("location", "(none)");
}

// A one-request HTTP server for URL sources: answers `head` + `body` once,
// the body a byte every `per_byte` when that is not zero (a trickling source).
class OneShotHttp {
 public:
  OneShotHttp(std::string head, std::string body,
              std::chrono::milliseconds per_byte = std::chrono::milliseconds(0))
      : head_(std::move(head)), body_(std::move(body)), per_byte_(per_byte) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 4);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      int conn = ::accept(fd_, nullptr, nullptr);
      if (conn < 0) return;
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(conn, buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      request_line_ = request.substr(0, request.find("\r\n"));
      auto send_all = [conn](std::string_view bytes) {
        for (std::size_t at = 0; at < bytes.size();) {
          ssize_t n = ::send(conn, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
          if (n <= 0) return false;
          at += static_cast<std::size_t>(n);
        }
        return true;
      };
      if (per_byte_.count() == 0) {
        send_all(head_ + body_);
      } else if (send_all(head_)) {
        for (std::size_t i = 0; i < body_.size() && !stop_.load(); ++i) {
          std::this_thread::sleep_for(per_byte_);
          if (!send_all(std::string_view(body_).substr(i, 1))) break;
        }
      }
      ::close(conn);
    });
  }
  ~OneShotHttp() {
    stop_.store(true);
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
    thread_.join();
  }
  std::string url(const std::string& path) const { return "http://" + authority() + path; }
  std::string authority() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& request_line() const { return request_line_; }

 private:
  std::string head_, body_;
  std::chrono::milliseconds per_byte_;
  std::atomic<bool> stop_{false};
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string request_line_;
};

struct PoolServer {
  TempDir dir;
  fs::path sources = dir.path() / "sources";
  TestServer server;
  explicit PoolServer(std::vector<std::string> extra = {})
      : server((fs::create_directories(dir.path() / "sources"), dir.path() / "disk"),
               with_root(dir.path() / "sources", std::move(extra))) {}
  static std::vector<std::string> with_root(const fs::path& root, std::vector<std::string> a) {
    // Loopback sources only when named exactly: the test's own web servers.
    a.insert(a.end(), {"--source-root", root.string(), "--url-source-allow", "127.0.0.1",
                       "--log-level", "error"});
    return a;
  }
  int port() const { return server.port(); }
};

TEST(PoolTest, TheSpecHttpExampleRunsAndAnswersInTheOriginalShapes) {
  PoolServer p;
  const std::string bytes = random_bytes(3 * MiB);
  write_file(p.sources / "data.bin", bytes);
  const int port = p.port();

  auto listed = http_request(port, "GET", "/api/v1/data");
  ASSERT_TRUE(IsOk(listed));
  EXPECT_EQ(body_json(listed)["chunks"], json::array());

  auto created = create(port, {{"source", (p.sources / "data.bin").string()},
                               {"device", "dram"},
                               {"type", "input"},
                               {"format", "tensor"}});
  ASSERT_TRUE(IsOk(created));
  json c = body_json(created);
  EXPECT_EQ(c["status"], "success");
  EXPECT_EQ(c["size"], bytes.size());
  const std::string id = c["chunk_id"];
  EXPECT_TRUE(id.starts_with("chunk_") && id.size() == 22) << id;

  auto got = info(port, id);
  ASSERT_TRUE(IsOk(got));
  json chunk = body_json(got);
  EXPECT_EQ(chunk["chunk_id"], id);
  EXPECT_EQ(chunk["chunk_type"], "input");
  EXPECT_EQ(chunk["format"], "tensor");
  EXPECT_EQ(chunk["size"], bytes.size());
  ASSERT_EQ(chunk["locations"].size(), 1u);
  EXPECT_EQ(chunk["locations"][0]["device"], "dram");
  EXPECT_EQ(chunk["locations"][0]["status"], "complete");
  for (const char* field : {"created_by", "created_at", "last_accessed", "access_count", "checksum"}) {
    EXPECT_TRUE(chunk["metadata"].contains(field)) << field;
  }
  EXPECT_EQ(chunk["metadata"]["checksum"], checksum_of(bytes));
  EXPECT_EQ(chunk["metadata"]["access_count"], 1);
  EXPECT_EQ(chunk["references"], json::array());
  // The chunk's bytes are readable as its key.
  EXPECT_EQ(read_raw(port, id).body, bytes);

  auto moved = http_request(port, "POST", "/api/v1/data/" + id + "/move",
                            json({{"target_device", "disk"}, {"priority", "high"}}).dump());
  ASSERT_TRUE(IsOk(moved));
  json m = body_json(moved);
  EXPECT_EQ(m["status"], "success");
  EXPECT_EQ(m["chunk_id"], id);
  json op = wait_operation(port, m["task_id"].get<std::uint64_t>());
  EXPECT_EQ(op["state"], "done") << op.dump();
  EXPECT_EQ(op["bytes_total"], bytes.size());
  EXPECT_EQ(primary_device(port, id), "disk");

  auto filtered = body_json(http_request(port, "GET", "/api/v1/data?device=disk&type=input"));
  ASSERT_EQ(filtered["chunks"].size(), 1u);
  EXPECT_EQ(filtered["chunks"][0]["chunk_id"], id);
  EXPECT_TRUE(body_json(http_request(port, "GET", "/api/v1/data?device=dram"))["chunks"].empty());
  EXPECT_TRUE(body_json(http_request(port, "GET", "/api/v1/data?type=output"))["chunks"].empty());

  auto deleted = http_request(port, "DELETE", "/api/v1/data/" + id);
  ASSERT_TRUE(IsOk(deleted));
  EXPECT_TRUE(IsError(info(port, id), 404, "not_found"));
  EXPECT_TRUE(IsError(location_of(port, id), 404, "not_found"));  // its bytes went too
}

TEST(PoolTest, EverySourceIsChecksummedAsItStreamsIn) {
  PoolServer p;
  const int port = p.port();
  const std::string bytes = random_bytes(5 * MiB + 17, 11);
  write_file(p.sources / "f.bin", bytes);
  for (const char* device : {"dram", "pinned_dram", "disk"}) {
    auto from_file = create(port, {{"source", (p.sources / "f.bin").string()}, {"device", device}});
    const std::string id = chunk_id(from_file);
    EXPECT_EQ(body_json(from_file)["checksum"], checksum_of(bytes)) << device;
    EXPECT_EQ(primary_device(port, id), device);

    auto uploaded = upload(port, bytes, std::string("device=") + device + "&type=output&format=raw");
    const std::string up = chunk_id(uploaded);
    EXPECT_EQ(body_json(uploaded)["checksum"], checksum_of(bytes)) << device;
    json up_info = body_json(info(port, up));
    EXPECT_EQ(up_info["chunk_type"], "output");
    EXPECT_EQ(up_info["format"], "raw");
    EXPECT_EQ(up_info["locations"][0]["device"], device);
  }
  // An empty upload is a chunk of no bytes.
  auto empty = upload(port, "");
  EXPECT_EQ(body_json(empty)["size"], 0);
  EXPECT_EQ(body_json(empty)["checksum"], checksum_of(""));

  ASSERT_TRUE(IsOk(write_raw(port, "kv:source", bytes, "disk")));
  auto from_key = create(port, {{"source", "key:kv:source"}, {"device", "dram"}});
  EXPECT_EQ(body_json(from_key)["checksum"], checksum_of(bytes));
  EXPECT_EQ(read_raw(port, chunk_id(from_key)).body, bytes);
  EXPECT_EQ(primary(port, "kv:source"), "disk");  // the key stays as it was

  {
    OneShotHttp web("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(bytes.size()) +
                        "\r\nContent-Type: application/octet-stream\r\n\r\n",
                    bytes);
    auto from_url = create(port, {{"source", web.url("/weights/layer0.bin?v=2")}, {"device", "disk"}});
    EXPECT_EQ(body_json(from_url)["checksum"], checksum_of(bytes)) << describe(from_url);
    EXPECT_EQ(web.request_line(), "GET /weights/layer0.bin?v=2 HTTP/1.1");
    EXPECT_EQ(body_json(info(port, chunk_id(from_url)))["source"], web.url("/weights/layer0.bin?v=2"));
  }
}

TEST(PoolTest, FileSourcesAreConfinedToTheSourceRoots) {
  PoolServer p;
  const int port = p.port();
  write_file(p.dir.path() / "secret", "outside");
  fs::create_symlink(p.dir.path() / "secret", p.sources / "link");
  fs::create_directories(p.sources / "sub");
  fs::create_directory_symlink(p.dir.path(), p.sources / "sub" / "up");
  write_file(p.sources / "inside", "fine");
  fs::create_symlink(p.sources / "inside", p.sources / "link_inside");

  auto refused = [&](const std::string& path) {
    auto r = create(port, {{"source", path}});
    EXPECT_TRUE(IsError(r, 403, "forbidden")) << path;
    EXPECT_NE(detail_of(r).find("--source-root"), std::string::npos) << detail_of(r);
  };
  refused("/etc/passwd");
  refused((p.dir.path() / "secret").string());
  refused((p.sources / "link").string());                   // a symlink out of the root
  refused((p.sources / "sub" / "up" / "secret").string());  // through a linked directory
  refused((p.sources / ".." / "secret").string());          // dot-dot
  refused("file://" + (p.dir.path() / "secret").string());
  refused((p.dir.path() / "missing").string());             // outside: no hint it is missing
  refused((p.sources / "sub" / "up" / "missing").string());  // nor behind a link out
  // A FIFO is no file to read (and opening it must not wait for a writer).
  ASSERT_EQ(::mkfifo((p.sources / "fifo").c_str(), 0600), 0);
  EXPECT_TRUE(IsError(create(port, {{"source", (p.sources / "fifo").string()}}), 400, "bad_request"));

  EXPECT_TRUE(IsError(create(port, {{"source", (p.sources / "missing").string()}}), 404, "not_found"));
  EXPECT_TRUE(IsError(create(port, {{"source", "relative/path"}}), 400, "bad_request"));
  EXPECT_TRUE(IsError(create(port, {{"source", (p.sources / "sub").string()}}), 400, "bad_request"));
  auto fine = create(port, {{"source", (p.sources / "link_inside").string()}});  // stays inside
  EXPECT_EQ(body_json(fine)["size"], 4) << describe(fine);

  // Without --source-root no file is read at all.
  TempDir other;
  TestServer bare(other.path() / "disk", {"--log-level", "error"});
  EXPECT_TRUE(IsError(create(bare.port(), {{"source", (p.sources / "inside").string()}}), 403,
                      "forbidden"));
}

TEST(PoolTest, SourcesThatCannotBeReadAreClear4xx) {
  PoolServer p;
  const int port = p.port();
  EXPECT_TRUE(IsError(create(port, {{"source", "key:no such key"}}), 404, "not_found"));
  auto down = create(port, {{"source", "http://127.0.0.1:" + std::to_string(unused_port()) + "/x"}});
  EXPECT_TRUE(IsError(down, 400, "bad_request"));
  EXPECT_NE(detail_of(down).find("cannot fetch"), std::string::npos) << detail_of(down);
  {
    OneShotHttp web("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "");
    EXPECT_TRUE(IsError(create(port, {{"source", web.url("/gone")}}), 404, "not_found"));
  }
  {
    OneShotHttp web("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n");
    auto r = create(port, {{"source", web.url("/chunked")}});
    EXPECT_TRUE(IsError(r, 400, "bad_request"));
    EXPECT_NE(detail_of(r).find("Content-Length"), std::string::npos) << detail_of(r);
  }
  {
    // The body ends before its declared length: nothing is stored.
    OneShotHttp web("HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", "short");
    EXPECT_TRUE(IsError(create(port, {{"source", web.url("/short")}}), 400, "bad_request"));
  }
  EXPECT_TRUE(IsError(create(port, {{"source", "https://example.com/x"}}), 400, "bad_request"));
  EXPECT_TRUE(IsError(create(port, {{"source", "http://exa mple/x"}}), 400, "bad_request"));
  EXPECT_TRUE(body_json(http_request(port, "GET", "/api/v1/data"))["chunks"].empty());
  EXPECT_EQ(get_stats(port)["total_keys"], 0);
}

TEST(PoolTest, ReferencedChunksAreDeletedOnlyWithForce) {
  PoolServer p;
  const int port = p.port();
  const std::string id = chunk_id(upload(port, "weights"));
  const std::string refs = "/api/v1/data/" + id + "/references";
  auto added = http_request(port, "POST", refs, json({{"holder", "job-1"}}).dump());
  ASSERT_TRUE(IsOk(added));
  EXPECT_EQ(body_json(added)["references"], json::array({"job-1"}));
  ASSERT_TRUE(IsOk(http_request(port, "POST", refs, json({{"holder", "job/2"}}).dump())));
  ASSERT_TRUE(IsOk(http_request(port, "POST", refs, json({{"holder", "job-1"}}).dump())));  // no-op
  EXPECT_EQ(body_json(info(port, id))["references"], json::array({"job-1", "job/2"}));
  EXPECT_EQ(body_json(info(port, id))["metadata"]["reference_count"], 2);

  auto refused = http_request(port, "DELETE", "/api/v1/data/" + id);
  EXPECT_TRUE(IsError(refused, 409, "conflict"));
  EXPECT_NE(detail_of(refused).find("force"), std::string::npos);
  EXPECT_TRUE(IsOk(info(port, id)));

  EXPECT_TRUE(IsOk(http_request(port, "DELETE", refs + "/" + url_encode("job/2"))));
  EXPECT_TRUE(IsError(http_request(port, "DELETE", refs + "/job-9"), 404, "not_found"));
  EXPECT_TRUE(IsError(http_request(port, "POST", refs, json({{"holder", ""}}).dump()), 400, "bad_request"));
  EXPECT_TRUE(IsError(http_request(port, "POST", refs, json({{"holder", std::string(300, 'x')}}).dump()),
                      400, "bad_request"));
  EXPECT_TRUE(IsError(http_request(port, "DELETE", "/api/v1/data/" + id), 409, "conflict"));
  EXPECT_TRUE(IsOk(http_request(port, "DELETE", "/api/v1/data/" + id + "?force=true")));
  EXPECT_TRUE(IsError(info(port, id), 404, "not_found"));
}

TEST(PoolTest, ChunkKeysAreReadableButNotChangedThroughTheKvEndpoints) {
  PoolServer p;
  const int port = p.port();
  const std::string id = chunk_id(upload(port, "payload"));
  EXPECT_EQ(read_raw(port, id).body, "payload");
  EXPECT_TRUE(IsOk(location_of(port, id)));
  EXPECT_TRUE(IsError(write_json(port, id, 1), 409, "conflict"));
  EXPECT_TRUE(IsError(write_raw(port, id, "other"), 409, "conflict"));
  EXPECT_TRUE(IsError(release_key(port, id), 409, "conflict"));
  EXPECT_TRUE(IsError(move_key(port, id, "disk"), 409, "conflict"));
  // A copy into another tier of this node would escape the chunk's metadata.
  EXPECT_TRUE(IsError(http_request(port, "POST", "/send_extended",
                                   json({{"key", id}, {"target", "localhost:disk"}}).dump()),
                      409, "conflict"));
  EXPECT_EQ(read_raw(port, id).body, "payload");
  EXPECT_EQ(body_json(location_of(port, id))["locations"].size(), 1u);
  // Keys named like chunk ids are the pool's even before such a chunk exists:
  // bytes written under one could be taken for a chunk's (or become one's).
  const std::string lookalike = "chunk_0123456789abcdef";
  for (const auto& refused : {write_json(port, lookalike, 1), write_raw(port, lookalike, "x"),
                              http_request(port, "POST", "/transfers",
                                           json({{"key", lookalike}, {"size", 1}}).dump())}) {
    EXPECT_TRUE(IsError(refused, 409, "conflict"));
    EXPECT_NE(detail_of(refused).find("named like a data pool chunk"), std::string::npos)
        << detail_of(refused);
  }
  EXPECT_TRUE(IsError(location_of(port, lookalike), 404, "not_found"));
}

// A transfer may not name a chunk whose create is still running: the bytes it
// would commit later would replace the chunk's under its old size and checksum.
TEST(PoolTest, ATransferCannotReplaceTheBytesOfAChunkBeingCreated) {
  PoolServer p;
  const int port = p.port();
  const std::string bytes = random_bytes(64 * MiB, 5);
  ASSERT_TRUE(IsOk(write_raw(port, "src", bytes, "disk")));
  auto accepted = http_request(port, "POST", "/api/v1/data",
                               json({{"source", "key:src"}, {"device", "disk"}, {"wait", false}}).dump());
  ASSERT_TRUE(IsOk(accepted, 202));
  const std::string id = body_json(accepted)["chunk_id"];
  auto begun = http_request(port, "POST", "/transfers",
                            json({{"key", id}, {"size", 8}, {"location", "dram"}}).dump());
  EXPECT_TRUE(IsError(begun, 409, "conflict")) << describe(begun);
  ASSERT_EQ(wait_operation(port, body_json(accepted)["task_id"])["state"], "done");
  EXPECT_EQ(body_json(info(port, id))["checksum"], checksum_of(bytes));
  EXPECT_TRUE(IsError(http_request(port, "POST", "/transfers",
                                   json({{"key", id}, {"size", 8}}).dump()),
                      409, "conflict"));
}

TEST(PoolTest, HighPriorityMovesAreTakenFirstFromASaturatedQueue) {
  // One mover, slowed down, so the queue fills while the first move runs.
  PoolServer p({"--move-threads", "1", "--move-rate-limit", "8MB"});
  const int port = p.port();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(chunk_id(upload(port, random_bytes(8 * MiB, i))));
  auto move = [&](const std::string& id, const char* priority) {
    auto r = http_request(port, "POST", "/api/v1/data/" + id + "/move",
                          json({{"target_device", "disk"}, {"priority", priority}}).dump());
    EXPECT_TRUE(IsOk(r));
    return body_json(r)["task_id"].get<std::uint64_t>();
  };
  const auto running = move(ids[0], "low");
  // Wait until it occupies the only mover, then queue the others.
  for (int i = 0; i < 500; ++i) {
    if (body_json(http_request(port, "GET", "/operations/" + std::to_string(running)))["state"] ==
        "running") {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto low = move(ids[1], "low");
  const auto normal = move(ids[2], "normal");
  const auto high = move(ids[3], "high");
  json ops[] = {wait_operation(port, running), wait_operation(port, low),
                wait_operation(port, normal), wait_operation(port, high)};
  for (const auto& op : ops) ASSERT_EQ(op["state"], "done") << op.dump();
  const double started_high = ops[3]["started"], started_normal = ops[2]["started"],
               started_low = ops[1]["started"], started_first = ops[0]["started"];
  EXPECT_LT(started_first, started_high);
  EXPECT_LT(started_high, started_normal);
  EXPECT_LT(started_normal, started_low);
  for (const auto& id : ids) EXPECT_EQ(primary_device(port, id), "disk");
}

TEST(PoolTest, DiskChunksKeepTheirMetadataAcrossKillNine) {
  TempDir dir;
  fs::create_directories(dir.path() / "src");
  write_file(dir.path() / "src" / "w.bin", random_bytes(MiB));
  std::vector<std::string> args = {"--source-root", (dir.path() / "src").string(), "--log-level",
                                   "error", "--node-name", "alpha"};
  std::string on_disk, in_dram, moved_to_disk;
  json before;
  {
    TestServer s(dir.path() / "disk", args);
    on_disk = chunk_id(create(s.port(), {{"source", (dir.path() / "src" / "w.bin").string()},
                                         {"device", "disk"},
                                         {"type", "intermediate"},
                                         {"format", "safetensors"}}));
    ASSERT_TRUE(IsOk(http_request(s.port(), "POST", "/api/v1/data/" + on_disk + "/references",
                                  json({{"holder", "job-7"}}).dump())));
    in_dram = chunk_id(upload(s.port(), "volatile"));
    moved_to_disk = chunk_id(upload(s.port(), "moved"));
    auto m = http_request(s.port(), "POST", "/api/v1/data/" + moved_to_disk + "/move",
                          json({{"target_device", "disk"}}).dump());
    ASSERT_EQ(wait_operation(s.port(), body_json(m)["task_id"])["state"], "done");
    before = body_json(info(s.port(), on_disk));
    s.kill9();
  }
  // Something planted in the metadata directory is ignored or dropped, never fatal.
  write_file(dir.path() / "disk" / "pool" / "chunk_00000000000000aa.json", "{not json");
  write_file(dir.path() / "disk" / "pool" / "chunk_00000000000000bb.json",
             json({{"chunk_id", "chunk_00000000000000bb"}, {"size", 5}}).dump());
  TestServer s(dir.path() / "disk", args);
  json after = body_json(info(s.port(), on_disk));
  for (const char* field : {"chunk_type", "format", "size", "checksum", "source", "references"}) {
    EXPECT_EQ(after[field], before[field]) << field;
  }
  EXPECT_EQ(after["metadata"]["created_by"], "alpha");
  EXPECT_EQ(after["metadata"]["created_at"], before["metadata"]["created_at"]);
  EXPECT_EQ(after["locations"][0]["device"], "disk");
  EXPECT_TRUE(IsError(http_request(s.port(), "DELETE", "/api/v1/data/" + on_disk), 409, "conflict"));
  EXPECT_EQ(primary_device(s.port(), moved_to_disk), "disk");
  EXPECT_TRUE(IsError(info(s.port(), in_dram), 404, "not_found"));  // DRAM does not survive
  EXPECT_EQ(body_json(http_request(s.port(), "GET", "/api/v1/data"))["chunks"].size(), 2u);
  EXPECT_FALSE(fs::exists(dir.path() / "disk" / "pool" / "chunk_00000000000000aa.json"));
  EXPECT_FALSE(fs::exists(dir.path() / "disk" / "pool" / "chunk_00000000000000bb.json"));
  // Deleted chunks do not come back.
  ASSERT_TRUE(IsOk(http_request(s.port(), "DELETE", "/api/v1/data/" + moved_to_disk)));
  s.stop();
  TestServer again(dir.path() / "disk", args);
  EXPECT_TRUE(IsError(info(again.port(), moved_to_disk), 404, "not_found"));
  EXPECT_TRUE(IsOk(info(again.port(), on_disk)));
}

TEST(PoolTest, TransfersCarryTheMetadataAndDeleteTheSourceOnlyOnceAcknowledged) {
  TempDir dir;
  TestServer target(dir.path() / "b", {"--node-name", "node2", "--log-level", "error"});
  TestServer source(dir.path() / "a", {"--node-name", "node1", "--log-level", "error", "--peer",
                                       "node2=127.0.0.1:" + std::to_string(target.port()), "--peer",
                                       "node3=127.0.0.1:" + std::to_string(unused_port())});
  const std::string bytes = random_bytes(2 * MiB, 3);
  const std::string id = chunk_id(upload(source.port(), bytes, "device=disk&type=output"));
  ASSERT_TRUE(IsOk(http_request(source.port(), "POST", "/api/v1/data/" + id + "/references",
                                json({{"holder", "job-1"}}).dump())));
  auto transfer = [&](json body) {
    return http_request(source.port(), "POST", "/api/v1/data/" + id + "/transfer", body.dump());
  };

  // Referenced: delete_source is refused before anything travels.
  EXPECT_TRUE(IsError(transfer({{"target_node", "node2"}, {"delete_source", true}}), 409, "conflict"));
  // A node that is down: the task fails, the source is whole.
  auto to_down = transfer({{"target_node", "node3"}, {"target_device", "disk"}});
  ASSERT_TRUE(IsOk(to_down));
  EXPECT_EQ(wait_operation(source.port(), body_json(to_down)["task_id"])["state"], "failed");
  EXPECT_TRUE(IsError(transfer({{"target_node", "node9"}}), 404, "not_found"));
  EXPECT_EQ(read_raw(target.port(), id).status, 404);

  ASSERT_TRUE(IsOk(http_request(source.port(), "DELETE",
                                "/api/v1/data/" + id + "/references/job-1")));
  auto moved = transfer({{"target_node", "node2"}, {"target_device", "disk"}, {"delete_source", true}});
  ASSERT_TRUE(IsOk(moved));
  json m = body_json(moved);
  EXPECT_EQ(m["status"], "success");
  json op = wait_operation(source.port(), m["task_id"]);
  ASSERT_EQ(op["state"], "done") << op.dump();
  EXPECT_EQ(op["kind"], "transfer");
  EXPECT_TRUE(IsError(info(source.port(), id), 404, "not_found"));

  json there = body_json(info(target.port(), id));
  EXPECT_EQ(there["chunk_type"], "output");
  EXPECT_EQ(there["checksum"], checksum_of(bytes));
  EXPECT_EQ(there["metadata"]["created_by"], "node1");
  EXPECT_EQ(there["locations"][0]["device"], "disk");
  EXPECT_TRUE(IsError(move_key(target.port(), id, "dram"), 409, "conflict"));  // a chunk there too
  auto m2 = http_request(target.port(), "POST", "/api/v1/data/" + id + "/move",
                         json({{"target_device", "dram"}}).dump());
  ASSERT_EQ(wait_operation(target.port(), body_json(m2)["task_id"])["state"], "done");
  EXPECT_EQ(read_raw(target.port(), id).body, bytes);

  // The same chunk again: the target already has it.
  const std::string again = chunk_id(upload(source.port(), bytes));
  auto twice = transfer({{"target_node", "node2"}});
  EXPECT_TRUE(IsError(twice, 404, "not_found"));  // the source chunk is gone
  auto t = http_request(source.port(), "POST", "/api/v1/data/" + again + "/transfer",
                        json({{"target_node", "node2"}}).dump());
  ASSERT_EQ(wait_operation(source.port(), body_json(t)["task_id"])["state"], "done");
  auto t2 = http_request(source.port(), "POST", "/api/v1/data/" + again + "/transfer",
                         json({{"target_node", "node2"}}).dump());
  json failed = wait_operation(source.port(), body_json(t2)["task_id"]);
  EXPECT_EQ(failed["state"], "failed");
  EXPECT_EQ(failed["error"]["code"], "conflict") << failed.dump();
  EXPECT_TRUE(IsOk(info(source.port(), again)));
}

// kill -9 of the target or the source while a chunk's transfer ends: after the
// target restarts, every key there named like a chunk is a chunk, with its
// metadata and its checksum; none is bytes without metadata.
TEST(PoolTest, KillingEitherSideDuringAChunkTransferLeavesNoStrayKey) {
  TempDir dir;
  const std::string bytes = random_bytes(192 * MiB, 9);
  auto target = std::make_unique<TestServer>(dir.path() / "b", quiet({}));
  auto start_source = [&] {
    return std::make_unique<TestServer>(
        dir.path() / "a", std::vector<std::string>{"--log-level", "error", "--parallel-threshold", "16MB"});
  };
  auto source = start_source();
  const std::string id = chunk_id(upload(source->port(), bytes, "device=disk"));
  auto transferred = [&] {
    return http_request(source->port(), "POST", "/api/v1/data/" + id + "/transfer",
                        json({{"target_node", target->address()}, {"target_device", "disk"}}).dump());
  };
  // Where the kill lands: as the ranges arrive, or once the last one has
  // (the commit is under way or done), killing the target or the source.
  struct Round {
    bool kill_target;
    bool after_ranges;
  };
  for (const Round round : {Round{true, false}, Round{true, true}, Round{false, true}, Round{false, false}}) {
    SCOPED_TRACE(std::string(round.kill_target ? "target" : "source") + " killed " +
                 (round.after_ranges ? "after the ranges" : "during the ranges"));
    auto started = transferred();
    ASSERT_TRUE(IsOk(started));
    const int target_port = target->port();
    bool seen = false;
    ASSERT_TRUE(wait_until([&] {
      const int incoming = get_stats(target_port)["incoming_transfers"];
      if (incoming > 0) seen = true;
      return round.after_ranges ? seen && incoming == 0 : incoming > 0;
    }, 60)) << http_request(source->port(), "GET", "/operations/" + std::to_string(body_json(started)["task_id"].get<std::uint64_t>())).body;
    (round.kill_target ? *target : *source).kill9();
    if (round.kill_target) {
      target = std::make_unique<TestServer>(dir.path() / "b", quiet({}));
    } else {
      source = start_source();
      ASSERT_TRUE(IsOk(info(source->port(), id))) << "the source's chunk survives its restart";
    }
    const int port = target->port();
    EXPECT_TRUE(wait_until([&] { return get_stats(port)["incoming_transfers"] == 0; }, 30));
    // A commit the target had begun (every range was in) goes on without its
    // sender, and lands.
    if (!round.kill_target && round.after_ranges) {
      EXPECT_TRUE(wait_until([&] { return info(port, id).status == 200; }, 60));
    } else if (!round.kill_target) {
      (void)wait_until([&] { return info(port, id).status == 200; }, 2);
    }
    const json locations = get_locations(port);  // items() of a temporary would dangle
    for (const auto& [key, replicas] : locations.items()) {
      if (key.rfind("chunk_", 0) != 0) continue;
      auto there = info(port, key);
      ASSERT_TRUE(IsOk(there)) << key << " is bytes without chunk metadata";
      EXPECT_EQ(body_json(there)["checksum"], checksum_of(bytes));
      ASSERT_TRUE(IsOk(http_request(port, "DELETE", "/api/v1/data/" + key + "?force=true")));
    }
  }
}

TEST(PoolTest, AsynchronousCreatesNameTheirChunkAndReportProgress) {
  PoolServer p;
  const std::string bytes = random_bytes(4 * MiB, 5);
  write_file(p.sources / "a.bin", bytes);
  auto r = create(p.port(), {{"source", (p.sources / "a.bin").string()}, {"device", "disk"}, {"wait", false}});
  ASSERT_TRUE(IsOk(r, 202));
  json j = body_json(r);
  json op = wait_operation(p.port(), j["task_id"]);
  EXPECT_EQ(op["state"], "done");
  EXPECT_EQ(op["kind"], "create");
  EXPECT_EQ(op["key"], j["chunk_id"]);
  EXPECT_EQ(op["bytes_done"], bytes.size());
  EXPECT_EQ(body_json(info(p.port(), j["chunk_id"]))["checksum"], checksum_of(bytes));
}

TEST(PoolTest, AGigabyteCreateStreamsThroughBoundedBuffers) {
  PoolServer p({"--max-memory", "64MB"});
  // A sparse file: 1 GiB to read, nothing to write beforehand.
  {
    std::ofstream f(p.sources / "big.bin", std::ios::binary);
    f.seekp((1ll << 30) - 1);
    f.put('x');
  }
  auto r = create(p.port(), {{"source", (p.sources / "big.bin").string()}, {"device", "disk"}});
  ASSERT_TRUE(IsOk(r));
  EXPECT_EQ(body_json(r)["size"], 1ull << 30);
  // The peak resident memory stayed far below the value's size.
  std::ifstream status("/proc/" + std::to_string(p.server.pid()) + "/status");
  std::string line;
  std::uint64_t hwm_kb = 0;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) hwm_kb = std::stoull(line.substr(6));
  }
  EXPECT_GT(hwm_kb, 0u);
  EXPECT_LT(hwm_kb, 256u * 1024) << "peak RSS " << hwm_kb << " kB";
  // Into DRAM it does not fit: refused before any byte is read.
  auto dram = create(p.port(), {{"source", (p.sources / "big.bin").string()}, {"device", "dram"}});
  EXPECT_TRUE(IsError(dram, 507, "over_limit"));
}

TEST(PoolTest, SourcesOverTheValueLimitAreRefusedBeforeTheirBytes) {
  PoolServer p({"--max-value-size", "1MB"});
  write_file(p.sources / "two.bin", random_bytes(2 * MiB));
  auto r = create(p.port(), {{"source", (p.sources / "two.bin").string()}, {"device", "disk"}});
  EXPECT_TRUE(IsError(r, 413, "too_large"));
  EXPECT_TRUE(body_json(http_request(p.port(), "GET", "/api/v1/data"))["chunks"].empty());
}

// A create the server refuses before it reads a byte (a file outside
// --source-root, a source over the limit) lists no failed operation: the
// upload a client makes next is the only one there is.
TEST(PoolTest, ARefusedSourceLeavesNoOperation) {
  PoolServer p({"--max-value-size", "1MB"});
  TempDir elsewhere;
  write_file(elsewhere.path() / "outside.bin", "bytes");
  write_file(p.sources / "two.bin", random_bytes(2 * MiB));
  for (const bool wait : {true, false}) {
    EXPECT_TRUE(IsError(create(p.port(), {{"source", (elsewhere.path() / "outside.bin").string()}, {"wait", wait}}),
                        403, "forbidden"));
    EXPECT_TRUE(IsError(create(p.port(), {{"source", (p.sources / "two.bin").string()}, {"wait", wait}}), 413,
                        "too_large"));
  }
  auto listed = body_json(http_request(p.port(), "GET", "/operations"));
  EXPECT_EQ(listed["operations"], json::array()) << listed.dump();
}

// URL sources are fetched only from hosts --url-source-allow names: without
// it none (a client could otherwise read through the server what only the
// server reaches), and loopback or link-local addresses only from a host named
// exactly, never through a wildcard. Nothing is fetched when refused.
TEST(PoolTest, UrlSourcesAreFetchedOnlyFromAllowedHosts) {
  auto refused_with = [](std::vector<std::string> allow, const std::string& url,
                         const std::string& because) {
    SCOPED_TRACE(url);
    TempDir dir;
    allow.insert(allow.end(), {"--log-level", "error"});
    TestServer server(dir.path() / "disk", allow);
    auto r = create(server.port(), {{"source", url}});
    EXPECT_TRUE(IsError(r, 403, "forbidden"));
    EXPECT_NE(detail_of(r).find(because), std::string::npos) << detail_of(r);
    EXPECT_EQ(body_json(http_request(server.port(), "GET", "/operations"))["operations"],
              json::array());
  };
  OneShotHttp web("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", "hello");
  refused_with({}, web.url("/a"), "--url-source-allow");
  refused_with({"--url-source-allow", "data.example.com"}, web.url("/a"), "does not allow");
  refused_with({"--url-source-allow", "127.0.0.*"}, web.url("/a"), "loopback");
  refused_with({"--url-source-allow", "*"}, web.url("/a"), "loopback");
  refused_with({"--url-source-allow", "*"}, "http://[::1]:9/a", "loopback");
  refused_with({"--url-source-allow", "*"}, "http://169.254.169.254/latest/meta-data", "link-local");
  refused_with({"--url-source-allow", "127.0.0.1:1"}, web.url("/a"), "does not allow");
  EXPECT_EQ(web.request_line(), "") << "a refused source was fetched";
  // Named exactly (with or without its port): fetched.
  TempDir dir;
  TestServer server(dir.path() / "disk",
                    {"--url-source-allow", web.authority(), "--log-level", "error"});
  auto r = create(server.port(), {{"source", web.url("/a")}});
  ASSERT_TRUE(IsOk(r)) << describe(r);
  EXPECT_EQ(web.request_line(), "GET /a HTTP/1.1");
}

// A source that trickles (a byte every 100 ms) ends at --source-timeout, not
// when each byte is late; at most half the movers fetch URL sources, so a
// move of another key runs meanwhile.
TEST(PoolTest, ATricklingSourceEndsAtTheSourceTimeoutAndMovesGoOn) {
  PoolServer p({"--source-timeout", "2", "--move-threads", "2", "--peer-timeout", "30"});
  const int port = p.port();
  ASSERT_TRUE(IsOk(write_raw(port, "other", random_bytes(64 * 1024))));
  OneShotHttp slow("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", std::string(1000, 's'),
                   std::chrono::milliseconds(100));
  auto r = create(port, {{"source", slow.url("/slow")}, {"wait", false}});
  ASSERT_TRUE(IsOk(r, 202)) << describe(r);
  const std::uint64_t task = body_json(r)["task_id"];
  // One fetch is all two movers give URL sources.
  OneShotHttp second("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", "x");
  EXPECT_TRUE(IsError(create(port, {{"source", second.url("/b")}}), 429, "too_many_requests"));
  // A move while the source trickles: done before the fetch ends.
  ASSERT_TRUE(IsOk(move_key(port, "other", "disk")));
  EXPECT_EQ(primary(port, "other"), "disk");
  EXPECT_EQ(body_json(http_request(port, "GET", "/operations/" + std::to_string(task)))["state"],
            "running");
  json done = wait_operation(port, task);
  EXPECT_EQ(done.value("state", ""), "failed") << done.dump();
  EXPECT_NE(done.dump().find("--source-timeout"), std::string::npos) << done.dump();
  EXPECT_TRUE(body_json(http_request(port, "GET", "/api/v1/data"))["chunks"].empty());
  // The place it held is free again.
  OneShotHttp third("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n", "y");
  EXPECT_TRUE(IsOk(create(port, {{"source", third.url("/c")}})));
}

TEST(PoolTest, StoppingEndsCreatesNoClientWaitsFor) {
  PoolServer p({"--peer-timeout", "120"});
  SilentListener silent;  // accepts, never answers
  auto r = create(p.port(), {{"source", "http://" + silent.address() + "/x"}, {"wait", false}});
  ASSERT_TRUE(IsOk(r, 202));
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(p.server.stop(), 0);
  // Well under the 120 s the source may stay silent before it is given up.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(30));
}

TEST(PoolTest, ListingsAreOldestFirstLimitedAndFiltered) {
  PoolServer p;
  const int port = p.port();
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    ids.push_back(chunk_id(upload(port, "c" + std::to_string(i),
                                  i % 3 == 0 ? "device=disk&type=output" : "device=dram")));
  }
  json all = body_json(http_request(port, "GET", "/api/v1/data"));
  ASSERT_EQ(all["count"], 30);
  EXPECT_EQ(all["truncated"], false);
  for (std::size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(all["chunks"][i]["chunk_id"], ids[i]);
  json first = body_json(http_request(port, "GET", "/api/v1/data?limit=10"));
  EXPECT_EQ(first["count"], 10);
  EXPECT_EQ(first["truncated"], true);
  EXPECT_EQ(first["chunks"][9]["chunk_id"], ids[9]);
  json disk = body_json(http_request(port, "GET", "/api/v1/data?device=disk"));
  EXPECT_EQ(disk["count"], 10);
  json outputs = body_json(http_request(port, "GET", "/api/v1/data?type=output&device=dram"));
  EXPECT_EQ(outputs["count"], 0);
  EXPECT_EQ(body_json(http_request(port, "GET", "/api/v1/data?type=input"))["count"], 20);
}

TEST(PoolTest, BadInputIsAClear4xxAndTheServerKeepsServing) {
  PoolServer p;
  const int port = p.port();
  const std::string bytes = random_bytes(MiB, 9);
  write_file(p.sources / "ok.bin", bytes);
  const std::string id = chunk_id(create(port, {{"source", (p.sources / "ok.bin").string()}}));
  const std::string file = (p.sources / "ok.bin").string();
  const std::string missing = "/api/v1/data/chunk_ffffffffffffffff";

  struct Case {
    const char* what;
    std::string method, target, body;
    int status;
    const char* code;
  };
  const Case cases[] = {
      {"unknown chunk", "GET", missing, "", 404, "not_found"},
      {"unknown chunk move", "POST", missing + "/move", R"({"target_device":"disk"})", 404, "not_found"},
      {"unknown chunk transfer", "POST", missing + "/transfer", R"({"target_node":"x"})", 404, "not_found"},
      {"unknown chunk delete", "DELETE", missing, "", 404, "not_found"},
      {"not a chunk id", "GET", "/api/v1/data/..%2F..%2Fetc", "", 404, "no_route"},
      {"not a chunk id either", "GET", "/api/v1/data/not-a-chunk", "", 404, "not_found"},
      {"bad device", "POST", "/api/v1/data", json({{"source", file}, {"device", "tpu"}}).dump(), 400, "invalid_location"},
      {"gpu without a GPU", "POST", "/api/v1/data", json({{"source", file}, {"device", "gpu"}}).dump(), 400, "device_unavailable"},
      {"absent device", "POST", "/api/v1/data", json({{"source", file}, {"device", "device:7"}}).dump(), 400, "device_unavailable"},
      {"bad type", "POST", "/api/v1/data", json({{"source", file}, {"type", "weights"}}).dump(), 400, "bad_request"},
      {"bad format", "POST", "/api/v1/data", json({{"source", file}, {"format", "a b"}}).dump(), 400, "bad_request"},
      {"missing source", "POST", "/api/v1/data", R"({"device":"dram"})", 400, "bad_request"},
      {"empty source", "POST", "/api/v1/data", R"({"source":""})", 400, "bad_request"},
      {"source not a string", "POST", "/api/v1/data", R"({"source":7})", 400, "bad_request"},
      {"source outside roots", "POST", "/api/v1/data", R"({"source":"/etc/hostname"})", 403, "forbidden"},
      {"not JSON", "POST", "/api/v1/data", "{source", 400, "bad_request"},
      {"not an object", "POST", "/api/v1/data", "[1]", 400, "bad_request"},
      {"bad upload device", "POST", "/api/v1/data?device=nowhere", "", 400, "invalid_location"},
      {"bad priority", "POST", "/api/v1/data/" + id + "/move", R"({"target_device":"disk","priority":"urgent"})", 400, "bad_request"},
      {"missing target device", "POST", "/api/v1/data/" + id + "/move", R"({"priority":"high"})", 400, "bad_request"},
      {"bad move device", "POST", "/api/v1/data/" + id + "/move", R"({"target_device":"cloud"})", 400, "invalid_location"},
      {"missing target node", "POST", "/api/v1/data/" + id + "/transfer", R"({"target_device":"disk"})", 400, "bad_request"},
      {"transfer to self", "POST", "/api/v1/data/" + id + "/transfer", R"({"target_node":"localhost"})", 400, "bad_request"},
      {"bad delete_source", "POST", "/api/v1/data/" + id + "/transfer", R"({"target_node":"x","delete_source":"yes"})", 400, "bad_request"},
      {"unknown action", "POST", "/api/v1/data/" + id + "/explode", "{}", 404, "no_route"},
      {"bad force", "DELETE", "/api/v1/data/" + id + "?force=maybe", "", 400, "bad_request"},
      {"bad list type", "GET", "/api/v1/data?type=weights", "", 400, "bad_request"},
      {"bad list device", "GET", "/api/v1/data?device=moon", "", 400, "invalid_location"},
      {"bad list limit", "GET", "/api/v1/data?limit=0", "", 400, "bad_request"},
      // A chunk's metadata arrives only with its bytes, in a transfer.
      {"metadata alone", "PUT", "/api/v1/data/" + id, json({{"chunk_id", id}, {"size", bytes.size()}}).dump(), 405, "method_not_allowed"},
      {"metadata for another id", "POST", "/transfers", json({{"key", id}, {"size", 1}, {"format", "tensor"}, {"chunk", {{"chunk_id", "chunk_00000000000000aa"}, {"size", 1}, {"checksum", "xxh3:0"}}}}).dump(), 400, "bad_request"},
      {"malformed metadata", "POST", "/transfers", json({{"key", id}, {"size", 1}, {"chunk", {{"chunk_id", 7}}}}).dump(), 400, "bad_request"},
      {"metadata without a checksum", "POST", "/transfers", json({{"key", "chunk_00000000000000ab"}, {"size", 1}, {"format", "tensor"}, {"chunk", {{"chunk_id", "chunk_00000000000000ab"}, {"size", 1}, {"format", "tensor"}}}}).dump(), 400, "bad_request"},
      {"wrong method", "PATCH", "/api/v1/data/" + id, "", 405, "method_not_allowed"},
  };
  for (const auto& c : cases) {
    const bool upload_case = c.target.find("?device=") != std::string::npos;
    auto r = http_request(port, c.method, c.target, c.body, upload_case ? kOctet : "application/json");
    EXPECT_TRUE(IsError(r, c.status, c.code)) << c.what;
  }
  auto over = http_request(port, "POST", "/api/v1/data", std::string(100 << 10, ' '));
  EXPECT_TRUE(IsError(over, 413, "too_large"));
  auto big_metadata = http_request(port, "POST", "/transfers", std::string(100 << 10, ' '));
  EXPECT_TRUE(IsError(big_metadata, 413, "too_large"));
  EXPECT_TRUE(IsError(http_request(port, "POST", "/api/v1/data/" + id + "/references",
                                   json({{"holder", "tab\there"}}).dump()),
                      400, "bad_request"));

  EXPECT_TRUE(IsOk(http_request(port, "GET", "/health")));
  json after = body_json(info(port, id));
  EXPECT_EQ(after["checksum"], checksum_of(bytes));
  EXPECT_EQ(read_raw(port, id).body, bytes);
  EXPECT_EQ(body_json(http_request(port, "GET", "/api/v1/data"))["chunks"].size(), 1u);
}

}  // namespace
