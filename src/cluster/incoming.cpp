#include "cluster/incoming.hpp"

#include <algorithm>
#include <vector>

#include <fmt/format.h>

#include "core/random.hpp"

namespace gswarm::cluster {

struct IncomingTransfers::Transfer {
  std::string id;
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

Result<std::string> IncomingTransfers::begin(PendingWrite pending) {
  auto transfer = std::make_shared<Transfer>();
  transfer->pending = std::move(pending);
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
  return transfer->id;
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
    transfers_.erase(transfer->id);
  }
}

Result<PendingWrite> IncomingTransfers::complete(std::string_view id) {
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
    transfers_.erase(transfer->id);
  }
  std::lock_guard lock(transfer->mutex);
  transfer->pending.mark_all_received();
  return std::move(transfer->pending);
}

Result<void> IncomingTransfers::abort(std::string_view id) {
  std::shared_ptr<Transfer> transfer;
  {
    std::lock_guard lock(mutex_);
    auto it = transfers_.find(std::string(id));
    if (it == transfers_.end()) return unknown(id);
    transfer = std::move(it->second);
    transfers_.erase(it);
  }
  std::lock_guard lock(transfer->mutex);
  transfer->failed = true;  // ranges in flight end with an error
  return {};
}

std::size_t IncomingTransfers::expire(Clock::time_point now) {
  std::vector<std::shared_ptr<Transfer>> dropped;  // freed outside the lock
  {
    std::lock_guard lock(mutex_);
    for (auto it = transfers_.begin(); it != transfers_.end();) {
      Transfer& t = *it->second;
      std::unique_lock tlock(t.mutex, std::try_to_lock);
      if (tlock && t.in_flight == 0 && now - t.last_activity > idle_timeout_) {
        t.failed = true;
        tlock.unlock();
        dropped.push_back(std::move(it->second));
        it = transfers_.erase(it);
      } else {
        ++it;
      }
    }
  }
  return dropped.size();
}

std::size_t IncomingTransfers::active() const {
  std::lock_guard lock(mutex_);
  return transfers_.size();
}

}  // namespace gswarm::cluster
