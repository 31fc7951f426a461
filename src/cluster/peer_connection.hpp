// PeerConnection: one HTTP/1.1 connection from this server to another, for
// sends. Blocking, on the calling thread (a mover), with a deadline that
// restarts whenever bytes move: a peer that stops reading or answering fails
// the call within `timeout` instead of holding the thread.
#pragma once

#include <atomic>
#include <memory>
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

#include "cluster/target.hpp"
#include "tls/tls.hpp"

namespace gswarm::cluster {

struct PeerAnswer {
  unsigned status = 0;
  std::string body;
};

// The head of an answer whose body is read in pieces (read_body()).
struct AnswerHead {
  unsigned status = 0;
  std::optional<std::uint64_t> length;  // Content-Length; nullopt when not given
  bool chunked = false;
};

class PeerConnection {
 public:
  // Connects within `timeout`. kPeerFailed (with the reason) when the peer
  // cannot be reached, kPeerTimeout when it does not answer in time. Every wait
  // also ends, with kUnavailable, soon after `*stop` becomes true (the server
  // is stopping). With `tls`, speaks TLS, checking the peer's certificate
  // against address.host.
  [[nodiscard]] static Result<PeerConnection> open(const Address& address,
                                                   std::chrono::milliseconds timeout,
                                                   const std::atomic<bool>* stop = nullptr,
                                                   const tls::ClientContext* tls = nullptr);
  PeerConnection(PeerConnection&& other) noexcept;
  PeerConnection& operator=(PeerConnection&& other) noexcept;
  ~PeerConnection();

  // Sends a request head: method, target, Content-Length and the extra
  // header lines (each ending in "\r\n"). The body follows with send()/send_file().
  [[nodiscard]] Result<void> send_head(std::string_view method, std::string_view target,
                                       std::string_view content_type, std::uint64_t length,
                                       std::string_view extra_headers = {});
  [[nodiscard]] Result<void> send(std::span<const std::byte> bytes);
  // Sends `length` bytes of file `fd` from `offset` without copying them through
  // user space (with TLS: through a buffer, to be encrypted).
  [[nodiscard]] Result<void> send_file(int fd, std::uint64_t offset, std::uint64_t length);
  // Reads one answer (bodies over 1 MiB are refused: control answers are small).
  [[nodiscard]] Result<PeerAnswer> receive();
  // The same, waiting at most `wait` for it: an answer the peer sent before
  // the connection broke (it is still readable).
  [[nodiscard]] Result<PeerAnswer> receive_within(std::chrono::milliseconds wait);

  // Reads an answer's head only; its body follows through read_body().
  [[nodiscard]] Result<AnswerHead> receive_head();
  // Fills `out` with the next bytes of the body.
  [[nodiscard]] Result<void> read_body(std::span<std::byte> out);

  // A whole request with a small body, and its answer.
  [[nodiscard]] Result<PeerAnswer> call(std::string_view method, std::string_view target,
                                        std::string_view json_body,
                                        std::string_view extra_headers = {});

  const Address& address() const { return address_; }
  int native_handle() const { return fd_; }
  // An end to every wait, however the bytes trickle: past it a wait fails with
  // kPeerTimeout naming `reason` (e.g. the option that set it).
  void set_deadline(std::chrono::steady_clock::time_point deadline, std::string reason) {
    deadline_ = deadline;
    deadline_reason_ = std::move(reason);
  }

 private:
  PeerConnection(int fd, Address address, std::chrono::milliseconds timeout,
                 const std::atomic<bool>* stop)
      : fd_(fd), address_(std::move(address)), timeout_(timeout), stop_(stop) {}
  // Waits until the socket is ready for `events`; kPeerTimeout after timeout_.
  [[nodiscard]] Result<void> wait(short events);
  [[nodiscard]] Error failure(std::string_view what, int err) const;
  // Receives at least one byte into `into`, waiting as wait() does; an error
  // naming `when` if the peer closes the connection.
  [[nodiscard]] Result<std::size_t> receive_some(std::span<std::byte> into, std::string_view when);
  [[nodiscard]] Result<void> start_tls(const tls::ClientContext& context);

  int fd_ = -1;
  Address address_;
  std::chrono::milliseconds timeout_;
  const std::atomic<bool>* stop_ = nullptr;
  std::optional<std::chrono::steady_clock::time_point> deadline_;  // set_deadline()
  std::string deadline_reason_;
  std::string pending_;  // bytes received after the last answer
  std::unique_ptr<tls::Channel> tls_;  // null: plain TCP
};

// Whether a server listens at `address` and answers GET /health with 200
// within `timeout` (over TLS with `tls`).
bool answers_health(const Address& address, std::chrono::milliseconds timeout,
                    const tls::ClientContext* tls = nullptr);

// The error a peer's error answer stands for: its code and message, with the
// peer named ("target 10.0.0.2:9015: ...").
Error peer_error(const Address& address, const PeerAnswer& answer);

}  // namespace gswarm::cluster
