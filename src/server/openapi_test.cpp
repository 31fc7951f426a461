// GET /openapi.json is made from the route table: every route is in it once,
// with its method, path parameter, body and summary, and every operation in it
// leads back to that route.
#include "server/openapi.hpp"

#include <set>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "server/router.hpp"

namespace gswarm::server {
namespace {

using json = nlohmann::json;

std::string lower(std::string_view text) {
  std::string out;
  for (char c : text) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

TEST(OpenApiTest, EveryRouteIsDescribedOnce) {
  const json doc = json::parse(openapi_document());
  EXPECT_TRUE(doc.at("openapi").get<std::string>().starts_with("3."));
  std::set<std::string> ids;
  std::size_t operations = 0;
  for (const Route& route : routes()) {
    SCOPED_TRACE(std::string(route.method) + " " + std::string(route.path));
    std::string path(route.path);
    if (route.has_param) {
      ASSERT_FALSE(route.param.empty()) << "a parameter needs a name";
      path += "{" + std::string(route.param) + "}";
    } else {
      EXPECT_TRUE(route.param.empty());
    }
    ASSERT_TRUE(doc["paths"].contains(path));
    const json& op = doc["paths"][path].at(lower(route.method));
    EXPECT_FALSE(op.at("summary").get<std::string>().empty());
    EXPECT_TRUE(ids.insert(op.at("operationId").get<std::string>()).second) << op;
    EXPECT_EQ(op.contains("requestBody"), route.body != BodyKind::kNone);
    EXPECT_EQ(op.contains("parameters"), route.has_param);
  }
  for (const auto& [path, methods] : doc["paths"].items()) operations += methods.size();
  EXPECT_EQ(operations, routes().size()) << "an operation the route table does not have";
}

TEST(OpenApiTest, EveryOperationLeadsBackToItsRoute) {
  const json doc = json::parse(openapi_document());
  for (const auto& [path, methods] : doc["paths"].items()) {
    std::string concrete = path;
    if (auto brace = concrete.find('{'); brace != std::string::npos) {
      concrete = concrete.substr(0, brace) + "some-value";
    }
    for (const auto& [method, op] : methods.items()) {
      SCOPED_TRACE(method + " " + path);
      std::string upper;
      for (char c : method) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      RouteMatch match = match_route(upper, concrete);
      ASSERT_NE(match.route, nullptr);
      EXPECT_EQ(match.route->summary, op.at("summary").get<std::string>());
    }
  }
}

}  // namespace
}  // namespace gswarm::server
