#include "server/openapi.hpp"

#include <cctype>

#include <nlohmann/json.hpp>

#include "server/router.hpp"

namespace gswarm::server {
namespace {

using json = nlohmann::json;

json request_body(BodyKind kind) {
  auto content = [](std::initializer_list<const char*> types) {
    json c = json::object();
    for (const char* type : types) c[type] = json::object();
    return json{{"required", true}, {"content", std::move(c)}};
  };
  switch (kind) {
    case BodyKind::kNone:
      return nullptr;
    case BodyKind::kControl:
    case BodyKind::kJson:
      return content({"application/json"});
    case BodyKind::kJsonOrValue:
    case BodyKind::kJsonOrUpload:
      return content({"application/json", "application/octet-stream"});
    case BodyKind::kRange:
      return content({"application/octet-stream"});
  }
  return nullptr;
}

// "GET" "/read/" -> "get_read"; "/api/v1/data/" -> "api_v1_data".
std::string operation_id(const Route& route) {
  std::string id;
  for (char c : route.method) id += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char c : route.path) {
    const bool word = std::isalnum(static_cast<unsigned char>(c)) != 0;
    if (word) {
      id += c;
    } else if (id.back() != '_') {
      id += '_';
    }
  }
  while (id.back() == '_') id.pop_back();
  return route.has_param ? id + "_by_" + std::string(route.param) : id;
}

}  // namespace

std::string openapi_document() {
  json paths = json::object();
  for (const Route& route : routes()) {
    std::string path(route.path);
    json op = {
        {"summary", route.summary},
        {"operationId", operation_id(route)},
        {"responses",
         {{"200", {{"description", "success (JSON unless the summary says otherwise)"}}},
          {"default",
           {{"description", "an error: {\"detail\", \"code\"} (doc/http-api.md)"},
            {"content",
             {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}}}};
    if (route.has_param) {
      path += "{" + std::string(route.param) + "}";
      op["parameters"] = json::array({{{"name", route.param},
                                       {"in", "path"},
                                       {"required", true},
                                       {"schema", {{"type", "string"}}}}});
    }
    if (json body = request_body(route.body); !body.is_null()) op["requestBody"] = std::move(body);
    if (route.path == "/health") op["security"] = json::array();
    std::string method;
    for (char c : route.method)
      method += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    paths[path][method] = std::move(op);
  }
  json doc = {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "gswarm data server"},
        {"version", GSWARM_VERSION},
        {"description",
         "KV storage and the data pool over HTTP/1.1; doc/http-api.md has the "
         "shapes of every body and answer."}}},
      {"paths", std::move(paths)},
      {"components",
       {{"schemas",
         {{"Error",
           {{"type", "object"},
            {"required", {"detail", "code"}},
            {"properties", {{"detail", {{"type", "string"}}}, {"code", {{"type", "string"}}}}}}}}},
        {"securitySchemes", {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}}}},
      {"security", json::array({{{"bearer", json::array()}}})},
  };
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Reply handle_openapi(Request&, Context&) {
  static const std::string document = openapi_document();
  return json_response(document);
}

}  // namespace gswarm::server
