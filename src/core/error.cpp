#include <gswarm/error.hpp>

#include <array>

namespace gswarm {
namespace {

struct ErrorInfo {
  ErrorCode code;
  std::string_view name;
  int status;
};

// The one table mapping error codes to wire names and HTTP statuses.
constexpr std::array kErrors = {
    ErrorInfo{ErrorCode::kBadRequest, "bad_request", 400},
    ErrorInfo{ErrorCode::kInvalidKey, "invalid_key", 400},
    ErrorInfo{ErrorCode::kInvalidLocation, "invalid_location", 400},
    ErrorInfo{ErrorCode::kDeviceUnavailable, "device_unavailable", 400},
    ErrorInfo{ErrorCode::kInvalidSize, "invalid_size", 400},
    ErrorInfo{ErrorCode::kUnauthorized, "unauthorized", 401},
    ErrorInfo{ErrorCode::kForbidden, "forbidden", 403},
    ErrorInfo{ErrorCode::kNotFound, "not_found", 404},
    ErrorInfo{ErrorCode::kNoRoute, "no_route", 404},
    ErrorInfo{ErrorCode::kMethodNotAllowed, "method_not_allowed", 405},
    ErrorInfo{ErrorCode::kTimeout, "timeout", 408},
    ErrorInfo{ErrorCode::kWrongLocation, "wrong_location", 409},
    ErrorInfo{ErrorCode::kWrongFormat, "wrong_format", 409},
    ErrorInfo{ErrorCode::kConflict, "conflict", 409},
    ErrorInfo{ErrorCode::kLengthRequired, "length_required", 411},
    ErrorInfo{ErrorCode::kTooLarge, "too_large", 413},
    ErrorInfo{ErrorCode::kUnsupportedMedia, "unsupported_media_type", 415},
    ErrorInfo{ErrorCode::kTooManyRequests, "too_many_requests", 429},
    ErrorInfo{ErrorCode::kOverLimit, "over_limit", 507},
    ErrorInfo{ErrorCode::kNotSupported, "not_supported", 501},
    ErrorInfo{ErrorCode::kUnavailable, "unavailable", 503},
    ErrorInfo{ErrorCode::kIo, "io_error", 500},
    ErrorInfo{ErrorCode::kInternal, "internal", 500},
    ErrorInfo{ErrorCode::kPeerFailed, "peer_failed", 502},
    ErrorInfo{ErrorCode::kPeerTimeout, "peer_timeout", 504},
    ErrorInfo{ErrorCode::kOutcomeUnknown, "outcome_unknown", 504},
    ErrorInfo{ErrorCode::kConnection, "connection_failed", 503},
    ErrorInfo{ErrorCode::kProtocol, "protocol_error", 502},
};

const ErrorInfo& info(ErrorCode code) {
  for (const auto& e : kErrors) {
    if (e.code == code) return e;
  }
  static constexpr ErrorInfo kUnknown{ErrorCode::kInternal, "internal", 500};
  return kUnknown;
}

}  // namespace

std::string_view error_code_name(ErrorCode code) { return info(code).name; }

int http_status(ErrorCode code) { return info(code).status; }

ErrorCode error_code_from_name(std::string_view name) {
  for (const auto& e : kErrors) {
    if (e.name == name) return e.code;
  }
  return ErrorCode::kInternal;
}

}  // namespace gswarm
