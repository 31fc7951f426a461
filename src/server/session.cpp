#include "server/session.hpp"

#include <array>
#include <cstring>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "server/router.hpp"

namespace gswarm::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kHeaderLimit = 16 * 1024;  // a 4096-byte key, percent-encoded, fits
constexpr std::size_t kIoChunk = 4 << 20;           // timeouts are re-armed per chunk
constexpr std::size_t kJsonPadding = 64;            // simdjson's SIMDJSON_PADDING

// Runs `work` on a mover thread and resumes the coroutine on its own loop.
asio::awaitable<Response> run_blocking(Mover& mover, std::function<Response()> work) {
  auto executor = co_await asio::this_coro::executor;
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Response)>(
      [&mover, executor](auto handler, std::function<Response()> task) {
        // The work guard keeps the loop alive while the task is away.
        auto state = std::make_shared<decltype(handler)>(std::move(handler));
        auto guard = std::make_shared<asio::executor_work_guard<decltype(executor)>>(executor);
        mover.submit([state, guard, task = std::move(task), executor]() mutable {
          Response response;
          try {
            response = task();
          } catch (const std::exception& e) {
            response = error_response(ErrorCode::kInternal, e.what());
          }
          asio::post(executor, [state, guard, response = std::move(response)]() mutable {
            (*state)(std::move(response));
          });
        });
      },
      asio::use_awaitable, std::move(work));
}

// Moves `dest.size()` body bytes into `dest`: first what is already buffered,
// then straight from the socket.
asio::awaitable<beast::error_code> read_body(Connection& conn, beast::flat_buffer& buffer,
                                             std::span<std::byte> dest,
                                             std::chrono::seconds timeout) {
  std::size_t have = std::min(buffer.size(), dest.size());
  asio::buffer_copy(asio::buffer(dest.data(), have), buffer.data());
  buffer.consume(have);
  for (std::size_t off = have; off < dest.size();) {
    std::size_t n = std::min(dest.size() - off, kIoChunk);
    conn.arm(timeout);
    auto [ec, got] = co_await asio::async_read(conn.socket, asio::buffer(dest.data() + off, n), kAwait);
    conn.disarm();
    if (ec) co_return ec;
    off += got;
  }
  co_return beast::error_code{};
}

std::string status_line_and_headers(const Response& res, bool keep_alive, bool http10) {
  std::string out = fmt::format("HTTP/1.1 {} {}\r\nServer: gswarm\r\nContent-Type: {}\r\n"
                                "Content-Length: {}\r\n",
                                res.status, http::obsolete_reason(http::int_to_status(res.status)),
                                res.content_type, res.body_size());
  for (const auto& [name, value] : res.headers) fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return out;
}

asio::awaitable<beast::error_code> write_response(Connection& conn, const Response& res,
                                                  bool keep_alive, bool http10,
                                                  std::chrono::seconds timeout) {
  std::string header = status_line_and_headers(res, keep_alive, http10);
  std::span<const std::byte> value;
  if (res.value) value = res.value->bytes();
  conn.arm(timeout);
  beast::error_code result;
  if (value.size() <= kIoChunk) {
    std::array<asio::const_buffer, 4> parts = {asio::buffer(header), asio::buffer(res.head),
                                               asio::buffer(value.data(), value.size()),
                                               asio::buffer(res.tail)};
    auto [ec, n] = co_await asio::async_write(conn.socket, parts, kAwait);
    result = ec;
  } else {
    std::array<asio::const_buffer, 2> first = {asio::buffer(header), asio::buffer(res.head)};
    auto [ec, n] = co_await asio::async_write(conn.socket, first, kAwait);
    result = ec;
    for (std::size_t off = 0; !result && off < value.size(); off += kIoChunk) {
      conn.arm(timeout);
      auto [ec2, sent] = co_await asio::async_write(
          conn.socket, asio::buffer(value.data() + off, std::min(kIoChunk, value.size() - off)), kAwait);
      result = ec2;
    }
    if (!result) {
      conn.arm(timeout);
      auto [ec3, n3] = co_await asio::async_write(conn.socket, asio::buffer(res.tail), kAwait);
      result = ec3;
    }
  }
  conn.disarm();
  co_return result;
}

struct Outcome {
  Response response;
  bool body_consumed = true;  // false: the connection cannot be reused
  bool drop = false;          // the peer went away or stalled: close without answering
};

bool is_octet_stream(std::string_view content_type) {
  return content_type.starts_with("application/octet-stream");
}

// Everything between "headers received" and "response ready".
asio::awaitable<Outcome> handle(Connection& conn, beast::flat_buffer& buffer,
                                http::request_parser<http::empty_body>& parser, SessionEnv env) {
  auto& head = parser.get();
  Request req;
  req.method = std::string(head.method_string());
  std::string_view target = head.target();
  auto qpos = target.find('?');
  req.path = std::string(target.substr(0, qpos));
  req.content_type = std::string(head[http::field::content_type]);
  req.accept = std::string(head[http::field::accept]);

  const std::uint64_t length = parser.content_length().value_or(0);
  const bool has_body = parser.chunked() || length > 0;
  Outcome out;
  out.body_consumed = !has_body;

  RouteMatch match = match_route(req.method, req.path);
  if (match.route == nullptr) {
    out.response = std::move(match.error);
    co_return out;
  }
  const Route& route = *match.route;
  req.param = std::move(match.param);
  if (qpos != std::string_view::npos) {
    auto query = parse_query(target.substr(qpos + 1));
    if (!query) {
      out.response = error_response(query.error());
      co_return out;
    }
    req.query = std::move(*query);
  }

  // A raw value (even an empty one) streams into its tier; JSON into a string.
  const bool raw = route.body == BodyKind::kJsonOrValue && is_octet_stream(req.content_type);
  if ((route.body != BodyKind::kNone && has_body) || raw) {
    if (parser.chunked()) {
      out.response = error_response(ErrorCode::kLengthRequired,
                                    "send the body with a Content-Length (chunked bodies are not accepted)");
      co_return out;
    }
    std::span<std::byte> dest;
    if (raw) {
      if (length > env.ctx.limits.max_value_size) {
        out.response = error_response(ErrorCode::kTooLarge,
                                      fmt::format("value of {} bytes is over the limit of {} bytes (--max-value-size)",
                                                  length, env.ctx.limits.max_value_size));
        co_return out;
      }
      auto pending = prepare_raw_value(req, length, env.ctx);
      if (!pending) {
        out.response = error_response(pending.error());
        co_return out;
      }
      req.value.emplace(std::move(*pending));
      dest = req.value->buffer();
    } else {
      if (length > env.ctx.limits.max_request_size) {
        out.response = error_response(ErrorCode::kTooLarge,
                                      fmt::format("request body of {} bytes is over the limit of {} bytes (--max-request-size)",
                                                  length, env.ctx.limits.max_request_size));
        co_return out;
      }
      // Slack after the body lets the JSON parser read ahead without a copy.
      req.body.reserve(length + kJsonPadding);
      req.body.resize(length);
      dest = {reinterpret_cast<std::byte*>(req.body.data()), req.body.size()};
    }
    if (!dest.empty() && beast::iequals(head[http::field::expect], "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      conn.arm(env.options.request_timeout);
      auto [ec, n] = co_await asio::async_write(conn.socket, asio::buffer(kContinue), kAwait);
      conn.disarm();
      if (ec) {
        out.drop = true;
        co_return out;
      }
    }
    if (auto ec = co_await read_body(conn, buffer, dest, env.options.request_timeout); ec) {
      out.drop = true;
      if (conn.timed_out) {
        out.response = error_response(ErrorCode::kTimeout, "request body not received in time");
        out.drop = false;
        out.body_consumed = false;
      }
      co_return out;
    }
    out.body_consumed = true;
  }

  Reply reply = [&] {
    try {
      return route.handler(req, env.ctx);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      return Reply(error_response(ErrorCode::kInternal, e.what()));
    }
  }();
  if (reply.blocking) {
    out.response = co_await run_blocking(env.ctx.store.mover(), std::move(reply.blocking));
  } else {
    out.response = std::move(reply.response);
  }
  co_return out;
}

}  // namespace

asio::awaitable<void> serve(std::shared_ptr<Connection> conn, SessionEnv env,
                            ConnectionSet& connections) {
  beast::flat_buffer buffer;
  while (!env.stopping.load(std::memory_order_relaxed)) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);  // bodies are checked against our own limits in handle()
    conn->idle = buffer.size() == 0;
    conn->arm(env.options.idle_timeout);
    auto [ec, n] = co_await http::async_read_header(conn->socket, buffer, parser, kAwait);
    conn->disarm();
    conn->idle = false;
    if (ec) {
      // Malformed, oversized or half-sent headers get an answer; a peer that
      // closes, or a keep-alive connection that stays silent, does not.
      const bool malformed = ec.category() == http::make_error_code(http::error::bad_target).category() &&
                             ec != http::error::end_of_stream && ec != http::error::partial_message;
      const bool stalled = conn->timed_out && buffer.size() > 0;
      if (malformed || stalled) {
        Response res = stalled ? error_response(ErrorCode::kTimeout, "request headers not received in time")
                               : error_response(ec == http::error::header_limit ? ErrorCode::kTooLarge
                                                                                : ErrorCode::kBadRequest,
                                                fmt::format("malformed request: {}", ec.message()));
        co_await write_response(*conn, res, false, false, env.options.request_timeout);
      }
      break;
    }
    Outcome out = co_await handle(*conn, buffer, parser, env);
    if (out.drop) break;
    const auto& head = parser.get();
    bool keep_alive = head.keep_alive() && out.body_consumed && !out.response.close &&
                      !env.stopping.load(std::memory_order_relaxed);
    auto wec = co_await write_response(*conn, out.response, keep_alive, head.version() == 10,
                                       env.options.request_timeout);
    if (wec || !keep_alive) break;
  }
  beast::error_code ignored;
  conn->socket.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  conn->socket.close(ignored);
  connections.erase(conn);
}

}  // namespace gswarm::server
