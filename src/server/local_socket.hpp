// LocalSocket: where processes on this machine open read pointers
// (doc/read-pointers.md). An abstract Unix socket ("@gswarm-<pid>-<random>"),
// so nothing is created in the file system for anyone to plant or replace.
//
// A client connects, sends one line of JSON, {"key": k, "location": l}, and gets
// one line back: {"status": "success", "offset", "size", "format"} with one
// read-only descriptor of exactly that value's bytes attached (SCM_RIGHTS), or
// {"detail", "code"} without one. Only processes running as the server's user
// (or root) are answered: the caller's user (SO_PEERCRED) is checked when it
// connects, before anything is read, and others are turned away at once. The
// server itself is not dumpable, so they cannot reach its memory or other
// descriptors through /proc instead. A server with a --token also wants it in
// the request ("token").
//
// Accepts and reads requests on the event loop it is opened on, and answers them
// on two threads of its own (so slow local clients never hold up requests, and
// silent ones hold no thread); an exchange must be over in 5 seconds. At most 64
// exchanges are in flight, at most 32 of one user's.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>

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
  struct Exchange;
  void accept_next();
  // Counts an exchange of `user`; false when that user (or everyone) has as
  // many in flight as allowed.
  bool take_slot(uid_t user);
  // Reads the exchange's request line on the event loop, then answers it on the pool.
  void read_request(std::shared_ptr<Exchange> exchange);

  // Exchanges in flight, shared with the threads that answer them.
  struct Slots {
    void give_back(uid_t user);
    std::mutex mutex;
    int total = 0;                           // guarded by mutex
    std::unordered_map<uid_t, int> by_user;  // guarded by mutex
  };

  Store& store_;
  std::string name_;
  std::string token_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::steady_timer retry_;         // after a failed accept (out of descriptors)
  std::shared_ptr<Slots> slots_;
  // Exchanges whose request is being read: closed by stop(). Event loop only.
  std::unordered_set<std::shared_ptr<Exchange>> exchanges_;
  TaskPool pool_{"gswarm-local", 2};        // last: joined first
};

}  // namespace gswarm::server
