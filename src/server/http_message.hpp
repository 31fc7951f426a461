// Request and Response as handlers see them: plain values, no sockets and no
// Beast types, so handlers can be unit-tested directly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <gswarm/error.hpp>

#include "storage/store.hpp"

namespace gswarm::server {

struct Request {
  std::string method;
  std::string path;                         // without the query string, not decoded
  std::string param;                        // the decoded {key} / {max_size} path segment
  std::map<std::string, std::string> query;  // decoded
  std::string content_type;
  std::string accept;
  std::string body;                         // JSON bodies
  std::optional<PendingWrite> value;        // raw value bodies, already received
};

// Body = head + value bytes + tail: a value is sent from its tier's memory, not
// copied into the response.
struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string head;
  std::optional<ValueView> value;
  std::string tail;
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after this response

  std::uint64_t body_size() const {
    return head.size() + (value ? value->extent->size() : 0) + tail.size();
  }
};

// What a handler returns: a response now, or work to run on a mover thread
// (disk I/O, copies) that produces the response.
struct Reply {
  Response response;
  std::function<Response()> blocking;

  Reply(Response r) : response(std::move(r)) {}  // NOLINT: implicit by design
  explicit Reply(std::function<Response()> work) : blocking(std::move(work)) {}
};

Response json_response(std::string body, int status = 200);
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
