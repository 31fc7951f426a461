#include "server/server.hpp"

#include <unistd.h>

#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/session.hpp"

namespace gswarm::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;

namespace {

std::string node_name(const std::string& configured) {
  if (!configured.empty()) return configured;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') return "localhost";
  return host;
}

}  // namespace

struct Server::Impl {
  Impl(Store& store, ServerOptions opts)
      : options(std::move(opts)), ctx{store, options.limits, node_name(options.node_name)} {
    int n = options.threads > 0 ? options.threads
                                : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int i = 0; i < n; ++i) {
      loops.push_back(std::make_unique<Loop>());
    }
  }

  struct Loop {
    asio::io_context io{1};
    std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard{io.get_executor()};
    ConnectionSet connections;  // only touched on this loop's thread
    asio::steady_timer sweeper{io};
  };

  // Every kSweep, cancels the pending operation of each connection whose deadline
  // passed; its session sees `timed_out` and answers 408 or closes.
  static constexpr auto kSweep = std::chrono::milliseconds(250);
  void sweep(Loop& loop) {
    loop.sweeper.expires_after(kSweep);
    loop.sweeper.async_wait([this, &loop](beast::error_code ec) {
      if (ec) return;
      const auto now = Connection::Clock::now();
      for (const auto& conn : loop.connections) {
        if (conn->deadline < now && !conn->timed_out) {
          conn->timed_out = true;
          beast::error_code ignored;
          conn->socket.cancel(ignored);
        }
      }
      sweep(loop);
    });
  }

  void accept_next() {
    Loop& target = *loops[next_loop++ % loops.size()];
    acceptor->async_accept(target.io, [this, &target](beast::error_code ec, tcp::socket socket) {
      if (ec) {
        if (ec != asio::error::operation_aborted) {
          spdlog::warn("accept failed: {}", ec.message());
          if (!stopping) accept_next();
        }
        return;
      }
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      asio::post(target.io, [this, &target, s = std::move(socket)]() mutable {
        auto conn = std::make_shared<Connection>(std::move(s));
        target.connections.insert(conn);
        asio::co_spawn(target.io, serve(conn, SessionEnv{ctx, options, stopping}, target.connections),
                       asio::detached);
      });
      if (!stopping) accept_next();
    });
  }

  // Runs on loop 0: stop accepting, close idle connections, let loops drain.
  void begin_stop() {
    if (stopping.exchange(true)) return;
    spdlog::info("shutting down: finishing requests in flight");
    beast::error_code ignored;
    if (acceptor) acceptor->close(ignored);
    if (signals) signals->cancel(ignored);
    for (auto& loop : loops) {
      asio::post(loop->io, [l = loop.get()] {
        for (const auto& conn : l->connections) {
          beast::error_code ignored;
          if (conn->idle) conn->socket.cancel(ignored);
        }
        l->sweeper.cancel();
        l->guard.reset();
      });
    }
  }

  ServerOptions options;
  Context ctx;
  std::vector<std::unique_ptr<Loop>> loops;
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::signal_set> signals;
  std::atomic<bool> stopping{false};
  std::size_t next_loop = 0;  // only touched on loop 0
};

Server::Server(Store& store, ServerOptions options)
    : impl_(std::make_unique<Impl>(store, std::move(options))) {}

Server::~Server() = default;

Result<void> Server::listen() {
  auto& io = impl_->loops[0]->io;
  beast::error_code ec;
  auto address = asio::ip::make_address(impl_->options.host == "localhost" ? "127.0.0.1"
                                                                           : impl_->options.host,
                                        ec);
  if (ec) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("invalid --host '{}': give an IP address such as 0.0.0.0 or 127.0.0.1",
                                  impl_->options.host));
  }
  tcp::endpoint endpoint(address, impl_->options.port);
  auto& acceptor = impl_->acceptor.emplace(io);
  auto fail = [&](std::string_view what) {
    return make_error(ErrorCode::kIo, fmt::format("cannot {} {}:{}: {}", what, impl_->options.host,
                                                  impl_->options.port, ec.message()));
  };
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail("open");
  if (acceptor.set_option(asio::socket_base::reuse_address(true), ec); ec) return fail("configure");
  if (acceptor.bind(endpoint, ec); ec) return fail("listen on");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen on");
  return {};
}

std::uint16_t Server::port() const {
  beast::error_code ec;
  return impl_->acceptor ? impl_->acceptor->local_endpoint(ec).port() : 0;
}

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
