// Shared helpers for the integration tests: thin wrappers over the raw HTTP calls
// in test_server.hpp, response-shape checks, deterministic test values, a raw
// socket exchange with a read timeout (for malformed and oversized requests) and
// a small base64 codec independent of the server's.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_server.hpp"

namespace itest {

using json = nlohmann::json;
using gswarm::testing::HttpResponse;
using gswarm::testing::http_request;
using gswarm::testing::url_encode;

inline constexpr const char* kOctet = "application/octet-stream";

// The body as JSON, or a discarded value when it is not JSON.
inline json body_json(const HttpResponse& r) {
  return json::parse(r.body, nullptr, /*allow_exceptions=*/false);
}

inline std::string describe(const HttpResponse& r) {
  std::string body = r.body.size() > 400 ? r.body.substr(0, 400) + "..." : r.body;
  return "HTTP " + std::to_string(r.status) + " " + body;
}

// Status, JSON content type and the exact error shape {"detail": non-empty, "code": code}.
inline ::testing::AssertionResult IsError(const HttpResponse& r, int status, std::string_view code) {
  if (r.status != status) {
    return ::testing::AssertionFailure() << "expected status " << status << " (" << code
                                         << "), got " << describe(r);
  }
  auto ct = r.headers.find("content-type");
  if (ct == r.headers.end() || ct->second.find("application/json") == std::string::npos) {
    return ::testing::AssertionFailure() << "error response is not application/json: " << describe(r);
  }
  json j = body_json(r);
  if (!j.is_object()) return ::testing::AssertionFailure() << "error body is not a JSON object: " << describe(r);
  if (!j.contains("detail") || !j["detail"].is_string() || j["detail"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "error body lacks a non-empty string 'detail': " << describe(r);
  }
  if (!j.contains("code") || !j["code"].is_string() || j["code"] != code) {
    return ::testing::AssertionFailure() << "expected code '" << code << "': " << describe(r);
  }
  // A read that misses (404 not_found, 409 wrong_location) also says "found": false and the key.
  const bool read_miss = j.size() == 4 && j.contains("found") && j["found"] == false &&
                         j.contains("key") && j["key"].is_string() &&
                         (code == "not_found" || code == "wrong_location");
  if (j.size() != 2 && !read_miss) {
    return ::testing::AssertionFailure() << "error body has fields besides detail and code: " << describe(r);
  }
  return ::testing::AssertionSuccess();
}

// A read's miss: the error, and "found": false with the key (the original server's shape).
inline ::testing::AssertionResult IsReadMiss(const HttpResponse& r, int status, std::string_view code,
                                              std::string_view key) {
  if (auto error = IsError(r, status, code); !error) return error;
  json j = body_json(r);
  if (!j.contains("found") || j["found"] != false || !j.contains("key") || j["key"] != key) {
    return ::testing::AssertionFailure() << "expected \"found\": false and \"key\": \"" << key
                                         << "\": " << describe(r);
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult IsOk(const HttpResponse& r, int status = 200) {
  if (r.status != status) return ::testing::AssertionFailure() << "expected " << status << ", got " << describe(r);
  return ::testing::AssertionSuccess();
}

inline std::string detail_of(const HttpResponse& r) {
  json j = body_json(r);
  if (j.is_object() && j.contains("detail") && j["detail"].is_string()) return j["detail"].get<std::string>();
  return {};
}

// ---- starting the binary ------------------------------------------------------

struct Refusal {
  int exit_code = -1;
  bool started = false;
  std::string stderr_text;
};

// Runs `gswarm data start` on `disk` (with `extra` arguments) and reports whether it started; a server
// that starts is stopped at once.
inline Refusal try_start(const std::filesystem::path& disk,
                         const std::vector<std::string>& extra = {}) {
  const std::filesystem::path err = disk.parent_path() / "start.err";
  const std::filesystem::path out = disk.parent_path() / "start.out";
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<std::string> args = {gswarm::testing::gswarm_binary(), "data", "start", "--host",
                                     "127.0.0.1", "--port", "0", "--disk-path", disk.string()};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::freopen(err.c_str(), "w", stderr);
    std::freopen(out.c_str(), "w", stdout);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  Refusal r;
  for (int i = 0; i < 500; ++i) {
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128;
      break;
    }
    std::ifstream o(out);
    std::string text((std::istreambuf_iterator<char>(o)), std::istreambuf_iterator<char>());
    if (text.find("listening") != std::string::npos) {
      r.started = true;
      ::kill(pid, SIGTERM);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::ifstream e(err);
  r.stderr_text.assign(std::istreambuf_iterator<char>(e), std::istreambuf_iterator<char>());
  return r;
}

// ---- loopback ports that do not answer ------------------------------------------

// A loopback socket that is bound and listening but never accepts: connections
// complete (through the backlog) and then hear nothing. Closed on destruction.
class SilentListener {
 public:
  SilentListener() : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 16) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen on loopback";
    }
    port_ = ntohs(addr.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int fd_;
  int port_ = 0;
};

// A loopback port nothing listens on (it was free a moment ago).
inline int unused_port() {
  int port = 0;
  { SilentListener probe; port = probe.port(); }
  return port;
}

// ---- API calls ------------------------------------------------------------

inline HttpResponse write_json(int port, const std::string& key, const json& value,
                               const std::string& location = "") {
  json body = {{"key", key}, {"value", value}};
  if (!location.empty()) body["location"] = location;
  return http_request(port, "POST", "/write", body.dump());
}

inline std::string raw_write_target(const std::string& key, const std::string& location,
                                    const std::string& format) {
  std::string target = "/write_extended?key=" + url_encode(key);
  if (!location.empty()) target += "&location=" + url_encode(location);
  if (!format.empty()) target += "&format=" + url_encode(format);
  return target;
}

inline HttpResponse write_raw(int port, const std::string& key, const std::string& bytes,
                              const std::string& location = "dram", const std::string& format = "") {
  return http_request(port, "POST", raw_write_target(key, location, format), bytes, kOctet);
}

inline HttpResponse read_json(int port, const std::string& key) {
  return http_request(port, "GET", "/read/" + url_encode(key));
}

inline HttpResponse read_raw(int port, const std::string& key) {
  return http_request(port, "GET", "/read_extended/" + url_encode(key), "", "application/json",
                      {{"Accept", kOctet}});
}

inline HttpResponse read_extended_json(int port, const std::string& key) {
  return http_request(port, "GET", "/read_extended/" + url_encode(key));
}

inline HttpResponse move_key(int port, const std::string& key, const std::string& destination) {
  return http_request(port, "POST", "/move", json({{"key", key}, {"destination", destination}}).dump());
}

// POST /send_extended of `key` to `target`, with the fields of `extra` added.
inline HttpResponse send_key(int port, const std::string& key, const std::string& target,
                             json extra = json::object()) {
  json body = {{"key", key}, {"target", target}};
  body.update(extra);
  return http_request(port, "POST", "/send_extended", body.dump());
}

// A test server's arguments with its log kept to errors.
inline std::vector<std::string> quiet(std::vector<std::string> extra) {
  extra.insert(extra.end(), {"--log-level", "error"});
  return extra;
}

inline HttpResponse release_key(int port, const std::string& key) {
  return http_request(port, "DELETE", "/release/" + url_encode(key));
}

inline HttpResponse location_of(int port, const std::string& key) {
  return http_request(port, "GET", "/location/" + url_encode(key));
}

inline json get_stats(int port) {
  auto r = http_request(port, "GET", "/stats");
  EXPECT_EQ(r.status, 200) << describe(r);
  json j = body_json(r);
  if (!j.is_object() || !j.contains("stats")) {
    ADD_FAILURE() << "/stats answered " << describe(r);
    return json::object();
  }
  return j["stats"];
}

// The "locations" object of GET /locations.
inline json get_locations(int port) {
  auto r = http_request(port, "GET", "/locations");
  EXPECT_EQ(r.status, 200) << describe(r);
  json j = body_json(r);
  if (!j.is_object() || !j.contains("locations") || !j["locations"].is_object()) {
    ADD_FAILURE() << "/locations answered " << describe(r);
    return json::object();
  }
  return j["locations"];
}

inline bool healthy(int port) {
  auto r = http_request(port, "GET", "/health");
  json j = body_json(r);
  return r.status == 200 && j.is_object() && j.value("status", "") == "ok";
}

// Moves the key to DRAM (if needed) and returns its raw bytes and format tag.
struct Bytes {
  int status = 0;
  std::string data;
  std::string format;
};
inline Bytes fetch_bytes(int port, const std::string& key) {
  auto r = read_raw(port, key);
  Bytes out{r.status, r.body, {}};
  if (auto it = r.headers.find("x-gswarm-format"); it != r.headers.end()) out.format = it->second;
  return out;
}

// ---- values ---------------------------------------------------------------

// Deterministic binary bytes (every byte value occurs, NULs included).
inline std::string binary_value(std::size_t size, std::uint32_t seed = 1) {
  std::string out(size, '\0');
  std::uint64_t x = 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(seed) * 0xBF58476D1CE4E5B9ull);
  for (std::size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<char>(x & 0xff);
  }
  return out;
}

inline std::uint64_t fnv1a(std::string_view data) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

// ---- base64 (RFC 4648, padded) --------------------------------------------

inline std::string b64_encode(std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                      (static_cast<unsigned char>(in[i + 1]) << 8) | static_cast<unsigned char>(in[i + 2]);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i + 1 == in.size()) {
    std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

inline std::optional<std::string> b64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (in.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (std::size_t i = 0; i < in.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = in[i + k];
      if (c == '=' && i + 4 == in.size() && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return std::nullopt;
        v[k] = value(c);
        if (v[k] < 0) return std::nullopt;
      }
    }
    std::uint32_t n = (v[0] << 18) | (v[1] << 12) | (v[2] << 6) | v[3];
    out += static_cast<char>((n >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

// ---- raw socket exchange --------------------------------------------------

struct RawOutcome {
  bool answered = false;      // a complete HTTP response was parsed
  bool timed_out = false;     // nothing (complete) arrived within the timeout
  HttpResponse response;
  std::string received;       // every byte that came back
};

// Sends `bytes` (from a separate thread, so a server that answers before reading
// the whole body cannot deadlock us; send errors are ignored), optionally
// half-closes the write side, then reads one response with a receive timeout.
// With `read_to_eof` it keeps reading until the server closes (for pipelines;
// `response` is then the first answer).
inline RawOutcome raw_exchange(int port, std::string bytes, bool half_close = false,
                               int timeout_seconds = 15, bool read_to_eof = false) {
  namespace http = boost::beast::http;
  RawOutcome out;
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    ADD_FAILURE() << "socket() failed";
    return out;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    ADD_FAILURE() << "connect() to port " << port << " failed";
    return out;
  }
  timeval tv{timeout_seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::thread writer([fd, data = std::move(bytes), half_close] {
    std::size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<std::size_t>(n);
    }
    if (half_close) ::shutdown(fd, SHUT_WR);
  });

  auto try_parse = [&](bool eof) -> bool {
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    parser.eager(true);
    boost::beast::error_code ec;
    std::size_t off = 0;
    while (off < out.received.size() && !parser.is_done()) {
      std::size_t n = parser.put(boost::asio::buffer(out.received.data() + off, out.received.size() - off), ec);
      if (ec == http::error::need_more) break;
      if (ec) return false;
      off += n;
    }
    if (!parser.is_done() && eof && parser.is_header_done()) {
      parser.put_eof(ec);
    }
    if (!parser.is_done()) return false;
    auto& res = parser.get();
    out.response.status = res.result_int();
    for (const auto& field : res) {
      std::string name(field.name_string());
      for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      out.response.headers[name] = std::string(field.value());
    }
    out.response.body = res.body();
    return true;
  };

  char buf[65536];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      out.received.append(buf, static_cast<std::size_t>(n));
      if (!read_to_eof && try_parse(false)) {
        out.answered = true;
        break;
      }
      continue;
    }
    if (n == 0) {
      out.answered = try_parse(true);
      break;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) out.timed_out = true;
    out.answered = !out.received.empty() && try_parse(true);
    break;
  }
  // Unblock the writer if it is still sending, then clean up.
  ::shutdown(fd, SHUT_RDWR);
  writer.join();
  ::close(fd);
  return out;
}

// Every regular file under `dir`, as paths relative to it, sorted.
inline std::vector<std::string> files_under(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return out;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
       it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it->is_regular_file()) out.push_back(std::filesystem::relative(it->path(), dir).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// .gsv files under <root>/values.
inline std::vector<std::string> value_files(const std::filesystem::path& root) {
  std::vector<std::string> out;
  for (auto& f : files_under(root / "values")) {
    if (f.size() > 4 && f.ends_with(".gsv")) out.push_back(f);
  }
  return out;
}

// ---- the server process -------------------------------------------------------

// Resident memory of a process in bytes (VmRSS), 0 when it cannot be read.
inline std::uint64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// Open file descriptors of a process.
inline std::size_t open_descriptors(pid_t pid) {
  std::error_code ec;
  std::size_t n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// CPU time (user + system) a process has used, in seconds.
inline double cpu_seconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string field;
  double ticks = 0;
  for (int i = 3; fields >> field; ++i) {
    if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    if (i == 15) break;
  }
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Polls `condition` every 20 ms for up to `seconds`.
template <typename F>
bool wait_until(F condition, double seconds = 10) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return condition();
}

// A raw TCP connection to the server for requests sent by hand: partial bodies,
// slow senders and readers, idle connections.
class RawConnection {
 public:
  // `from`: the loopback address to connect from (e.g. "127.0.0.2"); null: the usual.
  explicit RawConnection(int port, int receive_buffer = 0, const char* from = nullptr) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (receive_buffer > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
    if (from != nullptr) {
      sockaddr_in local{};
      local.sin_family = AF_INET;
      ::inet_pton(AF_INET, from, &local.sin_addr);
      if (::bind(fd_, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0) return;
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }
  // Up to `max` bytes, waiting at most `seconds`; empty on timeout or close.
  std::string receive(std::size_t max = 65536, double seconds = 10) {
    timeval tv{static_cast<time_t>(seconds), static_cast<suseconds_t>((seconds - static_cast<time_t>(seconds)) * 1e6)};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    std::string out(max, '\0');
    ssize_t n = ::recv(fd_, out.data(), max, 0);
    out.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
    return out;
  }
  // Everything until the server closes or `seconds` pass without a byte.
  std::string receive_all(double seconds = 10) {
    std::string out;
    while (true) {
      std::string more = receive(1 << 20, seconds);
      if (more.empty()) return out;
      out += more;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// Whether a message mentions a byte count, as bytes ("1048576") or in a
// human-readable form of a whole number of KB/MB/GB ("1MB", "1 MB", "1.0 MB", "1 MiB").
inline bool mentions_size(const std::string& text, std::uint64_t bytes) {
  if (text.find(std::to_string(bytes)) != std::string::npos) return true;
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  const char* iec[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  std::uint64_t v = bytes;
  int u = 0;
  while (v >= 1024 && v % 1024 == 0 && u < 4) {
    v /= 1024;
    ++u;
  }
  std::string n = std::to_string(v);
  for (const std::string& form : {n + units[u], n + " " + units[u], n + ".0 " + units[u], n + ".0" + units[u],
                                  n + ".00 " + units[u], n + " " + iec[u], n + iec[u], n + ".0 " + iec[u]}) {
    if (text.find(form) != std::string::npos) return true;
  }
  return false;
}

}  // namespace itest
