// IncomingTransfers: the target side of a send in ranges. A transfer is a
// prepared write (its room reserved in its tier) that several connections fill
// at once, each with one byte range; it becomes the key's value only when
// complete() finds every byte arrived, like any write. A transfer whose sender
// gives up, dies or goes quiet for the idle timeout is dropped with what it
// reserved, and nothing of it was ever visible.
//
// Ids are 128 random bits: a range can only be added by whoever began the transfer.
//
// Thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include <gswarm/error.hpp>

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

  // Transfers in progress at once; more are kTooManyRequests (each holds its
  // reservation and, for disk, an open file).
  static constexpr std::size_t kMaxTransfers = 1024;

  // Takes a prepared write; returns the transfer's id.
  [[nodiscard]] Result<std::string> begin(PendingWrite pending);
  // Claims [offset, offset + length) of transfer `id`. kNotFound for an unknown
  // (or expired) id, kBadRequest for a range outside the value or overlapping
  // another, kConflict when the transfer has failed.
  [[nodiscard]] Result<Range> claim(std::string_view id, std::uint64_t offset,
                                    std::uint64_t length);
  // Gives a range back: received, or not (which fails the whole transfer).
  void finish(Range& range, bool received);
  // The complete value, taken out of the table, ready for Store::commit_write.
  [[nodiscard]] Result<PendingWrite> complete(std::string_view id);
  // Drops a transfer (the sender gave up). kNotFound for an unknown id.
  [[nodiscard]] Result<void> abort(std::string_view id);
  // Drops transfers with no range in flight that were idle for the timeout.
  std::size_t expire(Clock::time_point now = Clock::now());
  std::size_t active() const;
  std::chrono::seconds idle_timeout() const { return idle_timeout_; }

 private:
  std::shared_ptr<Transfer> find(std::string_view id) const;

  const std::chrono::seconds idle_timeout_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<Transfer>> transfers_;  // guarded by mutex_
};

}  // namespace gswarm::cluster
