// GET /openapi.json: an OpenAPI 3 description of every endpoint, made from the
// route table itself (method, path, parameter, body, summary), so that the two
// cannot drift apart.
#pragma once

#include <string>

#include "server/kv_handlers.hpp"

namespace gswarm::server {

// The document, as JSON text.
std::string openapi_document();

Reply handle_openapi(Request& req, Context& ctx);

}  // namespace gswarm::server
