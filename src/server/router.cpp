#include "server/router.hpp"

#include <array>

#include <fmt/format.h>

#include "server/metrics.hpp"
#include "server/openapi.hpp"

namespace gswarm::server {
namespace {

constexpr std::array kRoutes = {
    Route{"POST", "/write", false, BodyKind::kJson, handle_write, "",
          "Write a JSON value to a location"},
    Route{"POST", "/write_extended", false, BodyKind::kJsonOrValue, handle_write_extended, "",
          "Write any value: JSON with a serialized_value, or raw bytes (?key=&location=&format=)"},
    Route{"GET", "/read/", true, BodyKind::kNone, handle_read, "key",
          "Read a JSON value held in DRAM"},
    Route{"GET", "/read_extended/", true, BodyKind::kNone, handle_read_extended, "key",
          "Read any value held in DRAM: base64 JSON, or raw bytes with Accept: application/octet-stream"},
    Route{"DELETE", "/release/", true, BodyKind::kNone, handle_release, "key",
          "Remove a key from every location"},
    Route{"POST", "/send", false, BodyKind::kControl, handle_send, "",
          "Send a key to another server"},
    Route{"POST", "/send_extended", false, BodyKind::kControl, handle_send, "",
          "Send a key to another server (source replica, streams, delete_source)"},
    Route{"GET", "/stats", false, BodyKind::kNone, handle_stats, "",
          "Storage statistics of every tier"},
    Route{"POST", "/set_max_memory/", true, BodyKind::kNone, handle_set_max_memory, "max_size",
          "Change the DRAM limit"},
    Route{"POST", "/move", false, BodyKind::kControl, handle_move, "",
          "Move a value between locations (wait, or queue it with \"wait\": false)"},
    Route{"GET", "/operations/", true, BodyKind::kNone, handle_operation, "id",
          "One move or send: state, phase and progress"},
    Route{"DELETE", "/operations/", true, BodyKind::kNone, handle_cancel_operation, "id",
          "Cancel a queued or running move"},
    Route{"GET", "/operations", false, BodyKind::kNone, handle_operations, "",
          "Moves and sends: running, queued and recently finished"},
    Route{"GET", "/location/", true, BodyKind::kNone, handle_location, "key",
          "A key's primary location and replicas"},
    Route{"GET", "/locations", false, BodyKind::kNone, handle_locations, "",
          "Every key (or those matching ?pattern=) with its replicas, streamed or paged (?limit=&cursor=)"},
    Route{"GET", "/health", false, BodyKind::kNone, handle_health, "",
          "Liveness and version (no token needed)"},
    Route{"GET", "/metrics", false, BodyKind::kNone, handle_metrics, "",
          "Prometheus metrics"},
    Route{"GET", "/nodes", false, BodyKind::kNone, handle_nodes, "",
          "This server and the peers it knows"},
    Route{"GET", "/openapi.json", false, BodyKind::kNone, handle_openapi, "", "This document"},
    Route{"POST", "/transfers", false, BodyKind::kControl, handle_transfer_begin, "",
          "Begin receiving a value in byte ranges (server to server)"},
    Route{"PUT", "/transfers/", true, BodyKind::kRange, handle_transfer_range, "id",
          "One byte range of a transfer"},
    Route{"POST", "/transfers/", true, BodyKind::kNone, handle_transfer_commit, "id",
          "Commit a transfer"},
    Route{"DELETE", "/transfers/", true, BodyKind::kNone, handle_transfer_abort, "id",
          "Abort a transfer"},
    Route{"GET", "/transfers/", true, BodyKind::kNone, handle_transfer_state, "id",
          "Where a transfer stands: receiving, committing, committed or failed"},
    Route{"GET", "/api/v1/data", false, BodyKind::kNone, handle_chunks, "",
          "List data pool chunks (?device=&type=)"},
    Route{"POST", "/api/v1/data", false, BodyKind::kJsonOrUpload, handle_chunk_create, "",
          "Create a chunk from a source, or upload its bytes"},
    Route{"GET", "/api/v1/data/", true, BodyKind::kNone, handle_chunk_get, "id",
          "One chunk: metadata, locations, references"},
    Route{"POST", "/api/v1/data/", true, BodyKind::kControl, handle_chunk_post, "id",
          "Chunk actions: {id}/move, {id}/transfer, {id}/references"},
    Route{"DELETE", "/api/v1/data/", true, BodyKind::kNone, handle_chunk_delete, "id",
          "Delete a chunk, or drop a reference ({id}/references/{holder})"},
};

bool path_matches(const Route& route, std::string_view path) {
  if (!route.has_param) return path == route.path;
  return path.starts_with(route.path);
}

}  // namespace

std::span<const Route> routes() { return kRoutes; }

RouteMatch match_route(std::string_view method, std::string_view path) {
  RouteMatch match;
  const Route* wrong_method = nullptr;
  for (const auto& route : kRoutes) {
    if (!path_matches(route, path)) continue;
    if (route.method != method) {
      wrong_method = &route;
      continue;
    }
    match.route = &route;
    if (route.has_param) {
      auto param = percent_decode(path.substr(route.path.size()), false);
      if (!param) {
        match.route = nullptr;
        match.error = error_response(param.error());
        return match;
      }
      match.param = std::move(*param);
    }
    return match;
  }
  if (wrong_method != nullptr) {
    match.error = error_response(ErrorCode::kMethodNotAllowed,
                                 fmt::format("{} is not allowed on {}; use {}", method, path,
                                             wrong_method->method));
    match.error.headers.emplace_back("Allow", std::string(wrong_method->method));
  } else {
    match.error = error_response(ErrorCode::kNoRoute, fmt::format("no endpoint at {}", path));
  }
  return match;
}

}  // namespace gswarm::server
