// Handlers of the KV endpoints (doc/http-api.md). Each parses and validates its
// request, calls one Store method and maps the result to a response. They run on
// network threads and never block: disk work and copies are returned as
// Reply::blocking, large answers as a BodySource.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "server/http_message.hpp"
#include "storage/tier.hpp"

namespace gswarm::cluster {
class IncomingTransfers;
class Membership;
class Sender;
class UrlSources;
}  // namespace gswarm::cluster

namespace gswarm::pool {
class Pool;
}  // namespace gswarm::pool

namespace gswarm::server {

class Metrics;

struct Limits {
  std::uint64_t max_request_size = 256ull << 20;  // JSON bodies that carry values
  std::uint64_t max_control_size = 64ull << 10;   // JSON bodies of the other endpoints
  std::uint64_t max_value_size = 64ull << 30;     // raw value bodies
  std::size_t max_page = 1000;                    // keys per /locations page (a few MB at most)
};

// What the server itself holds, for limits and /stats.
struct ServerState {
  // Memory held for request and response bodies: JSON bodies as they arrive,
  // the buffers raw values stream through, answers built in pieces.
  LimitCounter buffers{"--max-buffer-memory", 1ull << 30};
  std::atomic<std::uint64_t> connections{0};
  std::uint64_t max_connections = 0;
  std::string local_socket;  // where local processes open read pointers ("@name": abstract)
  // Handler work running on a task pool that no request waits for (asynchronous
  // creates, transfers): the server waits for it before it goes away.
  std::atomic<int> detached_tasks{0};
  Metrics* metrics = nullptr;  // GET /metrics; null: none kept
};

struct Context {
  Store& store;
  Limits limits;
  std::string node_name;         // this server's name in "node:device:N" targets
  ServerState* state = nullptr;  // null in handler unit tests: no buffer accounting
  // Sending to other servers and receiving sends in ranges; null: not served.
  cluster::Membership* membership = nullptr;
  cluster::Sender* sender = nullptr;
  cluster::IncomingTransfers* transfers = nullptr;
  pool::Pool* pool = nullptr;  // the data pool; null: not served
  cluster::UrlSources* url_sources = nullptr;  // URL sources of the pool; null: none fetched
};

// Holds bytes of --max-buffer-memory for as long as it lives.
class BufferCharge {
 public:
  BufferCharge() = default;
  // kUnavailable when the budget cannot take `bytes` more.
  [[nodiscard]] static Result<BufferCharge> take(Context& ctx, std::uint64_t bytes);
  [[nodiscard]] Result<void> grow(std::uint64_t bytes);
  BufferCharge(BufferCharge&& other) noexcept
      : counter_(std::exchange(other.counter_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}
  BufferCharge& operator=(BufferCharge&& other) noexcept {
    std::swap(counter_, other.counter_);
    std::swap(bytes_, other.bytes_);
    return *this;
  }
  ~BufferCharge() {
    if (counter_ != nullptr) counter_->release(bytes_);
  }
  std::uint64_t bytes() const { return bytes_; }

 private:
  LimitCounter* counter_ = nullptr;
  std::uint64_t bytes_ = 0;
};

// ?limit=N of a listing: `fallback` when absent, kBadRequest unless 1..`max`.
[[nodiscard]] Result<std::size_t> query_limit(const Request& req, std::size_t fallback,
                                              std::size_t max);

// Runs `task` on the movers with no request waiting for it, counted in
// ctx.state->detached_tasks. False when `max_queued_moves` tasks are waiting.
[[nodiscard]] bool submit_detached(Context& ctx, std::function<void()> task);

// kConflict when `key` is named like a data pool chunk (pool::is_chunk_id):
// such keys are the pool's, which alone may write, move or release them, even
// before a chunk of that name exists (`what` names the refused operation).
[[nodiscard]] Result<void> check_not_chunk(std::string_view key, std::string_view what,
                                           Context& ctx);

// A location name this server can hold (400 otherwise).
[[nodiscard]] Result<Location> usable_location(std::string_view name, Context& ctx);

Reply handle_write(Request& req, Context& ctx);
Reply handle_write_extended(Request& req, Context& ctx);

// Takes the key and format out of `req.query`.
[[nodiscard]] Result<RawTarget> parse_raw_target(Request& req, Context& ctx);
// Reserves the value's room in its tier before its body is read. Takes the key
// out of `target`.
[[nodiscard]] Result<PendingWrite> prepare_raw_value(RawTarget& target, std::uint64_t size,
                                                     Context& ctx);
// Installs a raw value whose body has arrived (blocking when pending.needs_io()).
Response commit_raw_value(PendingWrite pending, Context& ctx);

Reply handle_read(Request& req, Context& ctx);
Reply handle_read_extended(Request& req, Context& ctx);
Reply handle_release(Request& req, Context& ctx);
Reply handle_move(Request& req, Context& ctx);
Reply handle_operation(Request& req, Context& ctx);
// DELETE /operations/{id}: asks a queued or running move to stop (202).
Reply handle_cancel_operation(Request& req, Context& ctx);
Reply handle_operations(Request& req, Context& ctx);
Reply handle_location(Request& req, Context& ctx);
Reply handle_locations(Request& req, Context& ctx);
Reply handle_stats(Request& req, Context& ctx);
Reply handle_set_max_memory(Request& req, Context& ctx);
Reply handle_health(Request& req, Context& ctx);

// cluster_handlers.cpp: sends to other servers, membership, transfers in ranges.
Reply handle_send(Request& req, Context& ctx);
Reply handle_nodes(Request& req, Context& ctx);
Reply handle_transfer_begin(Request& req, Context& ctx);
Reply handle_transfer_range(Request& req, Context& ctx);
Reply handle_transfer_commit(Request& req, Context& ctx);
Reply handle_transfer_abort(Request& req, Context& ctx);
// GET /transfers/{id}: receiving, committing, committed or failed.
Reply handle_transfer_state(Request& req, Context& ctx);

// pool_handlers.cpp: the data pool, /api/v1/data.
Reply handle_chunks(Request& req, Context& ctx);
Reply handle_chunk_create(Request& req, Context& ctx);
Reply handle_chunk_get(Request& req, Context& ctx);
Reply handle_chunk_post(Request& req, Context& ctx);  // move, transfer, references
Reply handle_chunk_delete(Request& req, Context& ctx);
// Reserves room for a chunk uploaded as the body of POST /api/v1/data (the
// device, type and format in the query) before the body is read.
[[nodiscard]] Result<PendingWrite> prepare_chunk_upload(Request& req, std::uint64_t size,
                                                        Context& ctx);

}  // namespace gswarm::server
