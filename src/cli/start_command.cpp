#include "cli/start_command.hpp"

#include <sys/prctl.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "cli/token_option.hpp"
#include "core/size.hpp"
#include "server/server.hpp"
#include "storage/store.hpp"
#include "storage/system_memory.hpp"

namespace gswarm::cli {
namespace {

struct StartArgs {
  std::string host = "0.0.0.0";
  int port = 9015;
  std::string max_memory = "16GB";
  std::string max_key_metadata = "0";
  std::string max_pinned = "4GB";
  std::string max_device_memory = "0";
  std::string disk_path = "/tmp/gswarm_data";
  std::vector<std::string> source_roots;
  std::vector<std::string> url_source_allow;
  int source_timeout = 300;
  std::string max_disk = "0";
  int threads = 0;
  int move_threads = 4;
  int io_threads = 4;
  std::size_t max_queued_moves = 1024;
  std::uint64_t max_connections = 0;
  std::string max_buffer_memory = "1GB";
  int drain_timeout = 10;
  std::string log_level = "info";
  std::string max_request_size = "256MB";
  std::string max_value_size = "64GB";
  std::string move_rate_limit = "0";
  std::string node_name;
  std::vector<std::string> peers;
  std::string peers_file;
  std::string advertise;
  std::string etcd;
  std::string etcd_prefix = "/gswarm";
  int etcd_ttl = 10;
  int streams = 4;
  std::string parallel_threshold = "64MB";
  int peer_timeout = 30;
  int transfer_timeout = 60;
  int idle_timeout = 60;
  int header_timeout = 10;
  int request_timeout = 30;
  std::uint64_t max_pending_per_address = 64;
  std::vector<std::string> allow_origins;
  std::vector<std::string> allow_hosts;
  TokenArgs token;
  std::string protected_mode = "yes";
  std::string tls_cert;
  std::string tls_key;
  std::string tls_ca;
};

// Parses one size option, or prints one line and exits.
std::uint64_t size_option(const std::string& option, const std::string& text) {
  auto size = parse_size(text);
  if (!size) {
    std::cerr << "error: " << option << ": " << size.error().message << "\n";
    std::exit(2);
  }
  return *size;
}

int run_start(const StartArgs& args) {
  auto level = spdlog::level::from_str(args.log_level);
  if (level == spdlog::level::off && args.log_level != "off") {
    std::cerr << "error: --log-level: use trace, debug, info, warn, error, critical or off\n";
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("gswarm"));
  spdlog::set_level(level);

  StoreOptions store_options;
  store_options.max_memory = size_option("--max-memory", args.max_memory);
  store_options.max_key_metadata = size_option("--max-key-metadata", args.max_key_metadata);
  store_options.max_pinned = size_option("--max-pinned", args.max_pinned);
  store_options.max_device_memory = size_option("--max-device-memory", args.max_device_memory);
  store_options.disk_path = args.disk_path;
  store_options.max_disk = size_option("--max-disk", args.max_disk);
  store_options.move_threads = args.move_threads;
  store_options.io_threads = args.io_threads;
  store_options.max_queued_moves = args.max_queued_moves;
  store_options.move_rate_limit = size_option("--move-rate-limit", args.move_rate_limit);
  if (store_options.max_memory == 0) {
    std::cerr << "error: --max-memory must be greater than 0\n";
    return 2;
  }
  if (store_options.max_memory > (std::uint64_t{1} << 50)) {
    std::cerr << "error: --max-memory " << args.max_memory
              << " is not a limit any machine has; give a size up to 1PB\n";
    return 2;
  }
  if (auto total = system_memory().total; total > 0 && store_options.max_memory > total) {
    spdlog::warn(
        "--max-memory {} is more than this machine's {} of memory: the limit will not "
        "stop the server from running out of memory",
        format_size(store_options.max_memory), format_size(total));
  }
  // Other processes of this user must not reach values (or anything else) through
  // /proc/<pid>/mem or /proc/<pid>/fd: read pointers go through the local socket.
  ::prctl(PR_SET_DUMPABLE, 0);
  // A peer that goes away mid-send is an error to handle, not a reason to die
  // (sendfile() cannot be told MSG_NOSIGNAL).
  std::signal(SIGPIPE, SIG_IGN);

  server::ServerOptions options;
  options.host = args.host;
  options.port = static_cast<std::uint16_t>(args.port);
  options.threads = args.threads;
  options.node_name = args.node_name;
  options.limits.max_request_size = size_option("--max-request-size", args.max_request_size);
  options.limits.max_value_size = size_option("--max-value-size", args.max_value_size);
  options.idle_timeout = std::chrono::seconds(args.idle_timeout);
  options.header_timeout = std::chrono::seconds(args.header_timeout);
  options.max_pending_per_address = args.max_pending_per_address;
  options.allowed_origins = args.allow_origins;
  options.allowed_hosts = args.allow_hosts;
  options.request_timeout = std::chrono::seconds(args.request_timeout);
  options.drain_timeout = std::chrono::seconds(args.drain_timeout);
  options.max_connections = args.max_connections;
  options.max_buffer_memory = size_option("--max-buffer-memory", args.max_buffer_memory);
  options.cluster.peers = args.peers;
  options.cluster.peers_file = args.peers_file;
  options.cluster.advertise = args.advertise;
  options.cluster.etcd.url = args.etcd;
  options.cluster.etcd.prefix = args.etcd_prefix;
  options.cluster.etcd.ttl = std::chrono::seconds(args.etcd_ttl);
  options.cluster.sender.streams = args.streams;
  options.cluster.sender.parallel_threshold =
      size_option("--parallel-threshold", args.parallel_threshold);
  options.cluster.sender.timeout = std::chrono::seconds(args.peer_timeout);
  options.cluster.transfer_timeout = std::chrono::seconds(args.transfer_timeout);
  options.source_roots = args.source_roots;
  options.url_source_allow = args.url_source_allow;
  options.source_timeout = std::chrono::seconds(args.source_timeout);

  auto token = resolve_token(args.token, /*warn_if_shared=*/true);
  if (!token) {
    std::cerr << "error: " << token.error().message << "\n";
    return 2;
  }
  options.token = *token;
  options.protected_mode = args.protected_mode == "yes";
  options.tls_cert = args.tls_cert;
  options.tls_key = args.tls_key;
  options.tls_ca = args.tls_ca;

  auto store = Store::open(store_options);
  if (!store) {
    std::cerr << "error: " << store.error().message << "\n";
    return 1;
  }
  server::Server server(**store, options);
  if (auto ok = server.listen(); !ok) {
    std::cerr << "error: " << ok.error().message << "\n";
    return 1;
  }
  // Tests and scripts wait for this line; it goes to stdout, flushed.
  std::printf("gswarm listening on %s:%u\n", args.host.c_str(), server.port());
  std::fflush(stdout);
  spdlog::info(
      "max memory {}, disk {} ({}), {} move threads, {} io threads, at most {} "
      "connections, {} for request buffers",
      format_size(store_options.max_memory), args.disk_path,
      store_options.max_disk == 0 ? std::string("no limit") : format_size(store_options.max_disk),
      store_options.move_threads, store_options.io_threads, server.max_connections(),
      format_size(options.max_buffer_memory));
  server.run();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

void add_start_command(CLI::App& data) {
  auto args = std::make_shared<StartArgs>();
  CLI::App* cmd = data.add_subcommand("start", "Start the data server (KV storage and data pool)");
  cmd->group("Server");
  cmd->add_option("--host", args->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", args->port, "Port to listen on (0: any free port)")
      ->capture_default_str()
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--max-memory", args->max_memory,
                  "DRAM limit, e.g. 16GB, 512MB, 1TB or bytes (powers of 1024)")
      ->capture_default_str();
  cmd->add_option("--max-key-metadata", args->max_key_metadata,
                  "What key metadata may take (counted in DRAM, bounded by this instead of "
                  "--max-memory, so a full DRAM still takes disk writes; 0: --max-memory / 16, "
                  "at least 64MB)")
      ->capture_default_str();
  cmd->add_option("--max-pinned", args->max_pinned, "Pinned (page-locked) host memory limit")
      ->capture_default_str();
  cmd->add_option("--max-device-memory", args->max_device_memory,
                  "Limit per GPU (0: 90% of the memory free at start-up)")
      ->capture_default_str();
  cmd->add_option("--disk-path", args->disk_path, "Directory for disk-location values")
      ->capture_default_str();
  cmd->add_option("--source-root", args->source_roots,
                  "Directory whose files data pool creates may read (repeatable; none: only "
                  "uploads, URLs and keys)")
      ->check(CLI::ExistingDirectory);
  cmd->add_option("--url-source-allow", args->url_source_allow,
                  "Host whose http:// URLs data pool creates may fetch: HOST or HOST:PORT, globs "
                  "allowed (repeatable; none: no URL is fetched). Loopback and link-local "
                  "addresses only from a host named exactly")
      ->check([](const std::string& pattern) {
        return pattern.empty() || pattern.find_first_of(" /@") != std::string::npos
                   ? std::string("give a host or host:port, e.g. data.example.com or "
                                 "*.internal:8080")
                   : std::string();
      });
  cmd->add_option("--source-timeout", args->source_timeout,
                  "Seconds a data pool create may take to fetch a URL source, in all")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--max-disk", args->max_disk, "Disk limit (0: until the file system is full)")
      ->capture_default_str();
  cmd->add_option("--threads", args->threads, "Network threads (0: one per core)")
      ->capture_default_str()
      ->check(CLI::Range(0, 1024));
  cmd->add_option("--move-threads", args->move_threads,
                  "Threads that copy values between tiers (moves and sends)")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--io-threads", args->io_threads,
                  "Threads for the short blocking steps of requests (disk writes, releases), "
                  "which large copies never hold up")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--max-queued-moves", args->max_queued_moves,
                  "Asynchronous moves that may wait to run; more are answered 429")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--max-connections", args->max_connections,
                  "Connections served at once; more are answered 503 (default: half the open-file "
                  "limit, at most 4096)")
      ->check(CLI::Range(1, 1000000));
  cmd->add_option("--max-buffer-memory", args->max_buffer_memory,
                  "Memory for request and answer bodies in flight: JSON bodies as they arrive, the "
                  "two 4MB buffers each disk or GPU upload streams through, answers built in "
                  "pieces. Requests beyond it are answered 503")
      ->capture_default_str();
  cmd->add_option("--drain-timeout", args->drain_timeout,
                  "Seconds a stopping server gives requests in flight before it cancels copies "
                  "and closes connections")
      ->capture_default_str()
      ->check(CLI::Range(0, 3600));
  cmd->add_option("--node-name", args->node_name,
                  "This server's name in node:device:N targets (default: the host name)");
  cmd->add_option("--peer", args->peers,
                  "Another server, as NAME=HOST:PORT, so that sends can name it (node2:device:1); "
                  "repeat for each")
      ->type_name("NAME=HOST:PORT");
  cmd->add_option("--peers-file", args->peers_file,
                  "File of peers, one \"NAME HOST:PORT\" per line ('#' starts a comment)");
  cmd->add_option("--advertise-address", args->advertise,
                  "HOST:PORT other servers reach this one at, shown by /nodes (default: the "
                  "listening address; the host name when listening on 0.0.0.0)");
  cmd->add_option("--etcd", args->etcd,
                  "etcd member to register with and find other nodes through (http://HOST:PORT); "
                  "the node drops out when its lease ends")
      ->type_name("URL");
  cmd->add_option("--etcd-prefix", args->etcd_prefix, "Key prefix of this cluster in etcd")
      ->capture_default_str();
  cmd->add_option("--etcd-ttl", args->etcd_ttl,
                  "Seconds of this node's etcd lease: how long after it dies others still list it")
      ->capture_default_str()
      ->check(CLI::Range(2, 3600));
  cmd->add_option("--streams", args->streams,
                  "Connections one large value is sent over at once, each with a byte range")
      ->capture_default_str()
      ->check(CLI::Range(1, 64));
  cmd->add_option(
         "--parallel-threshold", args->parallel_threshold,
         "Values from this size are sent over --streams connections; smaller ones over one")
      ->capture_default_str();
  cmd->add_option("--peer-timeout", args->peer_timeout,
                  "Seconds a send waits for another server to connect or make progress before "
                  "it fails (the source is kept)")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--transfer-timeout", args->transfer_timeout,
                  "Seconds an incoming send in ranges may go without a range before it is "
                  "dropped with the room it reserved")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--log-level", args->log_level, "trace, debug, info, warn, error, critical, off")
      ->capture_default_str();
  cmd->add_option("--max-request-size", args->max_request_size,
                  "Largest JSON body carrying a value (/write, /write_extended, raw values tagged "
                  "json); refused with 413 before it is read")
      ->capture_default_str();
  cmd->add_option("--max-value-size", args->max_value_size,
                  "Largest raw value body (application/octet-stream)")
      ->capture_default_str();
  cmd->add_option("--move-rate-limit", args->move_rate_limit,
                  "Pace each move to this many bytes per second (0: as fast as possible)")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", args->idle_timeout, "Seconds a keep-alive connection may idle")
      ->capture_default_str();
  cmd->add_option("--header-timeout", args->header_timeout,
                  "Seconds a request's head may take to arrive, from its first byte (a new "
                  "connection's first request: from connecting); then 408 and the connection closes")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));
  cmd->add_option("--max-pending-per-address", args->max_pending_per_address,
                  "Connections one address may hold before any of its requests was let in; a "
                  "new one beyond that closes its oldest (0: no limit)")
      ->capture_default_str();
  cmd->add_option("--allow-origin", args->allow_origins,
                  "Web page origin (e.g. http://localhost:3000, or *) whose requests are served; "
                  "requests from other pages (their Origin header) get 403. Repeatable")
      ->type_name("ORIGIN");
  cmd->add_option("--allow-host", args->allow_hosts,
                  "Host name this server answers to without a token, besides IP addresses, "
                  "localhost and its own names (a request naming another Host gets 403: DNS "
                  "rebinding). Repeatable")
      ->type_name("NAME");
  cmd->add_option("--request-timeout", args->request_timeout,
                  "Seconds a request or response may go without progress (408)")
      ->capture_default_str();
  add_token_options(*cmd, args->token,
                    "Token every client must send (Authorization: Bearer), and this server sends "
                    "to other servers; GET /health needs none");
  cmd->add_option("--protected-mode", args->protected_mode,
                  "yes: without a token, a server listening beyond 127.0.0.1 serves only "
                  "clients on this machine (others get 403); no: serve everyone")
      ->capture_default_str()
      ->check(CLI::IsMember({"yes", "no"}));
  cmd->add_option("--tls-cert", args->tls_cert,
                  "PEM certificate (chain): serve HTTPS only, and speak TLS to other servers")
      ->envname("GSWARM_TLS_CERT");
  cmd->add_option("--tls-key", args->tls_key, "PEM private key of --tls-cert")
      ->envname("GSWARM_TLS_KEY");
  cmd->add_option("--tls-ca", args->tls_ca,
                  "PEM certificates other servers' certificates are checked against "
                  "(default: the system's)")
      ->envname("GSWARM_TLS_CA");
  cmd->callback([args] { std::exit(run_start(*args)); });
}

}  // namespace gswarm::cli
