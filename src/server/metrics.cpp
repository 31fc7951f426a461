#include "server/metrics.hpp"

#include <algorithm>
#include <random>

#include <fmt/format.h>

#include "cluster/sender.hpp"
#include "server/kv_handlers.hpp"
#include "server/router.hpp"

namespace gswarm::server {
namespace {

std::size_t status_index(int status) {
  auto it = std::find(Metrics::kStatuses.begin(), Metrics::kStatuses.end(), status);
  return static_cast<std::size_t>(it - Metrics::kStatuses.begin());  // size(): other
}

// "GET /read/{param}", or "other" for paths no route matched.
std::string endpoint_label(std::size_t i) {
  auto all = routes();
  if (i >= all.size()) return "other";
  const Route& r = all[i];
  return fmt::format("{} {}{}", r.method, r.path, r.has_param ? "{param}" : "");
}

void header(std::string& out, std::string_view name, std::string_view type,
            std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

template <typename T>
void sample(std::string& out, std::string_view name, std::string_view labels, T value) {
  if (labels.empty()) {
    fmt::format_to(std::back_inserter(out), "{} {}\n", name, value);
  } else {
    fmt::format_to(std::back_inserter(out), "{}{{{}}} {}\n", name, labels, value);
  }
}

}  // namespace

void Metrics::Shard::record(std::size_t endpoint, int status, std::optional<ErrorCode> error,
                            std::chrono::nanoseconds took) {
  Endpoint& e = endpoints_[std::min(endpoint, endpoints_.size() - 1)];
  e.by_status[status_index(status)].fetch_add(1, std::memory_order_relaxed);
  const double seconds = std::chrono::duration<double>(took).count();
  auto bucket = std::lower_bound(kBuckets.begin(), kBuckets.end(), seconds) - kBuckets.begin();
  e.buckets[static_cast<std::size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  e.nanoseconds.fetch_add(static_cast<std::uint64_t>(took.count()), std::memory_order_relaxed);
  if (error) errors_[static_cast<std::size_t>(*error)].fetch_add(1, std::memory_order_relaxed);
}

std::string Metrics::Shard::next_request_id() {
  return fmt::format("{:08x}-{:x}-{:x}", prefix_, number_, ++next_id_);
}

Metrics::Metrics(std::size_t shards) {
  std::random_device random;
  const std::uint32_t prefix = random();
  for (std::size_t i = 0; i < shards; ++i) {
    shards_.push_back(std::make_unique<Shard>(routes().size() + 1));
    shards_.back()->number_ = static_cast<std::uint32_t>(i);
    shards_.back()->prefix_ = prefix;
  }
}

std::string Metrics::render(Context& ctx) const {
  auto total = [this](auto pick) {
    std::uint64_t sum = 0;
    for (const auto& shard : shards_) sum += pick(*shard).load(std::memory_order_relaxed);
    return sum;
  };
  std::string out;
  out.reserve(16 << 10);
  const std::size_t endpoints = routes().size() + 1;

  header(out, "gswarm_requests_total", "counter", "Requests answered, by endpoint and status.");
  for (std::size_t e = 0; e < endpoints; ++e) {
    const std::string label = endpoint_label(e);
    for (std::size_t s = 0; s <= kStatuses.size(); ++s) {
      const std::uint64_t n =
          total([e, s](const Shard& sh) -> const auto& { return sh.endpoints_[e].by_status[s]; });
      if (n == 0) continue;
      const std::string status = s < kStatuses.size() ? std::to_string(kStatuses[s]) : "other";
      sample(out, "gswarm_requests_total",
             fmt::format(R"(endpoint="{}",status="{}")", label, status), n);
    }
  }

  header(out, "gswarm_request_duration_seconds", "histogram",
         "Time from a request's headers to the end of its answer, by endpoint.");
  for (std::size_t e = 0; e < endpoints; ++e) {
    std::array<std::uint64_t, kBuckets.size() + 1> counts{};
    std::uint64_t count = 0;
    for (std::size_t b = 0; b < counts.size(); ++b) {
      counts[b] =
          total([e, b](const Shard& sh) -> const auto& { return sh.endpoints_[e].buckets[b]; });
      count += counts[b];
    }
    if (count == 0) continue;
    const std::string label = endpoint_label(e);
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < kBuckets.size(); ++b) {
      cumulative += counts[b];
      sample(out, "gswarm_request_duration_seconds_bucket",
             fmt::format(R"(endpoint="{}",le="{}")", label, kBuckets[b]), cumulative);
    }
    sample(out, "gswarm_request_duration_seconds_bucket",
           fmt::format(R"(endpoint="{}",le="+Inf")", label), count);
    const std::uint64_t ns =
        total([e](const Shard& sh) -> const auto& { return sh.endpoints_[e].nanoseconds; });
    sample(out, "gswarm_request_duration_seconds_sum", fmt::format(R"(endpoint="{}")", label),
           static_cast<double>(ns) / 1e9);
    sample(out, "gswarm_request_duration_seconds_count", fmt::format(R"(endpoint="{}")", label),
           count);
  }

  header(out, "gswarm_errors_total", "counter", "Error answers, by error code.");
  for (std::size_t c = 0; c < kErrorCodes; ++c) {
    const std::uint64_t n = total([c](const Shard& sh) -> const auto& { return sh.errors_[c]; });
    sample(out, "gswarm_errors_total",
           fmt::format(R"(code="{}")", error_code_name(static_cast<ErrorCode>(c))), n);
  }

  const StoreStats stats = ctx.store.stats();
  struct Tier {
    std::string_view name;
    std::uint64_t bytes, limit, keys;
  };
  std::vector<Tier> tiers = {{"dram", stats.dram_used, stats.dram_limit, stats.dram_keys},
                             {"pinned_dram", stats.pinned_used, stats.pinned_limit,
                              stats.pinned_keys},
                             {"disk", stats.disk_used, stats.disk_limit, stats.disk_keys}};
  for (const auto& d : stats.devices) tiers.push_back({d.name, d.used, d.limit, d.keys});
  header(out, "gswarm_tier_bytes", "gauge", "Bytes held in each tier (dram includes key metadata).");
  for (const auto& t : tiers) sample(out, "gswarm_tier_bytes", fmt::format(R"(tier="{}")", t.name), t.bytes);
  header(out, "gswarm_tier_limit_bytes", "gauge", "Each tier's limit (0: none).");
  for (const auto& t : tiers) sample(out, "gswarm_tier_limit_bytes", fmt::format(R"(tier="{}")", t.name), t.limit);
  header(out, "gswarm_tier_keys", "gauge", "Keys with their primary copy in each tier.");
  for (const auto& t : tiers) sample(out, "gswarm_tier_keys", fmt::format(R"(tier="{}")", t.name), t.keys);
  header(out, "gswarm_keys", "gauge", "Keys stored.");
  sample(out, "gswarm_keys", "", stats.total_keys);

  header(out, "gswarm_moves", "gauge", "Copies between tiers running and waiting to run.");
  sample(out, "gswarm_moves", R"(state="active")", stats.active_moves);
  sample(out, "gswarm_moves", R"(state="queued")", stats.queued_moves);

  header(out, "gswarm_node_sent_bytes_total", "counter",
         "Value bytes this server sent to other servers (sends, chunk transfers).");
  sample(out, "gswarm_node_sent_bytes_total", "",
         ctx.sender != nullptr ? ctx.sender->bytes_sent() : 0);
  header(out, "gswarm_node_received_bytes_total", "counter",
         "Request body bytes received from other servers.");
  sample(out, "gswarm_node_received_bytes_total", "",
         total([](const Shard& sh) -> const auto& { return sh.node_received_; }));

  if (ctx.state != nullptr) {
    header(out, "gswarm_connections", "gauge", "Client connections open.");
    sample(out, "gswarm_connections", "", ctx.state->connections.load(std::memory_order_relaxed));
    header(out, "gswarm_max_connections", "gauge", "Connections served at once (--max-connections).");
    sample(out, "gswarm_max_connections", "", ctx.state->max_connections);
    header(out, "gswarm_buffer_bytes", "gauge",
           "Memory held for request and answer bodies in flight (--max-buffer-memory).");
    sample(out, "gswarm_buffer_bytes", "", ctx.state->buffers.used());
  }
  header(out, "gswarm_build_info", "gauge", "The server's version.");
  sample(out, "gswarm_build_info", fmt::format(R"(version="{}")", GSWARM_VERSION), 1);
  return out;
}

Reply handle_metrics(Request&, Context& ctx) {
  if (ctx.state == nullptr || ctx.state->metrics == nullptr) {
    return error_response(ErrorCode::kNotSupported, "this server keeps no metrics");
  }
  // Reading the Store's statistics takes its locks: off the network thread.
  return Reply(std::function<Response()>([&ctx] {
    Response res;
    res.content_type = "text/plain; version=0.0.4; charset=utf-8";
    res.head = ctx.state->metrics->render(ctx);
    return res;
  }));
}

}  // namespace gswarm::server
