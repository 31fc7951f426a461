// Calling a handler in this process, without a socket: the Python package's
// embedded store answers get_location, list_locations, get_stats, move and
// release with the very shapes and errors the HTTP API gives.
#pragma once

#include <string>

#include "server/http_message.hpp"
#include "server/kv_handlers.hpp"

namespace gswarm::server {

struct LocalAnswer {
  int status = 200;
  std::string body;  // the JSON answer, or {"detail", "code"} for status >= 400
};

using Handler = Reply (*)(Request&, Context&);

// Runs `handler` on `req`, its blocking work on the calling thread (blocking), and
// collects the whole answer, pieces of a streamed one included.
LocalAnswer call_local(Handler handler, Request req, Context& ctx);

}  // namespace gswarm::server
