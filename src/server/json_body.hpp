// JsonBody: a JSON request body, parsed with simdjson (write bodies carry values,
// and values can be large). The document is fully validated; a value comes back
// as minified JSON text without building a tree of it. Fields stay valid until
// the next parse on this thread. Used by the handlers only.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <fmt/format.h>
#include <simdjson.h>
#include <gswarm/error.hpp>

namespace gswarm::server {

simdjson::dom::parser& thread_parser();

// Whether `text` is valid JSON by the grammar alone: integers of any size
// (simdjson refuses those beyond 64 bits; Python writes them).
bool is_json_text(const std::string& text);

// parse_json's message for such a text.
inline constexpr const char* kWideIntegerMessage =
    "JSON with an integer beyond 64 bits, which this endpoint cannot take: store such a value "
    "as application/octet-stream to /write_extended with format=json";

class JsonBody {
 public:
  JsonBody() = default;
  JsonBody(const JsonBody&) = delete;
  JsonBody& operator=(const JsonBody&) = delete;
  // Its fields point into the thread's parser: only now can that shrink.
  ~JsonBody() { shrink_parser(); }

  [[nodiscard]] Result<void> parse(const std::string& body) {
    if (body.empty()) {
      return make_error(ErrorCode::kBadRequest, "request body is empty: expected a JSON object");
    }
    auto doc = parse_json(body);
    if (!doc) return tl::unexpected(doc.error());
    if (doc->get(object_) != simdjson::SUCCESS) {
      return make_error(ErrorCode::kBadRequest, "request body must be a JSON object");
    }
    return {};
  }

  // Parses `text` as one JSON document (kBadRequest when it is not).
  static Result<simdjson::dom::element> parse_json(const std::string& text) {
    simdjson::dom::parser& parser = thread_parser();
    // The session leaves kJsonPadding bytes of capacity after JSON bodies.
    const bool padded = text.capacity() - text.size() >= simdjson::SIMDJSON_PADDING;
    auto doc = parser.parse(text.data(), text.size(), !padded);
    if (doc.error() == simdjson::NUMBER_ERROR && is_json_text(text)) {
      return make_error(ErrorCode::kBadRequest, kWideIntegerMessage);
    }
    if (doc.error()) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("not valid JSON: {}", simdjson::error_message(doc.error())));
    }
    return doc.value_unsafe();
  }

  std::optional<simdjson::dom::element> field(const char* name) const {
    simdjson::dom::element e;
    if (object_.at_key(name).get(e) != simdjson::SUCCESS) return std::nullopt;
    return e;
  }

  // A string field; `fallback` when absent or null (nullptr: required).
  Result<std::string> string(const char* name, const char* fallback = nullptr) const {
    return string_of(field(name), name, fallback);
  }

  // An optional boolean field: nullopt when absent.
  Result<std::optional<bool>> boolean(const char* name) const {
    auto e = field(name);
    if (!e) return std::optional<bool>();
    bool value = false;
    if (e->get(value) != simdjson::SUCCESS) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("field '{}' must be true or false", name));
    }
    return std::optional<bool>(value);
  }

  // An optional unsigned integer field: nullopt when absent.
  Result<std::optional<std::uint64_t>> unsigned_integer(const char* name) const {
    auto e = field(name);
    if (!e) return std::optional<std::uint64_t>();
    std::uint64_t value = 0;
    if (e->get(value) != simdjson::SUCCESS) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("field '{}' must be a non-negative integer", name));
    }
    return std::optional<std::uint64_t>(value);
  }

  // A parser that took a large document keeps memory in proportion to it (the
  // unescaped strings alone are as large): a thread gives that back after use.
  static void shrink_parser() {
    constexpr std::size_t kKeep = 4 << 20;
    if (thread_parser().capacity() > kKeep) thread_parser() = simdjson::dom::parser();
  }

  static Result<std::string> string_of(std::optional<simdjson::dom::element> e, const char* name,
                                       const char* fallback = nullptr) {
    if (!e || (e->is_null() && fallback != nullptr)) {
      if (fallback != nullptr) return std::string(fallback);
      return make_error(ErrorCode::kBadRequest, fmt::format("missing field '{}'", name));
    }
    std::string_view text;
    if (e->get(text) != simdjson::SUCCESS) {
      return make_error(ErrorCode::kBadRequest, fmt::format("field '{}' must be a string", name));
    }
    return std::string(text);
  }

 private:
  simdjson::dom::object object_;
};

}  // namespace gswarm::server
