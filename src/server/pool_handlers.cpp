// Handlers of the data pool endpoints, /api/v1/data (doc/http-api.md, "Data
// pool"). The work is in pool/ (chunks) and cluster/ (URL sources, transfers).
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cluster/chunk_transfer.hpp"
#include "cluster/membership.hpp"
#include "cluster/sender.hpp"
#include "cluster/target.hpp"
#include "cluster/url_source.hpp"
#include "pool/pool.hpp"
#include "server/json_body.hpp"
#include "server/kv_handlers.hpp"

namespace gswarm::server {
namespace {

using json = nlohmann::json;
using pool::Chunk;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

Response not_served() {
  return error_response(ErrorCode::kNotSupported, "this server has no data pool");
}

// The shape of the spec's original server: the chunk's fields, its locations,
// its metadata and its references.
json chunk_json(const Chunk& c) {
  json locations = json::array();
  for (const auto& r : c.locations) {
    locations.push_back({{"device", r.location.name()},
                         {"status", copy_status_name(r.status)},
                         {"progress", r.progress},
                         {"size", r.size}});
  }
  return {{"chunk_id", c.id},
          {"chunk_type", pool::chunk_type_name(c.type)},
          {"size", c.size},
          {"format", c.format},
          {"source", c.source},
          {"checksum", c.checksum},
          {"locations", std::move(locations)},
          {"metadata",
           {{"created_by", c.created_by},
            {"created_at", c.created_at},
            {"last_accessed", c.last_accessed},
            {"access_count", c.access_count},
            {"checksum", c.checksum},
            {"source", c.source},
            {"reference_count", c.references.size()}}},
          {"references", c.references},
          {"reference_count", c.references.size()}};
}

json created_json(const Chunk& c) {
  json j = {{"status", "success"},
            {"chunk_id", c.id},
            {"size", c.size},
            {"checksum", c.checksum},
            {"chunk_type", pool::chunk_type_name(c.type)},
            {"format", c.format},
            {"device", c.locations.empty() ? std::string() : c.locations.front().location.name()}};
  return j;
}

// A field of a JSON body or, for uploads, of the query string.
struct SpecFields {
  std::string device = "dram";
  std::string type = "input";
  std::string format = "tensor";
};

Result<pool::ChunkSpec> make_spec(const SpecFields& fields, Context& ctx) {
  pool::ChunkSpec spec;
  auto device = ctx.pool->resolve_device(fields.device);
  if (!device) return tl::unexpected(device.error());
  spec.device = *device;
  auto type = pool::parse_chunk_type(fields.type);
  if (!type) return tl::unexpected(type.error());
  spec.type = *type;
  if (auto ok = validate_format(fields.format); !ok) return tl::unexpected(ok.error());
  spec.format = fields.format;
  return spec;
}

SpecFields query_fields(const Request& req) {
  SpecFields fields;
  auto take = [&req](const char* name, std::string& out) {
    if (auto it = req.query.find(name); it != req.query.end()) out = it->second;
  };
  take("device", fields.device);
  take("type", fields.type);
  take("format", fields.format);
  return fields;
}

Result<TaskPriority> parse_priority(std::string_view text) {
  if (text == "high") return TaskPriority::kHigh;
  if (text == "normal") return TaskPriority::kNormal;
  if (text == "low") return TaskPriority::kLow;
  return make_error(ErrorCode::kBadRequest,
                    fmt::format("unknown priority '{}': use high, normal or low", text));
}

// The chunk id and what follows it: "chunk_x", "chunk_x/move", "chunk_x/references/NAME".
struct ChunkPath {
  std::string id;
  std::string action;
  std::string rest;
};

ChunkPath split_path(const std::string& param) {
  ChunkPath p;
  const auto slash = param.find('/');
  p.id = param.substr(0, slash);
  if (slash == std::string::npos) return p;
  const auto second = param.find('/', slash + 1);
  p.action = param.substr(slash + 1, second == std::string::npos ? second : second - slash - 1);
  if (second != std::string::npos) p.rest = param.substr(second + 1);
  return p;
}

Response no_such_endpoint(const Request& req) {
  return error_response(ErrorCode::kNoRoute,
                        fmt::format("no endpoint at {} {} (see doc/http-api.md, \"Data pool\")",
                                    req.method, req.path));
}

// Where a create reads from: "/path" or "file:///path" (a file under
// --source-root), "http://..." (a URL), "key:NAME" (a KV key).
Result<std::unique_ptr<pool::Source>> open_source(const std::string& source, Context& ctx) {
  if (source.empty()) {
    return make_error(ErrorCode::kBadRequest,
                      "'source' is empty: give a file path on the server, an http:// URL or "
                      "key:NAME, or upload the bytes as application/octet-stream");
  }
  if (cluster::is_url(source)) {
    if (ctx.url_sources == nullptr) {
      return make_error(ErrorCode::kForbidden, "this server fetches no URL sources");
    }
    return ctx.url_sources->open(source, &ctx.store.stopping());
  }
  if (source.starts_with("key:")) {
    auto source_key = pool::open_key_source(ctx.store, source.substr(4));
    if (!source_key && source_key.error().code == ErrorCode::kNotFound) {
      source_key.error().message = fmt::format("no key '{}' to create the chunk from", source.substr(4));
    }
    return source_key;
  }
  std::string_view path = source;
  if (path.starts_with("file://")) path.remove_prefix(7);
  return pool::open_file_source(path, ctx.pool->source_roots());
}

// open_source, refusing a source over --max-value-size before its bytes.
Result<std::shared_ptr<pool::Source>> open_checked_source(const std::string& source, Context& ctx) {
  auto opened = open_source(source, ctx);
  if (!opened) return tl::unexpected(opened.error());
  if ((*opened)->size() > ctx.limits.max_value_size) {
    return make_error(ErrorCode::kTooLarge,
                      fmt::format("the source is {} bytes, over --max-value-size ({} bytes)",
                                  (*opened)->size(), ctx.limits.max_value_size));
  }
  return std::shared_ptr<pool::Source>(std::move(*opened));
}

Response created(const Result<Chunk>& chunk, std::uint64_t operation) {
  if (!chunk) return error_response(chunk.error());
  json answer = created_json(*chunk);
  if (operation != 0) answer["task_id"] = operation;
  return json_response(dump(answer));
}

constexpr std::size_t kDefaultListLimit = 10000;
constexpr std::size_t kMaxListLimit = 100000;

// GET /api/v1/data, built a page of chunks at a time on the io threads, so a
// long listing is never held whole: {"chunks": [...], "count": n, "truncated": b}.
class ChunksAnswer final : public BodySource {
 public:
  ChunksAnswer(pool::Pool& pool, pool::ChunkFilter filter, std::size_t limit)
      : pool_(pool), filter_(std::move(filter)), limit_(limit) {}

  std::optional<std::uint64_t> size() const override { return std::nullopt; }

  Result<bool> next(std::string& piece) override {
    constexpr std::size_t kPiece = 1 << 20;
    piece.clear();
    if (done_) return false;
    if (!started_) {
      ids_ = pool_.ids(filter_.type());  // a snapshot: chunks made later are not listed
      piece = R"({"chunks":[)";
      started_ = true;
    }
    while (at_ < ids_.size() && piece.size() < kPiece) {
      if (count_ == limit_) {
        truncated_ = true;
        break;
      }
      auto chunk = pool_.get(ids_[at_++], false);
      if (!chunk || !filter_.matches(*chunk)) continue;  // deleted meanwhile, or filtered out
      if (count_ > 0) piece += ',';
      piece += dump(chunk_json(*chunk));
      ++count_;
    }
    if (at_ == ids_.size() || truncated_) {
      piece += fmt::format(R"(],"count":{},"truncated":{}}})", count_, truncated_);
      done_ = true;
    }
    return true;
  }

 private:
  pool::Pool& pool_;
  const pool::ChunkFilter filter_;
  const std::size_t limit_;
  std::vector<std::string> ids_;
  std::size_t at_ = 0;
  std::size_t count_ = 0;
  bool started_ = false;
  bool truncated_ = false;
  bool done_ = false;
};

}  // namespace

Result<PendingWrite> prepare_chunk_upload(Request& req, std::uint64_t size, Context& ctx) {
  if (ctx.pool == nullptr) return make_error(ErrorCode::kNotSupported, "this server has no data pool");
  auto spec = make_spec(query_fields(req), ctx);
  if (!spec) return tl::unexpected(spec.error());
  return ctx.pool->prepare_upload(*spec, size);
}

Reply handle_chunks(Request& req, Context& ctx) {
  if (ctx.pool == nullptr) return not_served();
  std::optional<std::string_view> device;
  std::optional<pool::ChunkType> type;
  if (auto it = req.query.find("device"); it != req.query.end() && !it->second.empty()) {
    device = it->second;
  }
  if (auto it = req.query.find("type"); it != req.query.end() && !it->second.empty()) {
    auto parsed = pool::parse_chunk_type(it->second);
    if (!parsed) return error_response(parsed.error());
    type = *parsed;
  }
  auto filter = pool::ChunkFilter::make(device, type);
  if (!filter) return error_response(filter.error());
  auto limit = query_limit(req, kDefaultListLimit, kMaxListLimit);
  if (!limit) return error_response(limit.error());
  Response r;
  r.source = std::make_shared<ChunksAnswer>(*ctx.pool, *filter, *limit);
  return r;
}

Reply handle_chunk_create(Request& req, Context& ctx) {
  if (ctx.pool == nullptr) return not_served();
  if (req.value) {  // an upload whose bytes have arrived
    const SpecFields fields = query_fields(req);
    auto type = pool::parse_chunk_type(fields.type);
    if (!type) return error_response(type.error());
    pool::ChunkSpec spec{req.value->location(), *type, fields.format, ""};
    if (auto it = req.query.find("source"); it != req.query.end()) spec.source = it->second;
    if (spec.source.empty()) spec.source = "upload";
    auto commit = [&ctx, spec](PendingWrite pending) {
      return created(ctx.pool->commit_upload(std::move(pending), spec), 0);
    };
    if (!req.value->needs_io()) return commit(std::move(*req.value));
    auto shared = std::make_shared<PendingWrite>(std::move(*req.value));
    return Reply(std::function<Response()>([commit, shared] { return commit(std::move(*shared)); }));
  }
  JsonBody body;
  if (auto ok = body.parse(req.body); !ok) return error_response(ok.error());
  SpecFields fields;
  auto source = body.string("source");
  if (!source) return error_response(source.error());
  for (auto [name, out] : {std::pair{"device", &fields.device}, std::pair{"type", &fields.type},
                           std::pair{"format", &fields.format}}) {
    auto value = body.string(name, out->c_str());
    if (!value) return error_response(value.error());
    *out = std::move(*value);
  }
  auto wait = body.boolean("wait");
  if (!wait) return error_response(wait.error());
  auto spec = make_spec(fields, ctx);
  if (!spec) return error_response(spec.error());
  spec->source = *source;

  // A file or a key opens at once: one the server may not read is refused
  // here, before an operation is listed for it. A URL opens in the work, once
  // it is known to be allowed and a place among the fetches is held for it.
  std::shared_ptr<pool::Source> opened_now;
  cluster::UrlSources::Slot fetching;
  if (!cluster::is_url(spec->source)) {
    auto opened = open_checked_source(spec->source, ctx);
    if (!opened) return error_response(opened.error());
    opened_now = std::move(*opened);
  } else {
    if (ctx.url_sources == nullptr) {
      return error_response(ErrorCode::kForbidden, "this server fetches no URL sources");
    }
    if (auto allowed = ctx.url_sources->check(spec->source); !allowed) {
      return error_response(allowed.error());
    }
    auto slot = ctx.url_sources->acquire();
    if (!slot) return error_response(slot.error());
    fetching = std::move(*slot);
  }
  const std::string id = ctx.pool->new_id();
  Operations& operations = ctx.store.operations();
  const std::uint64_t operation =
      operations.add("create", id, spec->device, 0, &ctx.store.stopping());
  auto work = [&ctx, id, operation, opened_now, fetching, spec = std::move(*spec)] {
    Operations& ops = ctx.store.operations();
    const auto started = std::chrono::steady_clock::now();
    Result<std::shared_ptr<pool::Source>> opened = opened_now;
    if (opened_now == nullptr) opened = open_checked_source(spec.source, ctx);
    Result<Chunk> chunk = opened ? Result<Chunk>() : tl::unexpected(opened.error());
    if (opened) {
      ops.set_total(operation, (*opened)->size());
      ops.start(operation, spec.device);
      chunk = ctx.pool->create(id, **opened, spec, ops.progress(operation));
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    ops.finish(operation, chunk ? std::nullopt : std::optional<Error>(chunk.error()), seconds);
    return created(chunk, operation);
  };
  if (wait->value_or(true)) return Reply(std::function<Response()>(std::move(work)), Lane::kMove);
  bool queued = submit_detached(ctx, [work = std::move(work)] { (void)work(); });
  if (!queued) {
    Error busy{ErrorCode::kTooManyRequests, "too many creates and moves are waiting; retry later"};
    operations.finish(operation, busy, 0);
    return error_response(busy);
  }
  return json_response(dump({{"status", "accepted"},
                             {"chunk_id", id},
                             {"task_id", operation},
                             {"operation_url", fmt::format("/operations/{}", operation)}}),
                       202);
}

Reply handle_chunk_get(Request& req, Context& ctx) {
  if (ctx.pool == nullptr) return not_served();
  ChunkPath path = split_path(req.param);
  if (!path.action.empty()) return no_such_endpoint(req);
  auto chunk = ctx.pool->get(path.id);
  if (!chunk) return error_response(chunk.error());
  return json_response(dump(chunk_json(*chunk)));
}

Reply handle_chunk_post(Request& req, Context& ctx) {
  if (ctx.pool == nullptr) return not_served();
  ChunkPath path = split_path(req.param);
  if (!path.rest.empty() ||
      (path.action != "move" && path.action != "transfer" && path.action != "references")) {
    return no_such_endpoint(req);
  }
  JsonBody body;
  if (auto ok = body.parse(req.body); !ok) return error_response(ok.error());

  if (path.action == "references") {
    auto holder = body.string("holder");
    if (!holder) return error_response(holder.error());
    return Reply(std::function<Response()>([&ctx, id = path.id, holder = std::move(*holder)] {
      auto chunk = ctx.pool->add_reference(id, holder);
      if (!chunk) return error_response(chunk.error());
      return json_response(dump(chunk_json(*chunk)));
    }));
  }

  if (path.action == "move") {
    auto device_name = body.string("target_device");
    if (!device_name) return error_response(device_name.error());
    auto priority_name = body.string("priority", "normal");
    if (!priority_name) return error_response(priority_name.error());
    auto priority = parse_priority(*priority_name);
    if (!priority) return error_response(priority.error());
    auto device = ctx.pool->resolve_device(*device_name);
    if (!device) return error_response(device.error());
    // Metadata may be written (a chunk going to disk): on the io pool.
    return Reply(std::function<Response()>(
        [&ctx, id = path.id, device = *device, priority = *priority, name = *priority_name] {
          auto task = ctx.pool->start_move(id, device, priority);
          if (!task) return error_response(task.error());
          return json_response(dump({{"status", "success"},
                                     {"chunk_id", id},
                                     {"target_device", device.name()},
                                     {"priority", name},
                                     {"state", "queued"},
                                     {"task_id", *task},
                                     {"operation_url", fmt::format("/operations/{}", *task)}}));
        }));
  }

  // transfer
  auto node = body.string("target_node");
  if (!node) return error_response(node.error());
  auto device_name = body.string("target_device", "dram");
  if (!device_name) return error_response(device_name.error());
  auto delete_source = body.boolean("delete_source");
  if (!delete_source) return error_response(delete_source.error());
  if (!ctx.pool->owns(path.id)) return error_response(ctx.pool->get(path.id, false).error());
  // The device is the target's to resolve; its name must be one it can parse.
  const std::string device_text = *device_name == "gpu" ? "device:0" : *device_name;
  auto target = cluster::parse_target(*node + ":" + device_text);
  if (!target) return error_response(target.error());
  const bool here = !target->address && (target->node == ctx.node_name ||
                                         target->node == "localhost" || target->node == "local");
  if (here) {
    return error_response(ErrorCode::kBadRequest,
                          fmt::format("'{}' is this node: move the chunk instead (POST "
                                      "/api/v1/data/{}/move)",
                                      *node, path.id));
  }
  if (ctx.sender == nullptr || ctx.membership == nullptr) {
    return error_response(ErrorCode::kNotSupported, "this server does not take part in sends");
  }
  if (!target->address) {  // an unknown node is answered now, not in the task
    if (auto member = ctx.membership->resolve(target->node); !member) {
      return error_response(member.error());
    }
  }
  if (delete_source->value_or(false)) {
    if (auto ok = ctx.pool->check_removable(path.id, false); !ok) return error_response(ok.error());
  }
  auto transfer = cluster::prepare_chunk_transfer(*ctx.pool, ctx.store, path.id);
  if (!transfer) return error_response(transfer.error());
  Operations& operations = ctx.store.operations();
  const std::uint64_t operation = operations.add("transfer", path.id, target->location,
                                                 transfer->chunk.size, &ctx.store.stopping());
  transfer->target = std::move(*target);
  transfer->delete_source = delete_source->value_or(false);
  transfer->operation = operation;
  bool queued = submit_detached(
      ctx, [&ctx, transfer = std::move(*transfer)] {
        Operations& ops = ctx.store.operations();
        const auto started = std::chrono::steady_clock::now();
        auto done = cluster::transfer_chunk(*ctx.pool, *ctx.sender, transfer);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
        ops.finish(transfer.operation, done ? std::nullopt : std::optional<Error>(done.error()),
                   seconds);
      });
  if (!queued) {
    Error busy{ErrorCode::kTooManyRequests, "too many transfers and moves are waiting; retry later"};
    operations.finish(operation, busy, 0);
    return error_response(busy);
  }
  return json_response(dump({{"status", "success"},
                             {"chunk_id", path.id},
                             {"target_node", *node},
                             {"target_device", *device_name},
                             {"delete_source", delete_source->value_or(false)},
                             {"state", "queued"},
                             {"task_id", operation},
                             {"operation_url", fmt::format("/operations/{}", operation)}}));
}

Reply handle_chunk_delete(Request& req, Context& ctx) {
  if (ctx.pool == nullptr) return not_served();
  ChunkPath path = split_path(req.param);
  if (path.action == "references" && !path.rest.empty()) {
    return Reply(std::function<Response()>([&ctx, id = path.id, holder = path.rest] {
      auto chunk = ctx.pool->drop_reference(id, holder);
      if (!chunk) return error_response(chunk.error());
      return json_response(dump(chunk_json(*chunk)));
    }));
  }
  if (!path.action.empty()) return no_such_endpoint(req);
  bool force = false;
  if (auto it = req.query.find("force"); it != req.query.end()) {
    if (it->second == "true" || it->second == "1") {
      force = true;
    } else if (it->second != "false" && it->second != "0") {
      return error_response(ErrorCode::kBadRequest, "'force' must be true or false");
    }
  }
  if (auto ok = ctx.pool->check_removable(path.id, force); !ok) return error_response(ok.error());
  return Reply(std::function<Response()>([&ctx, id = path.id, force] {
    if (auto ok = ctx.pool->remove(id, force); !ok) return error_response(ok.error());
    return json_response(dump({{"status", "success"}, {"chunk_id", id}, {"deleted", true}}));
  }));
}

}  // namespace gswarm::server
