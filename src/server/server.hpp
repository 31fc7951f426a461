// Server: accepts HTTP/1.1 connections and serves the route table against one
// Store. One event loop per thread; connections are spread over the loops; each
// connection is one coroutine (session.cpp).
//
// Lifetime: construct, listen(), then run() on one thread until stop() (any
// thread, or SIGINT/SIGTERM when handle_signals). Stopping closes the listener,
// lets requests in flight finish, closes idle connections and returns.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <gswarm/error.hpp>

#include "server/kv_handlers.hpp"

namespace gswarm::server {

struct ServerOptions {
  std::string host = "0.0.0.0";
  std::uint16_t port = 9015;  // 0: pick a free port
  int threads = 0;            // 0: one per core
  Limits limits;
  std::string node_name;  // empty: the host name
  std::chrono::seconds idle_timeout{60};     // keep-alive connection with no request
  std::chrono::seconds request_timeout{30};  // stall while receiving or sending
  bool handle_signals = true;
};

class Server {
 public:
  Server(Store& store, ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens. kIo with the reason when the address cannot be used.
  [[nodiscard]] Result<void> listen();
  std::uint16_t port() const;
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gswarm::server
