// IncomingTransfers: the target side of a send in ranges. A transfer is a
// prepared write (its room reserved in its tier) that several connections fill
// at once, each with one byte range; it becomes the key's value only when
// complete() finds every byte arrived, like any write. A transfer that carries
// a data pool chunk's metadata becomes that chunk, bytes and metadata at once.
//
// A transfer whose sender gives up, dies or goes quiet is dropped with what it
// reserved, and nothing of it was ever visible: it is tied to the connection
// that began it (when that one was kept alive), so a sender that disappears is
// noticed when its connection closes; and one that goes quiet for the idle
// timeout is dropped too.
//
// Outcomes are kept for a while after the end (state()): a sender whose commit
// outlasted its timeout asks whether the value was stored before it reports
// anything or deletes its source.
//
// Ids are 128 random bits: a range can only be added by whoever began the transfer.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gswarm/error.hpp>

#include "pool/pool.hpp"
#include "storage/store.hpp"

namespace gswarm::cluster {

class IncomingTransfers {
  struct Transfer;

 public:
  using Clock = std::chrono::steady_clock;

  explicit IncomingTransfers(std::chrono::seconds idle_timeout) : idle_timeout_(idle_timeout) {}

  // A range being received. Give it back with finish().
  class Range {
   public:
    std::uint64_t offset() const { return offset_; }
    std::uint64_t length() const { return length_; }
    // Host tiers: where the range's bytes go, straight from the socket.
    bool direct() const;
    std::span<std::byte> buffer();
    // Other tiers: stores the range's bytes at `at` (from the range's start).
    // Blocking.
    [[nodiscard]] Result<void> write(std::uint64_t at, std::span<const std::byte> bytes);

   private:
    friend class IncomingTransfers;
    std::shared_ptr<Transfer> transfer_;
    std::uint64_t offset_ = 0;
    std::uint64_t length_ = 0;
  };

  // What a transfer becomes once every byte arrived.
  struct Received {
    PendingWrite pending;
    std::optional<pool::Chunk> chunk;  // a data pool chunk's metadata, as its sender gave it
  };

  // Where a transfer stands: "receiving", "committing" (complete() took it),
  // "committed", or "failed" (with why).
  struct State {
    std::string state;
    std::string detail;
  };

  // Transfers in progress at once; more are kTooManyRequests (each holds its
  // reservation and, for disk, an open file).
  static constexpr std::size_t kMaxTransfers = 1024;
  // Outcomes remembered for state(), the most recent first out of this many.
  static constexpr std::size_t kMaxOutcomes = 4096;

  // Takes a prepared write (and, for a chunk, its metadata); returns the
  // transfer's id. `connection` (not 0) ties it to the connection that began
  // it: connection_closed() drops it unless it is complete by then.
  [[nodiscard]] Result<std::string> begin(PendingWrite pending,
                                          std::optional<pool::Chunk> chunk = std::nullopt,
                                          std::uint64_t connection = 0);
  // Claims [offset, offset + length) of transfer `id`. kNotFound for an unknown
  // (or expired) id, kBadRequest for a range outside the value or overlapping
  // another, kConflict when the transfer has failed.
  [[nodiscard]] Result<Range> claim(std::string_view id, std::uint64_t offset,
                                    std::uint64_t length);
  // Gives a range back: received, or not (which fails the whole transfer).
  void finish(Range& range, bool received);
  // The complete value, taken out of the table, ready to be committed; its
  // state is "committing" until settle() says how the commit went.
  [[nodiscard]] Result<Received> complete(std::string_view id);
  void settle(std::string_view id, const std::optional<Error>& failure);
  // Drops a transfer (the sender gave up). kNotFound for an unknown id.
  [[nodiscard]] Result<void> abort(std::string_view id);
  // kNotFound for an id never seen here, or one whose outcome was forgotten.
  [[nodiscard]] Result<State> state(std::string_view id) const;
  // Drops transfers with no range in flight that were idle for the timeout.
  std::size_t expire(Clock::time_point now = Clock::now());
  // The connection that began transfers closed: those not yet complete go.
  void connection_closed(std::uint64_t connection);
  // Whether `connection` began a transfer that is still receiving (it may idle
  // for as long as the transfer lives).
  bool holds(std::uint64_t connection) const;
  std::size_t active() const;
  std::chrono::seconds idle_timeout() const { return idle_timeout_; }

 private:
  std::shared_ptr<Transfer> find(std::string_view id) const;
  // With mutex_ held: takes `id` out of the table (and its connection's list).
  std::shared_ptr<Transfer> take(const std::string& id);
  // With mutex_ held: notes how transfer `id` ended (or that it is committing).
  void remember(const std::string& id, State state);

  const std::chrono::seconds idle_timeout_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Transfer>> transfers_;  // guarded by mutex_
  // Transfers tied to each connection; guarded by mutex_.
  std::unordered_map<std::uint64_t, std::vector<std::string>> by_connection_;
  std::atomic<std::size_t> tied_{0};  // by_connection_.size(), read without the lock
  std::unordered_map<std::string, State> outcomes_;  // guarded by mutex_
  std::deque<std::string> outcome_order_;            // oldest first; guarded by mutex_
};

}  // namespace gswarm::cluster
