// One HTTP/1.1 connection: reads requests (a timeout before every read, a limit
// on every body), routes them, streams value bodies straight into tier memory,
// runs blocking work on the mover and writes responses, until the peer closes,
// a timeout fires or the server stops.
#pragma once

#include <atomic>
#include <memory>
#include <unordered_set>

#include <boost/asio/awaitable.hpp>
#include <boost/beast/core/tcp_stream.hpp>

#include "server/server.hpp"

namespace gswarm::server {

struct Connection {
  explicit Connection(boost::beast::tcp_stream s) : stream(std::move(s)) {}
  boost::beast::tcp_stream stream;
  bool idle = true;  // waiting for a request; only touched on the stream's thread
};

// Connections of one event loop; only touched on that loop's thread.
using ConnectionSet = std::unordered_set<std::shared_ptr<Connection>>;

struct SessionEnv {
  Context& ctx;
  const ServerOptions& options;
  const std::atomic<bool>& stopping;
};

boost::asio::awaitable<void> serve(std::shared_ptr<Connection> conn, SessionEnv env,
                                   ConnectionSet& connections);

}  // namespace gswarm::server
