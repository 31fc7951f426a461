#include "server/pending_connections.hpp"

#include <boost/asio/post.hpp>

#include "server/session.hpp"

namespace gswarm::server {

std::uint64_t PendingConnections::add(const std::shared_ptr<Connection>& conn,
                                      const boost::asio::ip::address& address,
                                      boost::asio::any_io_executor loop) {
  std::optional<Entry> evicted;
  std::uint64_t ticket = 0;
  {
    std::lock_guard lock(mutex_);
    auto& mine = by_address_[address.to_string()];
    if (per_address_ > 0 && mine.size() >= per_address_) {
      evicted = take(entries_.find(*mine.begin()));
    }
    ticket = next_++;
    by_address_[address.to_string()].insert(ticket);
    entries_.emplace(ticket, Entry{conn, address, std::move(loop)});
  }
  if (evicted) close(std::move(*evicted));
  return ticket;
}

bool PendingConnections::evict_oldest() {
  std::optional<Entry> evicted;
  {
    std::lock_guard lock(mutex_);
    if (entries_.empty()) return false;
    evicted = take(entries_.begin());
  }
  close(std::move(*evicted));
  return true;
}

void PendingConnections::remove(std::uint64_t ticket) {
  std::lock_guard lock(mutex_);
  if (auto it = entries_.find(ticket); it != entries_.end()) (void)take(it);
}

std::size_t PendingConnections::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

PendingConnections::Entry PendingConnections::take(std::map<std::uint64_t, Entry>::iterator it) {
  Entry entry = std::move(it->second);
  auto by = by_address_.find(entry.address.to_string());
  if (by != by_address_.end()) {
    by->second.erase(it->first);
    if (by->second.empty()) by_address_.erase(by);
  }
  entries_.erase(it);
  return entry;
}

void PendingConnections::close(Entry entry) {
  boost::asio::post(entry.loop, [conn = std::move(entry.conn)] {
    if (auto c = conn.lock()) {
      boost::system::error_code ignored;
      c->stream.socket().close(ignored);
    }
  });
}

}  // namespace gswarm::server
