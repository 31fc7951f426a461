// Sends between servers when something goes wrong on the way: a target whose
// disk fills in the middle of a body, one stopped in the middle of a range, a
// sender that disappears between beginning a transfer and its first range, a
// commit whose answer never comes, forged chunk metadata, a target that is
// down. Each failure says what happened and where, within the timeout, and
// leaves nothing behind on either side; the outcome of a commit whose answer
// was lost is asked of the target, never guessed.
#include <signal.h>
#include <sys/mount.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr std::uint64_t MiB = 1 << 20;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A tmpfs of `bytes` mounted at `dir` for as long as it lives: a disk that
// really fills. mounted() is false where this process may not mount.
class SmallDisk {
 public:
  SmallDisk(const fs::path& dir, std::uint64_t bytes) : dir_(dir) {
    fs::create_directories(dir);
    const std::string options = "size=" + std::to_string(bytes) + ",mode=0700";
    mounted_ = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) == 0;
  }
  ~SmallDisk() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  bool mounted() const { return mounted_; }

 private:
  fs::path dir_;
  bool mounted_ = false;
};

// The target's disk fills while a value's body arrives: the sender reports the
// target's own answer (507/500 with "No space left"), not a broken pipe.
TEST(SendFaultsTest, ATargetWhoseDiskFillsMidBodyIsHeard) {
  TempDir dir;
  SmallDisk small(dir.path() / "b", 24 * MiB);
  if (!small.mounted()) GTEST_SKIP() << "cannot mount a tmpfs here (needs root)";
  TestServer target(dir.path() / "b" / "disk", quiet({}));
  TestServer source(dir.path() / "a", quiet({"--parallel-threshold", "16MB"}));
  // From memory, and from disk (sent with sendfile). Larger than what a server
  // reads and drops of an unread body before it closes (64 MiB), so the
  // sender's writes do fail.
  ASSERT_TRUE(IsOk(write_raw(source.port(), "big", binary_value(160 * MiB, 3))));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "big-on-disk", binary_value(160 * MiB, 4), "disk")));
  for (const auto& [key, streams] : {std::pair{"big", 1}, {"big", 4}, {"big-on-disk", 1},
                                     {"big-on-disk", 4}}) {
    SCOPED_TRACE(std::string(key) + ", " + std::to_string(streams) + " streams");
    auto sent = send_key(source.port(), key, target.address() + ":disk", {{"streams", streams}});
    EXPECT_GE(sent.status, 500) << describe(sent);
    const std::string detail = detail_of(sent);
    EXPECT_NE(detail.find("No space left on device"), std::string::npos) << detail;
    EXPECT_NE(detail.find("answered"), std::string::npos) << detail;
    EXPECT_EQ(detail.find("Broken pipe"), std::string::npos) << detail;
    EXPECT_TRUE(wait_until([&] { return get_stats(target.port())["incoming_transfers"] == 0; }));
    EXPECT_TRUE(IsError(location_of(target.port(), key), 404, "not_found"));
    EXPECT_EQ(get_stats(target.port())["disk_usage"], 0);
  }
  EXPECT_NE(location_of(source.port(), "big").body.find("dram"), std::string::npos);
}

// A value exactly as large as the target's --max-memory fits an empty target:
// the key's metadata has its own allowance and is no longer refused as
// "storing 50 B" against the value's own reservation. One byte more is refused
// with a message that names the value and the real use.
TEST(SendFaultsTest, AValueThatFillsTheTargetIsTakenAndOneTooLargeIsNamed) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({"--max-memory", "4MB"}));
  TestServer source(dir.path() / "a", quiet({}));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "fills", binary_value(4 * MiB, 5))));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "over", binary_value(4 * MiB + 1, 6))));
  auto sent = send_key(source.port(), "fills", target.address() + ":dram");
  EXPECT_TRUE(IsOk(sent)) << describe(sent);
  EXPECT_NE(location_of(target.port(), "fills").body.find("dram"), std::string::npos);
  ASSERT_TRUE(IsOk(release_key(target.port(), "fills")));
  auto refused = send_key(source.port(), "over", target.address() + ":dram");
  EXPECT_GE(refused.status, 400) << describe(refused);
  const std::string detail = detail_of(refused);
  EXPECT_NE(detail.find("'over' (4.0 MB)"), std::string::npos) << detail;
  EXPECT_NE(detail.find("in use 0 B"), std::string::npos) << detail;
  EXPECT_EQ(detail.find("50 B"), std::string::npos) << detail;
}

// A target stopped (SIGSTOP) in the middle of a range: the send fails once the
// range made no progress for --peer-timeout, not twice that, and the target,
// once it runs again, drops what it received (its sender's connections closed).
TEST(SendFaultsTest, AStoppedTargetFailsTheSendAtTheTimeout) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({"--transfer-timeout", "60"}));
  TestServer source(dir.path() / "a", quiet({"--peer-timeout", "2", "--parallel-threshold", "1MB"}));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "big", binary_value(512 * MiB, 4), "disk")));
  const std::uint64_t used = get_stats(target.port())["current_dram_size"];
  auto sending = std::async(std::launch::async, [&] {
    return send_key(source.port(), "big", target.address() + ":dram", {{"streams", 4}});
  });
  ASSERT_TRUE(wait_until([&] { return get_stats(target.port())["incoming_transfers"] == 1; }, 30));
  ::kill(target.pid(), SIGSTOP);
  const auto stopped = Clock::now();
  auto failed = sending.get();
  const double took = seconds_since(stopped);
  ::kill(target.pid(), SIGCONT);
  EXPECT_TRUE(IsError(failed, 504, "peer_timeout")) << describe(failed);
  EXPECT_LT(took, 3.5) << "a --peer-timeout of 2 s failed the send after " << took << " s";
  EXPECT_TRUE(wait_until([&] { return get_stats(target.port())["incoming_transfers"] == 0; }, 5))
      << "the target kept the transfer of a sender that gave up";
  EXPECT_EQ(get_stats(target.port())["current_dram_size"], used);
  EXPECT_TRUE(IsError(location_of(target.port(), "big"), 404, "not_found"));
}

// Begins a transfer on `conn` (kept alive) and returns its id.
std::string begin_on(RawConnection& conn, const json& body) {
  const std::string text = body.dump();
  EXPECT_TRUE(conn.send("POST /transfers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                        "application/json\r\nContent-Length: " +
                        std::to_string(text.size()) + "\r\n\r\n" + text));
  const std::string answer = conn.receive();
  const auto at = answer.find("\r\n\r\n");
  EXPECT_EQ(answer.rfind("HTTP/1.1 200", 0), 0u) << answer;
  if (at == std::string::npos) return "";
  return json::parse(answer.substr(at + 4), nullptr, false).value("transfer", "");
}

std::string state_of(int port, const std::string& id) {
  return body_json(http_request(port, "GET", "/transfers/" + id)).value("state", "");
}

// A sender that dies between beginning a transfer and sending its first range
// gives its reservation back when its connection closes, not after
// --transfer-timeout; one that keeps its connection open may idle past
// --idle-timeout while it sends its ranges on others.
TEST(SendFaultsTest, ATransferLivesAsLongAsTheConnectionThatBeganIt) {
  TempDir dir;
  TestServer target(dir.path() / "b",
                    quiet({"--transfer-timeout", "60", "--idle-timeout", "1"}));
  const int port = target.port();
  const std::uint64_t used = get_stats(port)["current_dram_size"];
  std::string id;
  {
    RawConnection conn(port);
    id = begin_on(conn, {{"key", "gone"}, {"size", 256 * MiB}});
    ASSERT_FALSE(id.empty());
    EXPECT_GE(get_stats(port)["current_dram_size"].get<std::uint64_t>(), used + 256 * MiB);
    EXPECT_EQ(state_of(port, id), "receiving");
  }  // the sender is gone
  const auto closed = Clock::now();
  EXPECT_TRUE(wait_until([&] { return get_stats(port)["current_dram_size"] == used; }, 5));
  EXPECT_LT(seconds_since(closed), 5.0);
  EXPECT_EQ(get_stats(port)["incoming_transfers"], 0);
  auto ended = body_json(http_request(port, "GET", "/transfers/" + id));
  EXPECT_EQ(ended["state"], "failed");
  EXPECT_NE(ended.value("detail", "").find("connection closed"), std::string::npos) << ended.dump();

  // Kept open: it outlives --idle-timeout while the ranges come on their own connections.
  RawConnection control(port);
  const std::string bytes = binary_value(3 * MiB, 6);
  id = begin_on(control, {{"key", "kept"}, {"size", bytes.size()}});
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  ASSERT_TRUE(IsOk(http_request(port, "PUT", "/transfers/" + id + "?offset=0", bytes, kOctet)));
  ASSERT_TRUE(control.send("POST /transfers/" + id + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"));
  EXPECT_EQ(control.receive().rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_EQ(state_of(port, id), "committed");
  EXPECT_TRUE(fetch_bytes(port, "kept").data == bytes);
}

TEST(SendFaultsTest, TheTargetTellsHowATransferEnded) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({}));
  const int port = target.port();
  auto begin = [&](const std::string& key, std::uint64_t size) {
    auto r = http_request(port, "POST", "/transfers", json({{"key", key}, {"size", size}}).dump());
    EXPECT_TRUE(IsOk(r));
    return body_json(r).value("transfer", "");
  };
  const std::string done = begin("done", 4);
  EXPECT_EQ(state_of(port, done), "receiving");
  ASSERT_TRUE(IsOk(http_request(port, "PUT", "/transfers/" + done + "?offset=0", "abcd", kOctet)));
  ASSERT_TRUE(IsOk(http_request(port, "POST", "/transfers/" + done)));
  EXPECT_EQ(state_of(port, done), "committed");
  const std::string dropped = begin("dropped", 4);
  ASSERT_TRUE(IsOk(http_request(port, "DELETE", "/transfers/" + dropped)));
  EXPECT_EQ(state_of(port, dropped), "failed");
  EXPECT_TRUE(IsError(http_request(port, "GET", "/transfers/0123456789abcdef0123456789abcdef"),
                      404, "not_found"));
}

// A chunk's metadata is believed only with bytes that match its checksum.
TEST(SendFaultsTest, AChunkWhoseBytesDoNotMatchItsChecksumIsNotStored) {
  TempDir dir;
  TestServer target(dir.path() / "b", quiet({}));
  const int port = target.port();
  const std::string id = "chunk_00000000000000c1";
  json chunk = {{"chunk_id", id},   {"size", 4},         {"format", "tensor"},
                {"source", "x"},    {"checksum", "xxh3:0000000000000000"},
                {"created_by", "elsewhere"}};
  auto r = http_request(port, "POST", "/transfers",
                        json({{"key", id}, {"size", 4}, {"format", "tensor"}, {"chunk", chunk}}).dump());
  ASSERT_TRUE(IsOk(r));
  const std::string transfer = body_json(r)["transfer"];
  ASSERT_TRUE(IsOk(http_request(port, "PUT", "/transfers/" + transfer + "?offset=0", "evil", kOctet)));
  auto committed = http_request(port, "POST", "/transfers/" + transfer);
  EXPECT_TRUE(IsError(committed, 409, "conflict")) << describe(committed);
  EXPECT_NE(detail_of(committed).find("checksum"), std::string::npos) << detail_of(committed);
  EXPECT_EQ(state_of(port, transfer), "failed");
  EXPECT_TRUE(IsError(location_of(port, id), 404, "not_found"));
  EXPECT_EQ(body_json(http_request(port, "GET", "/api/v1/data"))["count"], 0);
}

// A failed send to a node says which node, not only an address.
TEST(SendFaultsTest, AFailedSendNamesItsTargetNode) {
  TempDir dir;
  TestServer source(dir.path() / "a",
                    quiet({"--peer", "node2=127.0.0.1:" + std::to_string(unused_port())}));
  ASSERT_TRUE(IsOk(write_raw(source.port(), "s:1", "v")));
  auto failed = send_key(source.port(), "s:1", "node2");
  EXPECT_TRUE(IsError(failed, 502, "peer_failed"));
  EXPECT_NE(detail_of(failed).find("node2"), std::string::npos) << detail_of(failed);
  EXPECT_NE(detail_of(failed).find("s:1"), std::string::npos) << detail_of(failed);
}

// A peer that speaks the transfer protocol by a script, for the answers a real
// target gives only in races: a commit whose answer never comes, followed by
// what the target says when asked about the transfer.
class ScriptedTarget {
 public:
  // What GET /transfers/{id} answers: a state, or nothing (the connection closes).
  explicit ScriptedTarget(std::vector<std::string> states)
      : states_(std::move(states)), acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    thread_ = std::thread([this] { accept(); });
  }
  ~ScriptedTarget() {
    stopping_ = true;
    ::shutdown(acceptor_.native_handle(), SHUT_RDWR);  // wakes the blocked accept
    thread_.join();
    for (auto& t : connections_) t.join();
  }
  std::string address() const {
    return "127.0.0.1:" + std::to_string(acceptor_.local_endpoint().port());
  }
  int commits() const { return commits_; }
  int questions() const { return questions_; }

 private:
  void accept() {
    while (!stopping_) {
      boost::system::error_code ec;
      boost::asio::ip::tcp::socket socket(io_);
      acceptor_.accept(socket, ec);
      if (ec) return;
      connections_.emplace_back([this, s = std::move(socket)]() mutable { serve(std::move(s)); });
    }
  }
  static void answer(boost::asio::ip::tcp::socket& s, const std::string& body) {
    const std::string text = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                             std::to_string(body.size()) + "\r\n\r\n" + body;
    boost::system::error_code ignored;
    boost::asio::write(s, boost::asio::buffer(text), ignored);
  }
  void serve(boost::asio::ip::tcp::socket s) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    while (!stopping_) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(boost::none);
      boost::system::error_code ec;
      http::read_header(s, buffer, parser, ec);
      if (ec) return;
      if (boost::beast::iequals(parser.get()[http::field::expect], "100-continue")) {
        boost::asio::write(s, boost::asio::buffer(std::string("HTTP/1.1 100 Continue\r\n\r\n")), ec);
      }
      http::read(s, buffer, parser, ec);
      if (ec) return;
      const auto& req = parser.get();
      const std::string target(req.target());
      if (req.method() == http::verb::post && target == "/transfers") {
        answer(s, R"({"transfer":"5c2a"})");
      } else if (req.method() == http::verb::put) {
        answer(s, R"({"status":"success"})");
      } else if (req.method() == http::verb::post) {
        ++commits_;
        return;  // the commit's answer is lost
      } else if (req.method() == http::verb::get) {
        const int n = questions_++;
        if (states_.empty()) return;
        const std::string& state = states_[std::min<std::size_t>(n, states_.size() - 1)];
        if (state.empty()) return;  // no answer
        answer(s, json({{"transfer", "5c2a"}, {"state", state}, {"detail", "disk full"}}).dump());
      }
    }
  }

  std::vector<std::string> states_;
  boost::asio::io_context io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> commits_{0};
  std::atomic<int> questions_{0};
  std::thread thread_;
  std::vector<std::thread> connections_;
};

// The commit's answer is lost: the sender asks the target how the transfer
// ended, and reports that (a success, with the source deleted when asked; a
// failure), or, when the target cannot say, that the outcome is unknown, with
// its own code, keeping the source.
TEST(SendFaultsTest, ALostCommitAnswerIsAskedAboutNotGuessed) {
  TempDir dir;
  TestServer source(dir.path() / "a", quiet({"--peer-timeout", "1", "--parallel-threshold", "1MB"}));
  const std::string bytes = binary_value(4 * MiB, 7);
  struct Case {
    std::vector<std::string> states;
    int status;
    std::string code;
  };
  for (const Case& c : {Case{{"committing", "committing", "committed"}, 200, ""},
                        Case{{"committing", "failed"}, 502, "peer_failed"},
                        Case{{""}, 504, "outcome_unknown"}}) {
    SCOPED_TRACE(c.code.empty() ? "committed" : c.code);
    ASSERT_TRUE(IsOk(write_raw(source.port(), "k", bytes)));
    ScriptedTarget target(c.states);
    auto sent = send_key(source.port(), "k", target.address(), {{"streams", 2}, {"delete_source", true}});
    EXPECT_EQ(target.commits(), 1);
    EXPECT_GE(target.questions(), 1);
    if (c.status == 200) {
      EXPECT_TRUE(IsOk(sent)) << describe(sent);
      EXPECT_EQ(body_json(sent)["source_deleted"], true);
      EXPECT_TRUE(IsError(location_of(source.port(), "k"), 404, "not_found"));
    } else {
      EXPECT_TRUE(IsError(sent, c.status, c.code)) << describe(sent);
      EXPECT_TRUE(IsOk(location_of(source.port(), "k"))) << "the source went with the outcome unknown";
    }
    if (c.code == "outcome_unknown") {
      EXPECT_NE(detail_of(sent).find("source was kept"), std::string::npos) << detail_of(sent);
    }
  }
}

}  // namespace
