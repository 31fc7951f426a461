// URL sources of data pool chunks: `POST /api/v1/data` with "source":
// "http://host[:port]/path" streams the URL's body into the chunk's tier, in
// bounded pieces, as it arrives. Plain HTTP/1.1; the answer must be 200 with a
// Content-Length (redirects are not followed, https is not supported).
//
// The server fetches only what it was told it may (UrlSources::Options::allow,
// from --url-source-allow): without a pattern no URL is fetched, so a client
// cannot make the server read what the client itself cannot reach. Loopback,
// link-local and unspecified addresses are fetched only from a host a pattern
// names exactly (no wildcard), and the address checked is the one connected to.
// A fetch has an overall deadline (--source-timeout) besides the idle timeout,
// and at most max_fetches run at once, so that slow sources cannot hold every
// mover.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gswarm/error.hpp>

#include "pool/pool.hpp"

namespace gswarm::cluster {

bool is_url(std::string_view text);

class UrlSources {
 public:
  struct Options {
    // Host or host:port globs (fnmatch, case-insensitive): "data.example.com",
    // "*.internal:8080", "10.0.0.*". Empty: URL sources are refused.
    std::vector<std::string> allow;
    std::chrono::seconds deadline{300};         // a whole fetch (--source-timeout)
    std::chrono::milliseconds idle{30'000};     // without a byte
    int max_fetches = 2;                        // at once; more get 429
  };
  // A running fetch's place among max_fetches; given back when destroyed.
  using Slot = std::shared_ptr<void>;

  explicit UrlSources(Options options);

  // Whether `url` may be fetched by what its text says: kForbidden naming
  // --url-source-allow when no pattern allows its host, kBadRequest when it is
  // malformed. (The addresses its host resolves to are checked by open().)
  [[nodiscard]] Result<void> check(std::string_view url) const;
  // A place for one fetch, or kTooManyRequests when max_fetches are running.
  [[nodiscard]] Result<Slot> acquire();
  // Resolves, checks the addresses, connects, sends the GET and reads the
  // answer's head. kBadRequest for a URL that cannot be fetched (with the
  // reason), kForbidden for an address it may not reach, kNotFound when it
  // answers 404. The source's reads fail once the deadline has passed.
  [[nodiscard]] Result<std::unique_ptr<pool::Source>> open(std::string_view url,
                                                           const std::atomic<bool>* stop) const;

  const Options& options() const { return options_; }
  int running() const { return running_->load(std::memory_order_relaxed); }

 private:
  const Options options_;
  std::shared_ptr<std::atomic<int>> running_ = std::make_shared<std::atomic<int>>(0);
};

}  // namespace gswarm::cluster
