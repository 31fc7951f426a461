// Membership through a real etcd (Debian's etcd-server), started here on
// loopback ports: servers find each other by name, a killed server drops out
// when its lease ends, a stopped one at once, and a server that cannot reach the
// etcd it was given does not start.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
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
  explicit Etcd(const fs::path& dir) {
    client_ = unused_port();
    const int peer = unused_port();
    const std::string client_url = "http://127.0.0.1:" + std::to_string(client_);
    const std::string peer_url = "http://127.0.0.1:" + std::to_string(peer);
    std::vector<std::string> args = {"etcd",
                                     "--data-dir", (dir / "etcd").string(),
                                     "--listen-client-urls", client_url,
                                     "--advertise-client-urls", client_url,
                                     "--listen-peer-urls", peer_url,
                                     "--initial-advertise-peer-urls", peer_url,
                                     "--initial-cluster", "default=" + peer_url};
    const std::string log = (dir / "etcd.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      std::freopen(log.c_str(), "w", stderr);
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
  ~Etcd() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  bool ready() const { return ready_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_); }

 private:
  pid_t pid_ = -1;
  int client_ = 0;
  bool ready_ = false;
};

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
  auto server = [&](const char* name) {
    return std::make_unique<TestServer>(
        dir.path() / name, std::vector<std::string>{"--node-name", name, "--etcd", etcd.url(),
                                                    "--etcd-ttl", "2", "--etcd-prefix", "/test",
                                                    "--log-level", "error"});
  };
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
