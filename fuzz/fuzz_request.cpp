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
  static const AccessPolicy policy{.token = "fuzz-token", .loopback_only = true, .bound_to = "0.0.0.0"};
  (void)check_access(policy, (size & 1) != 0, head.method_string(), path,
                     head[http::field::authorization]);
  RouteMatch match = match_route(head.method_string(), path);
  if (match.route == nullptr && match.error.status < 400) __builtin_trap();
  if (qpos != std::string_view::npos) (void)parse_query(target.substr(qpos + 1));
  return 0;
}
