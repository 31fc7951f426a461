// Metrics: what the server did, for GET /metrics (Prometheus text format,
// doc/http-api.md). Requests by endpoint and status, their latency, errors by
// code and bytes between nodes are counted here as they happen; tiers, moves
// and connections are read from the Store and the server when scraped.
//
// Counting is sharded: each event loop owns one shard and is its only writer
// (relaxed atomics, so a scrape on another thread reads them safely), so no
// two threads contend for a counter on the request path.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gswarm/error.hpp>

#include "server/http_message.hpp"

namespace gswarm::server {

struct Context;

class Metrics {
 public:
  // The statuses the server answers with; others are counted as "other".
  static constexpr std::array<int, 24> kStatuses = {100, 200, 201, 202, 204, 206, 400, 401,
                                                    403, 404, 405, 408, 409, 411, 413, 415,
                                                    416, 429, 500, 501, 502, 503, 504, 507};
  // Upper bounds of the latency buckets, in seconds.
  static constexpr std::array<double, 18> kBuckets = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                      0.005,  0.01,    0.025,  0.05,  0.1,
                                                      0.25,   0.5,     1,      2.5,   5,
                                                      10,     30,      60};
  static constexpr std::size_t kErrorCodes = static_cast<std::size_t>(ErrorCode::kProtocol) + 1;

  class Shard {
   public:
    explicit Shard(std::size_t endpoints) : endpoints_(endpoints) {}
    // One answered request: `endpoint` is its route's index (routes().size()
    // for a path no route matched).
    void record(std::size_t endpoint, int status, std::optional<ErrorCode> error,
                std::chrono::nanoseconds took);
    void add_node_received(std::uint64_t bytes) {
      node_received_.fetch_add(bytes, std::memory_order_relaxed);
    }
    // A request id unique in this process: the shard's number and a count.
    std::string next_request_id();

   private:
    friend class Metrics;
    struct Endpoint {
      std::array<std::atomic<std::uint64_t>, kStatuses.size() + 1> by_status{};
      std::array<std::atomic<std::uint64_t>, kBuckets.size() + 1> buckets{};  // not cumulative
      std::atomic<std::uint64_t> nanoseconds{0};
    };
    std::vector<Endpoint> endpoints_;
    std::array<std::atomic<std::uint64_t>, kErrorCodes> errors_{};
    std::atomic<std::uint64_t> node_received_{0};
    std::uint64_t next_id_ = 0;  // only its loop's thread uses it
    std::uint32_t number_ = 0;
    std::uint32_t prefix_ = 0;
  };

  explicit Metrics(std::size_t shards);
  Shard& shard(std::size_t i) { return *shards_[i]; }

  // The Prometheus text of everything: counters from the shards, the rest
  // read from `ctx` now.
  std::string render(Context& ctx) const;

 private:
  std::vector<std::unique_ptr<Shard>> shards_;
};

Reply handle_metrics(Request& req, Context& ctx);

}  // namespace gswarm::server
