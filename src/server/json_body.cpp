#include "server/json_body.hpp"

#include <nlohmann/json.hpp>

namespace gswarm::server {

simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

bool is_json_text(const std::string& text) { return nlohmann::json::accept(text); }

}  // namespace gswarm::server
