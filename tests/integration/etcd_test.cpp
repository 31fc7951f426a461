// Membership through a real etcd (Debian's etcd-server), started here on
// loopback ports: servers find each other by name, a killed server drops out
// when its lease ends, a stopped one at once, live ones stay alive when etcd
// restarts empty, and a server that cannot reach the etcd it was given does not
// start.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
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

// One etcd member on loopback ports, stopped by its process id.
class Etcd {
 public:
  explicit Etcd(const fs::path& dir) : dir_(dir) {
    client_ = unused_port();
    peer_ = unused_port();
    start();
  }
  // Killed and started again on the same ports with no data: every lease and
  // key is gone while the servers live on.
  bool restart_empty() {
    stop();
    fs::remove_all(dir_ / "etcd");
    start();
    return ready_;
  }
  ~Etcd() { stop(); }
  bool ready() const { return ready_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_); }

 private:
  void start() {
    const std::string client_url = "http://127.0.0.1:" + std::to_string(client_);
    const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer_);
    std::vector<std::string> args = {"etcd",
                                     "--data-dir", (dir_ / "etcd").string(),
                                     "--listen-client-urls", client_url,
                                     "--advertise-client-urls", client_url,
                                     "--listen-peer-urls", peer_url,
                                     "--initial-advertise-peer-urls", peer_url,
                                     "--initial-cluster", "default=" + peer_url};
    const std::string log = (dir_ / "etcd.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      std::freopen(log.c_str(), "a", stderr);
      std::freopen(log.c_str(), "a", stdout);
      ::execvp("etcd", argv.data());
      ::_exit(127);
    }
    ready_ = wait_until(
        [&] {
          int status = 0;
          if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            return true;
          }
          try {
            return http_request(client_, "GET", "/health").status == 200;
          } catch (const std::exception&) {
            return false;
          }
        },
        30);
    ready_ = ready_ && pid_ > 0;
  }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
      pid_ = -1;
    }
  }

  fs::path dir_;
  pid_t pid_ = -1;
  int client_ = 0;
  int peer_ = 0;
  bool ready_ = false;
};

// A server named `name` registered in `etcd` with a lease of `ttl` seconds.
std::unique_ptr<TestServer> member(const fs::path& dir, const char* name, const Etcd& etcd,
                                   const char* ttl) {
  return std::make_unique<TestServer>(
      dir / name, std::vector<std::string>{"--node-name", name, "--etcd", etcd.url(), "--etcd-ttl",
                                           ttl, "--etcd-prefix", "/test", "--log-level", "error"});
}

json node_named(int port, const std::string& name) {
  const json answer = body_json(http_request(port, "GET", "/nodes"));
  for (const auto& n : answer.value("nodes", json::array())) {
    if (n["name"] == name) return n;
  }
  return nullptr;
}

TEST(EtcdTest, ServersFindEachOtherAndDeadOnesDropOut) {
  TempDir dir;
  Etcd etcd(dir.path());
  ASSERT_TRUE(etcd.ready()) << "etcd did not start (is etcd-server installed? "
                               "scripts/deps.sh installs it); see "
                            << (dir.path() / "etcd.log");
  auto server = [&](const char* name) { return member(dir.path(), name, etcd, "2"); };
  auto a = server("nodeA");
  auto b = server("nodeB");
  auto c = server("nodeC");
  ASSERT_TRUE(wait_until([&] { return node_named(a->port(), "nodeB").is_object(); }))
      << http_request(a->port(), "GET", "/nodes").body;
  json seen = node_named(a->port(), "nodeB");
  EXPECT_EQ(seen["address"], b->address());
  EXPECT_EQ(seen["source"], "etcd");
  EXPECT_EQ(seen["alive"], true);

  // A send by name, resolved through etcd.
  ASSERT_TRUE(IsOk(write_raw(a->port(), "k", "through etcd")));
  auto sent = http_request(a->port(), "POST", "/send_extended",
                           json({{"key", "k"}, {"target", "nodeB:disk"}}).dump());
  ASSERT_TRUE(IsOk(sent));
  EXPECT_EQ(body_json(sent)["address"], b->address());
  ASSERT_TRUE(IsOk(move_key(b->port(), "k", "dram")));
  EXPECT_EQ(fetch_bytes(b->port(), "k").data, "through etcd");

  // Killed: listed as not alive once its lease (2 s) ends; sends to it are refused.
  ASSERT_TRUE(wait_until([&] { return node_named(a->port(), "nodeC").is_object(); }));
  c->kill9();
  ASSERT_TRUE(wait_until([&] { return node_named(a->port(), "nodeC")["alive"] == false; }, 20));
  auto refused = http_request(a->port(), "POST", "/send_extended",
                              json({{"key", "k"}, {"target", "nodeC"}}).dump());
  EXPECT_TRUE(IsError(refused, 404, "not_found"));
  EXPECT_NE(detail_of(refused).find("not alive"), std::string::npos) << detail_of(refused);

  // Stopped cleanly: it leaves etcd at once (well before a TTL would).
  EXPECT_EQ(b->stop(), 0);
  EXPECT_TRUE(wait_until([&] { return node_named(a->port(), "nodeB")["alive"] == false; }, 1.5));
}

// etcd restarted empty drops every key while the servers live on: a server
// re-registers as soon as it sees its own key gone (not at its next keep-alive,
// here 10 s away), and a peer whose key is missing but that answers is not
// declared dead meanwhile, so sends by name go on.
TEST(EtcdTest, LiveServersStayAliveWhenEtcdRestartsEmpty) {
  TempDir dir;
  Etcd etcd(dir.path());
  ASSERT_TRUE(etcd.ready()) << "see " << (dir.path() / "etcd.log");
  auto server = [&](const char* name) { return member(dir.path(), name, etcd, "30"); };
  auto a = server("nodeA");
  auto b = server("nodeB");
  ASSERT_TRUE(wait_until([&] { return node_named(a->port(), "nodeB")["alive"] == true; }));
  ASSERT_TRUE(IsOk(write_raw(a->port(), "k", "by name")));

  ASSERT_TRUE(etcd.restart_empty()) << "see " << (dir.path() / "etcd.log");
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(4);
  int polls = 0;
  while (std::chrono::steady_clock::now() < until) {
    const json seen = node_named(a->port(), "nodeB");
    ASSERT_TRUE(seen.is_object() && seen["alive"] == true)
        << "after " << polls << " polls: " << http_request(a->port(), "GET", "/nodes").body;
    ++polls;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto sent = http_request(a->port(), "POST", "/send_extended",
                           json({{"key", "k"}, {"target", "nodeB:disk"}}).dump());
  EXPECT_TRUE(IsOk(sent)) << sent.body;

  // Both are in etcd again: a server started now finds them.
  auto c = server("nodeC");
  EXPECT_TRUE(node_named(c->port(), "nodeA").is_object()) << http_request(c->port(), "GET", "/nodes").body;
  EXPECT_TRUE(node_named(c->port(), "nodeB").is_object()) << http_request(c->port(), "GET", "/nodes").body;
}

TEST(EtcdTest, AServerThatCannotReachItsEtcdDoesNotStart) {
  TempDir dir;
  fs::create_directory(dir.path() / "d");
  Refusal r = try_start(dir.path() / "d" / "disk",
                        {"--etcd", "http://127.0.0.1:" + std::to_string(unused_port())});
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("--etcd"), std::string::npos) << r.stderr_text;
  Refusal bad = try_start(dir.path() / "d" / "disk", {"--etcd", "https://etcd.example:2379"});
  EXPECT_FALSE(bad.started);
  EXPECT_NE(bad.stderr_text.find("http://HOST:PORT"), std::string::npos) << bad.stderr_text;
}

}  // namespace
