// Operations: the record of moves started without waiting (POST /move with
// "wait": false). Each has an id, a state and live progress; finished ones are
// kept for a while so clients can poll the outcome.
//
// Thread-safe: every method may be called from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <gswarm/error.hpp>

#include "core/location.hpp"

namespace gswarm {

// What a running copy is doing: getting the destination's memory (pre-faulted,
// or a file), copying its bytes, checking them, making them durable (disk), or
// switching the key over and freeing the source.
enum class CopyPhase : std::uint8_t { kAllocating, kCopying, kVerifying, kSyncing, kFinishing };
std::string_view copy_phase_name(CopyPhase phase);

// Progress of one copy, shared by the copier and whoever watches or cancels it.
struct CopyProgress {
  std::atomic<std::uint64_t> bytes{0};
  std::atomic<CopyPhase> phase{CopyPhase::kCopying};
  std::atomic<bool> cancelled{false};   // this copy is no longer wanted
  std::atomic<bool> cancelled_by_client{false};  // DELETE /operations/{id}
  const std::atomic<bool>* stopping = nullptr;  // the server is shutting down

  // An error when the copy should stop now.
  [[nodiscard]] Result<void> stopped() const {
    if (stopping != nullptr && stopping->load(std::memory_order_relaxed)) {
      return make_error(ErrorCode::kUnavailable, "the server is shutting down");
    }
    if (cancelled_by_client.load(std::memory_order_relaxed)) {
      return make_error(ErrorCode::kConflict, "the move was cancelled by a client; the source is intact");
    }
    if (cancelled.load(std::memory_order_relaxed)) {
      return make_error(ErrorCode::kConflict,
                        "the copy was cancelled: its key was overwritten or released");
    }
    return {};
  }
};

enum class OperationState : std::uint8_t { kQueued, kRunning, kDone, kFailed, kCancelled };
std::string_view operation_state_name(OperationState state);

struct OperationInfo {
  std::uint64_t id = 0;
  std::string kind;  // "move"
  std::string key;
  Location destination;
  std::optional<Location> source;  // known once running
  OperationState state = OperationState::kQueued;
  CopyPhase phase = CopyPhase::kCopying;  // while running
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  double created = 0;   // unix seconds
  double started = 0;   // unix seconds; 0 until it runs
  double seconds = 0;   // run time once finished
  std::optional<Error> error;
};

class Operations {
 public:
  // Progress counter a running operation adds its bytes to.
  using Progress = std::shared_ptr<CopyProgress>;

  // A new queued operation whose progress stops when `stopping` is set.
  std::uint64_t add(std::string kind, std::string key, Location destination,
                    std::uint64_t bytes_total, const std::atomic<bool>* stopping = nullptr);
  Progress progress(std::uint64_t id);
  void start(std::uint64_t id, Location source);
  // For operations whose size is known only once they run (a chunk from a URL).
  void set_total(std::uint64_t id, std::uint64_t bytes_total);
  // Ends it: done, failed with `error`, or cancelled when a client asked that.
  void finish(std::uint64_t id, std::optional<Error> error, double seconds);
  // Asks a queued or running move to stop: it ends "cancelled" once its mover
  // sees the request (a move whose copy is already installed completes). The state
  // it was in; kNotFound, or kConflict when it has finished or is not a move.
  [[nodiscard]] Result<OperationState> cancel(std::uint64_t id);

  [[nodiscard]] Result<OperationInfo> get(std::uint64_t id) const;
  std::vector<OperationInfo> list() const;  // newest first
  std::size_t active() const;

 private:
  struct Record {
    OperationInfo info;
    Progress progress = std::make_shared<CopyProgress>();
  };
  static constexpr std::size_t kKeepFinished = 1000;
  OperationInfo snapshot(const Record& r) const;

  mutable std::mutex mutex_;
  std::map<std::uint64_t, Record> records_;  // guarded by mutex_
  std::deque<std::uint64_t> finished_;       // guarded by mutex_, oldest first
  std::uint64_t next_id_ = 1;                // guarded by mutex_
};

}  // namespace gswarm
