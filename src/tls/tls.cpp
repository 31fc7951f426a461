#include "tls/tls.hpp"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>

#include <fmt/format.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

namespace gswarm::tls {
namespace {

constexpr std::size_t kReadAhead = 256 << 10;

// The oldest errors OpenSSL queued on this thread, as one line.
std::string openssl_errors() {
  std::string text;
  while (unsigned long e = ERR_get_error()) {
    char line[256];
    ERR_error_string_n(e, line, sizeof line);
    if (!text.empty()) text += "; ";
    text += line;
  }
  return text.empty() ? std::string("unknown TLS error") : text;
}

// The socket under a Channel, written with MSG_NOSIGNAL (a peer that went away
// is an error to report, not a SIGPIPE that ends the process) and MSG_DONTWAIT
// (the caller does the waiting, whatever the descriptor's own mode).
int socket_write(BIO* bio, const char* data, int size) {
  const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::send(fd, data, static_cast<std::size_t>(size), MSG_NOSIGNAL | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_write(bio);
  }
  return static_cast<int>(n);
}

int socket_read(BIO* bio, char* data, int size) {
  const int fd = static_cast<int>(reinterpret_cast<std::intptr_t>(BIO_get_data(bio)));
  BIO_clear_retry_flags(bio);
  const ssize_t n = ::recv(fd, data, static_cast<std::size_t>(size), MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
    BIO_set_retry_read(bio);
  }
  return static_cast<int>(n);
}

long socket_ctrl(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }

int socket_create(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

const BIO_METHOD* socket_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "gswarm socket");
    BIO_meth_set_write(m, socket_write);
    BIO_meth_set_read(m, socket_read);
    BIO_meth_set_ctrl(m, socket_ctrl);
    BIO_meth_set_create(m, socket_create);
    return m;
  }();
  return method;
}

bool is_ip_address(const std::string& host) {
  unsigned char scratch[sizeof(in6_addr)];
  return ::inet_pton(AF_INET, host.c_str(), scratch) == 1 ||
         ::inet_pton(AF_INET6, host.c_str(), scratch) == 1;
}

}  // namespace

Result<std::shared_ptr<ClientContext>> ClientContext::create(const std::string& ca_file) {
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == nullptr) return make_error(ErrorCode::kInternal, openssl_errors());
  std::shared_ptr<ClientContext> context(new ClientContext(ctx));
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // A server that closes without TLS's goodbye has still ended the stream.
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
  // Whole records and several at a time per recv(), not a header and a body.
  SSL_CTX_set_read_ahead(ctx, 1);
  SSL_CTX_set_default_read_buffer_len(ctx, kReadAhead);
  ERR_clear_error();
  const int loaded = ca_file.empty() ? SSL_CTX_set_default_verify_paths(ctx)
                                     : SSL_CTX_load_verify_locations(ctx, ca_file.c_str(), nullptr);
  if (loaded != 1) {
    return make_error(
        ErrorCode::kBadRequest,
        fmt::format("cannot use {} as the certificates to trust: {}",
                    ca_file.empty() ? std::string("the system's") : ca_file, openssl_errors()));
  }
  return context;
}

ClientContext::~ClientContext() { SSL_CTX_free(ctx_); }

Result<std::unique_ptr<Channel>> Channel::connect(const ClientContext& context, int fd,
                                                  const std::string& host) {
  SSL* ssl = SSL_new(context.native());
  if (ssl == nullptr) return make_error(ErrorCode::kInternal, openssl_errors());
  std::unique_ptr<Channel> channel(new Channel(ssl));
  BIO* bio = BIO_new(socket_method());
  if (bio == nullptr) return make_error(ErrorCode::kInternal, openssl_errors());
  BIO_set_data(bio, reinterpret_cast<void*>(static_cast<std::intptr_t>(fd)));
  SSL_set_bio(ssl, bio, bio);
  SSL_set_connect_state(ssl);
  const bool ok = is_ip_address(host)
                      ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) == 1
                      : SSL_set1_host(ssl, host.c_str()) == 1 &&
                            SSL_set_tlsext_host_name(ssl, host.c_str()) == 1;
  if (!ok) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("cannot check a certificate for host '{}'", host));
  }
  return channel;
}

Channel::~Channel() { SSL_free(ssl_); }

Step Channel::result(int rc, std::string_view what) {
  Step step;
  if (rc > 0) {
    step.bytes = static_cast<std::size_t>(rc);
    return step;
  }
  switch (SSL_get_error(ssl_, rc)) {
    case SSL_ERROR_WANT_READ:
      return Step{Step::State::kWait, 0, POLLIN, {}};
    case SSL_ERROR_WANT_WRITE:
      return Step{Step::State::kWait, 0, POLLOUT, {}};
    case SSL_ERROR_ZERO_RETURN:
      return step;  // the peer closed
    case SSL_ERROR_SYSCALL:
      // With SSL_OP_IGNORE_UNEXPECTED_EOF a plain close reads as ZERO_RETURN;
      // here the socket itself failed.
      return Step{
          Step::State::kFailed, 0, 0,
          fmt::format("{}: {}", what, errno != 0 ? std::strerror(errno) : "connection lost"),
          errno != 0 ? errno : ECONNRESET};
    default: {
      const bool not_tls = ERR_GET_REASON(ERR_peek_error()) == SSL_R_WRONG_VERSION_NUMBER;
      std::string reason = openssl_errors();
      if (not_tls) reason = "the other side does not speak TLS (" + reason + ")";
      if (const long verify = SSL_get_verify_result(ssl_); verify != X509_V_OK) {
        reason = fmt::format(
            "the server's certificate is not trusted: {} (give the CA that "
            "signed it with --tls-ca)",
            X509_verify_cert_error_string(verify));
      }
      return Step{Step::State::kFailed, 0, 0, fmt::format("{}: {}", what, reason)};
    }
  }
}

Step Channel::handshake() {
  ERR_clear_error();
  errno = 0;
  const int rc = SSL_do_handshake(ssl_);
  if (rc == 1) return Step{};
  Step step = result(rc, "TLS handshake failed");
  if (step.state == Step::State::kDone) {  // closed during the handshake
    return Step{Step::State::kFailed, 0, 0,
                "TLS handshake failed: the server closed the connection (does it use TLS?)"};
  }
  return step;
}

Step Channel::write(const void* data, std::size_t size) {
  ERR_clear_error();
  errno = 0;
  const int n = SSL_write(ssl_, data, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
  return result(n, "TLS write failed");
}

Step Channel::read(void* data, std::size_t size) {
  ERR_clear_error();
  errno = 0;
  const int n = SSL_read(ssl_, data, static_cast<int>(std::min<std::size_t>(size, 1 << 30)));
  return result(n, "TLS read failed");
}

}  // namespace gswarm::tls
