#include "server/router.hpp"

#include <array>

#include <fmt/format.h>

#include "server/metrics.hpp"

namespace gswarm::server {
namespace {

constexpr std::array kRoutes = {
    Route{"POST", "/write", false, BodyKind::kJson, handle_write},
    Route{"POST", "/write_extended", false, BodyKind::kJsonOrValue, handle_write_extended},
    Route{"GET", "/read/", true, BodyKind::kNone, handle_read},
    Route{"GET", "/read_extended/", true, BodyKind::kNone, handle_read_extended},
    Route{"DELETE", "/release/", true, BodyKind::kNone, handle_release},
    Route{"POST", "/send", false, BodyKind::kControl, handle_send},
    Route{"POST", "/send_extended", false, BodyKind::kControl, handle_send},
    Route{"GET", "/stats", false, BodyKind::kNone, handle_stats},
    Route{"POST", "/set_max_memory/", true, BodyKind::kNone, handle_set_max_memory},
    Route{"POST", "/move", false, BodyKind::kControl, handle_move},
    Route{"GET", "/operations/", true, BodyKind::kNone, handle_operation},
    Route{"GET", "/operations", false, BodyKind::kNone, handle_operations},
    Route{"GET", "/location/", true, BodyKind::kNone, handle_location},
    Route{"GET", "/locations", false, BodyKind::kNone, handle_locations},
    Route{"GET", "/health", false, BodyKind::kNone, handle_health},
    Route{"GET", "/metrics", false, BodyKind::kNone, handle_metrics},
    Route{"GET", "/nodes", false, BodyKind::kNone, handle_nodes},
    Route{"POST", "/transfers", false, BodyKind::kControl, handle_transfer_begin},
    Route{"PUT", "/transfers/", true, BodyKind::kRange, handle_transfer_range},
    Route{"POST", "/transfers/", true, BodyKind::kNone, handle_transfer_commit},
    Route{"DELETE", "/transfers/", true, BodyKind::kNone, handle_transfer_abort},
    Route{"GET", "/api/v1/data", false, BodyKind::kNone, handle_chunks},
    Route{"POST", "/api/v1/data", false, BodyKind::kJsonOrUpload, handle_chunk_create},
    Route{"GET", "/api/v1/data/", true, BodyKind::kNone, handle_chunk_get},
    Route{"POST", "/api/v1/data/", true, BodyKind::kControl, handle_chunk_post},
    Route{"PUT", "/api/v1/data/", true, BodyKind::kControl, handle_chunk_put},
    Route{"DELETE", "/api/v1/data/", true, BodyKind::kNone, handle_chunk_delete},
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
