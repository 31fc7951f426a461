#include "server/kv_handlers.hpp"

#include <unistd.h>

#include <charconv>
#include <cstring>

#include <fmt/format.h>
#include <simdjson.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "core/base64.hpp"
#include "core/key.hpp"
#include "core/size.hpp"
#include "cluster/incoming.hpp"
#include "pool/pool.hpp"
#include "server/json_body.hpp"
#include "storage/system_memory.hpp"

namespace gswarm::server {
namespace {

using nlohmann::json;

// Limits above this are not limits: refused rather than taken to mean "none".
constexpr std::uint64_t kLargestLimit = std::uint64_t{1} << 50;  // 1 PB
// Values up to this size are base64-encoded in place; larger ones in pieces.
constexpr std::uint64_t kInlineBase64 = 64 * kKiB;
// A /locations glob: a key's length and its wildcards.
constexpr std::size_t kMaxPattern = 8192;
// Keys per piece of a streamed /locations answer: 4096-byte keys keep a piece
// near BodySource::kMaxPiece.
constexpr std::size_t kLocationsPiece = 256;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }


json read_pointer_json(const std::optional<ReadPointer>& rp, Location where, const Context& ctx) {
  if (!rp) return nullptr;
  json j = {{"kind", rp->kind}, {"offset", rp->offset}, {"size", rp->size}};
  if (rp->kind == "cuda_ipc") {
    j["handle"] = rp->path;
    j["device"] = rp->device;
    return j;
  }
  if (rp->kind == "file") j["path"] = rp->path;
  // Host and disk values are also handed out as read-only descriptors over the
  // local socket (doc/read-pointers.md).
  if (ctx.state != nullptr && !ctx.state->local_socket.empty()) {
    j["socket"] = ctx.state->local_socket;
    // Who holds the socket: a client checks this before it sends anything.
    j["pid"] = ::getpid();
    j["uid"] = ::geteuid();
    j["location"] = where.name();
  }
  return j;
}

json replica_json(const ReplicaState& r, const Context& ctx) {
  return {{"location", r.location.name()},
          {"size", r.size},
          {"last_accessed", r.last_accessed},
          {"copy_status", copy_status_name(r.status)},
          {"copy_progress", r.progress},
          {"read_pointer", read_pointer_json(r.read_pointer, r.location, ctx)}};
}

json replicas_json(const KeyLocations& k, const Context& ctx) {
  json replicas = json::array();
  for (const auto& r : k.replicas) replicas.push_back(replica_json(r, ctx));
  return replicas;
}

// Formatted directly: this answer is on the hot path of every write.
Response write_success(const std::string& key, const WriteResult& w, bool extended) {
  std::string body = R"({"status":"success","key":)";
  append_json_string(body, key);
  body += R"(,"location":")";
  body += w.location.name();
  body += '"';
  if (extended) {
    fmt::format_to(std::back_inserter(body), R"(,"size":{},"format":)", w.size);
    append_json_string(body, w.format);
  }
  body += '}';
  return json_response(std::move(body));
}

Response commit_now(PendingWrite pending, Context& ctx, bool extended) {
  std::string key = pending.key();
  auto written = ctx.store.commit_write(std::move(pending));
  if (!written) return error_response(written.error());
  return write_success(key, *written, extended);
}

// Stores bytes the handler holds (a JSON value, decoded base64). Tiers the CPU
// addresses take them at once; disk and devices on the io pool, from a copy that
// is counted against --max-buffer-memory.
Reply store_bytes(Context& ctx, std::string key, Location loc, std::string_view format,
                  std::string_view bytes, bool extended) {
  if (auto ok = check_not_chunk(key, "written", ctx); !ok) return error_response(ok.error());
  auto pending = ctx.store.prepare_write(std::move(key), loc, bytes.size(), format);
  if (!pending) return error_response(pending.error());
  if (pending->direct()) {
    if (!bytes.empty()) std::memcpy(pending->buffer().data(), bytes.data(), bytes.size());
    if (!pending->needs_io()) return commit_now(std::move(*pending), ctx, extended);
    auto shared = std::make_shared<PendingWrite>(std::move(*pending));
    return Reply(std::function<Response()>(
        [&ctx, shared, extended] { return commit_now(std::move(*shared), ctx, extended); }));
  }
  auto charge = BufferCharge::take(ctx, bytes.size());
  if (!charge) return error_response(charge.error());
  auto state = std::make_shared<std::tuple<PendingWrite, std::string, BufferCharge>>(
      std::move(*pending), std::string(bytes), std::move(*charge));
  return Reply(std::function<Response()>([&ctx, state, extended] {
    auto& [p, copy, held] = *state;
    if (auto ok = p.append({reinterpret_cast<const std::byte*>(copy.data()), copy.size()}); !ok) {
      return error_response(ok.error());
    }
    return commit_now(std::move(p), ctx, extended);
  }));
}

// Parses a body that carries a value. Parsing and extracting it take memory in
// proportion to the body: that is held against --max-buffer-memory as well.
Result<BufferCharge> parse_value_body(JsonBody& body, const Request& req, Context& ctx) {
  auto charge = BufferCharge::take(ctx, 2 * req.body.size());
  if (!charge) return charge;
  if (auto ok = body.parse(req.body); !ok) {
    ok.error().message = "request body is " + ok.error().message;
    return tl::unexpected(ok.error());
  }
  return charge;
}

Result<ValueView> read_value(const Request& req, Context& ctx) {
  if (auto ok = validate_key(req.param); !ok) return tl::unexpected(ok.error());
  return ctx.store.read(req.param);
}

}  // namespace

Result<std::size_t> query_limit(const Request& req, std::size_t fallback, std::size_t max) {
  auto it = req.query.find("limit");
  if (it == req.query.end()) return fallback;
  const std::string& text = it->second;
  std::size_t limit = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
  if (ec != std::errc() || ptr != text.data() + text.size() || limit == 0 || limit > max) {
    return make_error(ErrorCode::kBadRequest, fmt::format("limit must be a number from 1 to {}", max));
  }
  return limit;
}

bool submit_detached(Context& ctx, std::function<void()> task) {
  ServerState* state = ctx.state;
  if (state != nullptr) state->detached_tasks.fetch_add(1);
  bool queued = ctx.store.movers().try_submit(
      [state, task = std::move(task)] {
        task();
        if (state != nullptr) state->detached_tasks.fetch_sub(1);
      },
      ctx.store.max_queued_moves());
  if (!queued && state != nullptr) state->detached_tasks.fetch_sub(1);
  return queued;
}

Result<void> check_not_chunk(std::string_view key, std::string_view what, Context& ctx) {
  if (!pool::is_chunk_id(key)) return {};
  if (ctx.pool != nullptr && ctx.pool->owns(key)) {
    return make_error(ErrorCode::kConflict,
                      fmt::format("'{}' is a data pool chunk: it cannot be {} with the key-value "
                                  "commands; use gswarm data move / transfer / delete (the "
                                  "/api/v1/data endpoints)",
                                  key, what));
  }
  return make_error(ErrorCode::kConflict,
                    fmt::format("'{}' is named like a data pool chunk (chunk_ and 16 hex digits): "
                                "such keys are the data pool's and cannot be {} with the "
                                "key-value commands; choose another name",
                                key, what));
}

Result<Location> usable_location(std::string_view name, Context& ctx) {
  auto loc = Location::parse(name);
  if (!loc) return loc;
  if (auto ok = ctx.store.check_location(*loc); !ok) return tl::unexpected(ok.error());
  return loc;
}

Result<BufferCharge> BufferCharge::take(Context& ctx, std::uint64_t bytes) {
  BufferCharge charge;
  if (ctx.state == nullptr) return charge;
  charge.counter_ = &ctx.state->buffers;
  if (auto ok = charge.grow(bytes); !ok) return tl::unexpected(ok.error());
  return charge;
}

Result<void> BufferCharge::grow(std::uint64_t bytes) {
  if (counter_ == nullptr || bytes == 0) return {};
  if (auto ok = counter_->reserve(bytes, "request buffer"); !ok) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("the server is busy: request and answer bodies in flight hold "
                                  "{} of the {} it allows (--max-buffer-memory); retry shortly",
                                  format_size(counter_->used()), format_size(counter_->limit())));
  }
  bytes_ += bytes;
  return {};
}

Reply handle_write(Request& req, Context& ctx) {
  JsonBody body;
  auto held = parse_value_body(body, req, ctx);
  if (!held) return error_response(held.error());
  auto key = body.string("key");
  if (!key) return error_response(key.error());
  auto value = body.field("value");
  if (!value) return error_response(ErrorCode::kBadRequest, "missing field 'value'");
  auto loc_name = body.string("location", "dram");
  if (!loc_name) return error_response(loc_name.error());
  auto loc = usable_location(*loc_name, ctx);
  if (!loc) return error_response(loc.error());
  return store_bytes(ctx, std::move(*key), *loc, "json", simdjson::minify(*value), false);
}

Result<RawTarget> parse_raw_target(Request& req, Context& ctx) {
  auto key = req.query.find("key");
  if (key == req.query.end()) {
    return make_error(ErrorCode::kBadRequest,
                      "raw /write_extended needs the key in the query string: ?key=...");
  }
  auto loc_it = req.query.find("location");
  auto loc = usable_location(loc_it == req.query.end() ? "dram" : loc_it->second, ctx);
  if (!loc) return tl::unexpected(loc.error());
  auto format = req.query.find("format");
  // The key and format are checked by Store::prepare_write, like every write's.
  return RawTarget{std::move(key->second), *loc,
                   format == req.query.end() ? std::string("bytes") : std::move(format->second)};
}

Result<PendingWrite> prepare_raw_value(RawTarget& target, std::uint64_t size, Context& ctx) {
  if (auto ok = check_not_chunk(target.key, "written", ctx); !ok) return tl::unexpected(ok.error());
  return ctx.store.prepare_write(std::move(target.key), target.location, size, target.format);
}

Response commit_raw_value(PendingWrite pending, Context& ctx) {
  return commit_now(std::move(pending), ctx, true);
}

Reply handle_write_extended(Request& req, Context& ctx) {
  if (req.value) {
    if (!req.value->needs_io()) return commit_raw_value(std::move(*req.value), ctx);
    auto shared = std::make_shared<PendingWrite>(std::move(*req.value));
    return Reply(std::function<Response()>(
        [&ctx, shared] { return commit_raw_value(std::move(*shared), ctx); }));
  }
  if (is_octet_stream(req.content_type)) {
    // A raw value tagged json: it must be JSON, since /read pastes it into answers.
    auto target =
        req.raw_target ? Result<RawTarget>(std::move(*req.raw_target)) : parse_raw_target(req, ctx);
    if (!target) return error_response(target.error());
    auto held = BufferCharge::take(ctx, 2 * req.body.size());
    if (!held) return error_response(held.error());
    auto doc = JsonBody::parse_json(req.body);
    JsonBody::shrink_parser();
    // Stored values are pasted, never parsed again: the grammar is enough.
    if (!doc && doc.error().message != kWideIntegerMessage) {
      return error_response(ErrorCode::kBadRequest,
                            fmt::format("the value is tagged format=json but is {}; send it "
                                        "with another format tag (e.g. bytes) to store it as is",
                                        doc.error().message));
    }
    return store_bytes(ctx, std::move(target->key), target->location, "json", req.body, true);
  }
  JsonBody body;
  auto held = parse_value_body(body, req, ctx);
  if (!held) return error_response(held.error());
  auto key = body.string("key");
  if (!key) return error_response(key.error());
  auto loc_name = body.string("location", "dram");
  if (!loc_name) return error_response(loc_name.error());
  auto sv = body.field("serialized_value");
  simdjson::dom::object serialized;
  if (!sv || sv->get(serialized) != simdjson::SUCCESS) {
    return error_response(
        ErrorCode::kBadRequest,
        "missing field 'serialized_value': expected {\"type\": ..., \"data\": ...}");
  }
  auto member = [&serialized](const char* name) -> std::optional<simdjson::dom::element> {
    simdjson::dom::element e;
    if (serialized.at_key(name).get(e) != simdjson::SUCCESS) return std::nullopt;
    return e;
  };
  auto type = JsonBody::string_of(member("type"), "type");
  if (!type) return error_response(type.error());
  auto data = member("data");
  if (!data) return error_response(ErrorCode::kBadRequest, "missing field 'serialized_value.data'");
  auto loc = usable_location(*loc_name, ctx);
  if (!loc) return error_response(loc.error());
  if (*type == "json") {
    return store_bytes(ctx, std::move(*key), *loc, "json", simdjson::minify(*data), true);
  }
  std::string_view encoded;
  if (data->get(encoded) != simdjson::SUCCESS) {
    return error_response(ErrorCode::kBadRequest,
                          "'serialized_value.data' must be a base64 string for non-JSON types");
  }
  auto bytes = base64_decode(encoded);
  if (!bytes) return error_response(bytes.error());
  return store_bytes(ctx, std::move(*key), *loc, *type, *bytes, true);
}

namespace {

// A read that finds no value to serve keeps its status (404 no such key, 409
// held outside DRAM) and, as the original server's answers did, says
// "found": false with the key, so that response.json()["found"] works.
Response read_failure(const Error& error, const std::string& key) {
  if (error.code != ErrorCode::kNotFound && error.code != ErrorCode::kWrongLocation) {
    return error_response(error);
  }
  Response r = json_response(dump({{"detail", error.message},
                                   {"code", error_code_name(error.code)},
                                   {"found", false},
                                   {"key", key}}),
                             http_status(error.code));
  r.error = error.code;
  return r;
}

}  // namespace

Reply handle_read(Request& req, Context& ctx) {
  auto view = read_value(req, ctx);
  if (!view) return read_failure(view.error(), req.param);
  if (view->format != "json") {
    return error_response(ErrorCode::kWrongFormat,
                          fmt::format("key '{}' holds a '{}' value, not JSON: read it with "
                                      "/read_extended",
                                      req.param, view->format));
  }
  // Values tagged json were validated when written, so they can be pasted.
  Response r;
  r.head = R"({"key":)" + json_string(req.param) + R"(,"value":)";
  r.value = std::move(*view);
  r.tail = R"(,"found":true})";
  return r;
}

namespace {

// {"key": k, "serialized_value": {"type": t, "data": "<base64>"}, "found": true},
// encoded a piece at a time on the io pool.
class Base64Answer final : public BodySource {
 public:
  Base64Answer(std::string head, ValueView value, std::string tail)
      : head_(std::move(head)), value_(std::move(value)), tail_(std::move(tail)) {}

  std::optional<std::uint64_t> size() const override {
    return head_.size() + (value_.extent->size() + 2) / 3 * 4 + tail_.size();
  }

  Result<bool> next(std::string& piece) override {
    constexpr std::size_t kInput = kMaxPiece / 4 * 3;  // whole groups of 3 bytes
    const std::string_view text = value_.text();
    piece.clear();
    if (!head_sent_) {
      piece = head_;
      head_sent_ = true;
      return true;
    }
    if (offset_ < text.size()) {
      std::size_t n = std::min(kInput, text.size() - offset_);
      piece = base64_encode(text.substr(offset_, n));
      offset_ += n;
      return true;
    }
    if (!tail_sent_) {
      piece = tail_;
      tail_sent_ = true;
      return true;
    }
    return false;
  }

 private:
  std::string head_;
  ValueView value_;
  std::string tail_;
  bool head_sent_ = false;
  bool tail_sent_ = false;
  std::size_t offset_ = 0;
};

// Every key's locations, {"locations": {...}}, a page of keys per piece.
class LocationsAnswer final : public BodySource {
 public:
  LocationsAnswer(Context& ctx, std::string pattern) : ctx_(ctx), pattern_(std::move(pattern)) {}

  std::optional<std::uint64_t> size() const override { return std::nullopt; }

  Result<bool> next(std::string& piece) override {
    piece.clear();
    if (done_) return false;
    auto page = ctx_.store.locations_page(cursor_, kLocationsPiece, pattern_);
    if (!page) return tl::unexpected(page.error());
    if (!opened_) piece = R"({"locations":{)";
    opened_ = true;
    for (const auto& k : page->keys) {
      if (!first_) piece += ',';
      first_ = false;
      append_json_string(piece, k.key);
      piece += ':';
      piece += dump(replicas_json(k, ctx_));
    }
    cursor_ = std::move(page->next_cursor);
    if (cursor_.empty()) {
      piece += "}}";
      done_ = true;
    }
    return true;
  }

 private:
  Context& ctx_;
  const std::string pattern_;
  std::string cursor_;
  bool opened_ = false;
  bool first_ = true;  // no key written yet
  bool done_ = false;
};

}  // namespace

Reply handle_read_extended(Request& req, Context& ctx) {
  auto view = read_value(req, ctx);
  if (!view) return read_failure(view.error(), req.param);
  if (req.accept.find("application/octet-stream") != std::string::npos) {
    Response r;
    r.content_type = "application/octet-stream";
    r.headers.emplace_back("X-Gswarm-Format", std::string(view->format));
    r.value = std::move(*view);
    return r;
  }
  Response r;
  r.head = R"({"key":)" + json_string(req.param) + R"(,"serialized_value":{"type":)" +
           json_string(view->format) + R"(,"data":)";
  r.tail = R"(},"found":true})";
  if (view->format == "json") {
    r.value = std::move(*view);
  } else if (view->extent->size() <= kInlineBase64) {
    r.head += '"' + base64_encode(view->text()) + '"';
  } else {
    r.head += '"';
    r.tail.insert(0, "\"");
    r.source =
        std::make_shared<Base64Answer>(std::move(r.head), std::move(*view), std::move(r.tail));
    r.head.clear();
    r.tail.clear();
  }
  return r;
}

Reply handle_release(Request& req, Context& ctx) {
  if (auto ok = validate_key(req.param); !ok) return error_response(ok.error());
  if (auto ok = check_not_chunk(req.param, "released", ctx); !ok) return error_response(ok.error());
  return Reply(std::function<Response()>([&store = ctx.store, key = req.param] {
    if (auto ok = store.release(key); !ok) return error_response(ok.error());
    return json_response(dump({{"status", "success"}, {"key", key}}));
  }));
}

Reply handle_move(Request& req, Context& ctx) {
  JsonBody body;
  if (auto ok = body.parse(req.body); !ok) return error_response(ok.error());
  auto key = body.string("key");
  if (!key) return error_response(key.error());
  if (auto ok = validate_key(*key); !ok) return error_response(ok.error());
  auto dest_name = body.string("destination");
  if (!dest_name) return error_response(dest_name.error());
  auto dest = usable_location(*dest_name, ctx);
  if (!dest) return error_response(dest.error());
  if (auto ok = check_not_chunk(*key, "moved", ctx); !ok) return error_response(ok.error());
  auto wait = body.boolean("wait");
  if (!wait) return error_response(wait.error());
  if (wait->has_value() && !**wait) {
    auto id = ctx.store.start_move(*key, *dest);
    if (!id) return error_response(id.error());
    return json_response(dump({{"status", "accepted"},
                               {"operation_id", *id},
                               {"key", *key},
                               {"destination", dest->name()},
                               {"operation_url", fmt::format("/operations/{}", *id)}}),
                         202);
  }
  return Reply(
      std::function<Response()>([&ctx, key = std::move(*key), dest = *dest] {
        auto moved = ctx.store.move(key, dest);
        if (!moved) return error_response(moved.error());
        return json_response(dump(
            {{"status", "success"},
             {"key", key},
             {"source", moved->source.name()},
             {"destination", moved->destination.name()},
             {"size", moved->size},
             {"seconds", moved->seconds},
             {"method", moved->method},
             {"read_pointer", read_pointer_json(moved->read_pointer, moved->destination, ctx)}}));
      }),
      Lane::kMove);
}

namespace {

json operation_json(const OperationInfo& op) {
  json j = {{"operation_id", op.id},
            {"kind", op.kind},
            {"key", op.key},
            {"source", op.source ? json(op.source->name()) : json(nullptr)},
            {"destination", op.destination.name()},
            {"state", operation_state_name(op.state)},
            {"phase", op.state == OperationState::kRunning ? json(copy_phase_name(op.phase))
                                                             : json(nullptr)},
            {"bytes_done", op.bytes_done},
            {"bytes_total", op.bytes_total},
            {"progress", op.bytes_total == 0 ? (op.state == OperationState::kDone ? 1.0 : 0.0)
                                             : static_cast<double>(op.bytes_done) /
                                                   static_cast<double>(op.bytes_total)},
            {"created", op.created},
            {"started", op.started > 0 ? json(op.started) : json(nullptr)},
            {"seconds", op.seconds},
            {"error", nullptr}};
  if (op.error)
    j["error"] = {{"detail", op.error->message}, {"code", error_code_name(op.error->code)}};
  return j;
}

}  // namespace

namespace {

Result<std::uint64_t> operation_id(const Request& req) {
  std::uint64_t id = 0;
  auto [ptr, ec] = std::from_chars(req.param.data(), req.param.data() + req.param.size(), id);
  if (ec != std::errc() || ptr != req.param.data() + req.param.size()) {
    return make_error(ErrorCode::kBadRequest, "operation id must be a number");
  }
  return id;
}

}  // namespace

Reply handle_operation(Request& req, Context& ctx) {
  auto id = operation_id(req);
  if (!id) return error_response(id.error());
  auto op = ctx.store.operations().get(*id);
  if (!op) return error_response(op.error());
  return json_response(dump(operation_json(*op)));
}

Reply handle_cancel_operation(Request& req, Context& ctx) {
  auto id = operation_id(req);
  if (!id) return error_response(id.error());
  auto was = ctx.store.operations().cancel(*id);
  if (!was) return error_response(was.error());
  return json_response(dump({{"status", "cancelling"},
                             {"operation_id", *id},
                             {"was", operation_state_name(*was)},
                             {"operation_url", fmt::format("/operations/{}", *id)}}),
                       202);
}

Reply handle_operations(Request& req, Context& ctx) {
  json all = json::array();
  for (const auto& op : ctx.store.operations().list()) all.push_back(operation_json(op));
  return json_response(dump({{"operations", std::move(all)}}));
}

Reply handle_location(Request& req, Context& ctx) {
  if (auto ok = validate_key(req.param); !ok) return error_response(ok.error());
  auto where = ctx.store.location(req.param);
  if (!where) return error_response(where.error());
  return json_response(dump({{"key", where->key},
                             {"location", where->primary.name()},
                             {"format", where->format},
                             {"locations", replicas_json(*where, ctx)}}));
}

Reply handle_locations(Request& req, Context& ctx) {
  auto limit_it = req.query.find("limit");
  auto cursor_it = req.query.find("cursor");
  auto pattern_it = req.query.find("pattern");
  std::string pattern = pattern_it == req.query.end() ? "" : pattern_it->second;
  if (pattern.size() > kMaxPattern) {
    return error_response(ErrorCode::kBadRequest,
                          fmt::format("pattern is over {} bytes", kMaxPattern));
  }
  if (limit_it == req.query.end() && cursor_it == req.query.end()) {
    // Everything, streamed a page at a time: no answer is ever built whole.
    Response r;
    r.source = std::make_shared<LocationsAnswer>(ctx, std::move(pattern));
    return r;
  }
  auto limit = query_limit(req, ctx.limits.max_page, ctx.limits.max_page);
  if (!limit) return error_response(limit.error());
  std::string cursor = cursor_it == req.query.end() ? "" : cursor_it->second;
  return Reply(std::function<Response()>([&ctx, cursor = std::move(cursor), limit = *limit,
                                          pattern = std::move(pattern)] {
    auto page = ctx.store.locations_page(cursor, limit, pattern);
    if (!page) return error_response(page.error());
    json all = json::object();
    for (const auto& k : page->keys) all[k.key] = replicas_json(k, ctx);
    return json_response(dump(
        {{"locations", std::move(all)},
         {"count", page->keys.size()},
         {"next_cursor", page->next_cursor.empty() ? json(nullptr) : json(page->next_cursor)}}));
  }));
}

namespace {

// A warning when `limit` is more memory than the machine has; empty otherwise.
std::string beyond_machine(std::uint64_t limit) {
  const std::uint64_t total = system_memory().total;
  if (total == 0 || limit <= total) return {};
  return fmt::format(
      "--max-memory {} is more than this machine's {} of memory: the limit will "
      "not stop the server from running out of memory",
      format_size(limit), format_size(total));
}

}  // namespace

Reply handle_stats(Request& req, Context& ctx) {
  StoreStats s = ctx.store.stats();
  SystemMemory m = system_memory();
  auto percent = [](std::uint64_t used, std::uint64_t limit) {
    return limit == 0 ? 0.0 : 100.0 * static_cast<double>(used) / static_cast<double>(limit);
  };
  json gpu_stats = json::object();
  for (const auto& d : s.devices) {
    gpu_stats[d.name] = {{"used", d.used},
                         {"limit", d.limit},
                         {"free", d.free},
                         {"total", d.total},
                         {"keys", d.keys}};
  }
  json warnings = json::array();
  if (auto w = beyond_machine(s.dram_limit); !w.empty()) warnings.push_back(w);
  json stats = {
      {"current_size", s.dram_used},
      {"max_size", s.dram_limit},
      {"usage_percent", percent(s.dram_used, s.dram_limit)},
      {"current_dram_size", s.dram_used},
      {"max_dram_size", s.dram_limit},
      {"dram_usage_percent", percent(s.dram_used, s.dram_limit)},
      {"dram_value_size", s.dram_value_bytes},
      {"metadata_size", s.metadata_bytes},
      {"machine_memory", m.total},
      {"current_pinned_size", s.pinned_used},
      {"max_pinned_size", s.pinned_limit},
      {"total_keys", s.total_keys},
      {"persistent_keys", s.disk_keys},
      {"volatile_keys", s.total_keys - std::min(s.total_keys, s.disk_keys)},
      {"location_counts", s.location_counts},
      {"dram_keys", s.dram_keys},
      {"pinned_keys", s.pinned_keys},
      {"disk_keys", s.disk_keys},
      {"device_keys", s.device_keys},
      {"disk_usage", s.disk_used},
      {"max_disk_size", s.disk_limit},
      {"disk_path", s.disk_path},
      {"gpu_stats", std::move(gpu_stats)},
      {"device_backend", s.device_backend},
      {"active_moves", s.active_moves},
      {"queued_moves", s.queued_moves},
      {"pending_operations", ctx.store.operations().active()},
      {"move_threads", s.move_threads},
      {"io_threads", s.io_threads},
      {"host_cache_bytes", s.host_cache_bytes},
      {"pinned_cache_bytes", s.pinned_cache_bytes},
      {"resident_memory", resident_memory()},
      {"memory_info",
       {{"total", m.total}, {"available", m.available}, {"used", m.used}, {"percent", m.percent}}},
      {"warnings", std::move(warnings)},
  };
  if (ctx.state != nullptr) {
    stats["buffer_memory"] = ctx.state->buffers.used();
    stats["max_buffer_memory"] = ctx.state->buffers.limit();
    stats["connections"] = ctx.state->connections.load(std::memory_order_relaxed);
    stats["max_connections"] = ctx.state->max_connections;
  }
  stats["incoming_transfers"] = ctx.transfers != nullptr ? ctx.transfers->active() : 0;
  return json_response(dump({{"stats", std::move(stats)}}));
}

Reply handle_set_max_memory(Request& req, Context& ctx) {
  auto size = parse_size(req.param);
  if (!size) return error_response(size.error());
  if (*size == 0)
    return error_response(ErrorCode::kInvalidSize, "max memory must be greater than 0");
  if (*size > kLargestLimit) {
    return error_response(ErrorCode::kInvalidSize,
                          fmt::format("max memory of {} bytes is not a limit any machine has; give "
                                      "a size up to 1PB",
                                      *size));
  }
  ctx.store.set_max_memory(*size);
  json answer = {{"status", "success"}, {"max_memory", *size}};
  if (auto warning = beyond_machine(*size); !warning.empty()) {
    spdlog::warn("set_max_memory: {}", warning);
    answer["warning"] = warning;
  }
  return json_response(dump(answer));
}

Reply handle_health(Request& req, Context& ctx) {
  return json_response(dump({{"status", "ok"}, {"version", GSWARM_VERSION}}));
}

}  // namespace gswarm::server
