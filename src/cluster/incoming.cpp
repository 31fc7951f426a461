#include "cluster/incoming.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/random.hpp"

namespace gswarm::cluster {

struct IncomingTransfers::Transfer {
  std::string id;
  std::optional<pool::Chunk> chunk;
  std::uint64_t connection = 0;  // the connection it is tied to; 0: none
  std::mutex mutex;
  PendingWrite pending;                                    // guarded by mutex (its bookkeeping)
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;  // claimed [offset, end)
  std::uint64_t received = 0;
  int in_flight = 0;
  bool failed = false;
  Clock::time_point last_activity = Clock::now();
  std::mutex write_mutex;  // for tiers that take one range write at a time
};


bool IncomingTransfers::Range::direct() const { return transfer_->pending.direct(); }

std::span<std::byte> IncomingTransfers::Range::buffer() {
  return transfer_->pending.buffer().subspan(offset_, length_);
}

Result<void> IncomingTransfers::Range::write(std::uint64_t at, std::span<const std::byte> bytes) {
  if (at > length_ || bytes.size() > length_ - at) {
    return make_error(ErrorCode::kInternal, "bytes outside the range");
  }
  PendingWrite& pending = transfer_->pending;
  if (pending.concurrent_ranges()) return pending.write_at(offset_ + at, bytes);
  std::lock_guard lock(transfer_->write_mutex);
  return pending.write_at(offset_ + at, bytes);
}

Result<std::string> IncomingTransfers::begin(PendingWrite pending,
                                             std::optional<pool::Chunk> chunk,
                                             std::uint64_t connection) {
  auto transfer = std::make_shared<Transfer>();
  transfer->pending = std::move(pending);
  transfer->chunk = std::move(chunk);
  transfer->connection = connection;
  std::lock_guard lock(mutex_);
  if (transfers_.size() >= kMaxTransfers) {
    return make_error(ErrorCode::kTooManyRequests,
                      fmt::format("{} transfers are already in progress here; retry when some "
                                  "have ended",
                                  transfers_.size()));
  }
  do {
    transfer->id = random_hex(16);  // 128 bits: cannot be guessed from others
  } while (transfers_.contains(transfer->id));
  transfers_.emplace(transfer->id, transfer);
  if (connection != 0) {
    by_connection_[connection].push_back(transfer->id);
    tied_.store(by_connection_.size(), std::memory_order_relaxed);
  }
  remember(transfer->id, State{"receiving", ""});
  return transfer->id;
}

std::shared_ptr<IncomingTransfers::Transfer> IncomingTransfers::take(const std::string& id) {
  auto it = transfers_.find(id);
  if (it == transfers_.end()) return nullptr;
  auto transfer = std::move(it->second);
  transfers_.erase(it);
  if (transfer->connection != 0) {
    if (auto tied = by_connection_.find(transfer->connection); tied != by_connection_.end()) {
      std::erase(tied->second, id);
      if (tied->second.empty()) by_connection_.erase(tied);
      tied_.store(by_connection_.size(), std::memory_order_relaxed);
    }
  }
  return transfer;
}

void IncomingTransfers::remember(const std::string& id, State state) {
  auto [it, added] = outcomes_.insert_or_assign(id, std::move(state));
  if (!added) return;
  outcome_order_.push_back(id);
  while (outcome_order_.size() > kMaxOutcomes) {
    outcomes_.erase(outcome_order_.front());
    outcome_order_.pop_front();
  }
}

std::shared_ptr<IncomingTransfers::Transfer> IncomingTransfers::find(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = transfers_.find(std::string(id));
  return it == transfers_.end() ? nullptr : it->second;
}

namespace {

tl::unexpected<Error> unknown(std::string_view id) {
  return make_error(ErrorCode::kNotFound,
                    fmt::format("no transfer '{}' (it ended, failed or expired)", id));
}

}  // namespace

Result<IncomingTransfers::Range> IncomingTransfers::claim(std::string_view id,
                                                          std::uint64_t offset,
                                                          std::uint64_t length) {
  auto transfer = find(id);
  if (!transfer) return unknown(id);
  std::lock_guard lock(transfer->mutex);
  const std::uint64_t size = transfer->pending.size();
  if (transfer->failed) {
    return make_error(ErrorCode::kConflict,
                      fmt::format("transfer '{}' failed (a range did not arrive); start again", id));
  }
  if (offset > size || length > size - offset || length == 0) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("range {}+{} is outside the value's {} bytes", offset, length,
                                  size));
  }
  const std::uint64_t end = offset + length;
  for (const auto& [first, last] : transfer->ranges) {
    if (offset < last && first < end) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("range {}+{} overlaps bytes {}..{} already sent", offset,
                                    length, first, last));
    }
  }
  transfer->ranges.emplace_back(offset, end);
  ++transfer->in_flight;
  transfer->last_activity = Clock::now();
  Range range;
  range.transfer_ = std::move(transfer);
  range.offset_ = offset;
  range.length_ = length;
  return range;
}

void IncomingTransfers::finish(Range& range, bool received) {
  auto transfer = std::move(range.transfer_);
  if (!transfer) return;
  bool drop = false;
  {
    std::lock_guard lock(transfer->mutex);
    --transfer->in_flight;
    transfer->last_activity = Clock::now();
    if (received) {
      transfer->received += range.length_;
    } else {
      transfer->failed = true;
    }
    drop = transfer->failed && transfer->in_flight == 0;
  }
  if (drop) {
    std::lock_guard lock(mutex_);
    if (take(transfer->id)) {
      auto known = outcomes_.find(transfer->id);
      if (known == outcomes_.end() || known->second.state != "failed") {
        remember(transfer->id, State{"failed", "a range did not arrive"});
      }
    }
  }
}

Result<IncomingTransfers::Received> IncomingTransfers::complete(std::string_view id) {
  auto transfer = find(id);
  if (!transfer) return unknown(id);
  {
    std::lock_guard lock(transfer->mutex);
    if (transfer->in_flight > 0) {
      return make_error(ErrorCode::kConflict,
                        fmt::format("transfer '{}' still has ranges arriving", id));
    }
    if (transfer->failed) {
      return make_error(ErrorCode::kConflict, fmt::format("transfer '{}' failed", id));
    }
    if (transfer->received != transfer->pending.size()) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("transfer '{}' has {} of its {} bytes; send the rest first", id,
                                    transfer->received, transfer->pending.size()));
    }
    transfer->failed = true;  // nothing more may be claimed
  }
  {
    std::lock_guard lock(mutex_);
    if (!take(transfer->id)) return unknown(id);  // aborted, expired or completed meanwhile
    remember(transfer->id, State{"committing", ""});
  }
  std::lock_guard lock(transfer->mutex);
  transfer->pending.mark_all_received();
  return Received{std::move(transfer->pending), std::move(transfer->chunk)};
}

void IncomingTransfers::settle(std::string_view id, const std::optional<Error>& failure) {
  std::lock_guard lock(mutex_);
  remember(std::string(id), failure ? State{"failed", failure->message} : State{"committed", ""});
}

Result<IncomingTransfers::State> IncomingTransfers::state(std::string_view id) const {
  std::lock_guard lock(mutex_);
  auto it = outcomes_.find(std::string(id));
  if (it == outcomes_.end()) return unknown(id);
  return it->second;
}

void IncomingTransfers::connection_closed(std::uint64_t connection) {
  if (tied_.load(std::memory_order_relaxed) == 0) return;
  std::vector<std::shared_ptr<Transfer>> dropped;  // freed outside the lock
  std::lock_guard lock(mutex_);
  auto tied = by_connection_.find(connection);
  if (tied == by_connection_.end()) return;
  const std::vector<std::string> ids = std::move(tied->second);
  by_connection_.erase(tied);
  tied_.store(by_connection_.size(), std::memory_order_relaxed);
  for (const auto& id : ids) {
    auto it = transfers_.find(id);
    if (it == transfers_.end()) continue;
    std::lock_guard tlock(it->second->mutex);
    it->second->failed = true;  // ranges in flight end with an error
    remember(id, State{"failed", "its sender's connection closed before the commit"});
    // One with ranges in flight goes when the last of them ends (finish()).
    if (it->second->in_flight == 0) dropped.push_back(take(id));
  }
}

bool IncomingTransfers::holds(std::uint64_t connection) const {
  if (tied_.load(std::memory_order_relaxed) == 0) return false;
  std::lock_guard lock(mutex_);
  return by_connection_.contains(connection);
}

Result<void> IncomingTransfers::abort(std::string_view id) {
  std::shared_ptr<Transfer> transfer;
  {
    std::lock_guard lock(mutex_);
    transfer = take(std::string(id));
    if (!transfer) return unknown(id);
    remember(transfer->id, State{"failed", "aborted by its sender"});
  }
  std::lock_guard lock(transfer->mutex);
  transfer->failed = true;  // ranges in flight end with an error
  return {};
}

std::size_t IncomingTransfers::expire(Clock::time_point now) {
  std::vector<std::shared_ptr<Transfer>> dropped;  // freed outside the lock
  {
    std::lock_guard lock(mutex_);
    // Collected first: take() erases from transfers_.
    for (const auto& [id, transfer] : transfers_) {
      std::unique_lock tlock(transfer->mutex, std::try_to_lock);
      if (tlock && transfer->in_flight == 0 && now - transfer->last_activity > idle_timeout_) {
        transfer->failed = true;
        dropped.push_back(transfer);
      }
    }
    for (const auto& t : dropped) {
      (void)take(t->id);
      remember(t->id, State{"failed", fmt::format("its sender was quiet for over {} s",
                                                  idle_timeout_.count())});
    }
  }
  return dropped.size();
}

std::size_t IncomingTransfers::active() const {
  std::lock_guard lock(mutex_);
  return transfers_.size();
}

}  // namespace gswarm::cluster
