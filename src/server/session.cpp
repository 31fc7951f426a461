#include "server/session.hpp"

#include <linux/sockios.h>
#include <sys/ioctl.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstring>
#include <functional>
#include <optional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/read_size.hpp>
#include <boost/beast/http.hpp>

#include "cluster/incoming.hpp"
#include "server/router.hpp"

namespace gswarm::server {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

constexpr auto kAwait = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t kHeaderLimit = 16 * 1024;  // a 4096-byte key, percent-encoded, fits
// What a connection buffers besides a body: the headers and a little read-ahead.
constexpr std::size_t kReadBuffer = kHeaderLimit + 4096;
// Raw values for disk and GPUs stream through two buffers of this size.
constexpr std::size_t kStreamChunk = 4 << 20;
constexpr std::size_t kJsonPadding = 64;            // simdjson's SIMDJSON_PADDING
constexpr std::size_t kJsonFirst = 64 << 10;        // a JSON body's first allocation
constexpr std::size_t kJsonReadWindow = 256 << 10;  // bytes made room for per read

// Work that may block a network thread for long is done on the io pool: getting
// room for a value that is not small DRAM (files, page faults, pinning, device
// allocation) and handling a large JSON body (parsing, copying).
constexpr std::uint64_t kInlinePrepare = 1 << 20;
constexpr std::size_t kInlineJsonBody = 1 << 20;

template <typename T>
T internal_failure(std::string_view what) {
  if constexpr (std::is_same_v<T, Response>) {
    return error_response(ErrorCode::kInternal, "internal error; the server log has the details");
  } else if constexpr (std::is_same_v<T, Reply>) {
    return Reply(internal_failure<Response>(what));
  } else {
    return tl::unexpected(Error{ErrorCode::kInternal, std::string(what)});
  }
}

// Blocking work started on a task pool now and awaited later, so that the
// coroutine can go on (reading the socket, say) while it runs.
//
// GCC 12 may destroy a temporary twice when it is an argument in a co_await
// expression: so no co_await in this file takes a temporary with a destructor
// or an argument by value that has one. Work goes in through start(), a plain
// function, and is awaited through a reference to its named state.
template <typename T>
struct Background {
  explicit Background(asio::any_io_executor ex)
      : timer(ex, asio::steady_timer::time_point::max()), guard(ex) {}
  asio::steady_timer timer;                                // cancelled when the work is done
  asio::executor_work_guard<asio::any_io_executor> guard;  // keeps the loop alive meanwhile
  std::optional<T> result;
};

template <typename T>
std::shared_ptr<Background<T>> start(TaskPool& pool, asio::any_io_executor ex,
                                     std::function<T()> work) {
  auto bg = std::make_shared<Background<T>>(ex);
  pool.submit([bg, ex, &pool, work = std::move(work)] {
    std::optional<T> result;
    try {
      result.emplace(work());
    } catch (const std::exception& e) {
      spdlog::error("a task on {} failed: {}", pool.name(), e.what());
      result.emplace(internal_failure<T>(e.what()));
    }
    asio::post(ex, [bg, result = std::move(result)]() mutable {
      bg->result = std::move(result);
      bg->timer.cancel();
      bg->guard.reset();
    });
  });
  return bg;
}

template <typename T>
asio::awaitable<T> finish(const std::shared_ptr<Background<T>>& bg) {
  while (!bg->result) co_await bg->timer.async_wait(kAwait);
  co_return std::move(*bg->result);
}

// Fills `dest` with body bytes: first what is already buffered, then straight
// from the socket. The deadline is re-armed after every read that made progress.
asio::awaitable<beast::error_code> read_into(Connection& conn, beast::flat_buffer& buffer,
                                             std::span<std::byte> dest,
                                             std::chrono::seconds timeout) {
  std::size_t have = std::min(buffer.size(), dest.size());
  asio::buffer_copy(asio::buffer(dest.data(), have), buffer.data());
  buffer.consume(have);
  for (std::size_t off = have; off < dest.size();) {
    conn.arm(timeout);
    auto [ec, got] = co_await conn.stream.async_read_some(
        asio::buffer(dest.data() + off, dest.size() - off), kAwait);
    conn.disarm();
    if (ec) co_return ec;
    off += got;
  }
  co_return beast::error_code{};
}

// Writes all of `buffers`, re-arming the deadline after every write that made
// progress.
template <typename Buffers>
asio::awaitable<beast::error_code> write_all(Connection& conn, const Buffers& buffers,
                                             std::chrono::seconds timeout) {
  beast::buffers_suffix<Buffers> rest(buffers);
  while (asio::buffer_size(rest) > 0) {
    conn.arm_write(timeout, asio::buffer_size(rest));
    auto [ec, n] = co_await conn.stream.async_write_some(rest, kAwait);
    conn.disarm();
    if (ec) co_return ec;
    rest.consume(n);
  }
  co_return beast::error_code{};
}

std::string status_line_and_headers(const Response& res, bool keep_alive, bool http10,
                                    bool chunked) {
  std::string out;
  if (chunked || (res.source && !res.source->size())) {
    out = fmt::format("HTTP/1.1 {} {}\r\nServer: gswarm\r\nContent-Type: {}\r\n{}", res.status,
                      http::obsolete_reason(http::int_to_status(res.status)), res.content_type,
                      chunked ? "Transfer-Encoding: chunked\r\n" : "");
  } else {  // one formatting call: this is on the path of every answer
    out = fmt::format(
        "HTTP/1.1 {} {}\r\nServer: gswarm\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        res.status, http::obsolete_reason(http::int_to_status(res.status)), res.content_type,
        res.source ? *res.source->size() : res.body_size());
  }
  for (const auto& [name, value] : res.headers)
    fmt::format_to(std::back_inserter(out), "{}: {}\r\n", name, value);
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return out;
}

// Sends a body built in pieces on the io pool, one piece in memory at a time.
// False when the connection can no longer be used (the answer was cut short).
asio::awaitable<bool> write_pieces(Connection& conn, const Response& res, bool keep_alive,
                                   bool http10, SessionEnv env) {
  const bool sized = res.source->size().has_value();
  // Without a length, HTTP/1.1 clients get chunks; HTTP/1.0 ones the end of the connection.
  const bool chunked = !sized && !http10;
  keep_alive = keep_alive && (sized || chunked);
  auto held = BufferCharge::take(env.ctx, BodySource::kMaxPiece);
  if (!held) {
    Response busy = error_response(held.error());
    std::string header = status_line_and_headers(busy, false, http10, false);
    std::array<asio::const_buffer, 2> parts = {asio::buffer(header), asio::buffer(busy.head)};
    co_await write_all(conn, parts, env.options.request_timeout);
    co_return false;
  }
  std::string header = status_line_and_headers(res, keep_alive, http10, chunked);
  if (auto ec = co_await write_all(conn, asio::buffer(header), env.options.request_timeout); ec) {
    co_return false;
  }
  auto source = res.source;
  auto piece = std::make_shared<std::string>();
  auto executor = co_await asio::this_coro::executor;
  while (true) {
    auto task = start<Result<bool>>(env.ctx.store.io(), executor,
                                    [source, piece] { return source->next(*piece); });
    auto more = co_await finish(task);
    if (!more) {
      spdlog::warn("answer cut short: {}", more.error().message);
      co_return false;
    }
    if (!*more) break;
    if (piece->empty()) continue;
    if (piece->size() > held->bytes()) {  // a piece larger than most: count all of it
      if (auto ok = held->grow(piece->size() - held->bytes()); !ok) {
        spdlog::warn("answer cut short: {}", ok.error().message);
        co_return false;
      }
    }
    beast::error_code ec;
    if (chunked) {
      std::string size_line = fmt::format("{:x}\r\n", piece->size());
      std::array<asio::const_buffer, 3> parts = {asio::buffer(size_line), asio::buffer(*piece),
                                                 asio::buffer("\r\n", 2)};
      ec = co_await write_all(conn, parts, env.options.request_timeout);
    } else {
      ec = co_await write_all(conn, asio::buffer(*piece), env.options.request_timeout);
    }
    if (ec) co_return false;
  }
  if (chunked) {
    if (auto ec =
            co_await write_all(conn, asio::buffer("0\r\n\r\n", 5), env.options.request_timeout);
        ec) {
      co_return false;
    }
  }
  co_return keep_alive;
}

// False when the connection can no longer be used.
asio::awaitable<bool> write_response(Connection& conn, const Response& res, bool keep_alive,
                                     bool http10, SessionEnv env) {
  if (res.source) co_return co_await write_pieces(conn, res, keep_alive, http10, env);
  std::string header = status_line_and_headers(res, keep_alive, http10, false);
  std::span<const std::byte> value;
  if (res.value) value = res.value->bytes();
  std::array<asio::const_buffer, 4> parts = {asio::buffer(header), asio::buffer(res.head),
                                             asio::buffer(value.data(), value.size()),
                                             asio::buffer(res.tail)};
  // write_all's loop, inline: most answers go in one call, and a coroutine frame
  // less on every answer counts.
  beast::buffers_suffix<decltype(parts)> rest(parts);
  while (asio::buffer_size(rest) > 0) {
    conn.arm_write(env.options.request_timeout, asio::buffer_size(rest));
    auto [ec, n] = co_await conn.stream.async_write_some(rest, kAwait);
    conn.disarm();
    if (ec) co_return false;
    rest.consume(n);
  }
  co_return keep_alive;
}

struct Outcome {
  Response response;
  bool body_consumed = true;  // false: the connection cannot be reused
  bool drop = false;          // the peer went away or stalled: close without answering
};

// Answers a body that could not be read to its end: the connection then closes.
Outcome body_failed(Connection& conn, beast::error_code ec) {
  Outcome out;
  out.body_consumed = false;
  out.drop = !conn.timed_out;
  if (conn.timed_out) {
    out.response = error_response(ErrorCode::kTimeout, "request body not received in time");
  }
  return out;
}

Outcome failed(Error error, bool body_consumed = false) {
  Outcome out;
  out.response = error_response(std::move(error));
  out.body_consumed = body_consumed;
  return out;
}

// Reads a JSON body of `length` bytes into `body`, growing it (and its charge
// against --max-buffer-memory) as bytes arrive, never ahead of them.
asio::awaitable<std::optional<Outcome>> read_json_body(Connection& conn, beast::flat_buffer& buffer,
                                                       std::string& body, std::uint64_t length,
                                                       BufferCharge& charge, SessionEnv env) {
  std::size_t room = 0;  // bytes of body allowed so far
  while (body.size() < length) {
    if (body.size() == room) {
      const std::size_t next =
          static_cast<std::size_t>(std::min<std::uint64_t>(length, std::max(kJsonFirst, room * 2)));
      if (auto ok = charge.grow(next - room); !ok) co_return failed(ok.error());
      body.reserve(next + kJsonPadding);  // slack lets the JSON parser read ahead without a copy
      room = next;
    }
    const std::size_t old = body.size();
    body.resize(old + std::min(room - old, kJsonReadWindow));
    std::span<std::byte> window{reinterpret_cast<std::byte*>(body.data()) + old, body.size() - old};
    // One read's worth: what is buffered, or what one read_some brings.
    std::size_t got = std::min(buffer.size(), window.size());
    if (got > 0) {
      asio::buffer_copy(asio::buffer(window.data(), got), buffer.data());
      buffer.consume(got);
    } else {
      conn.arm(env.options.request_timeout);
      auto [ec, n] =
          co_await conn.stream.async_read_some(asio::buffer(window.data(), window.size()), kAwait);
      conn.disarm();
      if (ec) co_return body_failed(conn, ec);
      got = n;
    }
    body.resize(old + got);
  }
  co_return std::nullopt;
}

// Receives `size` body bytes for a tier the CPU cannot address (disk, GPU)
// through two bounded buffers: one fills from the socket while the io pool hands
// the other to `store` (offset from the first byte, and the bytes).
using Sink = std::function<Result<void>(std::uint64_t, std::span<const std::byte>)>;
asio::awaitable<std::optional<Outcome>> stream_value(Connection& conn, beast::flat_buffer& buffer,
                                                     std::uint64_t size, const Sink& store,
                                                     SessionEnv env) {
  const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(kStreamChunk, size));
  auto held = BufferCharge::take(env.ctx, 2 * chunk);
  if (!held) co_return failed(held.error());
  std::array<std::unique_ptr<std::byte[]>, 2> buffers = {
      std::make_unique_for_overwrite<std::byte[]>(chunk),
      std::make_unique_for_overwrite<std::byte[]>(chunk)};
  auto executor = co_await asio::this_coro::executor;
  std::shared_ptr<Background<Result<void>>> writing;
  for (std::uint64_t at = 0, current = 0; at < size; current ^= 1) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(chunk, size - at));
    const std::span<std::byte> piece{buffers[current].get(), n};
    auto ec = co_await read_into(conn, buffer, piece, env.options.request_timeout);
    // The previous piece's write must end before its buffer is used or freed.
    Result<void> written;
    if (writing) written = co_await finish(writing);
    if (ec) co_return body_failed(conn, ec);
    if (!written) co_return failed(written.error());
    writing = start<Result<void>>(env.ctx.store.io(), executor,
                                  [&store, at, piece] { return store(at, piece); });
    at += n;
  }
  if (writing) {
    if (auto written = co_await finish(writing); !written) co_return failed(written.error(), true);
  }
  co_return std::nullopt;
}

// "Expect: 100-continue": the client waits for this before it sends the body.
// False when the connection is gone.
asio::awaitable<bool> continue_if_expected(Connection& conn,
                                           const http::request_parser<http::empty_body>& parser,
                                           bool has_body, SessionEnv env) {
  if (!has_body || !beast::iequals(parser.get()[http::field::expect], "100-continue")) {
    co_return true;
  }
  static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
  auto ec = co_await write_all(conn, asio::buffer(kContinue), env.options.request_timeout);
  co_return !ec;
}

// PUT /transfers/{id}?offset=N: one byte range of a transfer, received straight
// into its place in the value.
asio::awaitable<std::optional<Outcome>> receive_range(
    Connection& conn, beast::flat_buffer& buffer,
    const http::request_parser<http::empty_body>& parser, Request& req, std::uint64_t length,
    SessionEnv env) {
  const bool empty = length == 0;
  if (env.ctx.transfers == nullptr) {
    co_return failed(Error{ErrorCode::kNotSupported, "this server does not take transfers"}, empty);
  }
  if (!is_octet_stream(req.content_type)) {
    co_return failed(Error{ErrorCode::kUnsupportedMedia,
                           "a transfer's range is sent as application/octet-stream"},
                     empty);
  }
  std::uint64_t offset = 0;
  const std::string& text = req.query["offset"];
  auto [end, parse_error] = std::from_chars(text.data(), text.data() + text.size(), offset);
  if (text.empty() || parse_error != std::errc() || end != text.data() + text.size()) {
    co_return failed(Error{ErrorCode::kBadRequest, "give the range's first byte as ?offset=N"},
                     empty);
  }
  auto range = env.ctx.transfers->claim(req.param, offset, length);
  if (!range) co_return failed(range.error(), empty);
  std::optional<Outcome> problem;
  if (!co_await continue_if_expected(conn, parser, !empty, env)) {
    problem.emplace();
    problem->drop = true;
  } else if (range->direct()) {
    if (auto ec = co_await read_into(conn, buffer, range->buffer(), env.options.request_timeout);
        ec) {
      problem = body_failed(conn, ec);
    }
  } else {
    const Sink store = [r = &*range](std::uint64_t at, std::span<const std::byte> piece) {
      return r->write(at, piece);
    };
    problem = co_await stream_value(conn, buffer, length, store, env);
  }
  env.ctx.transfers->finish(*range, !problem);
  if (problem) co_return problem;
  req.range_received = length;
  co_return std::nullopt;
}

// Whether an upload (POST /api/v1/data) goes to DRAM, where a small one is
// prepared without leaving the network thread.
bool uploads_to_dram(const Request& req) {
  auto device = req.query.find("device");
  return device == req.query.end() || device->second == "dram" || device->second == "cpu";
}

// RFC 9112: a Transfer-Encoding the server does not implement is a 400; a body
// read by Content-Length despite it would let the next request hide inside.
std::optional<Error> check_transfer_encoding(const http::request_parser<http::empty_body>& parser) {
  const auto& head = parser.get();
  auto [first, last] = head.equal_range(http::field::transfer_encoding);
  if (first == last) return std::nullopt;
  if (std::next(first) == last && beast::iequals(first->value(), "chunked")) {
    return Error{ErrorCode::kLengthRequired,
                 "send the body with a Content-Length (chunked bodies are not accepted)"};
  }
  return Error{ErrorCode::kBadRequest,
               fmt::format("Transfer-Encoding '{}' is not supported: send the body as is, with a "
                           "Content-Length",
                           std::string(first->value()))};
}

// Everything between "headers received" and "response ready".
// `endpoint` is set to the index of the route the request matched.
asio::awaitable<Outcome> handle(Connection& conn, beast::flat_buffer& buffer,
                                http::request_parser<http::empty_body>& parser, SessionEnv env,
                                std::size_t& endpoint) {
  auto& head = parser.get();
  Request req;
  req.method = std::string(head.method_string());
  std::string_view target = head.target();
  auto qpos = target.find('?');
  req.path = std::string(target.substr(0, qpos));
  req.content_type = std::string(head[http::field::content_type]);
  req.accept = std::string(head[http::field::accept]);
  if (head.keep_alive()) req.connection = conn.id;
  const std::uint64_t length = parser.content_length().value_or(0);

  const auto origin = head.find(http::field::origin);
  const AccessRequest asked{.from_loopback = conn.from_loopback,
                            .method = req.method,
                            .path = req.path,
                            .authorization = head[http::field::authorization],
                            .host = head[http::field::host],
                            .origin = origin == head.end() ? std::string_view() : std::string_view(origin->value()),
                            .has_origin = origin != head.end()};
  if (auto refused = check_access(env.access, asked)) {
    // The connection closes after the answer: nothing more is read from a
    // client that is not let in, not even its body.
    Outcome denied = failed(std::move(*refused));
    if (denied.response.status == 401) {
      denied.response.headers.emplace_back("WWW-Authenticate", R"(Bearer realm="gswarm")");
    }
    co_return denied;
  }
  if (conn.pending_ticket != 0) {  // a client let in: never closed to make room
    env.pending.remove(std::exchange(conn.pending_ticket, 0));
  }
  if (auto bad = check_transfer_encoding(parser)) co_return failed(*bad);
  const bool has_body = length > 0;
  Outcome out;
  out.body_consumed = !has_body;

  RouteMatch match = match_route(req.method, req.path);
  if (match.route == nullptr) {
    out.response = std::move(match.error);
    co_return out;
  }
  const Route& route = *match.route;
  endpoint = static_cast<std::size_t>(match.route - routes().data());
  req.param = std::move(match.param);
  if (qpos != std::string_view::npos) {
    auto query = parse_query(target.substr(qpos + 1));
    if (!query) co_return failed(query.error(), out.body_consumed);
    req.query = std::move(*query);
  }

  // A raw value or an upload (even an empty one) streams into its tier; JSON
  // into a string.
  const bool upload = route.body == BodyKind::kJsonOrUpload && is_octet_stream(req.content_type);
  const bool raw =
      upload || (route.body == BodyKind::kJsonOrValue && is_octet_stream(req.content_type));
  if (has_body && !raw && route.body != BodyKind::kNone && route.body != BodyKind::kRange &&
      !is_json_media(req.content_type)) {
    co_return failed(
        Error{ErrorCode::kUnsupportedMedia,
              fmt::format("{} {} takes a JSON body: send it with Content-Type: application/json "
                          "(this one says '{}')",
                          req.method, req.path, req.content_type)},
        out.body_consumed);
  }
  BufferCharge body_charge;
  if (route.body == BodyKind::kRange) {
    if (auto problem = co_await receive_range(conn, buffer, parser, req, length, env)) {
      co_return std::move(*problem);
    }
    out.body_consumed = true;
  } else if ((route.body != BodyKind::kNone && has_body) || raw) {
    std::optional<RawTarget> raw_target;
    std::uint64_t limit = env.ctx.limits.max_request_size;
    std::string_view limit_name = "--max-request-size";
    if ((route.body == BodyKind::kControl || route.body == BodyKind::kJsonOrUpload) &&
        env.ctx.limits.max_control_size < limit) {
      limit = env.ctx.limits.max_control_size;
      limit_name = "the limit for this endpoint";
    }
    if (upload) {
      limit = env.ctx.limits.max_value_size;
      limit_name = "--max-value-size";
    } else if (raw) {
      auto parsed = parse_raw_target(req, env.ctx);
      if (!parsed) co_return failed(parsed.error(), out.body_consumed);
      raw_target = std::move(*parsed);
      if (!raw_target->json()) {
        limit = env.ctx.limits.max_value_size;
        limit_name = "--max-value-size";
      }
    }
    if (length > limit) {
      co_return failed(
          Error{ErrorCode::kTooLarge,
                fmt::format("{} of {} bytes is over {} ({} bytes)", raw ? "value" : "request body",
                            length, limit_name, limit)},
          out.body_consumed);
    }
    std::shared_ptr<PendingWrite> pending;
    if (upload) {
      Result<PendingWrite> prepared;
      if (length < kInlinePrepare && uploads_to_dram(req)) {
        prepared = prepare_chunk_upload(req, length, env.ctx);
      } else {
        auto executor = co_await asio::this_coro::executor;
        auto task = start<Result<PendingWrite>>(env.ctx.store.io(), executor, [&req, length, &env] {
          return prepare_chunk_upload(req, length, env.ctx);
        });
        prepared = co_await finish(task);
      }
      if (!prepared) co_return failed(prepared.error(), out.body_consumed);
      pending = std::make_shared<PendingWrite>(std::move(*prepared));
    } else if (raw_target && !raw_target->json()) {
      Result<PendingWrite> prepared;
      if (raw_target->location == Location::dram() && length < kInlinePrepare) {
        prepared = prepare_raw_value(*raw_target, length, env.ctx);  // takes the key
      } else {
        auto executor = co_await asio::this_coro::executor;
        RawTarget& where = *raw_target;
        auto task = start<Result<PendingWrite>>(
            env.ctx.store.io(), executor,
            [&where, length, &env] { return prepare_raw_value(where, length, env.ctx); });
        prepared = co_await finish(task);
      }
      if (!prepared) co_return failed(prepared.error(), out.body_consumed);
      pending = std::make_shared<PendingWrite>(std::move(*prepared));
    }
    if (!co_await continue_if_expected(conn, parser, has_body, env)) {
      out.drop = true;
      co_return out;
    }
    std::optional<Outcome> problem;
    if (!pending) {
      problem = co_await read_json_body(conn, buffer, req.body, length, body_charge, env);
    } else if (pending->direct() && (!pending->tracks_checksum() || length < kInlinePrepare)) {
      if (auto ec =
              co_await read_into(conn, buffer, pending->buffer(), env.options.request_timeout);
          ec) {
        problem = body_failed(conn, ec);
      }
      pending->checksum_buffer();
    } else {  // checksummed piece by piece as the pieces arrive
      const Sink store = [&pending](std::uint64_t, std::span<const std::byte> piece) {
        return pending->append(piece);
      };
      problem = co_await stream_value(conn, buffer, pending->size(), store, env);
    }
    if (problem) co_return std::move(*problem);
    out.body_consumed = true;
    if (pending) req.value.emplace(std::move(*pending));
    if (raw_target && raw_target->json()) req.raw_target = std::move(raw_target);
  }

  auto call_handler = [&req, &route, &env] {
    try {
      return route.handler(req, env.ctx);
    } catch (const std::exception& e) {
      spdlog::error("{} {}: {}", req.method, req.path, e.what());
      return Reply(internal_failure<Response>(e.what()));
    }
  };
  std::optional<Reply> handled;
  if (req.body.size() > kInlineJsonBody) {
    auto executor = co_await asio::this_coro::executor;
    auto task = start<Reply>(env.ctx.store.io(), executor, call_handler);
    handled.emplace(co_await finish(task));
  } else {
    handled.emplace(call_handler());
  }
  Reply& reply = *handled;
  if (reply.blocking) {
    TaskPool& pool = reply.lane == Lane::kMove ? env.ctx.store.movers() : env.ctx.store.io();
    auto executor = co_await asio::this_coro::executor;
    auto task = start<Response>(pool, executor, std::move(reply.blocking));
    out.response = co_await finish(task);
  } else {
    out.response = std::move(reply.response);
  }
  co_return out;
}

// The client's X-Request-Id when it is a sane one (up to 64 of A-Z a-z 0-9 . _ : -),
// else a new one.
std::string request_id(const http::request_parser<http::empty_body>& parser,
                       Metrics::Shard& metrics) {
  auto given = parser.get().find("X-Request-Id");
  if (given != parser.get().end()) {
    std::string_view id = given->value();
    const bool sane =
        !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == ':' ||
                 c == '-';
        });
    if (sane) return std::string(id);
  }
  return metrics.next_request_id();
}

// An answer went out before the request's body was read (401, 413, ...) and the
// connection is to close. The client may still be sending that body: closing
// at once would make the kernel reset the connection, and a client still
// writing would see the reset instead of the answer. So stop sending, and read
// and drop what arrives for a moment (at most kLingerBytes) before closing.
asio::awaitable<void> drain_unread_body(Connection& conn) {
  constexpr std::size_t kLingerBytes = 64 << 20;
  constexpr auto kLingerTime = std::chrono::seconds(2);
  beast::error_code ec;
  conn.stream.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  std::array<char, 16 * 1024> sink;
  std::size_t dropped = 0;
  conn.arm(kLingerTime);  // one deadline for all of it, not per read
  while (dropped < kLingerBytes) {
    // The socket itself: with TLS, what is dropped need not be decrypted.
    auto [read_ec, n] = co_await conn.stream.socket().async_read_some(asio::buffer(sink), kAwait);
    if (read_ec) break;
    dropped += n;
  }
  conn.disarm();
}

// The TLS handshake, within the request timeout. A client that speaks plain
// HTTP to a TLS server gets a plain 400 that says so instead of a closed
// connection. False: the connection is to close.
asio::awaitable<bool> start_tls(Connection& conn, SessionEnv env) {
  constexpr unsigned char kTlsHandshakeRecord = 0x16;
  auto& socket = conn.stream.socket();
  conn.arm(env.options.request_timeout);
  auto [wait_ec] = co_await socket.async_wait(asio::socket_base::wait_read, kAwait);
  conn.disarm();
  if (wait_ec) co_return false;
  unsigned char first = 0;
  if (::recv(socket.native_handle(), &first, 1, MSG_PEEK | MSG_DONTWAIT) != 1) co_return false;
  if (first != kTlsHandshakeRecord) {
    static const std::string answer = [] {
      const std::string body =
          R"x({"detail":"this server speaks HTTPS (it was started with --tls-cert): use an )x"
          R"x(https:// address and trust its certificate with --tls-ca, GSWARM_TLS_CA or )x"
          R"x(DataServer(tls_ca=...)","code":"bad_request"})x";
      return fmt::format(
          "HTTP/1.1 400 Bad Request\r\nServer: gswarm\r\nContent-Type: application/json\r\n"
          "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
          body.size(), body);
    }();
    conn.arm(env.options.request_timeout);
    auto [ec, n] = co_await asio::async_write(socket, asio::buffer(answer), kAwait);
    conn.disarm();
    if (!ec) co_await drain_unread_body(conn);
    co_return false;
  }
  conn.arm(env.options.request_timeout);
  auto [ec] = co_await conn.stream.async_handshake(kAwait);
  conn.disarm();
  if (ec) {
    spdlog::debug("TLS handshake failed: {}", ec.message());
    co_return false;
  }
  co_return true;
}

// Reads the next request's head into `parser`. Between requests a kept-alive
// connection may wait --idle-timeout for the first byte of the next one; from
// that byte on (on a new connection: from connecting, as it was opened to send a
// request) the whole head must arrive within --header-timeout, however slowly
// it trickles in. So a client that opens connections and sends half a request
// holds each for that long at most. The head is parsed as bytes arrive, with
// one read per request in the usual case, as Beast's async_read_header does.
asio::awaitable<beast::error_code> read_head(Connection& conn, beast::flat_buffer& buffer,
                                             http::request_parser<http::empty_body>& parser,
                                             SessionEnv env, bool fresh) {
  constexpr std::size_t kReadSize = 64 << 10;
  bool begun = fresh || buffer.size() > 0;
  auto head_deadline = Connection::Clock::now() + env.options.header_timeout;
  for (;;) {
    if (buffer.size() > 0) {
      beast::error_code ec;
      const std::size_t used = parser.put(buffer.data(), ec);
      buffer.consume(used);
      if (ec == http::error::need_more) {
        ec = {};
      } else if (ec || parser.is_header_done()) {
        co_return ec;
      } else if (used > 0) {
        continue;  // it took a part, and more is buffered
      }
    }
    const std::size_t room = beast::read_size(buffer, kReadSize);
    if (room == 0) co_return http::error::buffer_overflow;
    // Waiting for a request's first byte is being idle: stopping closes such a
    // connection at once.
    conn.idle = buffer.size() == 0 && !parser.got_some();
    if (begun) {
      conn.arm_until(head_deadline);
    } else {
      conn.arm(env.options.idle_timeout);
    }
    auto [ec, n] = co_await conn.stream.async_read_some(buffer.prepare(room), kAwait);
    conn.disarm();
    conn.idle = false;
    // A connection that began a transfer stays open while the transfer lives
    // (the transfer has an idle timeout of its own): its closing drops it.
    if (ec && conn.timed_out && !begun && env.ctx.transfers != nullptr &&
        env.ctx.transfers->holds(conn.id) && !env.stopping.load(std::memory_order_relaxed)) {
      continue;
    }
    if (ec == asio::error::eof) {
      co_return buffer.size() > 0 || parser.got_some() ? http::error::partial_message
                                                       : http::error::end_of_stream;
    }
    if (ec) co_return ec;
    buffer.commit(n);
    if (!begun) {
      begun = true;
      head_deadline = Connection::Clock::now() + env.options.header_timeout;
    }
  }
}

int send_queue_of(asio::ip::tcp::socket& socket) {
  int queued = 0;
  if (::ioctl(socket.native_handle(), SIOCOUTQ, &queued) != 0) return -1;
  return queued;
}

}  // namespace

void Connection::arm_write(std::chrono::seconds timeout, std::size_t bytes) {
  constexpr std::size_t kSmallWrite = 64 << 10;
  arm(timeout);
  writing = true;
  send_queue = bytes > kSmallWrite ? send_queue_of(stream.socket()) : -1;
}

bool Connection::write_progressed() {
  if (!writing) return false;
  const int now_queued = send_queue_of(stream.socket());
  if (now_queued < 0) return false;
  if (send_queue >= 0 && now_queued >= send_queue) return false;
  send_queue = now_queued;
  deadline = std::min(Clock::now() + armed_for, drain_deadline);
  return true;
}

asio::awaitable<void> serve(std::shared_ptr<Connection> conn, SessionEnv env,
                            ConnectionSet& connections) {
  beast::flat_buffer buffer(kReadBuffer);
  bool linger = false;  // answered before the request's body was read
  bool ready = true;
  bool fresh = true;  // no request yet on this connection
  if (conn->stream.tls()) ready = co_await start_tls(*conn, env);
  while (ready && !env.stopping.load(std::memory_order_relaxed)) {
    http::request_parser<http::empty_body> parser;
    parser.header_limit(kHeaderLimit);
    parser.body_limit(boost::none);  // bodies are checked against our own limits in handle()
    auto ec = co_await read_head(*conn, buffer, parser, env, fresh);
    fresh = false;
    if (ec) {
      // Malformed, oversized or half-sent headers get an answer; a peer that
      // closes, or a keep-alive connection that stays silent, does not.
      const bool malformed =
          ec.category() == http::make_error_code(http::error::bad_target).category() &&
          ec != http::error::end_of_stream && ec != http::error::partial_message;
      const bool stalled = conn->timed_out && (buffer.size() > 0 || parser.got_some());
      const bool too_long = ec == http::error::header_limit || ec == http::error::buffer_overflow;
      if (malformed || stalled || too_long) {
        Response res =
            stalled    ? error_response(ErrorCode::kTimeout, "request headers not received in time")
            : too_long ? error_response(ErrorCode::kTooLarge, "request headers are too large")
                       : error_response(ErrorCode::kBadRequest,
                                        fmt::format("malformed request: {}", ec.message()));
        co_await write_response(*conn, res, false, false, env);
      }
      break;
    }
    const auto started = Connection::Clock::now();
    std::size_t endpoint = routes().size();  // "other" until a route matches
    Outcome out = co_await handle(*conn, buffer, parser, env, endpoint);
    if (out.drop) break;
    const auto& head = parser.get();
    const std::uint64_t length = parser.content_length().value_or(0);
    if (out.body_consumed && length > 0 && head.find("X-Gswarm-Node") != head.end()) {
      env.metrics.add_node_received(length);
    }
    std::string id = request_id(parser, env.metrics);
    out.response.headers.emplace_back("X-Request-Id", id);
    bool keep_alive = head.keep_alive() && out.body_consumed && !out.response.close &&
                      !env.stopping.load(std::memory_order_relaxed);
    const bool written =
        co_await write_response(*conn, out.response, keep_alive, head.version() == 10, env);
    const auto took = Connection::Clock::now() - started;
    env.metrics.record(endpoint, out.response.status, out.response.error, took);
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("{} {} {} -> {}{} in {:.3f} ms", id, head.method_string(), head.target(),
                    out.response.status, written ? "" : " (answer cut short)",
                    std::chrono::duration<double, std::milli>(took).count());
    }
    if (!written) {
      linger = !out.body_consumed;
      break;
    }
  }
  if (conn->pending_ticket != 0) env.pending.remove(std::exchange(conn->pending_ticket, 0));
  if (env.ctx.transfers != nullptr) env.ctx.transfers->connection_closed(conn->id);
  if (linger) co_await drain_unread_body(*conn);
  beast::error_code ignored;
  conn->stream.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  conn->stream.socket().close(ignored);
  connections.erase(conn);
  if (env.ctx.state != nullptr) env.ctx.state->connections.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace gswarm::server
