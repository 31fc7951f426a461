#include "cluster/peer_connection.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

namespace gswarm::cluster {
namespace {

namespace http = boost::beast::http;

constexpr std::size_t kMaxAnswer = 1 << 20;
constexpr std::size_t kReceiveChunk = 64 << 10;
constexpr std::size_t kFileChunk = 1 << 20;  // a value file read at a time, to send over TLS

}  // namespace

Result<PeerConnection> PeerConnection::open(const Address& address,
                                            std::chrono::milliseconds timeout,
                                            const std::atomic<bool>* stop,
                                            const tls::ClientContext* tls) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(address.port);
  if (int rc = ::getaddrinfo(address.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return make_error(ErrorCode::kPeerFailed,
                      fmt::format("cannot resolve {}: {}", address.text(), ::gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(found, ::freeaddrinfo);
  Error last{ErrorCode::kPeerFailed, fmt::format("cannot connect to {}", address.text())};
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    int fd =
        ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last.message = fmt::format("cannot connect to {}: {}", address.text(), std::strerror(errno));
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    PeerConnection conn(fd, address, timeout, stop);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
      if (errno != EINPROGRESS) {
        last = conn.failure("cannot connect to", errno);
        continue;
      }
      if (auto ready = conn.wait(POLLOUT); !ready) {
        last = ready.error();
        continue;
      }
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
      if (err != 0) {
        last = conn.failure("cannot connect to", err);
        continue;
      }
    }
    if (tls != nullptr) {
      if (auto secured = conn.start_tls(*tls); !secured) return tl::unexpected(secured.error());
    }
    return conn;
  }
  return tl::unexpected(last);
}

PeerConnection::PeerConnection(PeerConnection&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      address_(std::move(other.address_)),
      timeout_(other.timeout_),
      stop_(other.stop_),
      deadline_(other.deadline_),
      deadline_reason_(std::move(other.deadline_reason_)),
      pending_(std::move(other.pending_)),
      tls_(std::move(other.tls_)) {}

PeerConnection& PeerConnection::operator=(PeerConnection&& other) noexcept {
  std::swap(fd_, other.fd_);
  std::swap(address_, other.address_);
  std::swap(timeout_, other.timeout_);
  std::swap(stop_, other.stop_);
  std::swap(deadline_, other.deadline_);
  std::swap(deadline_reason_, other.deadline_reason_);
  std::swap(pending_, other.pending_);
  std::swap(tls_, other.tls_);
  return *this;
}

PeerConnection::~PeerConnection() {
  tls_.reset();  // before the socket it writes to
  if (fd_ >= 0) ::close(fd_);
}

Result<void> PeerConnection::start_tls(const tls::ClientContext& context) {
  auto channel = tls::Channel::connect(context, fd_, address_.host);
  if (!channel) return tl::unexpected(channel.error());
  for (;;) {
    tls::Step step = (*channel)->handshake();
    if (step.state == tls::Step::State::kDone) break;
    if (step.state == tls::Step::State::kFailed) {
      return make_error(ErrorCode::kPeerFailed, fmt::format("{}: {}", address_.text(), step.error));
    }
    if (auto ready = wait(step.events); !ready) return ready;
  }
  tls_ = std::move(*channel);
  return {};
}

Error PeerConnection::failure(std::string_view what, int err) const {
  return Error{ErrorCode::kPeerFailed,
               fmt::format("{} {}: {}", what, address_.text(), std::strerror(err))};
}

Result<void> PeerConnection::wait(short events) {
  // In slices, so that a stopping server is noticed within one.
  constexpr std::chrono::milliseconds kSlice{250};
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  pollfd p{fd_, events, 0};
  for (;;) {
    if (stop_ != nullptr && stop_->load(std::memory_order_relaxed)) {
      return make_error(ErrorCode::kUnavailable, "the server is shutting down");
    }
    const auto now = std::chrono::steady_clock::now();
    if (deadline_ && now >= *deadline_) {
      return make_error(ErrorCode::kPeerTimeout,
                        fmt::format("{} took longer than {}", address_.text(), deadline_reason_));
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now);
    if (left.count() <= 0) {
      return make_error(ErrorCode::kPeerTimeout, fmt::format("{} made no progress for {} ms",
                                                             address_.text(), timeout_.count()));
    }
    if (deadline_) {
      left = std::min(left, std::chrono::ceil<std::chrono::milliseconds>(*deadline_ - now));
    }
    int n = ::poll(&p, 1, static_cast<int>(std::min(left, kSlice).count()));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return tl::unexpected(failure("cannot wait for", errno));
  }
}

Result<void> PeerConnection::send_head(std::string_view method, std::string_view target,
                                       std::string_view content_type, std::uint64_t length,
                                       std::string_view extra_headers) {
  std::string head =
      fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{}\r\n",
                  method, target, address_.text(), content_type, length, extra_headers);
  return send(std::as_bytes(std::span(head)));
}

Result<void> PeerConnection::send(std::span<const std::byte> bytes) {
  while (tls_ && !bytes.empty()) {
    tls::Step step = tls_->write(bytes.data(), bytes.size());
    if (step.state == tls::Step::State::kDone) {
      bytes = bytes.subspan(step.bytes);
    } else if (step.state == tls::Step::State::kWait) {
      if (auto ready = wait(step.events); !ready) return ready;
    } else {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("lost the connection to {}: {}", address_.text(), step.error));
    }
  }
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes = bytes.subspan(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (auto ready = wait(POLLOUT); !ready) return ready;
    } else if (n < 0 && errno != EINTR) {
      return tl::unexpected(failure("lost the connection to", errno));
    }
  }
  return {};
}

Result<void> PeerConnection::send_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (tls_) {
    std::vector<std::byte> buffer(
        static_cast<std::size_t>(std::min<std::uint64_t>(length, kFileChunk)));
    while (length > 0) {
      const std::size_t step =
          static_cast<std::size_t>(std::min<std::uint64_t>(length, buffer.size()));
      const ssize_t n = ::pread(fd, buffer.data(), step, static_cast<off_t>(offset));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0)
        return make_error(ErrorCode::kIo,
                          fmt::format("cannot read a value file: {}", std::strerror(errno)));
      if (n == 0)
        return make_error(ErrorCode::kIo, "a value file ended early while it was being sent");
      if (auto sent = send(std::span(buffer).first(static_cast<std::size_t>(n))); !sent)
        return sent;
      offset += static_cast<std::uint64_t>(n);
      length -= static_cast<std::uint64_t>(n);
    }
    return {};
  }
  off_t at = static_cast<off_t>(offset);
  while (length > 0) {
    const std::size_t step = static_cast<std::size_t>(std::min<std::uint64_t>(length, 1ull << 30));
    ssize_t n = ::sendfile(fd_, fd, &at, step);
    if (n > 0) {
      length -= static_cast<std::uint64_t>(n);
    } else if (n == 0) {
      return make_error(ErrorCode::kIo, "a value file ended early while it was being sent");
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto ready = wait(POLLOUT); !ready) return ready;
    } else if (errno != EINTR) {
      return tl::unexpected(failure("lost the connection to", errno));
    }
  }
  return {};
}

Result<PeerAnswer> PeerConnection::receive() {
  http::response_parser<http::string_body> parser;
  parser.eager(true);
  parser.body_limit(kMaxAnswer);
  boost::beast::error_code ec;
  auto feed = [&]() -> bool {  // false: stop on error
    while (!pending_.empty() && !parser.is_done()) {
      std::size_t used = parser.put(boost::asio::buffer(pending_), ec);
      pending_.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
        return true;
      }
      if (ec) return false;
      if (used == 0) return true;
    }
    return true;
  };
  if (!feed()) {
    return make_error(ErrorCode::kPeerFailed, fmt::format("{} answered something unreadable: {}",
                                                          address_.text(), ec.message()));
  }
  std::byte chunk[kReceiveChunk];
  while (!parser.is_done()) {
    auto n = receive_some(chunk, "before answering");
    if (!n) return tl::unexpected(n.error());
    pending_.append(reinterpret_cast<const char*>(chunk), *n);
    if (!feed()) {
      return make_error(ErrorCode::kPeerFailed, fmt::format("{} answered something unreadable: {}",
                                                            address_.text(), ec.message()));
    }
  }
  auto message = parser.release();
  return PeerAnswer{message.result_int(), std::move(message.body())};
}

Result<PeerAnswer> PeerConnection::receive_within(std::chrono::milliseconds wait) {
  const auto usual = std::exchange(timeout_, std::min(wait, timeout_));
  auto answer = receive();
  timeout_ = usual;
  return answer;
}

Result<AnswerHead> PeerConnection::receive_head() {
  http::response_parser<http::empty_body> parser;  // not eager: put() stops after the head
  parser.body_limit(boost::none);
  boost::beast::error_code ec;
  std::byte chunk[kReceiveChunk];
  while (!parser.is_header_done()) {
    if (!pending_.empty()) {
      std::size_t used = parser.put(boost::asio::buffer(pending_), ec);
      pending_.erase(0, used);
      if (ec == http::error::need_more) {
        ec = {};
      } else if (ec) {
        return make_error(
            ErrorCode::kPeerFailed,
            fmt::format("{} answered something unreadable: {}", address_.text(), ec.message()));
      }
      if (parser.is_header_done()) break;
      if (used > 0 && !pending_.empty()) continue;
    }
    if (pending_.size() > kMaxAnswer) {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("{} answered with headers over 1 MiB", address_.text()));
    }
    auto n = receive_some(chunk, "before answering");
    if (!n) return tl::unexpected(n.error());
    pending_.append(reinterpret_cast<const char*>(chunk), *n);
  }
  AnswerHead head;
  head.status = parser.get().result_int();
  head.chunked = parser.chunked();
  if (auto length = parser.content_length()) head.length = *length;
  return head;
}

Result<void> PeerConnection::read_body(std::span<std::byte> out) {
  const std::size_t buffered = std::min(out.size(), pending_.size());
  std::memcpy(out.data(), pending_.data(), buffered);
  pending_.erase(0, buffered);
  for (std::size_t got = buffered; got < out.size();) {
    auto n = receive_some(out.subspan(got), "before the whole body arrived");
    if (!n) return tl::unexpected(n.error());
    got += *n;
  }
  return {};
}

Result<std::size_t> PeerConnection::receive_some(std::span<std::byte> into, std::string_view when) {
  while (tls_) {
    tls::Step step = tls_->read(into.data(), into.size());
    if (step.state == tls::Step::State::kDone && step.bytes > 0) return step.bytes;
    if (step.state == tls::Step::State::kDone) {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("{} closed the connection {}", address_.text(), when));
    }
    if (step.state == tls::Step::State::kFailed) {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("lost the connection to {}: {}", address_.text(), step.error));
    }
    if (auto ready = wait(step.events); !ready) return tl::unexpected(ready.error());
  }
  while (true) {
    ssize_t n = ::recv(fd_, into.data(), into.size(), 0);
    if (n > 0) return static_cast<std::size_t>(n);
    if (n == 0) {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("{} closed the connection {}", address_.text(), when));
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (auto ready = wait(POLLIN); !ready) return tl::unexpected(ready.error());
    } else if (errno != EINTR) {
      return tl::unexpected(failure("lost the connection to", errno));
    }
  }
}

Result<PeerAnswer> PeerConnection::call(std::string_view method, std::string_view target,
                                        std::string_view json_body,
                                        std::string_view extra_headers) {
  if (auto ok = send_head(method, target, "application/json", json_body.size(), extra_headers);
      !ok) {
    return tl::unexpected(ok.error());
  }
  if (auto ok = send(std::as_bytes(std::span(json_body))); !ok) return tl::unexpected(ok.error());
  return receive();
}

bool answers_health(const Address& address, std::chrono::milliseconds timeout,
                    const tls::ClientContext* tls) {
  auto conn = PeerConnection::open(address, timeout, nullptr, tls);
  if (!conn) return false;
  auto health = conn->call("GET", "/health", "");
  return health && health->status == 200;
}

Error peer_error(const Address& address, const PeerAnswer& answer) {
  ErrorCode code = ErrorCode::kPeerFailed;
  std::string detail = answer.body.substr(0, 300);
  auto parsed = nlohmann::json::parse(answer.body, nullptr, false);
  if (parsed.is_object() && parsed.contains("detail") && parsed["detail"].is_string()) {
    detail = parsed["detail"].get<std::string>();
    if (parsed.contains("code") && parsed["code"].is_string()) {
      code = error_code_from_name(parsed["code"].get<std::string>());
      if (code == ErrorCode::kInternal) code = ErrorCode::kPeerFailed;
    }
  }
  // The caller's own credentials were fine: it is this server the target refused.
  if (code == ErrorCode::kUnauthorized || code == ErrorCode::kForbidden) {
    code = ErrorCode::kPeerFailed;
    detail += " (the servers of a cluster share one --token)";
  }
  return Error{code,
               fmt::format("target {} answered {}: {}", address.text(), answer.status, detail)};
}

}  // namespace gswarm::cluster
