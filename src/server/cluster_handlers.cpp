// Handlers of the node-to-node endpoints: POST /send and /send_extended (the
// source side), GET /nodes, and the target side of sends in ranges
// (/transfers, doc/http-api.md). The work is in cluster/.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cluster/incoming.hpp"
#include "cluster/membership.hpp"
#include "cluster/sender.hpp"
#include "cluster/target.hpp"
#include "core/key.hpp"
#include "server/json_body.hpp"
#include "server/kv_handlers.hpp"

namespace gswarm::server {
namespace {

using json = nlohmann::json;

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

double gbps(std::uint64_t bytes, double seconds) {
  return seconds > 0 ? static_cast<double>(bytes) / seconds / 1e9 : 0;
}

// The fields of every send's answer, to this node or another.
json sent_answer(const std::string& key, Location source, const std::string& target,
                 const std::string& node, Location destination, std::string_view method,
                 std::uint64_t size, double seconds, int streams) {
  return {{"status", "success"},
          {"success", true},
          {"key", key},
          {"source", source.name()},
          {"target", target},
          {"node", node},
          {"destination", destination.name()},
          {"method", method},
          {"size", size},
          {"bytes", size},
          {"seconds", seconds},
          {"transfer_time_ms", seconds * 1e3},
          {"throughput_gbps", gbps(size, seconds)},
          {"streams", streams}};
}

Response not_served() {
  return error_response(ErrorCode::kNotSupported, "this server does not take part in sends");
}

// What an error answer says (its "detail").
std::string answer_detail(const Response& answer) {
  auto parsed = json::parse(answer.head, nullptr, false);
  return parsed.is_object() ? parsed.value("detail", "") : std::string();
}

// A send to a location of this node: a copy between its tiers.
Reply send_here(std::string key, std::string node, Location destination,
                std::optional<Location> source, bool delete_source, std::string target,
                Context& ctx) {
  if (auto ok = ctx.store.check_location(destination); !ok) return error_response(ok.error());
  return Reply(
      std::function<Response()>([&ctx, key = std::move(key), node = std::move(node), destination,
                                 source, delete_source, target = std::move(target)] {
        auto sent = delete_source && !source ? ctx.store.move(key, destination)
                                             : ctx.store.copy(key, destination, source);
        if (!sent) return error_response(sent.error());
        return json_response(dump(sent_answer(key, sent->source, target, node,
                                              sent->destination, sent->method, sent->size,
                                              sent->seconds, 1)));
      }),
      Lane::kMove);
}

}  // namespace

Reply handle_send(Request& req, Context& ctx) {
  JsonBody body;
  if (auto ok = body.parse(req.body); !ok) return error_response(ok.error());
  auto key = body.string("key");
  if (!key) return error_response(key.error());
  if (auto ok = validate_key(*key); !ok) return error_response(ok.error());
  // The legacy /send names its target "url"; /send_extended "target".
  auto target_text = body.field("target") ? body.string("target") : body.string("url");
  if (!target_text) return error_response(target_text.error());
  auto source_name = body.string("source_location", "");
  if (!source_name) return error_response(source_name.error());
  auto delete_source = body.boolean("delete_source");
  if (!delete_source) return error_response(delete_source.error());
  auto streams = body.unsigned_integer("streams");
  if (!streams) return error_response(streams.error());
  if (*streams && (**streams < 1 || **streams > 64)) {
    return error_response(ErrorCode::kBadRequest, "'streams' must be from 1 to 64");
  }
  if (delete_source->value_or(false)) {
    if (auto ok = check_not_chunk(*key, "released", ctx); !ok) return error_response(ok.error());
  }

  // A missing key is answered before the target is even looked at.
  if (auto where = ctx.store.location(*key); !where) return error_response(where.error());
  std::optional<Location> source;
  if (!source_name->empty()) {
    auto parsed = usable_location(*source_name, ctx);
    if (!parsed) return error_response(parsed.error());
    source = *parsed;
  }
  auto target = cluster::parse_target(*target_text);
  if (!target) return error_response(target.error());
  const bool remove = delete_source->value_or(false);
  if (!target->address && (target->node == ctx.node_name || target->node == "localhost" ||
                           target->node == "local")) {
    // A copy of a chunk's bytes into another tier would escape its metadata.
    if (auto ok = check_not_chunk(*key, "copied", ctx); !ok) return error_response(ok.error());
    return send_here(std::move(*key), target->node, target->location, source, remove,
                     *target_text, ctx);
  }
  if (ctx.sender == nullptr) return not_served();

  cluster::SendRequest request;
  request.key = std::move(*key);
  request.target = std::move(*target);
  request.source = source;
  request.delete_source = remove;
  request.streams = static_cast<int>(streams->value_or(0));
  return Reply(std::function<Response()>([&ctx, request = std::move(request),
                                          text = std::move(*target_text)] {
                 auto sent = ctx.sender->send(request);
                 if (!sent) return error_response(sent.error());
                 const std::string address = sent->address.text();
                 json answer = sent_answer(request.key, sent->source, text,
                                           sent->node.empty() ? address : sent->node,
                                           sent->destination, "standard", sent->size,
                                           sent->seconds, sent->streams);
                 answer["address"] = address;
                 answer["format"] = sent->format;
                 answer["delete_source"] = request.delete_source;
                 answer["source_deleted"] = sent->source_deleted;
                 answer["operation_id"] = sent->operation;
                 return json_response(dump(answer));
               }),
               Lane::kMove);
}

Reply handle_nodes(Request& req, Context& ctx) {
  if (ctx.membership == nullptr) return not_served();
  json nodes = json::array();
  for (const auto& m : ctx.membership->members()) {
    nodes.push_back({{"name", m.name},
                     {"address", m.address.text()},
                     {"alive", m.alive},
                     {"source", m.source},
                     {"self", m.source == "self"}});
  }
  return json_response(dump({{"node", ctx.membership->self_name()}, {"nodes", std::move(nodes)}}));
}

Reply handle_transfer_begin(Request& req, Context& ctx) {
  if (ctx.transfers == nullptr) return not_served();
  JsonBody body;
  if (auto ok = body.parse(req.body); !ok) return error_response(ok.error());
  auto key = body.string("key");
  if (!key) return error_response(key.error());
  if (auto ok = validate_key(*key); !ok) return error_response(ok.error());
  auto size = body.unsigned_integer("size");
  if (!size) return error_response(size.error());
  if (!*size) return error_response(ErrorCode::kBadRequest, "missing field 'size'");
  auto location_name = body.string("location", "dram");
  if (!location_name) return error_response(location_name.error());
  auto location = usable_location(*location_name, ctx);
  if (!location) return error_response(location.error());
  auto format = body.string("format", "bytes");
  if (!format) return error_response(format.error());
  // A data pool chunk travels with its metadata, and becomes a chunk here only
  // with its bytes, checked against the checksum the metadata gives.
  std::optional<pool::Chunk> chunk;
  if (const auto field = body.field("chunk")) {
    if (ctx.pool == nullptr) {
      return error_response(ErrorCode::kNotSupported, "this server has no data pool");
    }
    auto parsed = pool::parse_metadata_json(simdjson::to_string(*field));
    if (!parsed) return error_response(parsed.error());
    if (parsed->id != *key || parsed->size != **size || parsed->format != *format) {
      return error_response(
          ErrorCode::kBadRequest,
          fmt::format("the chunk's metadata ({}, {} bytes, {}) does not describe the transfer "
                      "({}, {} bytes, {})",
                      parsed->id, parsed->size, parsed->format, *key, **size, *format));
    }
    if (parsed->checksum.empty()) {
      return error_response(ErrorCode::kBadRequest, "a chunk is sent with its checksum");
    }
    if (ctx.pool->owns(*key)) {
      return error_response(ErrorCode::kConflict,
                            fmt::format("'{}' is already a chunk of this server", *key));
    }
    chunk = std::move(*parsed);
  } else if (auto ok = check_not_chunk(*key, "written", ctx); !ok) {
    return error_response(ok.error());
  }
  if (*format == "json") {
    // JSON values are checked as they are written: they come whole, by /write_extended.
    return error_response(ErrorCode::kBadRequest,
                          "values tagged json are sent whole, with POST /write_extended");
  }
  if (**size > ctx.limits.max_value_size) {
    return error_response(ErrorCode::kTooLarge,
                          fmt::format("value of {} bytes is over --max-value-size ({} bytes)",
                                      **size, ctx.limits.max_value_size));
  }
  return Reply(std::function<Response()>([&ctx, key = std::move(*key), size = **size,
                                          location = *location, format = std::move(*format),
                                          chunk = std::move(chunk),
                                          connection = req.connection]() mutable {
    auto pending = ctx.store.prepare_write(key, location, size, format);
    if (!pending) return error_response(pending.error());
    auto id = ctx.transfers->begin(std::move(*pending), std::move(chunk), connection);
    if (!id) return error_response(id.error());
    return json_response(
        dump({{"transfer", *id},
              {"key", key},
              {"size", size},
              {"location", location.name()},
              {"idle_timeout", ctx.transfers->idle_timeout().count()}}));
  }));
}

Reply handle_transfer_range(Request& req, Context& ctx) {
  // The session stored the range's bytes before calling this.
  return json_response(dump({{"status", "success"},
                             {"transfer", req.param},
                             {"offset", req.query.contains("offset") ? req.query["offset"] : "0"},
                             {"received", req.range_received}}));
}

Reply handle_transfer_commit(Request& req, Context& ctx) {
  if (ctx.transfers == nullptr) return not_served();
  auto received = ctx.transfers->complete(req.param);
  if (!received) return error_response(received.error());
  auto shared = std::make_shared<cluster::IncomingTransfers::Received>(std::move(*received));
  // Blocking (a disk value is sealed, a chunk's bytes checked): on the io pool.
  return Reply(std::function<Response()>([&ctx, shared, id = req.param] {
    Response answer;
    if (shared->chunk) {
      auto chunk = ctx.pool->commit_received(std::move(shared->pending), std::move(*shared->chunk));
      answer = chunk ? json_response(dump({{"status", "success"},
                                           {"key", chunk->id},
                                           {"chunk_id", chunk->id},
                                           {"size", chunk->size},
                                           {"checksum", chunk->checksum}}))
                     : error_response(chunk.error());
    } else {
      answer = commit_raw_value(std::move(shared->pending), ctx);
    }
    ctx.transfers->settle(id, answer.status == 200
                                  ? std::nullopt
                                  : std::optional<Error>(Error{answer.error.value_or(ErrorCode::kInternal), answer_detail(answer)}));
    return answer;
  }));
}

Reply handle_transfer_state(Request& req, Context& ctx) {
  if (ctx.transfers == nullptr) return not_served();
  auto state = ctx.transfers->state(req.param);
  if (!state) return error_response(state.error());
  json answer = {{"transfer", req.param}, {"state", state->state}};
  if (!state->detail.empty()) answer["detail"] = state->detail;
  return json_response(dump(answer));
}

Reply handle_transfer_abort(Request& req, Context& ctx) {
  if (ctx.transfers == nullptr) return not_served();
  if (auto ok = ctx.transfers->abort(req.param); !ok) return error_response(ok.error());
  return json_response(dump({{"status", "success"}, {"transfer", req.param}}));
}

}  // namespace gswarm::server
