#include "server/json_body.hpp"

namespace gswarm::server {

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

}  // namespace gswarm::server
