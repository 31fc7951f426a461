// An HTTP request head from the network, through what reads it before any
// handler runs: Beast's parser (configured as the session configures it), the
// route table, the query string and the access check.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include "server/access.hpp"
#include "server/router.hpp"

namespace http = boost::beast::http;
using namespace gswarm::server;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  http::request_parser<http::empty_body> parser;
  parser.header_limit(16 * 1024);
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  std::size_t used = 0;
  while (!parser.is_header_done() && used < size) {
    const std::size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    if (ec == http::error::need_more) break;
    if (ec || n == 0) return 0;
    used += n;
  }
  if (!parser.is_header_done()) return 0;
  const auto& head = parser.get();
  const std::string_view target = head.target();
  const auto qpos = target.find('?');
  const std::string_view path = target.substr(0, qpos);
  (void)parser.content_length();
  static const AccessPolicy with_token{.token = "fuzz-token",
                                       .loopback_only = true,
                                       .bound_to = "0.0.0.0",
                                       .allowed_origins = {"http://localhost:3000"}};
  static const AccessPolicy without_token{.token = "",
                                          .loopback_only = false,
                                          .bound_to = "0.0.0.0",
                                          .allowed_hosts = {"gswarm.internal"},
                                          .own_names = {"node1"}};
  const AccessPolicy& policy = (size & 2) != 0 ? with_token : without_token;
  const auto origin = head.find(http::field::origin);
  (void)check_access(policy, AccessRequest{.from_loopback = (size & 1) != 0,
                                           .method = head.method_string(),
                                           .path = path,
                                           .authorization = head[http::field::authorization],
                                           .host = head[http::field::host],
                                           .origin = origin == head.end()
                                                         ? std::string_view()
                                                         : std::string_view(origin->value()),
                                           .has_origin = origin != head.end()});
  RouteMatch match = match_route(head.method_string(), path);
  if (match.route == nullptr && match.error.status < 400) __builtin_trap();
  if (qpos != std::string_view::npos) (void)parse_query(target.substr(qpos + 1));
  return 0;
}
