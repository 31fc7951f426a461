// gswarm_bench: large-value throughput over one keep-alive connection, and key prefill.
//
//   gswarm_bench throughput --port P [--host H] --size N [--count K] [--warmup W]
//                           [--key KEY] [--redis] [--verify] [--print-rounds]
//                           [--location L] [--write-only]
//       Writes a value of N bytes K times, then reads it K times, over one TCP
//       connection, and prints MB/s and GiB/s for each direction. gswarm: raw
//       POST /write_extended (application/octet-stream) and GET /read_extended with
//       Accept: application/octet-stream. --redis: the same with RESP SET/GET against
//       a Redis server. Throughput is bytes moved / elapsed time of the whole
//       request and response, summed over the K timed rounds (W untimed rounds first).
//       The value to send and the buffer that receives it are allocated and touched
//       before timing; the body is received straight into that buffer (at most one
//       small header read's worth of body bytes is copied out of the header buffer).
//       --location: write to that gswarm location (disk, pinned_dram); --write-only:
//       skip the reads (only DRAM values can be read), read_Bps is then 0.
//
//   gswarm_bench prefill --port P [--host H] --size N --keys M [--prefix p] [--json]
//                        [--connections C] [--width W] [--redis]
//       Stores keys p0..p(M-1) with N-byte values over C connections: raw bytes
//       (POST /write_extended) or, with --json, a JSON string of N characters
//       (POST /write), so GET /read works on them. --redis: SET over RESP instead.
//       --width: zero-pad the index to W digits (redis-benchmark's -r keys are
//       "key:" and 12 digits).
//
// The last line of `throughput` is machine-readable (median: the median round alone):
//   RESULT write_Bps=<bytes/s> read_Bps=<bytes/s> write_median_Bps=... read_median_Bps=...
//
// Sizes take K, M, G suffixes (powers of 1024): 4K, 1M, 256M.
// A minimal blocking HTTP/1.1 client on Boost.Asio: gswarm::Client::read_bytes
// returns a freshly allocated std::string per read, which would measure our own
// allocation and page faults rather than the server.

#include <sys/mman.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

[[noreturn]] void die(const std::string& message) {
  std::fprintf(stderr, "gswarm_bench: %s\n", message.c_str());
  std::exit(1);
}

std::uint64_t parse_size(std::string_view text) {
  if (text.empty()) die("empty size");
  std::uint64_t mult = 1;
  char last = text.back();
  if (last == 'B' || last == 'b') {
    text.remove_suffix(1);
    if (text.empty()) die("bad size");
    last = text.back();
  }
  switch (last) {
    case 'K': case 'k': mult = 1ull << 10; break;
    case 'M': case 'm': mult = 1ull << 20; break;
    case 'G': case 'g': mult = 1ull << 30; break;
    default: break;
  }
  if (mult != 1) text.remove_suffix(1);
  std::uint64_t v = 0;
  if (text.empty()) die("bad size");
  for (char c : text) {
    if (c < '0' || c > '9') die("bad size: " + std::string(text));
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v * mult;
}

// A page-aligned buffer, faulted in before any timing (MAP_POPULATE, then touched).
class Buffer {
 public:
  explicit Buffer(std::size_t size) : size_(size) {
    if (size_ == 0) return;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    if (p == MAP_FAILED) die("mmap failed");
    data_ = static_cast<char*>(p);
    std::memset(data_, 0, size_);
  }
  ~Buffer() {
    if (data_) munmap(data_, size_);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  char* data() { return data_; }
  std::size_t size() const { return size_; }

 private:
  char* data_ = nullptr;
  std::size_t size_ = 0;
};

class Connection {
 public:
  Connection(const std::string& host, const std::string& port) : socket_(io_) {
    tcp::resolver resolver(io_);
    asio::connect(socket_, resolver.resolve(host, port));
    socket_.set_option(tcp::no_delay(true));
    host_header_ = host + ":" + port;
  }

  const std::string& host_header() const { return host_header_; }

  void send(std::string_view head, const char* body = nullptr, std::size_t body_size = 0,
            std::string_view tail = {}) {
    std::array<asio::const_buffer, 3> parts = {asio::buffer(head.data(), head.size()),
                                               asio::buffer(body, body_size),
                                               asio::buffer(tail.data(), tail.size())};
    asio::write(socket_, parts);
  }

  // Reads until `delim`; returns the text before it. Bytes after the delimiter
  // stay in `pending_` (at most one small read's worth).
  std::string read_until(std::string_view delim) {
    for (;;) {
      auto pos = pending_.find(delim);
      if (pos != std::string::npos) {
        std::string line = pending_.substr(0, pos);
        pending_.erase(0, pos + delim.size());
        return line;
      }
      if (pending_.size() > 64 * 1024) die("response head too long");
      char chunk[1024];
      std::size_t n = socket_.read_some(asio::buffer(chunk));
      pending_.append(chunk, n);
    }
  }

  // Fills dest[0..n) from pending bytes, then straight from the socket.
  void read_exact(char* dest, std::size_t n) {
    std::size_t have = std::min(n, pending_.size());
    std::memcpy(dest, pending_.data(), have);
    pending_.erase(0, have);
    if (have < n) asio::read(socket_, asio::buffer(dest + have, n - have));
  }

  void discard(std::size_t n) {
    std::string sink(n, '\0');
    read_exact(sink.data(), n);
  }

 private:
  asio::io_context io_;
  tcp::socket socket_;
  std::string host_header_;
  std::string pending_;
};

struct HttpHead {
  int status = 0;
  std::uint64_t content_length = 0;
};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

HttpHead read_http_head(Connection& conn) {
  std::string head = conn.read_until("\r\n\r\n");
  HttpHead out;
  if (head.size() < 12 || head.compare(0, 5, "HTTP/") != 0) die("bad status line: " + head.substr(0, 80));
  out.status = std::atoi(head.c_str() + 9);
  bool have_length = false;
  std::size_t pos = head.find("\r\n");
  while (pos != std::string::npos) {
    std::size_t next = head.find("\r\n", pos + 2);
    std::string_view line(head.data() + pos + 2, (next == std::string::npos ? head.size() : next) - pos - 2);
    auto colon = line.find(':');
    if (colon != std::string_view::npos && lower(line.substr(0, colon)) == "content-length") {
      out.content_length = std::strtoull(std::string(line.substr(colon + 1)).c_str(), nullptr, 10);
      have_length = true;
    }
    pos = next;
  }
  if (!have_length) die("response without Content-Length");
  return out;
}

// Reads a small response body (JSON answer or error) into a string.
std::string read_small_body(Connection& conn, const HttpHead& head) {
  std::string body(head.content_length, '\0');
  conn.read_exact(body.data(), body.size());
  return body;
}

void check_status(Connection& conn, const HttpHead& head, const char* what) {
  if (head.status == 200) return;
  std::string body = read_small_body(conn, head);
  die(std::string(what) + ": HTTP " + std::to_string(head.status) + " " + body.substr(0, 300));
}

// ---- gswarm (HTTP) ----

void http_write_raw(Connection& conn, const std::string& key, const char* data, std::size_t size,
                    const std::string& location = "") {
  std::string target = "/write_extended?key=" + key + (location.empty() ? "" : "&location=" + location);
  std::string head = "POST " + target + " HTTP/1.1\r\nHost: " + conn.host_header() +
                     "\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                     std::to_string(size) + "\r\n\r\n";
  conn.send(head, data, size);
  HttpHead resp = read_http_head(conn);
  check_status(conn, resp, "write");
  conn.discard(resp.content_length);
}

void http_write_json(Connection& conn, const std::string& key, const std::string& json_value) {
  std::string body = "{\"key\":\"" + key + "\",\"value\":" + json_value + "}";
  std::string head = "POST /write HTTP/1.1\r\nHost: " + conn.host_header() +
                     "\r\nContent-Type: application/json\r\nContent-Length: " +
                     std::to_string(body.size()) + "\r\n\r\n";
  conn.send(head, body.data(), body.size());
  HttpHead resp = read_http_head(conn);
  check_status(conn, resp, "write");
  conn.discard(resp.content_length);
}

void http_read_raw(Connection& conn, const std::string& key, Buffer& dest, std::size_t expect) {
  std::string head = "GET /read_extended/" + key + " HTTP/1.1\r\nHost: " + conn.host_header() +
                     "\r\nAccept: application/octet-stream\r\n\r\n";
  conn.send(head);
  HttpHead resp = read_http_head(conn);
  check_status(conn, resp, "read");
  if (resp.content_length != expect || resp.content_length > dest.size())
    die("read: got " + std::to_string(resp.content_length) + " bytes, expected " + std::to_string(expect));
  conn.read_exact(dest.data(), resp.content_length);
}

// ---- Redis (RESP) ----

std::string resp_bulk_head(std::string_view s) {
  return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n";
}

void redis_set(Connection& conn, const std::string& key, const char* data, std::size_t size) {
  std::string head = "*3\r\n$3\r\nSET\r\n" + resp_bulk_head(key) + "$" + std::to_string(size) + "\r\n";
  conn.send(head, data, size, "\r\n");
  std::string line = conn.read_until("\r\n");
  if (line != "+OK") die("SET: " + line.substr(0, 300));
}

void redis_get(Connection& conn, const std::string& key, Buffer& dest, std::size_t expect) {
  std::string req = "*2\r\n$3\r\nGET\r\n" + resp_bulk_head(key);
  conn.send(req);
  std::string line = conn.read_until("\r\n");
  if (line.empty() || line[0] != '$') die("GET: " + line.substr(0, 300));
  long long n = std::atoll(line.c_str() + 1);
  if (n < 0 || static_cast<std::size_t>(n) != expect || static_cast<std::size_t>(n) > dest.size())
    die("GET: got " + std::to_string(n) + " bytes, expected " + std::to_string(expect));
  conn.read_exact(dest.data(), static_cast<std::size_t>(n));
  char crlf[2];
  conn.read_exact(crlf, 2);
}

// ---- commands ----

struct Args {
  std::string command;
  std::string host = "127.0.0.1";
  std::string port;
  std::uint64_t size = 0;
  int count = 5;
  int warmup = 1;
  int connections = 1;
  std::uint64_t keys = 0;
  int width = 0;
  std::string key = "bench_large";
  std::string prefix = "k";
  bool redis = false;
  bool json = false;
  bool verify = false;
  bool print_rounds = false;
  bool write_only = false;
  std::string location;
};

void usage() {
  std::fputs(
      "usage:\n"
      "  gswarm_bench throughput --port P [--host H] --size N [--count K] [--warmup W]\n"
      "                          [--key KEY] [--redis] [--verify] [--print-rounds]\n"
      "                          [--location L] [--write-only]\n"
      "  gswarm_bench prefill --port P [--host H] --size N --keys M [--prefix p] [--json]\n"
      "                       [--connections C] [--width W] [--redis]\n",
      stderr);
  std::exit(2);
}

Args parse_args(int argc, char** argv) {
  if (argc < 2) usage();
  Args a;
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage();
      return argv[++i];
    };
    if (arg == "--host") a.host = value();
    else if (arg == "--port") a.port = value();
    else if (arg == "--size") a.size = parse_size(value());
    else if (arg == "--count") a.count = std::atoi(value().c_str());
    else if (arg == "--warmup") a.warmup = std::atoi(value().c_str());
    else if (arg == "--connections") a.connections = std::atoi(value().c_str());
    else if (arg == "--width") a.width = std::atoi(value().c_str());
    else if (arg == "--keys") a.keys = parse_size(value());
    else if (arg == "--key") a.key = value();
    else if (arg == "--prefix") a.prefix = value();
    else if (arg == "--redis") a.redis = true;
    else if (arg == "--json") a.json = true;
    else if (arg == "--verify") a.verify = true;
    else if (arg == "--print-rounds") a.print_rounds = true;
    else if (arg == "--write-only") a.write_only = true;
    else if (arg == "--location") a.location = value();
    else usage();
  }
  if (a.port.empty() || a.size == 0) usage();
  if (a.command == "throughput" && a.count < 1) usage();
  if (a.command == "prefill" && a.keys == 0) usage();
  return a;
}

void fill_pattern(Buffer& b) {
  // Not constant, so a verify catches misplaced bytes; cheap to generate.
  std::uint64_t x = 0x9e3779b97f4a7c15ull;
  std::size_t words = b.size() / 8;
  auto* p = reinterpret_cast<std::uint64_t*>(b.data());
  for (std::size_t i = 0; i < words; ++i) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    p[i] = x;
  }
  for (std::size_t i = words * 8; i < b.size(); ++i) b.data()[i] = static_cast<char>(i);
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

int run_throughput(const Args& a) {
  const std::size_t n = a.size;
  Buffer value(n);
  Buffer dest(a.write_only ? 0 : n);
  fill_pattern(value);
  Connection conn(a.host, a.port);

  auto write_once = [&] {
    if (a.redis) redis_set(conn, a.key, value.data(), n);
    else http_write_raw(conn, a.key, value.data(), n, a.location);
  };
  auto read_once = [&] {
    if (a.redis) redis_get(conn, a.key, dest, n);
    else http_read_raw(conn, a.key, dest, n);
  };

  std::vector<double> write_rounds, read_rounds;
  for (int i = 0; i < a.warmup; ++i) write_once();
  for (int i = 0; i < a.count; ++i) {
    auto t0 = Clock::now();
    write_once();
    write_rounds.push_back(seconds_since(t0));
  }
  if (!a.write_only) {
    for (int i = 0; i < a.warmup; ++i) read_once();
    for (int i = 0; i < a.count; ++i) {
      auto t0 = Clock::now();
      read_once();
      read_rounds.push_back(seconds_since(t0));
    }
    if (a.verify && std::memcmp(value.data(), dest.data(), n) != 0) die("read returned different bytes");
  }

  const char* server = a.redis ? "redis" : "gswarm";
  double bps[2], median_bps[2];
  bps[1] = median_bps[1] = 0;
  for (int d = 0; d < (a.write_only ? 1 : 2); ++d) {
    auto& rounds = d == 0 ? write_rounds : read_rounds;
    double sum = 0;
    for (double r : rounds) sum += r;
    bps[d] = static_cast<double>(n) * a.count / sum;
    if (a.print_rounds) {
      std::printf("%s rounds ms:", d == 0 ? "write" : "read");
      for (double r : rounds) std::printf(" %.1f", r * 1e3);
      std::printf("\n");
    }
    std::sort(rounds.begin(), rounds.end());
    const double median = rounds[rounds.size() / 2];
    median_bps[d] = static_cast<double>(n) / median;
    std::printf("%s %-5s %llu B x %d: %.1f MB/s (%.2f GiB/s); round ms min %.3f median %.3f max %.3f\n",
                server, d == 0 ? "write" : "read", static_cast<unsigned long long>(n), a.count,
                bps[d] / 1e6, bps[d] / (1 << 30), rounds.front() * 1e3, median * 1e3,
                rounds.back() * 1e3);
  }
  std::printf("RESULT write_Bps=%.0f read_Bps=%.0f write_median_Bps=%.0f read_median_Bps=%.0f\n",
              bps[0], bps[1], median_bps[0], median_bps[1]);
  return 0;
}

int run_prefill(const Args& a) {
  // Keys are dealt round-robin to `connections` threads, one connection each.
  const int nconn = std::max(1, a.connections);
  Buffer value(a.size);
  std::memset(value.data(), 'x', a.size);
  std::string json_value;
  if (a.json) json_value = "\"" + std::string(a.size, 'x') + "\"";
  auto t0 = Clock::now();
  std::vector<std::thread> threads;
  std::vector<std::string> errors(nconn);
  for (int t = 0; t < nconn; ++t) {
    threads.emplace_back([&, t] {
      try {
        Connection conn(a.host, a.port);
        for (std::uint64_t i = t; i < a.keys; i += nconn) {
          std::string index = std::to_string(i);
          if (static_cast<int>(index.size()) < a.width) index.insert(0, a.width - index.size(), '0');
          std::string key = a.prefix + index;
          if (a.redis) redis_set(conn, key, value.data(), a.size);
          else if (a.json) http_write_json(conn, key, json_value);
          else http_write_raw(conn, key, value.data(), a.size);
        }
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& e : errors)
    if (!e.empty()) die("prefill: " + e);
  double s = seconds_since(t0);
  std::printf("prefilled %llu keys of %llu B (%s) in %.2f s (%.0f writes/s on %d connections)\n",
              static_cast<unsigned long long>(a.keys), static_cast<unsigned long long>(a.size),
              a.redis ? "redis" : (a.json ? "json" : "raw"), s, static_cast<double>(a.keys) / s, nconn);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Args a = parse_args(argc, argv);
  try {
    if (a.command == "throughput") return run_throughput(a);
    if (a.command == "prefill") return run_prefill(a);
  } catch (const std::exception& e) {
    die(e.what());
  }
  usage();
}
