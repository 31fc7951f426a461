// Public error type shared by the server, the C++ client and the CLI.
//
// Expected failures are values: functions that can fail return Result<T>, which
// holds either a T or an Error. Each ErrorCode has a stable machine name (sent on
// the wire as "code") and one HTTP status; both tables live in error.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

namespace gswarm {

enum class ErrorCode : std::uint8_t {
  kBadRequest,         // 400 malformed request: bad JSON, missing or mistyped field
  kInvalidKey,         // 400 empty, over-long or non-UTF-8 key
  kInvalidLocation,    // 400 unknown location name
  kDeviceUnavailable,  // 400 device:N that this server does not have
  kInvalidSize,        // 400 unparseable size string
  kUnauthorized,       // 401 no token, or not this server's token (--token)
  kForbidden,          // 403 the client may not do this (protected mode, local socket)
  kNotFound,           // 404 unknown key
  kNoRoute,            // 404 unknown path
  kMethodNotAllowed,   // 405 known path, wrong method
  kTimeout,            // 408 client too slow to send its request
  kWrongLocation,      // 409 key exists but not where the operation needs it
  kWrongFormat,        // 409 value's format does not fit the endpoint
  kConflict,           // 409 key changed or is moving while the operation ran
  kLengthRequired,     // 411 body without Content-Length
  kTooLarge,           // 413 body or key over a configured limit
  kUnsupportedMedia,   // 415 body content type the endpoint does not take
  kTooManyRequests,    // 429 a queue or connection limit is full: retry later
  kOverLimit,          // 507 tier limit (max-memory, max-disk, ...) would be passed
  kNotSupported,       // 501 feature not available in this build or deployment
  kUnavailable,        // 503 server shutting down
  kIo,                 // 500 disk or device I/O failed
  kInternal,           // 500 bug or unexpected state
  kPeerFailed,         // 502 another server (a send's target) could not be reached or failed
  kPeerTimeout,        // 504 another server did not answer in time
  kOutcomeUnknown,     // 504 another server got everything but did not say whether it took it
  kConnection,         // client side: could not reach or talk to the server
  kProtocol,           // client side: server answered something unparseable
};

struct Error {
  ErrorCode code = ErrorCode::kInternal;
  std::string message;
};

template <typename T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(ErrorCode code, std::string message) {
  return tl::unexpected<Error>(Error{code, std::move(message)});
}

// Stable machine-readable name, e.g. "not_found".
std::string_view error_code_name(ErrorCode code);
// Inverse of error_code_name; unknown names map to kInternal.
ErrorCode error_code_from_name(std::string_view name);
// The HTTP status the server answers with for this code.
int http_status(ErrorCode code);

}  // namespace gswarm
