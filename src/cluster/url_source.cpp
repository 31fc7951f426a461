#include "cluster/url_source.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "cluster/peer_connection.hpp"
#include "cluster/target.hpp"

namespace gswarm::cluster {
namespace {

// Errors of a source are the client's to fix: 4xx, never a 5xx of this server.
Error unreachable(std::string_view url, const Error& why) {
  return Error{ErrorCode::kBadRequest,
               fmt::format("cannot fetch the source {}: {}", url, why.message)};
}

class UrlSource final : public pool::Source {
 public:
  UrlSource(PeerConnection conn, std::uint64_t size, std::string url)
      : conn_(std::move(conn)), size_(size), url_(std::move(url)) {}
  std::uint64_t size() const override { return size_; }
  Result<void> read(std::span<std::byte> out) override {
    if (auto ok = conn_.read_body(out); !ok) return tl::unexpected(unreachable(url_, ok.error()));
    return {};
  }

 private:
  PeerConnection conn_;
  std::uint64_t size_;
  std::string url_;
};

}  // namespace

bool is_url(std::string_view text) {
  return text.starts_with("http://") || text.starts_with("https://");
}

Result<std::unique_ptr<pool::Source>> open_url_source(std::string_view url,
                                                      std::chrono::milliseconds timeout,
                                                      const std::atomic<bool>* stop) {
  if (url.starts_with("https://")) {
    return make_error(ErrorCode::kBadRequest,
                      "https:// sources are not supported: give an http:// URL, or download the "
                      "file and upload it (gswarm data create --source FILE)");
  }
  std::string_view rest = url.substr(std::string_view("http://").size());
  // Printable ASCII only: nothing that could end the request line or a header.
  if (url.size() > 8192 ||
      !std::all_of(url.begin(), url.end(), [](char c) { return c > 0x20 && c < 0x7f; })) {
    return make_error(ErrorCode::kBadRequest,
                      "the source URL must be printable ASCII without spaces, at most 8 KiB");
  }
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  const std::string path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
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
  auto conn = PeerConnection::open(*address, timeout, stop);
  if (!conn) return tl::unexpected(unreachable(url, conn.error()));
  const std::string head =
      fmt::format("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gswarm\r\nAccept: */*\r\n"
                  "Connection: close\r\n\r\n",
                  path, authority);
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
                                  answer->status / 100 == 3 ? " (redirects are not followed: give "
                                                              "the final URL)"
                                                            : ""));
  }
  if (answer->chunked || !answer->length) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the source {} did not say its length (no Content-Length): "
                                  "download it and upload the bytes instead",
                                  url));
  }
  return std::unique_ptr<pool::Source>(
      std::make_unique<UrlSource>(std::move(*conn), *answer->length, std::string(url)));
}

}  // namespace gswarm::cluster
