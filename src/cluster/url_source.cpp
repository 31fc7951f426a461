#include "cluster/url_source.hpp"

#include <arpa/inet.h>
#include <fnmatch.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "cluster/peer_connection.hpp"
#include "cluster/target.hpp"

namespace gswarm::cluster {
namespace {

// Errors of a source are the client's to fix: 4xx, never a 5xx of this server.
Error unreachable(std::string_view url, const Error& why) {
  return Error{why.code == ErrorCode::kForbidden ? ErrorCode::kForbidden : ErrorCode::kBadRequest,
               fmt::format("cannot fetch the source {}: {}", url, why.message)};
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

struct ParsedUrl {
  std::string authority;  // as written, for the Host header
  std::string host;       // lower case, IPv6 without brackets
  std::uint16_t port = 80;
  std::string path;
};

Result<ParsedUrl> parse_url(std::string_view url) {
  if (url.starts_with("https://")) {
    return make_error(ErrorCode::kBadRequest,
                      "https:// sources are not supported: give an http:// URL, or download the "
                      "file and upload it (gswarm data create --source FILE)");
  }
  // Printable ASCII only: nothing that could end the request line or a header.
  if (url.size() > 8192 ||
      !std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return make_error(ErrorCode::kBadRequest,
                      "the source URL must be printable ASCII without spaces, at most 8 KiB");
  }
  std::string_view rest = url.substr(std::string_view("http://").size());
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (authority.find('@') != std::string_view::npos || authority.empty()) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the source URL {} has no usable host", url));
  }
  const bool has_port = authority.starts_with('[')
                            ? authority.find("]:") != std::string_view::npos
                            : authority.find(':') != std::string_view::npos;
  auto address = parse_address(has_port ? std::string(authority) : std::string(authority) + ":80");
  if (!address) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the source URL {} is malformed: {}", url, address.error().message));
  }
  ParsedUrl parsed;
  parsed.authority = std::string(authority);
  parsed.host = lower(address->host);
  parsed.port = address->port;
  parsed.path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  return parsed;
}

// One --url-source-allow pattern: a host glob and, when given, a port glob.
struct Pattern {
  std::string host;
  std::string port;  // empty: any port
  bool exact() const { return host.find_first_of("*?[") == std::string::npos; }
};

Pattern parse_pattern(std::string_view text) {
  Pattern p;
  if (text.starts_with('[')) {  // [v6] or [v6]:port
    const auto close = text.find(']');
    p.host = lower(text.substr(1, close == std::string_view::npos ? text.npos : close - 1));
    if (close != std::string_view::npos && text.substr(close + 1).starts_with(':')) {
      p.port = std::string(text.substr(close + 2));
    }
  } else if (std::count(text.begin(), text.end(), ':') == 1) {
    const auto colon = text.find(':');
    p.host = lower(text.substr(0, colon));
    p.port = std::string(text.substr(colon + 1));
  } else {
    p.host = lower(text);  // a name, or a bare IPv6 address (any port)
  }
  return p;
}

enum class Match { kNone, kGlob, kExact };

Match match(const std::vector<std::string>& patterns, const ParsedUrl& url) {
  Match best = Match::kNone;
  const std::string port = std::to_string(url.port);
  for (const auto& text : patterns) {
    const Pattern p = parse_pattern(text);
    if (::fnmatch(p.host.c_str(), url.host.c_str(), 0) != 0) continue;
    if (!p.port.empty() && ::fnmatch(p.port.c_str(), port.c_str(), 0) != 0) continue;
    if (p.exact()) return Match::kExact;
    best = Match::kGlob;
  }
  return best;
}

// What kind of address only a name given exactly may lead to: "loopback",
// "link-local", "unspecified", or empty for an ordinary one.
std::string_view special(const sockaddr* sa) {
  auto v4 = [](std::uint32_t host_order) -> std::string_view {
    if ((host_order >> 24) == 127) return "loopback";
    if ((host_order >> 16) == 0xa9fe) return "link-local";
    if ((host_order >> 24) == 0) return "unspecified";
    return {};
  };
  if (sa->sa_family == AF_INET) {
    return v4(ntohl(reinterpret_cast<const sockaddr_in*>(sa)->sin_addr.s_addr));
  }
  if (sa->sa_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_LOOPBACK(&a)) return "loopback";
    if (IN6_IS_ADDR_UNSPECIFIED(&a)) return "unspecified";
    if (IN6_IS_ADDR_LINKLOCAL(&a)) return "link-local";
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      std::uint32_t v;
      std::memcpy(&v, a.s6_addr + 12, 4);
      return v4(ntohl(v));
    }
    return {};
  }
  return "unspecified";
}

Error refused_address(std::string_view url, std::string_view ip, std::string_view kind) {
  return Error{ErrorCode::kForbidden,
               fmt::format("cannot fetch the source {}: {} is a {} address, fetched only from "
                           "a host --url-source-allow names exactly (no wildcard)",
                           url, ip, kind)};
}

// The kind of special address `host` is when it is an IP address written out
// (no name is resolved here); empty otherwise.
std::string_view special_literal(const std::string& host) {
  addrinfo hints{};
  hints.ai_flags = AI_NUMERICHOST;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &found) != 0) return {};
  std::string_view kind = special(found->ai_addr);
  ::freeaddrinfo(found);
  return kind;
}

std::string numeric_host(const sockaddr* sa, socklen_t len) {
  char text[NI_MAXHOST] = {};
  if (::getnameinfo(sa, len, text, sizeof text, nullptr, 0, NI_NUMERICHOST) != 0) return {};
  return text;
}

// `url` parsed, and how `allow` lets it be fetched; kForbidden when it does not.
Result<std::pair<ParsedUrl, Match>> allowed(const std::vector<std::string>& allow,
                                            std::string_view url) {
  auto parsed = parse_url(url);
  if (!parsed) return tl::unexpected(parsed.error());
  if (allow.empty()) {
    return make_error(ErrorCode::kForbidden,
                      "this server fetches no URL sources: start it with --url-source-allow "
                      "HOST[:PORT] (a glob, repeatable) to let it fetch from those hosts, or "
                      "upload the bytes (gswarm data create --source FILE)");
  }
  const Match matched = match(allow, *parsed);
  if (matched == Match::kNone) {
    return make_error(ErrorCode::kForbidden,
                      fmt::format("--url-source-allow does not allow {}:{} (the source {})",
                                  parsed->host, parsed->port, url));
  }
  // An address written out is judged now; a name when it is resolved (open()).
  if (std::string_view kind = special_literal(parsed->host);
      !kind.empty() && matched != Match::kExact) {
    return tl::unexpected(refused_address(url, parsed->host, kind));
  }
  return std::pair{std::move(*parsed), matched};
}

class UrlSource final : public pool::Source {
 public:
  UrlSource(PeerConnection conn, std::uint64_t size, std::string url,
            std::chrono::steady_clock::time_point deadline, std::chrono::seconds limit)
      : conn_(std::move(conn)),
        size_(size),
        url_(std::move(url)),
        deadline_(deadline),
        limit_(limit) {}
  std::uint64_t size() const override { return size_; }
  Result<void> read(std::span<std::byte> out) override {
    // Also between pieces: a fast source never waits, and so never meets the
    // connection's own deadline.
    if (std::chrono::steady_clock::now() >= deadline_) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("the source {} took longer than --source-timeout ({} s)", url_,
                                    limit_.count()));
    }
    if (auto ok = conn_.read_body(out); !ok) return tl::unexpected(unreachable(url_, ok.error()));
    return {};
  }

 private:
  PeerConnection conn_;
  std::uint64_t size_;
  std::string url_;
  std::chrono::steady_clock::time_point deadline_;
  std::chrono::seconds limit_;
};

}  // namespace

bool is_url(std::string_view text) {
  return text.starts_with("http://") || text.starts_with("https://");
}

UrlSources::UrlSources(Options options) : options_(std::move(options)) {}

Result<void> UrlSources::check(std::string_view url) const {
  auto ok = allowed(options_.allow, url);
  if (!ok) return tl::unexpected(ok.error());
  return {};
}

Result<UrlSources::Slot> UrlSources::acquire() {
  std::shared_ptr<std::atomic<int>> running = running_;
  int now = running->load(std::memory_order_relaxed);
  do {
    if (now >= options_.max_fetches) {
      return make_error(ErrorCode::kTooManyRequests,
                        fmt::format("{} URL sources are being fetched, as many as this server "
                                    "fetches at once; retry later",
                                    now));
    }
  } while (!running->compare_exchange_weak(now, now + 1, std::memory_order_relaxed));
  return Slot(running.get(), [running](void*) { running->fetch_sub(1, std::memory_order_relaxed); });
}

Result<std::unique_ptr<pool::Source>> UrlSources::open(std::string_view url,
                                                       const std::atomic<bool>* stop) const {
  auto ok = allowed(options_.allow, url);
  if (!ok) return tl::unexpected(ok.error());
  const auto started = std::chrono::steady_clock::now();
  const ParsedUrl& parsed = ok->first;
  const bool exact = ok->second == Match::kExact;

  // Resolved once: the address checked is the address connected to.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(parsed.port);
  if (int rc = ::getaddrinfo(parsed.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return make_error(ErrorCode::kBadRequest, fmt::format("cannot fetch the source {}: cannot "
                                                          "resolve {}: {}",
                                                          url, parsed.host, ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  Error last{ErrorCode::kBadRequest, fmt::format("cannot fetch the source {}", url)};
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const std::string ip = numeric_host(ai->ai_addr, ai->ai_addrlen);
    if (ip.empty()) continue;
    if (std::string_view kind = special(ai->ai_addr); !kind.empty() && !exact) {
      last = refused_address(url, ip, kind);
      continue;
    }
    auto conn = PeerConnection::open(Address{ip, parsed.port}, options_.idle, stop);
    if (!conn) {
      last = unreachable(url, conn.error());
      continue;
    }
    const auto deadline = started + options_.deadline;
    conn->set_deadline(deadline,
                       fmt::format("--source-timeout ({} s)", options_.deadline.count()));
    const std::string head =
        fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gswarm\r\nAccept: */*\r\n"
                    "Connection: close\r\n\r\n",
                    parsed.path, parsed.authority);
    if (auto ok = conn->send(std::as_bytes(std::span(head))); !ok) {
      return tl::unexpected(unreachable(url, ok.error()));
    }
    auto answer = conn->receive_head();
    if (!answer) return tl::unexpected(unreachable(url, answer.error()));
    if (answer->status == 404 || answer->status == 410) {
      return make_error(ErrorCode::kNotFound,
                        fmt::format("the source {} answered {}: not found", url, answer->status));
    }
    if (answer->status != 200) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("the source {} answered {}{}", url, answer->status,
                                    answer->status / 100 == 3
                                        ? " (redirects are not followed: give the final URL)"
                                        : ""));
    }
    if (answer->chunked || !answer->length) {
      return make_error(ErrorCode::kBadRequest,
                        fmt::format("the source {} did not say its length (no Content-Length): "
                                    "download it and upload the bytes instead",
                                    url));
    }
    return std::unique_ptr<pool::Source>(std::make_unique<UrlSource>(
        std::move(*conn), *answer->length, std::string(url), deadline, options_.deadline));
  }
  return tl::unexpected(last);
}

}  // namespace gswarm::cluster
