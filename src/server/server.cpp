#include "server/server.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <openssl/x509.h>

#include "cluster/incoming.hpp"
#include "cluster/membership.hpp"
#include "cluster/peer_connection.hpp"
#include "cluster/url_source.hpp"
#include "pool/pool.hpp"
#include "server/local_socket.hpp"
#include "server/session.hpp"
#include "storage/shared_memory.hpp"
#include "tls/tls.hpp"

namespace gswarm::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
// Descriptors kept free of connections and value segments: files being
// written, read pointers being handed out, the log.
constexpr std::uint64_t kSpareDescriptors = 256;
constexpr std::uint64_t kDefaultMaxConnections = 4096;
// Connections turned away at once (each gets its 503 and up to kTurnAwayLinger).
constexpr std::uint64_t kMaxTurnAways = 64;
constexpr auto kTurnAwayLinger = std::chrono::seconds(2);
constexpr auto kAcceptLogEvery = std::chrono::seconds(10);

std::string node_name(const std::string& configured) {
  if (!configured.empty()) return configured;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

std::string canned_503(std::string_view detail) {
  std::string body = fmt::format(R"({{"detail":"{}","code":"unavailable"}})", detail);
  return fmt::format(
      "HTTP/1.1 503 Service Unavailable\r\nServer: gswarm\r\nContent-Type: "
      "application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: "
      "close\r\n\r\n{}",
      body.size(), body);
}

bool out_of_descriptors(const beast::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE || ec.value() == ENOBUFS ||
         ec.value() == ENOMEM;
}

// Answers 503 and closes, reading what the client still sends for a moment so
// that the answer is not lost to a reset. The socket is shared with the linger
// timer's handler, which may run after the coroutine is gone.
asio::awaitable<void> turn_away(std::shared_ptr<tcp::socket> socket, std::string answer,
                                std::atomic<std::uint64_t>& turning_away) {
  auto [ec, n] = co_await asio::async_write(*socket, asio::buffer(answer), kAwait);
  if (!ec) {
    beast::error_code ignored;
    socket->shutdown(tcp::socket::shutdown_send, ignored);
    asio::steady_timer linger(socket->get_executor(), kTurnAwayLinger);
    linger.async_wait([socket](beast::error_code e) {
      beast::error_code ignored2;
      if (!e) socket->cancel(ignored2);
    });
    char sink[4096];
    while (true) {
      auto [rec, got] = co_await socket->async_read_some(asio::buffer(sink), kAwait);
      if (rec) break;
    }
    linger.cancel();
  }
  beast::error_code ignored;
  socket->close(ignored);
  turning_away.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

// Requests to other servers carry this server's token (a cluster shares one)
// and, when this server speaks TLS, use TLS too, trusting --tls-ca.
ServerOptions for_peers(ServerOptions options, std::optional<Error>& error) {
  auto& sender = options.cluster.sender;
  if (sender.token.empty()) sender.token = options.token;
  if (!options.tls_cert.empty() && !sender.tls) {
    auto context = tls::ClientContext::create(options.tls_ca);
    if (context) {
      sender.tls = std::move(*context);
    } else {
      error = Error{ErrorCode::kBadRequest, fmt::format("--tls-ca: {}", context.error().message)};
    }
  }
  return options;
}

// The TLS side of --tls-cert and --tls-key: TLS 1.2 or later, the key checked
// against the certificate. The reason (naming the option) when they do not load.
Result<void> load_tls(asio::ssl::context& tls, const ServerOptions& options) {
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return make_error(ErrorCode::kBadRequest,
                      "--tls-cert and --tls-key go together: give the certificate and its key");
  }
  SSL_CTX_set_min_proto_version(tls.native_handle(), TLS1_2_VERSION);
  tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                  asio::ssl::context::single_dh_use);
  // A client that closes without TLS's goodbye has still ended the stream.
  SSL_CTX_set_options(tls.native_handle(), SSL_OP_IGNORE_UNEXPECTED_EOF);
  beast::error_code ec;
  if (tls.use_certificate_chain_file(options.tls_cert, ec); ec) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--tls-cert {}: cannot load a PEM certificate from it: {}",
                                  options.tls_cert, ec.message()));
  }
  if (tls.use_private_key_file(options.tls_key, asio::ssl::context::pem, ec); ec) {
    if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("--tls-key {} is not the key of the certificate in --tls-cert {}",
                                    options.tls_key, options.tls_cert));
    }
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--tls-key {}: cannot load a PEM private key from it: {}",
                                  options.tls_key, ec.message()));
  }
  if (SSL_CTX_check_private_key(tls.native_handle()) != 1) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--tls-key {} is not the key of the certificate in --tls-cert {}",
                                  options.tls_key, options.tls_cert));
  }
  return {};
}

struct Server::Impl {
  Impl(Store& store, ServerOptions opts)
      : options(for_peers(std::move(opts), setup_error)),
        pending(options.max_pending_per_address),
        ctx{store, options.limits, node_name(options.node_name), &state},
        membership(ctx.node_name, cluster::Address{options.host, options.port}),
        sender(store, membership, options.cluster.sender),
        transfers(options.cluster.transfer_timeout),
        url_sources(cluster::UrlSources::Options{
            options.url_source_allow, options.source_timeout, options.cluster.sender.timeout,
            // Half the movers at most: slow sources never hold up every move.
            std::max(1, store.movers().threads() / 2)}) {
    ctx.membership = &membership;
    ctx.url_sources = &url_sources;
    ctx.sender = &sender;
    ctx.transfers = &transfers;
    state.buffers.set_limit(options.max_buffer_memory);
    int n = options.threads > 0
                ? options.threads
                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    metrics = std::make_unique<Metrics>(static_cast<std::size_t>(n));
    state.metrics = metrics.get();
    for (int i = 0; i < n; ++i) loops.push_back(std::make_unique<Loop>(metrics->shard(i)));
  }

  struct Loop {
    asio::io_context io{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{
        io.get_executor()};
    explicit Loop(Metrics::Shard& shard) : metrics(shard) {}
    Metrics::Shard& metrics;    // counted only by this loop's thread
    ConnectionSet connections;  // only touched on this loop's thread
    asio::steady_timer sweeper{io};
  };

  // Every kSweep, cancels the pending operation of each connection whose deadline
  // passed; its session sees `timed_out` and answers 408 or closes. Once the
  // server stops, also closes connections past the drain deadline, and ends when
  // the loop has none left.
  static constexpr auto kSweep = std::chrono::milliseconds(250);
  static constexpr auto kStoppingSweep = std::chrono::milliseconds(10);
  void sweep(Loop& loop) {
    loop.sweeper.expires_after(stopping ? kStoppingSweep : kSweep);
    loop.sweeper.async_wait([this, &loop](beast::error_code ec) {
      if (ec && !stopping) return;  // begin_stop() cancels the wait to sweep at once
      const auto now = Connection::Clock::now();
      for (const auto& conn : loop.connections) {
        beast::error_code ignored;
        if (conn->drain_deadline < now) {
          conn->stream.socket().close(ignored);
        } else if (conn->deadline < now && !conn->timed_out && !conn->write_progressed()) {
          conn->timed_out = true;
          conn->stream.socket().cancel(ignored);
        }
      }
      // Loop 0 also holds the signal and drain timers: it ends after every loop's
      // connections are gone, the others once their own are. It also drops
      // transfers whose sender went quiet.
      const bool first = &loop == loops[0].get();
      if (first && !stopping) {
        if (std::size_t n = transfers.expire(); n > 0) {
          spdlog::info("dropped {} incoming transfer(s) idle for over {} s", n,
                       transfers.idle_timeout().count());
        }
      }
      if (stopping && loop.connections.empty() && (!first || state.connections.load() == 0)) {
        if (first) finish_stop();
        loop.guard.reset();
        return;
      }
      sweep(loop);
    });
  }

  // Who this server is to the others, and who they are.
  Result<void> join_cluster() {
    const auto& c = options.cluster;
    if (!c.advertise.empty()) {
      auto address = cluster::parse_address(c.advertise);
      if (!address) {
        return make_error(ErrorCode::kBadRequest,
                          fmt::format("--advertise-address: {}", address.error().message));
      }
      membership.set_self_address(std::move(*address));
    } else {
      beast::error_code ec;
      const std::uint16_t port = acceptor->local_endpoint(ec).port();
      // A server listening on every interface is reached by its host name.
      const bool any = options.host == "0.0.0.0" || options.host == "::";
      membership.set_self_address({any ? node_name("") : options.host, port});
    }
    for (const auto& peer : c.peers) {
      if (auto ok = membership.add_static(peer); !ok) return ok;
    }
    if (!c.peers_file.empty()) {
      if (auto ok = membership.load_peers_file(c.peers_file); !ok) return ok;
    }
    if (!c.etcd.url.empty()) {
      auto etcd_options = c.etcd;
      if (!etcd_options.answers) {
        etcd_options.answers = [tls = c.sender.tls](const cluster::Address& address) {
          return cluster::answers_health(address, std::chrono::seconds(1), tls.get());
        };
      }
      etcd = std::make_unique<cluster::EtcdMembership>(membership, std::move(etcd_options));
      if (auto ok = etcd->start(); !ok) return ok;
    }
    return {};
  }

  void accept_next() {
    if (stopping) return;
    Loop& target = *loops[next_loop++ % loops.size()];
    acceptor->async_accept(target.io, [this, &target](beast::error_code ec, tcp::socket socket) {
      if (stopping || ec == asio::error::operation_aborted) return;
      if (ec) return accept_failed(ec);
      accept_backoff = std::chrono::milliseconds(0);
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      if (state.connections.load(std::memory_order_relaxed) >= state.max_connections &&
          !pending.evict_oldest()) {
        refuse(target, std::move(socket),
               fmt::format("too many connections: this server serves at most {} at once "
                           "(--max-connections); retry shortly",
                           state.max_connections));
      } else {
        state.connections.fetch_add(1, std::memory_order_relaxed);
        asio::post(target.io, [this, &target, s = std::move(socket)]() mutable {
          if (stopping) {  // accepted as the server stopped: its loop may no longer sweep
            state.connections.fetch_sub(1, std::memory_order_relaxed);
            return;
          }
          auto conn = std::make_shared<Connection>(std::move(s), tls ? &*tls : nullptr);
          beast::error_code ec;
          auto peer = conn->stream.socket().remote_endpoint(ec);
          if (ec) {  // gone already
            state.connections.fetch_sub(1, std::memory_order_relaxed);
            return;
          }
          conn->from_loopback = is_loopback(peer.address());
          conn->pending_ticket = pending.add(conn, peer.address(), target.io.get_executor());
          target.connections.insert(conn);
          asio::co_spawn(
              target.io,
              serve(conn, SessionEnv{ctx, options, access, pending, target.metrics, stopping},
                    target.connections),
              asio::detached);
        });
      }
      accept_next();
    });
  }

  void refuse(Loop& target, tcp::socket socket, std::string detail) {
    // A TLS client could not read a plain answer: it sees the connection close.
    if (tls) return;
    if (turning_away.fetch_add(1, std::memory_order_relaxed) >= kMaxTurnAways) {
      turning_away.fetch_sub(1, std::memory_order_relaxed);
      return;  // closing it is all we can afford
    }
    asio::post(target.io, [this, &target, s = std::move(socket), d = std::move(detail)]() mutable {
      asio::co_spawn(
          target.io,
          turn_away(std::make_shared<tcp::socket>(std::move(s)), canned_503(d), turning_away),
          asio::detached);
    });
  }

  // Accepting failed. Out of descriptors, retrying at once would spin: back off
  // (10 ms doubling to 1 s), tell one waiting client why with the descriptor
  // kept spare for this, and log at most every kAcceptLogEvery.
  void accept_failed(const beast::error_code& ec) {
    const auto now = std::chrono::steady_clock::now();
    ++accept_failures;
    if (now - last_accept_log >= kAcceptLogEvery) {
      spdlog::warn(
          "accept failed: {}{} ({} times since the last report); backing off", ec.message(),
          out_of_descriptors(ec) ? " (raise the open-file limit or lower --max-connections)" : "",
          accept_failures);
      last_accept_log = now;
      accept_failures = 0;
    }
    if (out_of_descriptors(ec) && spare_descriptor) {
      spare_descriptor.reset();
      beast::error_code aec;
      tcp::socket waiting = acceptor->accept(aec);
      if (!aec && !tls) {
        std::string answer = canned_503("the server is out of file descriptors; retry shortly");
        (void)::send(waiting.native_handle(), answer.data(), answer.size(),
                     MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      spare_descriptor.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    }
    accept_backoff = std::clamp(accept_backoff * 2, std::chrono::milliseconds(10),
                                std::chrono::milliseconds(1000));
    backoff_timer->expires_after(accept_backoff);
    backoff_timer->async_wait([this](beast::error_code e) {
      if (!e) accept_next();
    });
  }

  // Runs on loop 0: stop accepting, close idle connections, give the others
  // until the drain deadline.
  void begin_stop() {
    if (stopping.exchange(true)) return;
    spdlog::info("shutting down: finishing requests in flight (at most {} s)",
                 options.drain_timeout.count());
    drain_deadline = Connection::Clock::now() + options.drain_timeout;
    beast::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    backoff_timer->cancel();
    if (local) local->stop();
    if (signals) {
      signals->async_wait([](beast::error_code ec, int) {
        if (ec) return;
        spdlog::warn("second signal: exiting now");
        spdlog::default_logger()->flush();
        std::_Exit(1);
      });
    }
    drain_timer->expires_at(drain_deadline);
    drain_timer->async_wait([this](beast::error_code ec) {
      if (ec) return;
      spdlog::warn("drain deadline passed: cancelling copies and closing {} connections",
                   state.connections.load());
      ctx.store.begin_shutdown();
    });
    for (auto& loop : loops) {
      asio::post(loop->io, [this, l = loop.get()] {
        for (const auto& conn : l->connections) {
          conn->drain_deadline = drain_deadline;
          conn->deadline = std::min(conn->deadline, drain_deadline);
          beast::error_code ignored2;
          if (conn->idle) conn->stream.socket().cancel(ignored2);
        }
        l->sweeper.cancel();
      });
    }
  }

  Result<void> open_pool() {
    pool::PoolOptions pool_options;
    pool_options.node_name = ctx.node_name;
    for (const auto& root : options.source_roots) {
      std::error_code ec;
      auto canonical = std::filesystem::canonical(root, ec);
      if (ec || !std::filesystem::is_directory(canonical, ec)) {
        return make_error(ErrorCode::kBadRequest,
                          fmt::format("--source-root {}: {}", root,
                                      ec ? ec.message() : std::string("not a directory")));
      }
      pool_options.source_roots.push_back(std::move(canonical));
    }
    auto opened = pool::Pool::open(ctx.store, std::move(pool_options));
    if (!opened) return tl::unexpected(opened.error());
    pool = std::move(*opened);
    ctx.pool = pool.get();
    return {};
  }

  // Work handlers left running on the task pools (asynchronous creates and
  // transfers) uses the context: it must end first.
  ~Impl() {
    ctx.store.begin_shutdown();  // they stop early: no client waits for them
    while (state.detached_tasks.load() > 0)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }

  // Loop 0 once no connection is left: nothing may keep it running.
  void finish_stop() {
    drain_timer->cancel();
    backoff_timer->cancel();
    beast::error_code ignored;
    if (signals) signals->cancel(ignored);
  }

  std::optional<Error> setup_error;  // reported by listen(); declared before what it sets up
  ServerOptions options;
  AccessPolicy access;                    // set by listen()
  PendingConnections pending;
  std::optional<asio::ssl::context> tls;  // set by listen() with --tls-cert
  std::unique_ptr<Metrics> metrics;
  ServerState state;
  Context ctx;
  cluster::Membership membership;
  cluster::Sender sender;
  cluster::IncomingTransfers transfers;
  cluster::UrlSources url_sources;
  std::unique_ptr<cluster::EtcdMembership> etcd;  // leaves etcd when the server is destroyed
  std::unique_ptr<pool::Pool> pool;
  std::vector<std::unique_ptr<Loop>> loops;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::signal_set> signals;
  std::optional<asio::steady_timer> backoff_timer;  // loop 0
  std::optional<asio::steady_timer> drain_timer;    // loop 0
  std::unique_ptr<LocalSocket> local;
  std::atomic<bool> stopping{false};
  Connection::Clock::time_point drain_deadline = Connection::Clock::time_point::max();
  UniqueFd spare_descriptor;
  std::atomic<std::uint64_t> turning_away{0};
  // Only touched on loop 0:
  std::size_t next_loop = 0;
  std::chrono::milliseconds accept_backoff{0};
  std::uint64_t accept_failures = 0;
  std::chrono::steady_clock::time_point last_accept_log{};
};

Server::Server(Store& store, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

Server::~Server() = default;

Result<void> Server::listen() {
  Impl& impl = *impl_;
  auto& io = impl.loops[0]->io;
  // Connections, value segments and spare descriptors share the process's limit.
  const std::uint64_t fd_limit = SharedMemory::raise_fd_limit();
  std::uint64_t max_connections = impl.options.max_connections;
  const std::uint64_t usable =
      fd_limit > 2 * kSpareDescriptors ? fd_limit - kSpareDescriptors : fd_limit / 2;
  if (max_connections == 0)
    max_connections = std::clamp<std::uint64_t>(usable / 2, 16, kDefaultMaxConnections);
  if (max_connections > usable) {
    spdlog::warn(
        "--max-connections {} is more than the open-file limit ({}) leaves room for; "
        "connections beyond that wait until descriptors free up",
        max_connections, fd_limit);
  }
  impl.state.max_connections = max_connections;
  SharedMemory::set_fd_budget(usable > max_connections ? usable - max_connections : 0);
  impl.spare_descriptor.reset(::open("/dev/null", O_RDONLY | O_CLOEXEC));

  beast::error_code ec;
  auto address = asio::ip::make_address(
      impl.options.host == "localhost" ? "127.0.0.1" : impl.options.host, ec);
  if (ec) {
    return make_error(
        ErrorCode::kBadRequest,
        fmt::format("invalid --host '{}': give an IP address such as 0.0.0.0 or 127.0.0.1",
                    impl.options.host));
  }
  if (impl.setup_error) return tl::unexpected(*impl.setup_error);
  if (!impl.options.tls_cert.empty() || !impl.options.tls_key.empty()) {
    impl.tls.emplace(asio::ssl::context::tls_server);
    if (auto loaded = load_tls(*impl.tls, impl.options); !loaded) return loaded;
    spdlog::info("TLS: serving HTTPS only, with {}; other servers' certificates are checked "
                 "against {}",
                 impl.options.tls_cert,
                 impl.options.tls_ca.empty() ? "the system's" : impl.options.tls_ca);
  }
  if (!impl.options.token.empty()) {
    if (auto valid = validate_token(impl.options.token); !valid) {
      return make_error(ErrorCode::kBadRequest, fmt::format("--token: {}", valid.error().message));
    }
  }
  impl.access.token = impl.options.token;
  impl.access.bound_to = impl.options.host;
  impl.access.allowed_origins = impl.options.allowed_origins;
  impl.access.allowed_hosts = impl.options.allowed_hosts;
  // The names a client on this machine or in this cluster reaches it by.
  impl.access.own_names = {node_name(""), impl.ctx.node_name};
  if (auto advertised = cluster::parse_address(impl.options.cluster.advertise)) {
    impl.access.own_names.push_back(advertised->host);
  }
  const bool open_beyond_loopback = !is_loopback(address);
  impl.access.loopback_only =
      impl.options.token.empty() && impl.options.protected_mode && open_beyond_loopback;
  if (impl.access.loopback_only) {
    spdlog::warn(
        "protected mode: no --token and listening on {}, so only clients on this "
        "machine are served (others get 403). Give a --token to let other machines "
        "in, or --protected-mode no to serve everyone without one",
        impl.options.host);
  } else if (impl.options.token.empty() && open_beyond_loopback) {
    spdlog::warn(
        "no --token and --protected-mode no: anyone who can reach {}:{} can read, "
        "write and release every key",
        impl.options.host, impl.options.port);
  }
  tcp::endpoint endpoint(address, impl.options.port);
  auto& acceptor = impl.acceptor.emplace(io);
  auto fail = [&](std::string_view what) {
    return make_error(ErrorCode::kIo, fmt::format("cannot {} {}:{}: {}", what, impl.options.host,
                                                  impl.options.port, ec.message()));
  };
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail("open");
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) return fail("configure");
  if (acceptor.bind(endpoint, ec); ec) return fail("listen on");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen on");
  // accept_failed() accepts one waiting client synchronously: it must not block.
  if (acceptor.non_blocking(true, ec); ec) return fail("configure");
  impl.backoff_timer.emplace(io);
  impl.drain_timer.emplace(io);
  if (auto ok = impl.open_pool(); !ok) return ok;
  if (auto ok = impl.join_cluster(); !ok) return ok;
  if (impl.options.local_socket) {
    auto local = LocalSocket::open(io, impl.ctx.store, impl.options.token);
    if (!local) return tl::unexpected(local.error());
    impl.local = std::move(*local);
    impl.state.local_socket = impl.local->name();
  }
  return {};
}

std::uint16_t Server::port() const {
  beast::error_code ec;
  return impl_->acceptor ? impl_->acceptor->local_endpoint(ec).port() : 0;
}

std::uint64_t Server::max_connections() const { return impl_->state.max_connections; }

const std::string& Server::local_socket() const { return impl_->state.local_socket; }

void Server::run() {
  Impl& impl = *impl_;
  auto& io0 = impl.loops[0]->io;
  if (impl.options.handle_signals) {
    impl.signals.emplace(io0, SIGINT, SIGTERM);
    impl.signals->async_wait([&impl](beast::error_code ec, int sig) {
      if (!ec) impl.begin_stop();
    });
  }
  asio::post(io0, [&impl] { impl.accept_next(); });
  if (impl.local) impl.local->start();
  for (auto& loop : impl.loops) {
    asio::post(loop->io, [&impl, l = loop.get()] { impl.sweep(*l); });
  }
  std::vector<std::thread> threads;
  for (std::size_t i = 1; i < impl.loops.size(); ++i) {
    threads.emplace_back([loop = impl.loops[i].get()] { loop->io.run(); });
  }
  io0.run();
  for (auto& t : threads) t.join();
}

void Server::stop() {
  asio::post(impl_->loops[0]->io, [impl = impl_.get()] { impl->begin_stop(); });
}

}  // namespace gswarm::server
