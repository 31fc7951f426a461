#include "server/local_socket.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>
#include <boost/asio/read_until.hpp>

#include "server/access.hpp"

namespace gswarm::server {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;
using nlohmann::json;

namespace {

constexpr int kMaxBusy = 64;
// Exchanges one user may have in flight: the server's user cannot take root's
// slots, nor the other way round.
constexpr int kMaxBusyPerUser = kMaxBusy / 2;
constexpr std::size_t kMaxRequest = 16 * 1024;
constexpr int kTimeoutSeconds = 5;

std::string error_line(ErrorCode code, std::string_view detail) {
  return json({{"detail", detail}, {"code", error_code_name(code)}})
             .dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n";
}

// Limits the next blocking receive or send on `fd` to what is left until `end`;
// false when nothing is left.
bool limit_to(int fd, std::chrono::steady_clock::time_point end) {
  auto left =
      std::chrono::duration_cast<std::chrono::microseconds>(end - std::chrono::steady_clock::now());
  if (left.count() <= 0) return false;
  timeval tv{static_cast<time_t>(left.count() / 1000000),
             static_cast<suseconds_t>(left.count() % 1000000)};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  return true;
}

// The user of the process at the other end of `fd`; nullopt when unknown.
std::optional<uid_t> peer_user(int fd) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) return std::nullopt;
  return peer.uid;
}

// Tells a process of another user why it is turned away, without waiting for
// it (nothing of its request is read).
void refuse_user(int fd) {
  static const std::string line = error_line(
      ErrorCode::kForbidden, "read pointers are served only to processes of the server's user");
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Answers one request line on a connected, blocking socket, within what is left
// of the exchange's time.
void answer(int fd, const std::string& request, std::chrono::steady_clock::time_point end,
            Store& store, const std::string& token) {
  if (!limit_to(fd, end)) return;
  auto reply = [fd](const std::string& line, int passed_fd = -1) {
    iovec iov{const_cast<char*>(line.data()), line.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (passed_fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof control;
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &passed_fd, sizeof(int));
    }
    (void)::sendmsg(fd, &msg, MSG_NOSIGNAL);
  };
  if (request.size() > kMaxRequest) {
    return reply(error_line(ErrorCode::kTooLarge, "request line too long"));
  }
  json j = json::parse(request.substr(0, request.find('\n')), nullptr, false);
  if (!token.empty()) {
    const bool has = j.is_object() && j.contains("token") && j["token"].is_string();
    if (!has || !token_matches(token, j["token"].get_ref<const std::string&>())) {
      return reply(error_line(ErrorCode::kUnauthorized,
                              has ? "the token is not this server's (its --token)"
                                  : "this server needs a token: send {\"token\": ...} with the "
                                    "request (GSWARM_TOKEN)"));
    }
  }
  if (!j.is_object() || !j.contains("key") || !j["key"].is_string() ||
      (j.contains("location") && !j["location"].is_string() && !j["location"].is_null())) {
    return reply(error_line(ErrorCode::kBadRequest,
                            R"(expected one line {"key": "...", "location": "dram"})"));
  }
  std::optional<Location> where;
  if (j.contains("location") && j["location"].is_string()) {
    auto parsed = Location::parse(j["location"].get<std::string>());
    if (!parsed) return reply(error_line(parsed.error().code, parsed.error().message));
    where = *parsed;
  }
  const std::string key = j["key"].get<std::string>();
  auto exported = store.export_value(key, where);
  if (!limit_to(fd, end)) return;
  if (!exported) return reply(error_line(exported.error().code, exported.error().message));
  auto described = store.location(key);
  json answer = {{"status", "success"},
                 {"offset", exported->offset},
                 {"size", exported->size},
                 {"format", described ? described->format : std::string("bytes")}};
  reply(answer.dump(-1, ' ', false, json::error_handler_t::replace) + "\n", exported->fd.get());
}

std::string random_name() {
  std::random_device rd;
  return fmt::format("gswarm-{}-{:08x}{:08x}", ::getpid(), rd(), rd());
}

}  // namespace

// One client's exchange: its request line is read on the event loop (a silent
// client holds a slot, never a thread), then answered on the pool.
struct LocalSocket::Exchange {
  Exchange(local::socket s, uid_t u)
      : socket(std::move(s)),
        deadline(socket.get_executor()),
        user(u),
        end(std::chrono::steady_clock::now() + std::chrono::seconds(kTimeoutSeconds)) {}
  local::socket socket;
  asio::steady_timer deadline;
  std::string request;
  const uid_t user;
  const std::chrono::steady_clock::time_point end;
};

LocalSocket::LocalSocket(asio::io_context& io, Store& store, std::string name, std::string token)
    : store_(store),
      name_(std::move(name)),
      token_(std::move(token)),
      acceptor_(io),
      retry_(io),
      slots_(std::make_shared<Slots>()) {}

Result<std::unique_ptr<LocalSocket>> LocalSocket::open(asio::io_context& io, Store& store,
                                                       std::string token) {
  const std::string name = random_name();
  std::unique_ptr<LocalSocket> socket(new LocalSocket(io, store, "@" + name, std::move(token)));
  boost::system::error_code ec;
  local::endpoint endpoint(std::string(1, '\0') + name);
  socket->acceptor_.open(local(), ec);
  if (!ec) socket->acceptor_.bind(endpoint, ec);
  if (!ec) socket->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return make_error(
        ErrorCode::kIo,
        fmt::format("cannot open the local socket for read pointers: {}", ec.message()));
  }
  return socket;
}

void LocalSocket::start() { accept_next(); }

void LocalSocket::stop() {
  boost::system::error_code ignored;
  acceptor_.close(ignored);
  retry_.cancel();
  for (const auto& exchange : exchanges_) exchange->socket.close(ignored);
}

bool LocalSocket::take_slot(uid_t user) {
  std::lock_guard lock(slots_->mutex);
  if (slots_->total >= kMaxBusy) return false;
  int& mine = slots_->by_user[user];
  if (mine >= kMaxBusyPerUser) return false;
  ++mine;
  ++slots_->total;
  return true;
}

void LocalSocket::Slots::give_back(uid_t user) {
  std::lock_guard lock(mutex);
  --by_user[user];
  --total;
}

void LocalSocket::accept_next() {
  acceptor_.async_accept([this](boost::system::error_code ec, local::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      spdlog::debug("local socket: accept failed: {}", ec.message());
      retry_.expires_after(std::chrono::milliseconds(100));
      retry_.async_wait([this](boost::system::error_code e) {
        if (!e) accept_next();
      });
      return;
    }
    // Who connected is known before anything is read: other users are turned
    // away at once and hold no slot, so they cannot keep the socket busy.
    const auto user = peer_user(socket.native_handle());
    if (!user || (*user != ::geteuid() && *user != 0)) {
      refuse_user(socket.native_handle());
    } else if (take_slot(*user)) {  // otherwise closing the socket is the answer
      read_request(std::make_shared<Exchange>(std::move(socket), *user));
    }
    accept_next();
  });
}

void LocalSocket::read_request(std::shared_ptr<Exchange> exchange) {
  exchanges_.insert(exchange);
  exchange->deadline.expires_at(exchange->end);
  exchange->deadline.async_wait([exchange](boost::system::error_code ec) {
    boost::system::error_code ignored;
    if (!ec) exchange->socket.close(ignored);  // too slow: the read below ends
  });
  asio::async_read_until(
      exchange->socket, asio::dynamic_buffer(exchange->request, kMaxRequest + 1), '\n',
      [this, exchange](boost::system::error_code ec, std::size_t) {
        exchange->deadline.cancel();
        exchanges_.erase(exchange);
        // A line over the limit is answered (asio stops at the buffer's size).
        if (ec && !(ec == asio::error::not_found && exchange->request.size() > kMaxRequest)) {
          slots_->give_back(exchange->user);
          return;
        }
        boost::system::error_code ignored;
        exchange->socket.native_non_blocking(false, ignored);
        const int fd = exchange->socket.release(ignored);
        pool_.submit([fd, request = std::move(exchange->request), end = exchange->end,
                      user = exchange->user, &store = store_, &token = token_, slots = slots_] {
          answer(fd, request, end, store, token);
          ::close(fd);
          slots->give_back(user);
        });
      });
}

}  // namespace gswarm::server
