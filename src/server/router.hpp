// The route table: one place that says which method and path reach which
// handler and what body each takes. Matching is a function from (method, path)
// to a route, so it is tested without a socket.
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "server/kv_handlers.hpp"

namespace gswarm::server {

enum class BodyKind {
  kNone,         // no body expected (any body is ignored)
  kControl,      // JSON object of a few fields, up to Limits::max_control_size
  kJson,         // JSON object carrying a value, up to Limits::max_request_size
  kJsonOrValue,  // kJson, or a raw application/octet-stream value streamed into a tier
  kRange,        // one byte range of a transfer (application/octet-stream), streamed into it
  kJsonOrUpload,  // kControl, or a new chunk's bytes (application/octet-stream) streamed into a tier
};

using Handler = Reply (*)(Request&, Context&);

struct Route {
  std::string_view method;
  std::string_view path;  // exact path, or prefix ending in '/' when has_param
  bool has_param;         // the rest of the path is one percent-encoded parameter
  BodyKind body;
  Handler handler;
  std::string_view param;    // the parameter's name ("key"), when has_param
  std::string_view summary;  // one line for GET /openapi.json
};

struct RouteMatch {
  const Route* route = nullptr;  // null: `error` is the response to send
  std::string param;             // decoded
  Response error;
};

RouteMatch match_route(std::string_view method, std::string_view path);

// Every route, in matching order (a route's index names its endpoint in /metrics).
std::span<const Route> routes();

}  // namespace gswarm::server
