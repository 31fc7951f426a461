// open_read_pointer: the client side of the server's local socket
// (src/server/local_socket.hpp, doc/read-pointers.md).
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

namespace gswarm {
namespace {

using nlohmann::json;

constexpr int kTimeoutSeconds = 10;

Error socket_error(std::string_view what) {
  return Error{ErrorCode::kConnection,
               fmt::format("read pointer: cannot {} the server's local socket: {}", what,
                           std::strerror(errno))};
}

// Whether the process at the other end of `fd` is `server`: checked before a
// byte is sent, so that a stale name taken over by someone else learns nothing.
Result<void> check_peer(int fd, const LocalServer& server) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    return tl::unexpected(socket_error("identify the process behind"));
  }
  if (static_cast<std::int64_t>(peer.pid) != server.pid ||
      static_cast<std::int64_t>(peer.uid) != server.uid) {
    return make_error(ErrorCode::kConnection,
                      fmt::format("read pointer: the local socket {} is held by process {} (user "
                                  "{}), not by the server (process {}, user {}): the server has "
                                  "restarted or stopped; nothing was sent. Ask it for a new read "
                                  "pointer",
                                  server.socket, peer.pid, peer.uid, server.pid, server.uid));
  }
  return {};
}

}  // namespace

SharedValue::SharedValue(SharedValue&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      offset_(other.offset_),
      size_(other.size_),
      format_(std::move(other.format_)) {}

SharedValue& SharedValue::operator=(SharedValue&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(other.fd_, -1);
    offset_ = other.offset_;
    size_ = other.size_;
    format_ = std::move(other.format_);
  }
  return *this;
}

SharedValue::~SharedValue() {
  if (fd_ >= 0) ::close(fd_);
}

Result<SharedValue> open_read_pointer(const LocalServer& server, std::string_view key,
                                      std::string_view location, std::string_view token) {
  if (server.pid <= 0 || server.uid < 0) {
    return make_error(ErrorCode::kBadRequest,
                      "read pointer: it does not say which process serves it (\"pid\" and "
                      "\"uid\"), so it cannot be checked: is the server older than this client?");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string path(server.socket);
  if (path.starts_with('@')) path[0] = '\0';  // an abstract name
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return make_error(ErrorCode::kBadRequest, "read pointer: the socket name is empty or too long");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  const auto addr_len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return tl::unexpected(socket_error("create a socket for"));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  timeval tv{kTimeoutSeconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    return tl::unexpected(socket_error("connect to"));
  }
  if (auto ok = check_peer(fd, server); !ok) return tl::unexpected(ok.error());
  json request = {{"key", std::string(key)}};
  if (!location.empty()) request["location"] = std::string(location);
  const std::string credential = token.empty() ? default_token() : std::string(token);
  if (!credential.empty()) request["token"] = credential;
  std::string line = request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  // A failed send may still have an answer waiting (a refusal): read it.
  const bool sent =
      ::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size());
  const int send_errno = errno;

  // The answer: one line, with the descriptor on its first bytes.
  std::string answer;
  int received_fd = -1;
  while (answer.find('\n') == std::string::npos && answer.size() < 65536) {
    char buf[4096];
    iovec iov{buf, sizeof buf};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS && received_fd < 0) {
        std::memcpy(&received_fd, CMSG_DATA(c), sizeof(int));
      }
    }
    answer.append(buf, static_cast<std::size_t>(n));
  }
  SharedValue owner(received_fd, 0, 0, "");  // closes the descriptor on every error path
  json j = json::parse(answer.substr(0, answer.find('\n')), nullptr, false);
  if (!j.is_object() && !sent) {
    errno = send_errno;
    return tl::unexpected(socket_error("write to"));
  }
  if (!j.is_object()) {
    return make_error(ErrorCode::kProtocol,
                      "read pointer: the local socket answered nothing usable");
  }
  if (j.contains("detail")) {
    return make_error(error_code_from_name(j.value("code", std::string("internal"))),
                      j.value("detail", std::string()));
  }
  if (owner.fd() < 0 || !j.contains("size") || !j["size"].is_number_unsigned() ||
      !j.contains("offset") || !j["offset"].is_number_unsigned()) {
    return make_error(ErrorCode::kProtocol, "read pointer: the answer carried no descriptor");
  }
  return SharedValue(owner.release(), j["offset"].get<std::uint64_t>(),
                     j["size"].get<std::uint64_t>(), j.value("format", std::string()));
}

}  // namespace gswarm
