// Request and Response as handlers see them: plain values, no sockets and no
// Beast types, so handlers can be unit-tested directly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gswarm/error.hpp>

#include "storage/store.hpp"

namespace gswarm::server {

// The raw form of /write_extended (?key=&location=&format=), read from the
// query before the body.
struct RawTarget {
  std::string key;
  Location location;
  std::string format;
  bool json() const { return format == "json"; }
};

struct Request {
  std::string method;
  std::string path;                         // without the query string, not decoded
  std::string param;                        // the decoded {key} / {max_size} path segment
  std::map<std::string, std::string> query;  // decoded
  std::string content_type;
  std::string accept;
  std::string body;                         // JSON bodies (and raw values tagged json)
  std::optional<PendingWrite> value;        // raw value bodies, already received
  std::optional<RawTarget> raw_target;      // raw values tagged json (the body is in `body`)
  std::uint64_t range_received = 0;         // PUT /transfers/{id}: the range's bytes, stored
  // The connection it came on when the client keeps that one open (not
  // "Connection: close"), else 0: what a transfer is tied to.
  std::uint64_t connection = 0;
};

// A response body produced in pieces, for answers too large to build whole
// (a value as base64, every key's locations). next() may block: the session
// calls it on the io pool, holds one piece at a time and counts it against
// --max-buffer-memory.
class BodySource {
 public:
  static constexpr std::size_t kMaxPiece = 4 << 20;
  virtual ~BodySource() = default;
  // The body's length when known in advance; otherwise it is sent chunked.
  virtual std::optional<std::uint64_t> size() const = 0;
  // Replaces `piece` with the next bytes (at most kMaxPiece); false at the end.
  [[nodiscard]] virtual Result<bool> next(std::string& piece) = 0;
};

// Body = head + value bytes + tail: a value is sent from its tier's memory, not
// copied into the response. Or, with `source`, pieces from a BodySource.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string head;
  std::optional<ValueView> value;
  std::string tail;
  std::shared_ptr<BodySource> source;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response
  std::optional<ErrorCode> error;  // an error answer's code (counted in /metrics)

  std::uint64_t body_size() const {
    return head.size() + (value ? value->extent->size() : 0) + tail.size();
  }
};

// Which threads run a handler's blocking work: `io` for short request steps
// (disk writes, releases, building answers), `movers` for copies between tiers,
// which may take minutes and must not hold up the short ones.
enum class Lane : std::uint8_t { kIo, kMove };

// What a handler returns: a response now, or work to run on a task pool that
// produces the response.
struct Reply {
  Response response;
  std::function<Response()> blocking;
  Lane lane = Lane::kIo;

  Reply(Response r) : response(std::move(r)) {}  // NOLINT: implicit by design
  explicit Reply(std::function<Response()> work, Lane on = Lane::kIo)
      : blocking(std::move(work)), lane(on) {}
};

Response json_response(std::string body, int status = 200);
inline bool is_octet_stream(std::string_view content_type) {
  return content_type.starts_with("application/octet-stream");
}
// application/json, with or without parameters ("; charset=utf-8"), in any case.
// A web page cannot send that to another site without the browser asking the
// site first, which this server never allows: so JSON bodies must say it.
bool is_json_media(std::string_view content_type);
Response error_response(const Error& error);
Response error_response(ErrorCode code, std::string message);

// Appends `text` as a JSON string literal (quoted and escaped). `text` must be
// valid UTF-8 (keys are validated at the edge).
void append_json_string(std::string& out, std::string_view text);
std::string json_string(std::string_view text);

// "%2F" → "/"; `plus_is_space` for query strings. kBadRequest on bad escapes.
[[nodiscard]] Result<std::string> percent_decode(std::string_view text, bool plus_is_space);
[[nodiscard]] Result<std::map<std::string, std::string>> parse_query(std::string_view query);

}  // namespace gswarm::server
