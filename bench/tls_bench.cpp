// gswarm_tls_bench: what TLS costs, measured through the C++ client against a
// plain server and a TLS one in the same run (bench/run.sh, part "tls"):
//
//   gswarm_tls_bench --plain HOST:PORT --tls HOST:PORT --ca FILE
//                    [--plain-target HOST:PORT --tls-target HOST:PORT]
//                    [--threads T] [--small N] [--connects N] [--size BYTES] [--rounds R]
//
// For each server, one after the other:
//   small    T threads, each with its own keep-alive connection, N times a 100 B
//            raw write then a read of it: operations per second.
//   connect  N calls (GET /stats) each on a new connection: TCP (and TLS)
//            handshakes per second, from one thread.
//   large    a SIZE value (256 MiB) written and read back R times on one
//            connection (reads straight into a preallocated buffer): the median
//            bytes per second of each.
//   send     with --*-target: the SIZE value sent to that server (same TLS
//            setting) R times, 1 stream: the median bytes per second.
// Each line starts with RESULT and is "tls.<what> plain=X tls=Y".
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <gswarm/client.hpp>

namespace {

using Clock = std::chrono::steady_clock;

struct Args {
  std::string plain, tls, ca, plain_target, tls_target;
  int threads = 4;
  int small = 20000;
  int connects = 500;
  std::uint64_t size = 256ull << 20;
  int rounds = 5;
};

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "gswarm_tls_bench: %s\n", what.c_str());
  std::exit(1);
}

template <typename T>
T must(gswarm::Result<T> result, std::string_view what) {
  if (!result) die(std::string(what) + ": " + result.error().message);
  return std::move(*result);
}

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

gswarm::ClientOptions options_for(bool tls, const Args& a) {
  gswarm::ClientOptions options;
  if (tls) options.tls_ca = a.ca;
  options.move_timeout = std::chrono::minutes(10);
  return options;
}

double small_ops(const std::string& address, bool tls, const Args& a) {
  const std::string value(100, 'v');
  std::vector<std::thread> threads;
  const auto start = Clock::now();
  for (int t = 0; t < a.threads; ++t) {
    threads.emplace_back([&, t] {
      gswarm::Client client(address, options_for(tls, a));
      for (int i = 0; i < a.small; ++i) {
        const std::string key = "tls-bench-" + std::to_string(t) + "-" + std::to_string(i % 1000);
        must(client.write_bytes(key, value), "small write");
        if (must(client.read_bytes(key), "small read").data != value)
          die("small read: wrong bytes");
      }
    });
  }
  for (auto& thread : threads) thread.join();
  return 2.0 * a.threads * a.small / seconds_since(start);
}

double connects(const std::string& address, bool tls, const Args& a) {
  const auto start = Clock::now();
  for (int i = 0; i < a.connects; ++i) {
    gswarm::Client client(address, options_for(tls, a));
    must(client.stats(), "stats on a new connection");
  }
  return a.connects / seconds_since(start);
}

struct Large {
  double write_bps = 0, read_bps = 0, send_bps = 0;
};

Large large(const std::string& address, const std::string& target, bool tls, const Args& a) {
  gswarm::Client client(address, options_for(tls, a));
  std::vector<std::byte> value(a.size);
  for (std::size_t i = 0; i < value.size(); i += 4096) value[i] = std::byte(i >> 12);
  std::vector<std::byte> into(a.size);
  std::vector<double> writes, reads, sends;
  for (int round = 0; round <= a.rounds; ++round) {  // round 0 warms up, untimed
    auto start = Clock::now();
    must(client.write_bytes("tls-bench-large", value), "large write");
    const double w = seconds_since(start);
    start = Clock::now();
    must(client.read_bytes_into("tls-bench-large",
                                [&](std::uint64_t size, std::string_view) {
                                  if (size != into.size()) return std::span<std::byte>();
                                  return std::span<std::byte>(into);
                                }),
         "large read");
    const double r = seconds_since(start);
    if (std::memcmp(into.data(), value.data(), value.size()) != 0) die("large read: wrong bytes");
    if (!target.empty()) {
      gswarm::Client there(target, options_for(tls, a));
      (void)there.release("tls-bench-large");
      gswarm::SendOptions send;
      send.streams = 1;
      start = Clock::now();
      must(client.send("tls-bench-large", target, send), "send");
      if (round > 0) sends.push_back(seconds_since(start));
    }
    if (round > 0) {
      writes.push_back(w);
      reads.push_back(r);
    }
  }
  (void)client.release("tls-bench-large");
  Large out;
  out.write_bps = a.size / median(writes);
  out.read_bps = a.size / median(reads);
  if (!sends.empty()) out.send_bps = a.size / median(sends);
  return out;
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) die(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--plain")
      a.plain = value();
    else if (arg == "--tls")
      a.tls = value();
    else if (arg == "--ca")
      a.ca = value();
    else if (arg == "--plain-target")
      a.plain_target = value();
    else if (arg == "--tls-target")
      a.tls_target = value();
    else if (arg == "--threads")
      a.threads = std::atoi(value().c_str());
    else if (arg == "--small")
      a.small = std::atoi(value().c_str());
    else if (arg == "--connects")
      a.connects = std::atoi(value().c_str());
    else if (arg == "--size")
      a.size = std::strtoull(value().c_str(), nullptr, 10);
    else if (arg == "--rounds")
      a.rounds = std::atoi(value().c_str());
    else
      die("unknown argument " + std::string(arg) +
          " (see the comment at the top of bench/tls_bench.cpp)");
  }
  if (a.plain.empty() || a.tls.empty() || a.ca.empty()) die("--plain, --tls and --ca are needed");
  if (a.rounds < 1 || a.threads < 1 || a.small < 1 || a.connects < 1 || a.size == 0) {
    die("--rounds, --threads, --small, --connects and --size must be positive");
  }
  return a;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  auto report = [](const char* what, double plain, double tls) {
    std::printf("RESULT tls.%s plain=%.1f tls=%.1f\n", what, plain, tls);
    std::fflush(stdout);
  };
  std::fprintf(stderr, "small: %d threads x %d writes and reads of 100 B\n", a.threads, a.small);
  report("small_ops", small_ops(a.plain, false, a), small_ops(a.tls, true, a));
  std::fprintf(stderr, "connect: %d new connections\n", a.connects);
  report("connects", connects(a.plain, false, a), connects(a.tls, true, a));
  std::fprintf(stderr, "large: %llu B x %d rounds\n", static_cast<unsigned long long>(a.size),
               a.rounds);
  const Large plain = large(a.plain, a.plain_target, false, a);
  const Large tls = large(a.tls, a.tls_target, true, a);
  report("large_write_Bps", plain.write_bps, tls.write_bps);
  report("large_read_Bps", plain.read_bps, tls.read_bps);
  if (plain.send_bps > 0 && tls.send_bps > 0) report("send_Bps", plain.send_bps, tls.send_bps);
  return 0;
}
