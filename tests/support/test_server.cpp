#include "test_server.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <thread>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "core/url.hpp"

namespace gswarm::testing {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::string gswarm_binary() {
  if (const char* env = std::getenv("GSWARM_BINARY")) return env;
#ifdef GSWARM_BINARY
  return GSWARM_BINARY;
#else
  throw std::runtime_error("GSWARM_BINARY is not set");
#endif
}

TempDir::TempDir() {
  std::random_device rd;
  path_ = std::filesystem::temp_directory_path() /
          ("gswarm-test-" + std::to_string(::getpid()) + "-" + std::to_string(rd()));
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

TestServer::TestServer(std::filesystem::path disk_path, std::vector<std::string> extra_args)
    : TestServer(std::move(disk_path), ProcessOptions{std::move(extra_args)}) {}

TestServer::TestServer(std::filesystem::path disk_path, ProcessOptions process) {
  int out[2];
  if (::pipe(out) != 0) throw std::runtime_error("pipe failed");
  std::vector<std::string> args = {gswarm_binary(), "data",        "start",
                                   "--host",        "127.0.0.1",   "--port",
                                   "0",             "--disk-path", disk_path.string()};
  args.insert(args.end(), process.args.begin(), process.args.end());
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::close(out[0]);
    ::close(out[1]);
    if (!process.stderr_path.empty()) {
      int err = ::open(process.stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (err >= 0) ::dup2(err, STDERR_FILENO);
    }
    if (process.open_files > 0) {
      rlimit limit{process.open_files, process.open_files};
      ::setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (process.uid != 0 && (::setgid(process.uid) != 0 || ::setuid(process.uid) != 0)) {
      std::perror("setuid");
      ::_exit(126);
    }
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    std::perror("execv");
    ::_exit(127);
  }
  ::close(out[1]);
  // The server prints "gswarm listening on HOST:PORT" once it accepts connections.
  FILE* f = ::fdopen(out[0], "r");
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::string s(line);
    auto pos = s.find("listening on ");
    if (pos == std::string::npos) continue;
    auto colon = s.rfind(':');
    port_ = std::stoi(s.substr(colon + 1));
    break;
  }
  // Keep draining stdout in the background so the server never blocks on a full pipe.
  std::thread([f] {
    char buf[4096];
    while (std::fread(buf, 1, sizeof buf, f) > 0) {
    }
    std::fclose(f);
  }).detach();
  if (port_ == 0) {
    wait_exit();
    throw std::runtime_error("gswarm did not start (see its stderr above)");
  }
}

TestServer::~TestServer() {
  if (pid_ > 0) stop();
}

int TestServer::wait_exit() {
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

int TestServer::stop() {
  if (pid_ <= 0) return -1;
  ::kill(pid_, SIGTERM);
  return wait_exit();
}

void TestServer::kill9() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  wait_exit();
}

namespace {

HttpResponse read_response(asio::ip::tcp::socket& socket) {
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(std::numeric_limits<std::uint64_t>::max());
  http::read(socket, buffer, parser);
  auto& res = parser.get();
  HttpResponse out;
  out.status = res.result_int();
  for (const auto& field : res) {
    std::string name(field.name_string());
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out.headers[name] = std::string(field.value());
  }
  out.body = std::move(res.body());
  return out;
}

asio::ip::tcp::socket connect(asio::io_context& io, int port) {
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)});
  return socket;
}

}  // namespace

HttpResponse http_request(int port, const std::string& method, const std::string& target,
                          const std::string& body, const std::string& content_type,
                          const std::map<std::string, std::string>& headers) {
  asio::io_context io;
  auto socket = connect(io, port);
  http::request<http::string_body> req(http::string_to_verb(method), target, 11);
  req.method_string(method);
  req.set(http::field::host, "127.0.0.1");
  req.set(http::field::connection, "close");
  if (!body.empty() || method == "POST" || method == "PUT") {
    req.set(http::field::content_type, content_type);
    req.body() = body;
    req.prepare_payload();
  }
  for (const auto& [name, value] : headers) req.set(name, value);
  http::write(socket, req);
  return read_response(socket);
}

HttpResponse http_raw(int port, const std::string& bytes) {
  asio::io_context io;
  auto socket = connect(io, port);
  asio::write(socket, asio::buffer(bytes));
  return read_response(socket);
}

std::string url_encode(const std::string& text) { return gswarm::url_encode(text); }

}  // namespace gswarm::testing
