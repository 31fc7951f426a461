// Handlers of the KV endpoints (doc/http-api.md). Each parses and validates its
// request, calls one Store method and maps the result to a response. They run on
// network threads and never block: disk work is returned as Reply::blocking.
#pragma once

#include <cstdint>
#include <string>

#include "server/http_message.hpp"

namespace gswarm::server {

struct Limits {
  std::uint64_t max_request_size = 256ull << 20;  // JSON bodies
  std::uint64_t max_value_size = 64ull << 30;     // raw value bodies
};

struct Context {
  Store& store;
  Limits limits;
  std::string node_name;  // this server's name in "node:device:N" targets
};

Reply handle_write(Request& req, Context& ctx);
Reply handle_write_extended(Request& req, Context& ctx);
// The raw form of /write_extended: reserves the value's room from the query
// string before its body is read into the returned buffer.
[[nodiscard]] Result<PendingWrite> prepare_raw_value(const Request& req, std::uint64_t size,
                                                     Context& ctx);
Reply handle_read(Request& req, Context& ctx);
Reply handle_read_extended(Request& req, Context& ctx);
Reply handle_release(Request& req, Context& ctx);
Reply handle_move(Request& req, Context& ctx);
Reply handle_operation(Request& req, Context& ctx);
Reply handle_operations(Request& req, Context& ctx);
Reply handle_location(Request& req, Context& ctx);
Reply handle_locations(Request& req, Context& ctx);
Reply handle_stats(Request& req, Context& ctx);
Reply handle_set_max_memory(Request& req, Context& ctx);
Reply handle_health(Request& req, Context& ctx);
Reply handle_send(Request& req, Context& ctx);

}  // namespace gswarm::server
