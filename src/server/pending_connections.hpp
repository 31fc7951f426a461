// PendingConnections: connections that have not yet sent a request that passed
// the access check (doc/security.md, "Connection floods"). A client that opens
// connections and never finishes a request could otherwise hold every
// connection the server allows and lock everyone else out. So:
//  - each address may hold at most `per_address` such connections: a new one
//    beyond that closes the oldest of that address;
//  - when the server is full, a new connection closes the oldest such
//    connection of any address instead of being turned away.
// A real client sends its request as soon as it connects and leaves this table
// within a round trip; a flood only ever pushes out its own. Connections that
// passed the check are never closed to make room.
//
// Thread-safe: connections of every event loop are in one table. Closing runs on
// the connection's own loop.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/ip/address.hpp>

namespace gswarm::server {

struct Connection;

class PendingConnections {
 public:
  explicit PendingConnections(std::uint64_t per_address) : per_address_(per_address) {}

  // Notes a new connection from `address` (closing the oldest of that address
  // when it has per_address already). Returns its ticket for admit()/forget().
  std::uint64_t add(const std::shared_ptr<Connection>& conn, const boost::asio::ip::address& address,
                    boost::asio::any_io_executor loop);
  // Closes the oldest pending connection of any address; false when there is none.
  bool evict_oldest();
  // The connection passed the access check, or closed: it leaves the table.
  void remove(std::uint64_t ticket);
  std::size_t size() const;

 private:
  struct Entry {
    std::weak_ptr<Connection> conn;
    boost::asio::ip::address address;
    boost::asio::any_io_executor loop;
  };
  // Under mutex_: takes the entry out of the table and returns it.
  Entry take(std::map<std::uint64_t, Entry>::iterator it);
  static void close(Entry entry);

  const std::uint64_t per_address_;
  mutable std::mutex mutex_;
  std::uint64_t next_ = 1;                                       // guarded by mutex_
  std::map<std::uint64_t, Entry> entries_;                       // oldest first; guarded by mutex_
  std::unordered_map<std::string, std::set<std::uint64_t>> by_address_;  // guarded by mutex_
};

}  // namespace gswarm::server
