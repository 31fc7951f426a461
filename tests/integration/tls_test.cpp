// TLS against the real server: --tls-cert/--tls-key make it serve HTTPS only;
// clients trust it through --tls-ca (or https:// and the system's
// certificates); servers speak TLS to each other, checking each other's
// certificates against their --tls-ca. Certificates are made for each run with
// Debian's openssl command.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>
#include <gswarm/client.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace gswarm::testing {
namespace {

using namespace itest;
namespace fs = std::filesystem;

void run_openssl(const std::string& args) {
  const std::string command = "openssl " + args + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
}

// A private CA, and certificates it signed: one for this machine's loopback
// names, one for another host's.
struct Certificates {
  fs::path ca, cert, key, other_cert, other_key, stranger_ca;

  explicit Certificates(const fs::path& dir) {
    auto p = [&](const char* name) { return (dir / name).string(); };
    ca = p("ca.pem");
    cert = p("server.pem");
    key = p("server.key");
    other_cert = p("other.pem");
    other_key = p("other.key");
    stranger_ca = p("stranger.pem");
    const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    run_openssl("req -x509 " + ec + " -days 2 -subj /CN=gswarm-test-ca -keyout " + p("ca.key") +
                " -out " + ca.string());
    run_openssl("req -x509 " + ec + " -days 2 -subj /CN=stranger -keyout " + p("stranger.key") +
                " -out " + stranger_ca.string());
    sign("localhost", "DNS:localhost,IP:127.0.0.1", cert, key, dir);
    sign("elsewhere.example", "DNS:elsewhere.example", other_cert, other_key, dir);
  }

  void sign(const std::string& name, const std::string& san, const fs::path& out,
            const fs::path& out_key, const fs::path& dir) {
    const fs::path ext = dir / (name + ".ext");
    std::ofstream(ext) << "subjectAltName=" << san << "\n";
    const fs::path csr = dir / (name + ".csr");
    run_openssl("req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=" + name +
                " -keyout " + out_key.string() + " -out " + csr.string());
    run_openssl("x509 -req -days 2 -in " + csr.string() + " -CA " + ca.string() + " -CAkey " +
                (dir / "ca.key").string() + " -CAcreateserial -extfile " + ext.string() +
                " -out " + out.string());
  }

  std::vector<std::string> server_args() const {
    return {"--tls-cert", cert.string(), "--tls-key", key.string(), "--tls-ca", ca.string()};
  }
};

ClientOptions trusting(const fs::path& ca) {
  ClientOptions options;
  options.tls_ca = ca.string();
  return options;
}

class TlsTest : public ::testing::Test {
 protected:
  TempDir dir_;
  Certificates certs_{dir_.path()};
  TestServer server_{dir_.path() / "a", certs_.server_args()};

  Client client(const std::string& address) {
    return Client(address, trusting(certs_.ca));
  }
};

TEST_F(TlsTest, AClientThatTrustsTheCaReadsAndWrites) {
  for (const std::string host : {"127.0.0.1", "localhost"}) {
    SCOPED_TRACE(host);
    Client c = client(host + ":" + std::to_string(server_.port()));
    ASSERT_TRUE(c.write("json", R"({"a":[1,2,3]})"));
    auto read = c.read("json");
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(*read, R"({"a":[1,2,3]})");
    // Larger than one TLS record and than the buffers on either side.
    const std::string value = binary_value(9 << 20, 7);
    ASSERT_TRUE(c.write_bytes("raw", value));
    auto bytes = c.read_bytes("raw");
    ASSERT_TRUE(bytes) << bytes.error().message;
    EXPECT_EQ(fnv1a(bytes->data), fnv1a(value));
    EXPECT_EQ(bytes->data.size(), value.size());
  }
  // https:// with the CA in GSWARM_TLS_CA.
  ::setenv("GSWARM_TLS_CA", certs_.ca.c_str(), 1);
  Client from_env("https://127.0.0.1:" + std::to_string(server_.port()));
  auto health = from_env.stats();
  ::unsetenv("GSWARM_TLS_CA");
  EXPECT_TRUE(health) << health.error().message;
}

TEST_F(TlsTest, AnUntrustedOrMisnamedServerIsRefused) {
  const std::string address = "127.0.0.1:" + std::to_string(server_.port());
  // The system's certificates do not include the test CA.
  auto system = Client("https://" + address).stats();
  ASSERT_FALSE(system);
  EXPECT_EQ(system.error().code, ErrorCode::kConnection);
  EXPECT_NE(system.error().message.find("not trusted"), std::string::npos)
      << system.error().message;
  auto stranger = Client(address, trusting(certs_.stranger_ca)).stats();
  ASSERT_FALSE(stranger);
  EXPECT_NE(stranger.error().message.find("--tls-ca"), std::string::npos)
      << stranger.error().message;

  // A certificate the CA signed, but for another host.
  TestServer misnamed(dir_.path() / "m", {"--tls-cert", certs_.other_cert.string(), "--tls-key",
                                          certs_.other_key.string()});
  auto wrong_host = client(misnamed.address()).stats();
  ASSERT_FALSE(wrong_host);
  EXPECT_NE(wrong_host.error().message.find("not trusted"), std::string::npos)
      << wrong_host.error().message;

  auto missing_ca = Client(address, trusting(dir_.path() / "nope.pem"));
  auto no_file = missing_ca.stats();
  ASSERT_FALSE(no_file);
  EXPECT_NE(no_file.error().message.find("nope.pem"), std::string::npos) << no_file.error().message;
}

TEST_F(TlsTest, PlainHttpIsToldToUseHttps) {
  auto plain = http_request(server_.port(), "GET", "/health");
  EXPECT_TRUE(IsError(plain, 400, "bad_request"));
  EXPECT_NE(detail_of(plain).find("https://"), std::string::npos) << plain.body;
  EXPECT_NE(detail_of(plain).find("--tls-ca"), std::string::npos) << plain.body;
  // A plain write with a body changes nothing, and the server goes on.
  auto write = write_json(server_.port(), "k", 1);
  EXPECT_EQ(write.status, 400);
  Client c = client(server_.address());
  EXPECT_EQ(c.read("k").error().code, ErrorCode::kNotFound);
}

TEST_F(TlsTest, ATlsClientToAPlainServerSaysSo) {
  TestServer plain(dir_.path() / "p");
  auto stats = client(plain.address()).stats();
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().code, ErrorCode::kConnection);
  EXPECT_NE(stats.error().message.find("does not speak TLS"), std::string::npos)
      << stats.error().message;
}

// A client that connects and sends nothing, or half a handshake, or garbage
// after a handshake record's first byte, holds nothing up and is dropped.
TEST_F(TlsTest, StalledAndBrokenHandshakesAreDropped) {
  TestServer strict(dir_.path() / "s", [&] {
    auto args = certs_.server_args();
    args.insert(args.end(), {"--request-timeout", "1"});
    return args;
  }());
  auto connect_raw = [&] {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(strict.port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    timeval wait{10, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    return fd;
  };
  const int silent = connect_raw();
  const int garbage = connect_raw();
  const std::string junk = "\x16\x03\x01\x00\x05hello, this is not TLS at all";
  ASSERT_EQ(::send(garbage, junk.data(), junk.size(), MSG_NOSIGNAL),
            static_cast<ssize_t>(junk.size()));
  // Meanwhile a real client is served.
  Client c = client(strict.address());
  ASSERT_TRUE(c.write("k", "1"));
  char byte = 0;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_LE(::recv(silent, &byte, 1, 0), 0);  // closed once --request-timeout passed
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(8));
  EXPECT_LE(::recv(garbage, &byte, 1, 0), 0);
  ::close(silent);
  ::close(garbage);
  EXPECT_EQ(*c.read("k"), "1");
}

// The server answers 401 before reading the body and stops reading; the client,
// still encrypting megabytes, must see that answer, not a reset or a SIGPIPE.
TEST_F(TlsTest, ARefusedLargeWriteGetsItsAnswer) {
  auto args = certs_.server_args();
  args.insert(args.end(), {"--token", "tls-refusal-token-1"});
  TestServer guarded(dir_.path() / "g", args);
  Client without = client(guarded.address());
  auto refused = without.write_bytes("big", binary_value(8 << 20, 5));
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kUnauthorized) << refused.error().message;
  ClientOptions options = trusting(certs_.ca);
  options.token = "tls-refusal-token-1";
  Client with(guarded.address(), options);
  EXPECT_EQ(with.read_bytes("big").error().code, ErrorCode::kNotFound);
  ASSERT_TRUE(with.write_bytes("big", binary_value(8 << 20, 5)));
}

TEST_F(TlsTest, ServersSendToEachOtherOverTls) {
  auto args = certs_.server_args();
  args.insert(args.end(), {"--token", "tls-and-token-123"});
  TestServer a(dir_.path() / "ta", args);
  TestServer b(dir_.path() / "tb", args);
  ClientOptions options = trusting(certs_.ca);
  options.token = "tls-and-token-123";
  Client from(a.address(), options);
  Client to(b.address(), options);
  const std::string small = binary_value(1000, 1);
  const std::string large = binary_value(6 << 20, 2);
  ASSERT_TRUE(from.write_bytes("small", small));
  ASSERT_TRUE(from.write_bytes("large", large));
  ASSERT_TRUE(from.write_bytes("on-disk", large, "disk"));  // sent from its file
  for (const char* key : {"small", "large", "on-disk"}) {
    SCOPED_TRACE(key);
    SendOptions send;
    send.streams = std::string(key) == "small" ? 1 : 3;
    auto sent = from.send(key, b.address(), send);
    ASSERT_TRUE(sent) << sent.error().message;
    auto there = to.read_bytes(key);
    ASSERT_TRUE(there) << there.error().message;
    EXPECT_EQ(fnv1a(there->data), fnv1a(std::string(key) == "small" ? small : large));
  }
  // A server without TLS cannot be a target: the sender says why.
  TestServer plain(dir_.path() / "tp", {"--token", "tls-and-token-123"});
  auto refused = from.send("small", plain.address());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("TLS"), std::string::npos) << refused.error().message;
  EXPECT_TRUE(from.read_bytes("small"));  // the source stays
}

TEST(TlsStartTest, BadCertificateFilesStopTheStart) {
  TempDir dir;
  Certificates certs(dir.path());
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--tls-cert", certs.cert.string()}, "go together"},
      {{"--tls-key", certs.key.string()}, "go together"},
      {{"--tls-cert", (dir.path() / "missing.pem").string(), "--tls-key", certs.key.string()},
       "--tls-cert"},
      {{"--tls-cert", certs.key.string(), "--tls-key", certs.key.string()}, "--tls-cert"},
      {{"--tls-cert", certs.cert.string(), "--tls-key", certs.other_key.string()},
       "is not the key of"},
      {{"--tls-cert", certs.cert.string(), "--tls-key", certs.key.string(), "--tls-ca",
        (dir.path() / "missing-ca.pem").string()},
       "--tls-ca"},
  };
  int n = 0;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.says);
    Refusal r = try_start(dir.path() / ("d" + std::to_string(n++)), c.args);
    EXPECT_FALSE(r.started);
    EXPECT_NE(r.exit_code, 0);
    EXPECT_NE(r.stderr_text.find(c.says), std::string::npos) << r.stderr_text;
  }
}

}  // namespace
}  // namespace gswarm::testing
