#include "storage/operations.hpp"

#include <chrono>

#include <fmt/format.h>

namespace gswarm {

std::string_view operation_state_name(OperationState state) {
  switch (state) {
    case OperationState::kQueued:
      return "queued";
    case OperationState::kRunning:
      return "running";
    case OperationState::kDone:
      return "done";
    case OperationState::kFailed:
      return "failed";
    case OperationState::kCancelled:
      return "cancelled";
  }
  return "failed";
}

std::string_view copy_phase_name(CopyPhase phase) {
  switch (phase) {
    case CopyPhase::kAllocating:
      return "allocating";
    case CopyPhase::kCopying:
      return "copying";
    case CopyPhase::kVerifying:
      return "verifying";
    case CopyPhase::kSyncing:
      return "syncing";
    case CopyPhase::kFinishing:
      return "finishing";
  }
  return "copying";
}

std::uint64_t Operations::add(std::string kind, std::string key, Location destination,
                              std::uint64_t bytes_total, const std::atomic<bool>* stopping) {
  std::lock_guard lock(mutex_);
  std::uint64_t id = next_id_++;
  Record& r = records_[id];
  r.progress->stopping = stopping;
  r.info.id = id;
  r.info.kind = std::move(kind);
  r.info.key = std::move(key);
  r.info.destination = destination;
  r.info.bytes_total = bytes_total;
  r.info.created =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  return id;
}

Operations::Progress Operations::progress(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  return records_.at(id).progress;
}

void Operations::set_total(std::uint64_t id, std::uint64_t bytes_total) {
  std::lock_guard lock(mutex_);
  if (auto it = records_.find(id); it != records_.end()) it->second.info.bytes_total = bytes_total;
}

void Operations::start(std::uint64_t id, Location source) {
  std::lock_guard lock(mutex_);
  auto& info = records_.at(id).info;
  info.state = OperationState::kRunning;
  info.source = source;
  if (info.started == 0) {
    info.started =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  }
}

void Operations::finish(std::uint64_t id, std::optional<Error> error, double seconds) {
  std::lock_guard lock(mutex_);
  auto& record = records_.at(id);
  auto& info = record.info;
  info.state = error ? OperationState::kFailed : OperationState::kDone;
  if (error && record.progress->cancelled_by_client.load(std::memory_order_relaxed)) {
    info.state = OperationState::kCancelled;
  }
  info.error = std::move(error);
  info.seconds = seconds;
  finished_.push_back(id);
  while (finished_.size() > kKeepFinished) {
    records_.erase(finished_.front());
    finished_.pop_front();
  }
}

Result<OperationState> Operations::cancel(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = records_.find(id);
  if (it == records_.end()) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("no operation {} (finished operations are kept for the last {})",
                                  id, kKeepFinished));
  }
  const OperationInfo& info = it->second.info;
  if (info.kind != "move") {
    return make_error(
        ErrorCode::kConflict,
        fmt::format("operation {} is a {}; only moves can be cancelled", id, info.kind));
  }
  if (info.state != OperationState::kQueued && info.state != OperationState::kRunning) {
    return make_error(ErrorCode::kConflict, fmt::format("operation {} has already ended ({})", id,
                                                        operation_state_name(info.state)));
  }
  it->second.progress->cancelled_by_client.store(true, std::memory_order_relaxed);
  return info.state;
}

OperationInfo Operations::snapshot(const Record& r) const {
  OperationInfo info = r.info;
  info.phase = r.progress->phase.load(std::memory_order_relaxed);
  info.bytes_done =
      info.state == OperationState::kDone ? info.bytes_total : r.progress->bytes.load();
  return info;
}

Result<OperationInfo> Operations::get(std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  auto it = records_.find(id);
  if (it == records_.end()) {
    return make_error(ErrorCode::kNotFound,
                      fmt::format("no operation {} (finished operations are kept for the last {})",
                                  id, kKeepFinished));
  }
  return snapshot(it->second);
}

std::vector<OperationInfo> Operations::list() const {
  std::lock_guard lock(mutex_);
  std::vector<OperationInfo> out;
  for (auto it = records_.rbegin(); it != records_.rend(); ++it)
    out.push_back(snapshot(it->second));
  return out;
}

std::size_t Operations::active() const {
  std::lock_guard lock(mutex_);
  return records_.size() - finished_.size();
}

}  // namespace gswarm
