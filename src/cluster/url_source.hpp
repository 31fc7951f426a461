// URL sources of data pool chunks: `POST /api/v1/data` with "source":
// "http://host[:port]/path" streams the URL's body into the chunk's tier, in
// bounded pieces, as it arrives. Plain HTTP/1.1; the answer must be 200 with a
// Content-Length (redirects are not followed, https is not supported).
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string_view>

#include <gswarm/error.hpp>

#include "pool/pool.hpp"

namespace gswarm::cluster {

bool is_url(std::string_view text);

// Connects, sends the GET and reads the answer's head. kBadRequest for a URL
// that cannot be fetched (with the reason), kNotFound when it answers 404.
[[nodiscard]] Result<std::unique_ptr<pool::Source>> open_url_source(
    std::string_view url, std::chrono::milliseconds timeout, const std::atomic<bool>* stop);

}  // namespace gswarm::cluster
