// TLS for the blocking sides of gswarm's connections (the C++ client, and this
// server's own requests to other servers), on OpenSSL. The server's accepting
// side uses Boost.Asio's SSL stream with a context made by server_context().
//
// A Channel runs TLS over a connected socket the caller owns and waits on:
// its calls never block; they move what they can and otherwise say which
// readiness (POLLIN or POLLOUT) to wait for, so the caller keeps its own
// deadlines and stop checks around poll().
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include <gswarm/error.hpp>

using SSL = struct ssl_st;
using SSL_CTX = struct ssl_ctx_st;

namespace gswarm::tls {

// Certificates a client trusts. Shared by every Channel made from it; safe to
// use from several threads.
class ClientContext {
 public:
  // `ca_file`: a PEM file of the certificates to trust (a private CA, or the
  // server's own self-signed certificate); empty: the system's (/etc/ssl/certs).
  // kBadRequest with the reason when the file cannot be used.
  [[nodiscard]] static Result<std::shared_ptr<ClientContext>> create(const std::string& ca_file);
  ~ClientContext();
  ClientContext(const ClientContext&) = delete;
  ClientContext& operator=(const ClientContext&) = delete;

  SSL_CTX* native() const { return ctx_; }

 private:
  explicit ClientContext(SSL_CTX* ctx) : ctx_(ctx) {}
  SSL_CTX* ctx_;
};

// The outcome of one step: done, wait for `events` and call again, or failed.
struct Step {
  enum class State { kDone, kWait, kFailed } state = State::kDone;
  std::size_t bytes = 0;  // kDone: bytes moved; 0 on a read: the peer closed
  short events = 0;       // kWait: what to poll() for
  std::string error;      // kFailed: why, for a message
  int sys_errno = 0;      // kFailed: the socket's errno when the socket itself failed
};

class Channel {
 public:
  // TLS as a client on the connected socket `fd` (not owned), checking that the
  // server's certificate is valid for `host` (a name or an IP address).
  [[nodiscard]] static Result<std::unique_ptr<Channel>> connect(const ClientContext& context,
                                                                int fd, const std::string& host);
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  Step handshake();
  // Like send() and recv() on a non-blocking socket. Write: call again with the
  // same bytes after a kWait. Read: bytes already decrypted are returned at once.
  Step write(const void* data, std::size_t size);
  Step read(void* data, std::size_t size);

 private:
  explicit Channel(SSL* ssl) : ssl_(ssl) {}
  Step result(int rc, std::string_view what);
  SSL* ssl_;
};

// The largest plaintext one TLS record carries: writes are split there anyway,
// so small pieces are best gathered up to it before a write.
inline constexpr std::size_t kRecordSize = 16 * 1024;

}  // namespace gswarm::tls
