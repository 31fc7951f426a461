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

enum class OperationState : std::uint8_t { kQueued, kRunning, kDone, kFailed };
std::string_view operation_state_name(OperationState state);

struct OperationInfo {
  std::uint64_t id = 0;
  std::string kind;  // "move"
  std::string key;
  Location destination;
  std::optional<Location> source;  // known once running
  OperationState state = OperationState::kQueued;
  std::uint64_t bytes_done = 0;
  std::uint64_t bytes_total = 0;
  double created = 0;   // unix seconds
  double seconds = 0;   // run time once finished
  std::optional<Error> error;
};

class Operations {
 public:
  // Progress counter a running operation adds its bytes to.
  using Progress = std::shared_ptr<std::atomic<std::uint64_t>>;

  std::uint64_t add(std::string kind, std::string key, Location destination,
                    std::uint64_t bytes_total);
  Progress progress(std::uint64_t id);
  void start(std::uint64_t id, Location source);
  void finish(std::uint64_t id, std::optional<Error> error, double seconds);

  [[nodiscard]] Result<OperationInfo> get(std::uint64_t id) const;
  std::vector<OperationInfo> list() const;  // newest first
  std::size_t active() const;

 private:
  struct Record {
    OperationInfo info;
    Progress progress = std::make_shared<std::atomic<std::uint64_t>>(0);
  };
  static constexpr std::size_t kKeepFinished = 1000;
  OperationInfo snapshot(const Record& r) const;

  mutable std::mutex mutex_;
  std::map<std::uint64_t, Record> records_;  // guarded by mutex_
  std::deque<std::uint64_t> finished_;       // guarded by mutex_, oldest first
  std::uint64_t next_id_ = 1;                // guarded by mutex_
};

}  // namespace gswarm
