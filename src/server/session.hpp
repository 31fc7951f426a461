// One HTTP/1.1 connection: reads requests (a deadline before every read, a limit
// on every body), routes them, streams value bodies into tier memory (or, for
// disk and GPU values, through two bounded buffers), runs blocking work on the
// Store's task pools and writes responses, until the peer closes, a deadline
// passes or the server stops.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <unordered_set>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>

#include "server/access.hpp"
#include "server/metrics.hpp"
#include "server/pending_connections.hpp"
#include "server/server.hpp"

namespace gswarm::server {

// The bytes of one connection: plain TCP, or TLS over it (--tls-cert). An
// AsyncReadStream and AsyncWriteStream either way, so Beast and the session's
// own loops read and write it without knowing which. Not movable: the TLS
// layer refers to the socket beside it.
class Stream {
 public:
  using executor_type = boost::asio::ip::tcp::socket::executor_type;
  // `tls` null: plain.
  Stream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context* tls)
      : socket_(std::move(socket)) {
    if (tls != nullptr) tls_ = std::make_unique<Tls>(socket_, *tls);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;

  executor_type get_executor() { return socket_.get_executor(); }
  // The TCP socket itself: shutdown, close, cancel, its address and send queue.
  boost::asio::ip::tcp::socket& socket() { return socket_; }
  bool tls() const { return tls_ != nullptr; }
  // TLS only: the server's side of the handshake.
  template <typename Token>
  auto async_handshake(Token&& token) {
    return tls_->async_handshake(boost::asio::ssl::stream_base::server, std::forward<Token>(token));
  }

  template <typename Buffers, typename Token>
  auto async_read_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          if (tls_) {
            tls_->async_read_some(b, std::move(handler));
          } else {
            socket_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }
  template <typename Buffers, typename Token>
  auto async_write_some(const Buffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, std::size_t)>(
        [this](auto handler, const Buffers& b) {
          if (tls_) {
            tls_->async_write_some(b, std::move(handler));
          } else {
            socket_.async_write_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

 private:
  using Tls = boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>;
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<Tls> tls_;  // declared after the socket: destroyed before it
};

// One client connection. Timeouts are deadlines swept by the event loop's timer
// (server.cpp), which cancels the socket's pending operation when its deadline
// passes: cheaper than arming a timer per read and write, and the connection
// stays usable to answer 408. A deadline is re-armed after every read or write
// that made progress, so it measures time without progress, not the length of
// a transfer. While a write waits, the kernel's send queue tells whether the
// client is still taking bytes (the socket turns writable only once much of a
// large send buffer has drained): the sweeper re-arms the deadline as long as
// that queue shrinks. Only touched on its event loop's thread.
struct Connection {
  using Clock = std::chrono::steady_clock;
  Connection(boost::asio::ip::tcp::socket s, boost::asio::ssl::context* tls)
      : stream(std::move(s), tls), id(next_id()) {}

  void arm(std::chrono::seconds timeout) {
    armed_for = timeout;
    deadline = std::min(Clock::now() + timeout, drain_deadline);
    timed_out = false;
  }
  // Arms for a deadline that does not move with progress (a request's head).
  void arm_until(Clock::time_point when) {
    armed_for = std::chrono::duration_cast<std::chrono::seconds>(when - Clock::now());
    deadline = std::min(when, drain_deadline);
    timed_out = false;
  }
  void disarm() {
    deadline = drain_deadline;
    writing = false;
  }
  // Arms for a write of `bytes`. For large ones it notes how much the send queue
  // holds; for small ones (most answers, which fit in the socket's buffer) it
  // saves that system call and notes it only if the deadline passes, giving the
  // write one more period to show progress.
  void arm_write(std::chrono::seconds timeout, std::size_t bytes);
  // The deadline passed: true when the client took bytes since it was armed
  // (the deadline is then moved on), false when the write really stalled.
  bool write_progressed();

  Stream stream;
  const std::uint64_t id;  // unique in this process, never 0
  Clock::time_point deadline = Clock::time_point::max();
  // When the server stops: the moment this connection is closed, whatever it does.
  Clock::time_point drain_deadline = Clock::time_point::max();
  std::chrono::seconds armed_for{0};
  bool timed_out = false;     // the sweeper cancelled the pending operation
  bool idle = true;           // waiting for a request
  bool writing = false;       // waiting for a write; send_queue is meaningful
  bool from_loopback = true;  // the client is on this machine (protected mode)
  int send_queue = -1;        // bytes the kernel held when last looked at; -1: not looked at
  // Its ticket in PendingConnections until a request passed the access check; 0 after.
  std::uint64_t pending_ticket = 0;

 private:
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> last{0};
    return last.fetch_add(1, std::memory_order_relaxed) + 1;
  }
};

// Connections of one event loop; only touched on that loop's thread.
using ConnectionSet = std::unordered_set<std::shared_ptr<Connection>>;

struct SessionEnv {
  Context& ctx;
  const ServerOptions& options;
  const AccessPolicy& access;
  PendingConnections& pending;
  Metrics::Shard& metrics;  // this event loop's
  const std::atomic<bool>& stopping;
};

boost::asio::awaitable<void> serve(std::shared_ptr<Connection> conn, SessionEnv env,
                                   ConnectionSet& connections);

}  // namespace gswarm::server
