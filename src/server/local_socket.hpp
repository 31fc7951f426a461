// LocalSocket: where processes on this machine open read pointers
// (doc/read-pointers.md). An abstract Unix socket ("@gswarm-<pid>-<random>"),
// so nothing is created in the file system for anyone to plant or replace.
//
// A client connects, sends one line of JSON, {"key": k, "location": l}, and gets
// one line back: {"status": "success", "offset", "size", "format"} with one
// read-only descriptor of exactly that value's bytes attached (SCM_RIGHTS), or
// {"detail", "code"} without one. Only processes running as the server's user
// (or root) are answered (SO_PEERCRED); the server itself is not dumpable, so
// they cannot reach its memory or other descriptors through /proc instead. A
// server with a --token also wants it in the request ("token").
//
// Accepts on the event loop it is opened on; each exchange runs on two threads
// of its own (so slow local clients never hold up requests) and must be over in
// 5 seconds.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <gswarm/error.hpp>

#include "storage/store.hpp"
#include "storage/task_pool.hpp"

namespace gswarm::server {

class LocalSocket {
 public:
  // `token`: asked of every request when not empty.
  [[nodiscard]] static Result<std::unique_ptr<LocalSocket>> open(boost::asio::io_context& io,
                                                                 Store& store, std::string token);
  // "@gswarm-...": '@' stands for the leading NUL of an abstract socket name.
  const std::string& name() const { return name_; }
  void start();
  void stop();

 private:
  LocalSocket(boost::asio::io_context& io, Store& store, std::string name, std::string token);
  void accept_next();

  Store& store_;
  std::string name_;
  std::string token_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer retry_;         // after a failed accept (out of descriptors)
  std::shared_ptr<std::atomic<int>> busy_;  // exchanges in flight
  TaskPool pool_{"gswarm-local", 2};        // last: joined first
};

}  // namespace gswarm::server
