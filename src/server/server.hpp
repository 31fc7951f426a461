// Server: accepts HTTP/1.1 connections and serves the route table against one
// Store. One event loop per thread; connections are spread over the loops; each
// connection is one coroutine (session.cpp).
//
// Lifetime: construct, listen(), then run() on one thread until stop() (any
// thread, or SIGINT/SIGTERM when handle_signals). Stopping closes the listener,
// closes idle connections and lets requests in flight finish until the drain
// deadline; then copies still running are cancelled and every connection is
// closed, so run() returns within about drain_timeout whatever clients do. A
// second signal ends the process at once.
//
// Limits: at most max_connections connections are served (more are answered 503
// and closed, unless a connection that never sent a request that was let in can
// be closed to make room: PendingConnections); when the process runs out of
// descriptors, accepting backs off and says so in the log at most every few
// seconds.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <gswarm/error.hpp>

#include "cluster/etcd.hpp"
#include "cluster/sender.hpp"
#include "server/kv_handlers.hpp"

namespace gswarm::server {

// Taking part in a cluster: membership, sends to other servers, receiving them.
struct ClusterOptions {
  std::vector<std::string> peers;  // "NAME=HOST:PORT"
  std::string peers_file;
  std::string advertise;  // HOST:PORT other servers reach this one at; empty: derived
  cluster::EtcdOptions etcd;  // url empty: no etcd
  cluster::SenderOptions sender;
  std::chrono::seconds transfer_timeout{60};  // a transfer in ranges idle this long is dropped
};

struct ServerOptions {
  std::string host = "0.0.0.0";
  std::uint16_t port = 9015;  // 0: pick a free port
  int threads = 0;            // 0: one per core
  Limits limits;
  std::string node_name;  // empty: the host name
  std::chrono::seconds idle_timeout{60};     // keep-alive connection with no request
  // A request's head, from its first byte (a new connection's first request:
  // from connecting).
  std::chrono::seconds header_timeout{10};
  // Connections from one address that have not yet sent a request that passed
  // the access check (PendingConnections); 0: no limit.
  std::uint64_t max_pending_per_address = 64;
  std::chrono::seconds request_timeout{30};  // no progress while receiving or sending
  std::chrono::seconds drain_timeout{10};    // how long stopping waits for requests in flight
  std::uint64_t max_connections = 0;         // 0: from the descriptor limit, at most 4096
  std::uint64_t max_buffer_memory = 1ull << 30;  // request and answer bodies in flight
  ClusterOptions cluster;
  // Directories whose files POST /api/v1/data may read as sources (--source-root).
  std::vector<std::string> source_roots;
  // Hosts (host or host:port globs) whose http:// URLs POST /api/v1/data may
  // fetch (--url-source-allow); empty: none. A whole fetch's deadline.
  std::vector<std::string> url_source_allow;
  std::chrono::seconds source_timeout{300};
  bool local_socket = true;  // serve read pointers to local processes
  // Trust (doc/security.md).
  std::string token;           // not empty: every request but GET /health must carry it
  bool protected_mode = true;  // no token and bound beyond loopback: serve this machine only
  std::vector<std::string> allowed_origins;  // web pages that may use the server (--allow-origin)
  std::vector<std::string> allowed_hosts;    // names it answers to without a token (--allow-host)
  // TLS: both files given, every connection (and every request to other
  // servers) speaks TLS; tls_ca is what peers' certificates are checked
  // against (empty: the system's certificates).
  std::string tls_cert;  // PEM certificate chain
  std::string tls_key;   // PEM private key
  std::string tls_ca;    // PEM certificates to trust
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
  std::uint64_t max_connections() const;
  // The abstract socket local processes open read pointers on ("@gswarm-...").
  const std::string& local_socket() const;
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gswarm::server
