#include <gswarm/client.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <utility>

#include <fmt/format.h>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "core/key.hpp"
#include "tls/tls.hpp"

namespace gswarm {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using std::chrono::milliseconds;

constexpr std::string_view kDefaultPort = "9015";
constexpr std::string_view kHttpPrefix = "http://";
constexpr std::string_view kHttpsPrefix = "https://";
constexpr std::string_view kStartHint = "is the server running? start it with: gswarm data start";
constexpr std::string_view kFormatHeader = "X-Gswarm-Format";
constexpr std::size_t kMaxBodyInMessage = 300;

struct HostPort {
  std::string host;
  std::string port;
};

std::string strip_scheme(std::string_view address) {
  if (address.starts_with(kHttpPrefix)) address.remove_prefix(kHttpPrefix.size());
  if (address.starts_with(kHttpsPrefix)) address.remove_prefix(kHttpsPrefix.size());
  while (address.ends_with('/')) address.remove_suffix(1);
  return std::string(address);
}

// "host:port", "host", "[v6]:port" or "[v6]". A bare IPv6 address without
// brackets has several colons and is taken as a host without port.
HostPort split_address(std::string_view address) {
  if (address.starts_with('[')) {
    auto close = address.find(']');
    if (close != std::string_view::npos) {
      std::string_view rest = address.substr(close + 1);
      std::string port = rest.starts_with(':') ? std::string(rest.substr(1)) : "";
      return {std::string(address.substr(1, close - 1)),
              port.empty() ? std::string(kDefaultPort) : port};
    }
  }
  auto colon = address.rfind(':');
  bool has_port = colon != std::string_view::npos && address.find(':') == colon;
  if (!has_port) return {std::string(address), std::string(kDefaultPort)};
  std::string_view port = address.substr(colon + 1);
  return {std::string(address.substr(0, colon)), std::string(port.empty() ? kDefaultPort : port)};
}

// JSON string literal for `text`; invalid UTF-8 is replaced rather than thrown on
// (keys are validated before this, locations and formats are the server's to judge).
std::string quote(std::string_view text) {
  return json(std::string(text)).dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_text(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string shorten(std::string_view text) {
  if (text.size() <= kMaxBodyInMessage) return std::string(text);
  return std::string(text.substr(0, kMaxBodyInMessage)) + "...";
}

// Errors a reused keep-alive connection shows when the server closed it while idle.
bool is_stale_connection_error(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::broken_pipe ||
         ec == asio::error::connection_aborted || ec == asio::error::bad_descriptor;
}

// Maps an error answer ({"detail", "code"}) to an Error.
Error error_from_answer(unsigned status, const std::string& body) {
  json j = json::parse(body, nullptr, false);
  if (j.is_object() && j.contains("detail") && j["detail"].is_string()) {
    std::string detail = j["detail"].get<std::string>();
    if (j.contains("code") && j["code"].is_string()) {
      return Error{error_code_from_name(j["code"].get<std::string>()), std::move(detail)};
    }
    return Error{status < 500 ? ErrorCode::kBadRequest : ErrorCode::kInternal, std::move(detail)};
  }
  return Error{
      ErrorCode::kProtocol,
      fmt::format("server answered HTTP {} with an unexpected body: {}", status, shorten(body))};
}

// Runs `extract` on a parsed answer; a missing or mistyped field (nlohmann throws)
// becomes kProtocol, so a server speaking another dialect gives a clear error.
template <typename F>
auto decode(const json& answer, F extract) -> Result<decltype(extract(answer))> {
  try {
    return extract(answer);
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kProtocol, fmt::format("unexpected answer from server ({}): {}",
                                                        e.what(), shorten(answer.dump())));
  }
}

std::string read_pointer_text(const json& j) {
  auto it = j.find("read_pointer");
  return it == j.end() ? "null" : it->dump();
}

ReplicaInfo replica_from_json(const json& j) {
  ReplicaInfo r;
  r.location = j.at("location").get<std::string>();
  r.size = j.at("size").get<std::uint64_t>();
  r.last_accessed = j.value("last_accessed", 0.0);
  r.copy_status = j.value("copy_status", std::string("complete"));
  r.copy_progress = j.value("copy_progress", 1.0);
  r.read_pointer_json = read_pointer_text(j);
  return r;
}

std::vector<ReplicaInfo> replicas_from_json(const json& list) {
  std::vector<ReplicaInfo> out;
  for (const auto& item : list) out.push_back(replica_from_json(item));
  return out;
}

// A request body sent from memory without copying it: `parts` one after another
// (a header and an array's bytes, say), handed to the socket a piece at a time,
// counting the bytes handed over so far (for a progress bar while a large upload
// travels).
struct GatherBody {
  static constexpr std::size_t kPiece = 1 << 20;
  struct value_type {
    std::span<const std::span<const std::byte>> parts;
    std::atomic<std::uint64_t>* sent = nullptr;  // may be null
  };
  static std::uint64_t size(const value_type& body) {
    std::uint64_t total = 0;
    for (const auto& part : body.parts) total += part.size();
    return total;
  }

  class writer {
   public:
    using const_buffers_type = asio::const_buffer;
    template <bool isRequest, class Fields>
    writer(const http::header<isRequest, Fields>&, const value_type& body) : body_(body) {}
    void init(beast::error_code& ec) { ec = {}; }
    boost::optional<std::pair<const_buffers_type, bool>> get(beast::error_code& ec) {
      ec = {};
      if (body_.sent != nullptr) body_.sent->store(sent_, std::memory_order_relaxed);
      while (part_ < body_.parts.size() && at_ >= body_.parts[part_].size()) {
        ++part_;
        at_ = 0;
      }
      if (part_ >= body_.parts.size()) return boost::none;
      const auto& part = body_.parts[part_];
      const std::size_t n = std::min(kPiece, part.size() - at_);
      const_buffers_type piece(part.data() + at_, n);
      at_ += n;
      sent_ += n;
      return std::make_pair(piece, sent_ < size(body_));
    }

   private:
    const value_type& body_;
    std::size_t part_ = 0;
    std::size_t at_ = 0;
    std::uint64_t sent_ = 0;
  };
};

constexpr std::size_t kReadBuffer = 64 << 10;
constexpr std::size_t kLargeRead = 1 << 20;
constexpr std::uint64_t kDirectRequest = 16 << 10;
constexpr std::uint64_t kMaxErrorBody = 1 << 20;  // {"detail", "code"} answers are small

// An HTTP answer; the body itself is kept in Client::Impl::last_body_.
struct Answer {
  unsigned status = 0;
  std::string format;
};

}  // namespace

// Owns the connection. Synchronous from the caller's view: every network step is
// an async operation on a private io_context run to completion, because only the
// async operations of beast::tcp_stream honour its timeout.
class Client::Impl {
 public:
  Impl(std::string_view address, ClientOptions options)
      : address_(strip_scheme(address)), target_(split_address(address_)), options_(options) {
    // As connected to: an address without a port names the default one.
    address_ = target_.host.find(':') == std::string::npos
                   ? fmt::format("{}:{}", target_.host, target_.port)
                   : fmt::format("[{}]:{}", target_.host, target_.port);
    if (options_.token.empty()) options_.token = default_token();
    if (options_.tls_ca.empty()) options_.tls_ca = default_tls_ca();
    use_tls_ = address.starts_with(kHttpsPrefix) || !options_.tls_ca.empty();
    if (!options_.token.empty()) authorization_ = "Bearer " + options_.token;
  }

  const std::string& address() const { return address_; }
  const ClientOptions& options() const { return options_; }
  const std::string& last_body() const { return last_body_; }
  std::string take_last_body() { return std::exchange(last_body_, {}); }

  // Sends a request with an optional JSON body and parses the JSON answer.
  Result<json> call(http::verb verb, std::string target, std::string body = {},
                    std::optional<milliseconds> timeout = std::nullopt) {
    http::request<http::string_body> req{verb, target, 11};
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = std::move(body);
    }
    req.set(http::field::accept, "application/json");
    auto answer = send(req, timeout.value_or(options_.timeout));
    if (!answer) return tl::unexpected(answer.error());
    return parse_last_body();
  }

  Result<json> parse_last_body() const {
    json j = json::parse(last_body_, nullptr, false);
    if (!j.is_object()) {
      return make_error(ErrorCode::kProtocol,
                        fmt::format("server sent invalid JSON: {}", shorten(last_body_)));
    }
    return j;
  }

  // What every request carries.
  template <typename Body>
  void prepare(http::request<Body>& req) {
    req.set(http::field::host, target_.host);
    if (!authorization_.empty()) req.set(http::field::authorization, authorization_);
    req.keep_alive(true);
    req.prepare_payload();
    last_body_.clear();
  }

  // Connects unless connected; true when the connection was already open (and so
  // may turn out to have been closed by the server meanwhile).
  Result<bool> open(milliseconds timeout) {
    if (connected_) return true;
    if (auto connected = connect(timeout); !connected) return tl::unexpected(connected.error());
    return false;
  }

  // Sends a GET for a raw value and receives its body straight from the socket
  // into the memory `place` gives (bytes Beast already buffered are copied; the
  // rest is read in place). Error answers (status >= 400) are read into
  // last_body_ and returned as their Error. Returns the format header's value.
  // Sends `req` and receives the value it answers: into the memory `place`
  // gives, or, with `consume`, a bounded piece at a time handed to it.
  Result<std::string> receive_into(http::request<http::empty_body>& req, milliseconds timeout,
                                   const Client::PlaceFn& place,
                                   const Client::ConsumeFn* consume = nullptr) {
    prepare(req);
    for (int attempt = 0;; ++attempt) {
      auto reused = open(timeout);
      if (!reused) return tl::unexpected(reused.error());
      const auto deadline = std::chrono::steady_clock::now() + timeout;
      beast::error_code ec = write_request(req, timeout);
      http::response_parser<http::buffer_body> parser;
      parser.body_limit(boost::none);
      if (!ec) ec = read_answer(parser, deadline, true);
      if (ec) {
        bool stale = !parser.got_some() && is_stale_connection_error(ec);
        close();
        if (*reused && stale && attempt == 0) continue;
        return tl::unexpected(connection_error(ec, timeout));
      }
      auto& head = parser.get();
      const unsigned status = head.result_int();
      const std::uint64_t size = parser.content_length().value_or(0);
      if (!parser.content_length() && !parser.is_done()) {
        close();
        return make_error(ErrorCode::kProtocol, "server answered a value without Content-Length");
      }
      std::string format;
      if (auto it = head.find(kFormatHeader); it != head.end()) format = std::string(it->value());
      const bool keep_alive = head.keep_alive();
      std::span<std::byte> into;
      if (status >= 400) {
        if (size > kMaxErrorBody) {
          close();
          return make_error(
              ErrorCode::kProtocol,
              fmt::format("server answered HTTP {} with a {} byte body", status, size));
        }
        last_body_.resize(size);
        into = std::as_writable_bytes(std::span<char>(last_body_.data(), last_body_.size()));
      } else if (consume != nullptr) {
        if (auto ok = stream_body(size, deadline, timeout, *consume); !ok) {
          close();
          return tl::unexpected(ok.error());
        }
        if (!keep_alive || buffer_.size() != 0) close();
        return format.empty() ? std::string("bytes") : format;
      } else {
        into = place(size, format.empty() ? "bytes" : format);
        if (into.size() != size) {  // the caller could not get the memory
          close();
          return make_error(ErrorCode::kOverLimit,
                            fmt::format("no memory for a value of {} bytes in this process", size));
        }
      }
      // Body bytes that arrived with the head, then the rest straight into place.
      const std::size_t buffered = std::min<std::size_t>(buffer_.size(), size);
      asio::buffer_copy(asio::buffer(into.data(), buffered), buffer_.data());
      buffer_.consume(buffered);
      for (std::size_t at = buffered; at < size;) {
        std::size_t n = 0;
        ec = receive_some(into.subspan(at), deadline, n);
        if (!ec && n == 0) ec = http::error::partial_message;
        if (ec) {
          close();
          return tl::unexpected(connection_error(ec, timeout));
        }
        at += n;
      }
      if (!keep_alive || buffer_.size() != 0) close();
      if (status >= 400) return tl::unexpected(error_from_answer(status, last_body_));
      return format.empty() ? std::string("bytes") : format;
    }
  }

  // Sends `req` and reads the whole answer into last_body_. Error answers (status
  // >= 400) are returned as their Error. A reused connection that turns out to have
  // been closed by the server is reopened and the request sent once more: the
  // server never saw it, so even a POST is safe to repeat.
  template <typename Body>
  Result<Answer> send(http::request<Body>& req, milliseconds timeout) {
    prepare(req);
    for (int attempt = 0;; ++attempt) {
      auto reused = open(timeout);
      if (!reused) return tl::unexpected(reused.error());
      beast::error_code ec;
      bool stale = false;
      std::optional<Answer> answer = exchange(req, timeout, ec, stale);
      if (answer) {
        if (answer->status >= 400)
          return tl::unexpected(error_from_answer(answer->status, last_body_));
        return *answer;
      }
      close();
      if (*reused && stale && attempt == 0) continue;
      return tl::unexpected(connection_error(ec, timeout));
    }
  }

  Error connection_error(const beast::error_code& ec, milliseconds timeout) const {
    if (!tls_error_.empty()) {
      return Error{ErrorCode::kConnection,
                   fmt::format("connection to {} failed: {}", address_, tls_error_)};
    }
    if (ec == beast::error::timeout) {
      return Error{ErrorCode::kTimeout,
                   fmt::format("no answer from {} within {} s", address_,
                               std::chrono::duration<double>(timeout).count())};
    }
    return Error{ErrorCode::kConnection,
                 fmt::format("connection to {} failed: {}", address_, ec.message())};
  }

 private:
  // Runs the io_context until the operation `start` begins has completed.
  template <typename Start>
  beast::error_code run(Start start) {
    beast::error_code result;
    start([&result](beast::error_code ec, auto&&...) { result = ec; });
    io_.restart();
    io_.run();
    return result;
  }

  Result<void> connect(milliseconds timeout) {
    tls_error_.clear();
    if (endpoints_.empty()) {
      asio::ip::tcp::resolver resolver(io_);
      beast::error_code ec;
      endpoints_ = resolver.resolve(target_.host, target_.port, ec);
      if (ec) {
        return make_error(ErrorCode::kConnection,
                          fmt::format("cannot connect to {}: cannot resolve host '{}': {}",
                                      address_, target_.host, ec.message()));
      }
    }
    stream_.expires_after(timeout);
    beast::error_code ec =
        run([&](auto handler) { stream_.async_connect(endpoints_, std::move(handler)); });
    if (ec) {
      stream_.close();
      return make_error(ErrorCode::kConnection, fmt::format("cannot connect to {}: {} ({})",
                                                            address_, ec.message(), kStartHint));
    }
    beast::error_code ignored;
    stream_.socket().set_option(asio::ip::tcp::no_delay(true), ignored);
    if (use_tls_) {
      if (auto secured = start_tls(timeout); !secured) {
        close();
        return secured;
      }
    }
    buffer_.clear();
    // Beast reads at most what the buffer has room for (at least 512 bytes, at
    // most 64 KiB): room for 64 KiB keeps a large answer from arriving in
    // thousands of tiny reads, each with its own timer update.
    buffer_.reserve(kReadBuffer);
    connected_ = true;
    return {};
  }

  // The TLS handshake on the connected socket, until `deadline`.
  Result<void> start_tls(milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    if (!tls_context_) {
      auto context = tls::ClientContext::create(options_.tls_ca);
      if (!context) return tl::unexpected(context.error());
      tls_context_ = std::move(*context);
    }
    const int fd = stream_.socket().native_handle();
    auto channel = tls::Channel::connect(*tls_context_, fd, target_.host);
    if (!channel) return tl::unexpected(channel.error());
    for (;;) {
      tls::Step step = (*channel)->handshake();
      if (step.state == tls::Step::State::kDone) break;
      if (step.state == tls::Step::State::kFailed) {
        return make_error(ErrorCode::kConnection,
                          fmt::format("cannot connect to {}: {}", address_, step.error));
      }
      if (auto waited = wait_for(fd, step.events, deadline)) {
        return tl::unexpected(connection_error(waited, timeout));
      }
    }
    tls_ = std::move(*channel);
    return {};
  }

  void close() {
    tls_.reset();
    beast::error_code ignored;
    stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
    stream_.close();
    connected_ = false;
  }

  // One request and its answer on the open connection, all within `timeout`. On
  // failure sets `ec`, and `stale` when nothing at all came back.
  template <typename Body>
  std::optional<Answer> exchange(http::request<Body>& req, milliseconds timeout,
                                 beast::error_code& ec, bool& stale) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    beast::error_code write_ec = write_request(req, timeout);
    if (write_ec == beast::error::timeout) {
      ec = write_ec;
      return std::nullopt;
    }
    // Read even after a failed write: the server may have answered before closing
    // (an error for an oversized body, say), and that answer is the useful one.
    http::response_parser<http::string_body> parser;
    parser.body_limit(boost::none);
    beast::error_code read_ec = read_answer(parser, deadline);
    if (read_ec) {
      ec = write_ec ? write_ec : read_ec;
      stale = !parser.got_some() && is_stale_connection_error(ec);
      return std::nullopt;
    }
    auto response = parser.release();
    Answer answer;
    answer.status = response.result_int();
    if (auto it = response.find(kFormatHeader); it != response.end()) {
      answer.format = std::string(it->value());
    }
    last_body_ = std::move(response.body());
    if (write_ec || !response.keep_alive()) close();
    return answer;
  }

  // Writes the request within `timeout`: most go out in one system call (the
  // socket's send queue is empty between calls, every answer having been read
  // whole); a large body waits with poll() whenever the queue is full.
  template <typename Body>
  beast::error_code write_request(http::request<Body>& req, milliseconds timeout) {
    beast::error_code ec;
    Writer writer{*this, std::chrono::steady_clock::now() + timeout};
    http::write(writer, req, ec);
    return ec;
  }

  // The SyncWriteStream http::write writes to: the socket, or TLS over it.
  struct Writer {
    Impl& impl;
    std::chrono::steady_clock::time_point deadline;
    template <typename Buffers>
    std::size_t write_some(const Buffers& buffers, beast::error_code& ec) {
      return impl.send_some(buffers, deadline, ec);
    }
    template <typename Buffers>
    std::size_t write_some(const Buffers& buffers) {
      beast::error_code ec;
      const std::size_t n = write_some(buffers, ec);
      if (ec) throw beast::system_error(ec);
      return n;
    }
  };

  // Sends what the socket takes of `buffers` now, waiting until `deadline` for
  // room when it takes nothing. Over TLS, pieces that fit one record are
  // gathered into one.
  template <typename Buffers>
  std::size_t send_some(const Buffers& buffers, std::chrono::steady_clock::time_point deadline,
                        beast::error_code& ec) {
    constexpr std::size_t kMaxPieces = 16;
    const int fd = stream_.socket().native_handle();
    iovec pieces[kMaxPieces];
    std::size_t count = 0;
    std::size_t total = 0;
    for (asio::const_buffer b : beast::buffers_range_ref(buffers)) {
      if (b.size() == 0) continue;
      if (count == kMaxPieces) break;
      pieces[count++] = {const_cast<void*>(b.data()), b.size()};
      total += b.size();
    }
    if (count == 0) return 0;
    for (;;) {
      short events = POLLOUT;
      if (tls_) {
        const void* data = pieces[0].iov_base;
        std::size_t size = pieces[0].iov_len;
        if (count > 1 && total <= tls::kRecordSize) {
          std::size_t at = 0;
          for (std::size_t i = 0; i < count; ++i) {
            std::memcpy(record_.data() + at, pieces[i].iov_base, pieces[i].iov_len);
            at += pieces[i].iov_len;
          }
          data = record_.data();
          size = total;
        }
        tls::Step step = tls_->write(data, size);
        if (step.state == tls::Step::State::kDone) return step.bytes;
        if (step.state == tls::Step::State::kFailed) {
          ec = tls_failure(std::move(step));
          return 0;
        }
        events = step.events;
      } else {
        msghdr message{};
        message.msg_iov = pieces;
        message.msg_iovlen = count;
        const ssize_t n = ::sendmsg(fd, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) return static_cast<std::size_t>(n);
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          ec = {errno, beast::system_category()};
          return 0;
        }
      }
      if (auto waited = wait_for(fd, events, deadline)) {
        ec = waited;
        return 0;
      }
    }
  }

  // Waits until `fd` is ready for `events` or `deadline` passes.
  static beast::error_code wait_for(int fd, short events,
                                    std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const auto left =
          std::chrono::ceil<milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return beast::error::timeout;
      pollfd wait{fd, events, 0};
      const int ready =
          ::poll(&wait, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 1 << 30)));
      if (ready > 0) return {};
      if (ready < 0 && errno != EINTR) return {errno, beast::system_category()};
    }
  }

  // A failed TLS step: the socket's own error, or one whose reason is kept for
  // the message connection_error() makes.
  beast::error_code tls_failure(tls::Step step) {
    if (step.sys_errno != 0) return {step.sys_errno, beast::system_category()};
    tls_error_ = std::move(step.error);
    return asio::error::make_error_code(asio::error::no_protocol_option);
  }

  // Reads an answer with poll() and recv() until `deadline`: fewer system calls
  // than the io_context's timers and epoll for what is mostly one small packet.
  // With `head_only`, stops once the head is parsed: the body's first bytes may
  // then wait in buffer_.
  template <typename Parser>
  beast::error_code read_answer(Parser& parser, std::chrono::steady_clock::time_point deadline,
                                bool head_only = false) {
    beast::error_code ec;
    for (;;) {
      if (buffer_.size() > 0) {
        const std::size_t used = parser.put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == http::error::need_more) {
          ec = {};
        } else if (ec) {
          return ec;
        }
        if (parser.is_done() || (head_only && parser.is_header_done())) return {};
        if (used > 0 && buffer_.size() > 0) continue;
      }
      // Room for 64 KiB, or 1 MiB while much of a large body is still to come.
      const bool large =
          parser.is_header_done() && parser.content_length_remaining().value_or(0) > kReadBuffer;
      auto space = buffer_.prepare(large ? kLargeRead : kReadBuffer);
      std::size_t n = 0;
      if (auto got =
              receive_some({static_cast<std::byte*>(space.data()), space.size()}, deadline, n);
          got) {
        return got;
      }
      if (n == 0) {
        if (!parser.got_some()) return http::error::end_of_stream;
        parser.put_eof(ec);
        return ec ? ec : (parser.is_done() ? beast::error_code{} : http::error::partial_message);
      }
      buffer_.commit(n);
    }
  }

  // Waits for bytes until `deadline` and receives what is there into `into`;
  // `n` = 0 at the end of the stream.
  // Plain: waits first (an answer is rarely there the moment the request has
  // gone). TLS: reads first, as bytes may be decrypted and waiting already.
  // The `size` bytes of a body (those already buffered first) handed to
  // `consume` in pieces of at most kStreamPiece.
  Result<void> stream_body(std::uint64_t size, std::chrono::steady_clock::time_point deadline,
                           milliseconds timeout, const Client::ConsumeFn& consume) {
    constexpr std::size_t kStreamPiece = 4 << 20;
    std::vector<std::byte> piece(static_cast<std::size_t>(std::min<std::uint64_t>(size, kStreamPiece)));
    for (std::uint64_t at = 0; at < size;) {
      const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(size - at, piece.size()));
      std::size_t n = 0;
      if (buffer_.size() > 0) {
        n = asio::buffer_copy(asio::buffer(piece.data(), want), buffer_.data());
        buffer_.consume(n);
      } else {
        beast::error_code ec = receive_some(std::span(piece).first(want), deadline, n);
        if (!ec && n == 0) ec = http::error::partial_message;
        if (ec) return tl::unexpected(connection_error(ec, timeout));
      }
      if (auto ok = consume(std::span<const std::byte>(piece.data(), n)); !ok) return ok;
      at += n;
    }
    return {};
  }

  beast::error_code receive_some(std::span<std::byte> into,
                                 std::chrono::steady_clock::time_point deadline, std::size_t& n) {
    const int fd = stream_.socket().native_handle();
    short events = POLLIN;
    for (bool try_now = tls_ != nullptr;; try_now = true) {
      if (try_now && tls_) {
        tls::Step step = tls_->read(into.data(), into.size());
        if (step.state == tls::Step::State::kDone) {
          n = step.bytes;
          return {};
        }
        if (step.state == tls::Step::State::kFailed) return tls_failure(std::move(step));
        events = step.events;
      } else if (try_now) {
        const ssize_t got = ::recv(fd, into.data(), into.size(), MSG_DONTWAIT);
        if (got >= 0) {
          n = static_cast<std::size_t>(got);
          return {};
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          return {errno, beast::system_category()};
        }
      }
      if (auto waited = wait_for(fd, events, deadline)) return waited;
    }
  }

  std::string address_;
  HostPort target_;
  ClientOptions options_;
  std::string authorization_;  // the header's value; empty without a token
  asio::io_context io_;
  beast::tcp_stream stream_{io_};  // connects with a timeout; reads and writes go to its socket
  bool use_tls_ = false;
  std::shared_ptr<tls::ClientContext> tls_context_;  // made at the first connection
  std::unique_ptr<tls::Channel> tls_;                // null: plain, or not connected
  std::string tls_error_;                            // why the last TLS step failed
  std::array<char, tls::kRecordSize> record_;        // small pieces gathered for one record
  beast::flat_buffer buffer_;
  asio::ip::tcp::resolver::results_type endpoints_;
  bool connected_ = false;
  std::string last_body_;
};

std::string default_token() {
  const char* token = std::getenv("GSWARM_TOKEN");
  return token != nullptr ? std::string(token) : std::string();
}

std::string default_tls_ca() {
  const char* ca = std::getenv("GSWARM_TLS_CA");
  return ca != nullptr ? std::string(ca) : std::string();
}

Client::Client(std::string_view address, ClientOptions options)
    : impl_(std::make_unique<Impl>(address, options)) {}
Client::~Client() = default;
Client::Client(Client&&) noexcept = default;
Client& Client::operator=(Client&&) noexcept = default;

const std::string& Client::address() const { return impl_->address(); }

const std::string& Client::last_response_body() const { return impl_->last_body(); }

Result<void> Client::write(std::string_view key, std::string_view json_value,
                           std::string_view location) {
  if (auto valid = validate_key(key); !valid) return valid;
  if (!json::accept(json_value)) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("value is not valid JSON: {}", shorten(json_value)));
  }
  // The value's text is spliced in as given: no parse and re-serialisation.
  std::string body = fmt::format(R"({{"key":{},"value":{},"location":{}}})", quote(key), json_value,
                                 quote(location));
  auto answer = impl_->call(http::verb::post, "/write", std::move(body));
  if (!answer) return tl::unexpected(answer.error());
  return {};
}

Result<std::uint64_t> Client::write_bytes(std::string_view key, std::span<const std::byte> data,
                                          std::string_view location, std::string_view format) {
  const std::span<const std::byte> parts[] = {data};
  return write_parts(key, parts, location, format);
}

Result<std::uint64_t> Client::write_parts(std::string_view key,
                                          std::span<const std::span<const std::byte>> parts,
                                          std::string_view location, std::string_view format,
                                          std::atomic<std::uint64_t>* sent) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  std::string target = fmt::format("/write_extended?key={}&location={}&format={}", url_encode(key),
                                   url_encode(location), url_encode(format));
  http::request<GatherBody> req{http::verb::post, target, 11};
  req.set(http::field::content_type, "application/octet-stream");
  req.set(http::field::accept, "application/json");
  req.body() = {parts, sent};
  auto done = impl_->send(req, impl_->options().timeout);
  if (!done) return tl::unexpected(done.error());
  auto answer = impl_->parse_last_body();
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.at("size").get<std::uint64_t>(); });
}

Result<std::uint64_t> Client::write_bytes(std::string_view key, std::string_view data,
                                          std::string_view location, std::string_view format) {
  return write_bytes(key, std::as_bytes(std::span<const char>(data.data(), data.size())), location,
                     format);
}

Result<std::string> Client::read(std::string_view key) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  auto answer = impl_->call(http::verb::get, "/read/" + url_encode(key));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    return j.at("value").dump(-1, ' ', false, json::error_handler_t::replace);
  });
}

Result<BytesValue> Client::read_bytes(std::string_view key) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  http::request<http::empty_body> req{http::verb::get, "/read_extended/" + url_encode(key), 11};
  req.set(http::field::accept, "application/octet-stream");
  auto answer = impl_->send(req, impl_->options().timeout);
  if (!answer) return tl::unexpected(answer.error());
  return BytesValue{impl_->take_last_body(), answer->format.empty() ? "bytes" : answer->format};
}

Result<std::string> Client::read_bytes_into(std::string_view key, const PlaceFn& place) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  http::request<http::empty_body> req{http::verb::get, "/read_extended/" + url_encode(key), 11};
  req.set(http::field::accept, "application/octet-stream");
  return impl_->receive_into(req, impl_->options().timeout, place);
}

Result<std::string> Client::read_bytes_streamed(std::string_view key, const ConsumeFn& consume) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  http::request<http::empty_body> req{http::verb::get, "/read_extended/" + url_encode(key), 11};
  req.set(http::field::accept, "application/octet-stream");
  return impl_->receive_into(req, impl_->options().timeout, nullptr, &consume);
}

Result<void> Client::release(std::string_view key) {
  if (auto valid = validate_key(key); !valid) return valid;
  auto answer = impl_->call(http::verb::delete_, "/release/" + url_encode(key));
  if (!answer) return tl::unexpected(answer.error());
  return {};
}

Result<MoveResult> Client::move(std::string_view key, std::string_view destination) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  std::string body =
      fmt::format(R"({{"key":{},"destination":{}}})", quote(key), quote(destination));
  auto answer =
      impl_->call(http::verb::post, "/move", std::move(body), impl_->options().move_timeout);
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    MoveResult r;
    r.key = j.at("key").get<std::string>();
    r.source = j.at("source").get<std::string>();
    r.destination = j.at("destination").get<std::string>();
    r.size = j.value("size", std::uint64_t{0});
    r.seconds = j.value("seconds", 0.0);
    r.read_pointer_json = read_pointer_text(j);
    return r;
  });
}

Result<std::uint64_t> Client::start_move(std::string_view key, std::string_view destination) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  std::string body =
      fmt::format(R"({{"key":{},"destination":{},"wait":false}})", quote(key), quote(destination));
  auto answer = impl_->call(http::verb::post, "/move", std::move(body));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.at("operation_id").get<std::uint64_t>(); });
}

namespace {

Operation operation_from_json(const json& j) {
  Operation op;
  op.id = j.at("operation_id").get<std::uint64_t>();
  op.kind = j.value("kind", std::string("move"));
  op.key = j.at("key").get<std::string>();
  op.destination = j.at("destination").get<std::string>();
  if (j.at("source").is_string()) op.source = j.at("source").get<std::string>();
  op.state = j.at("state").get<std::string>();
  if (auto phase = j.find("phase"); phase != j.end() && phase->is_string()) {
    op.phase = phase->get<std::string>();
  }
  op.bytes_done = j.value("bytes_done", std::uint64_t{0});
  op.bytes_total = j.value("bytes_total", std::uint64_t{0});
  op.seconds = j.value("seconds", 0.0);
  if (const auto& e = j.at("error"); e.is_object()) {
    op.error = e.value("detail", std::string());
    op.error_code = e.value("code", std::string());
  }
  return op;
}

}  // namespace

Result<Operation> Client::operation(std::uint64_t id) {
  auto answer = impl_->call(http::verb::get, fmt::format("/operations/{}", id));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return operation_from_json(j); });
}

Result<void> Client::cancel_operation(std::uint64_t id) {
  auto answer = impl_->call(http::verb::delete_, fmt::format("/operations/{}", id));
  if (!answer) return tl::unexpected(answer.error());
  return {};
}

Result<std::vector<Operation>> Client::operations() {
  auto answer = impl_->call(http::verb::get, "/operations");
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    std::vector<Operation> ops;
    for (const auto& op : j.at("operations")) ops.push_back(operation_from_json(op));
    return ops;
  });
}

Result<SendResult> Client::send(std::string_view key, std::string_view target,
                                std::string_view source_location) {
  SendOptions options;
  options.source_location = std::string(source_location);
  return send(key, target, options);
}

Result<SendResult> Client::send(std::string_view key, std::string_view target,
                                const SendOptions& options) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  json request = {{"key", key},
                  {"target", target},
                  {"source_location", options.source_location},
                  {"delete_source", options.delete_source}};
  if (options.streams > 0) request["streams"] = options.streams;
  auto answer = impl_->call(http::verb::post, "/send_extended", request.dump(),
                            impl_->options().move_timeout);
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    SendResult r;
    r.key = j.at("key").get<std::string>();
    r.source = j.at("source").get<std::string>();
    r.node = j.at("node").get<std::string>();
    r.address = j.value("address", std::string());
    r.destination = j.at("destination").get<std::string>();
    r.method = j.at("method").get<std::string>();
    r.size = j.value("size", std::uint64_t{0});
    r.seconds = j.value("seconds", 0.0);
    r.streams = j.value("streams", 1);
    r.source_deleted = j.value("source_deleted", false);
    return r;
  });
}

Result<std::vector<NodeInfo>> Client::nodes() {
  auto answer = impl_->call(http::verb::get, "/nodes");
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    std::vector<NodeInfo> nodes;
    for (const auto& n : j.at("nodes")) {
      nodes.push_back(NodeInfo{n.at("name").get<std::string>(), n.at("address").get<std::string>(),
                               n.value("alive", true), n.value("source", std::string())});
    }
    return nodes;
  });
}

Result<LocationInfo> Client::get_location(std::string_view key) {
  if (auto valid = validate_key(key); !valid) return tl::unexpected(valid.error());
  auto answer = impl_->call(http::verb::get, "/location/" + url_encode(key));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    LocationInfo info;
    info.key = j.at("key").get<std::string>();
    info.location = j.at("location").get<std::string>();
    info.replicas = replicas_from_json(j.at("locations"));
    return info;
  });
}

Result<std::map<std::string, std::vector<ReplicaInfo>>> Client::list_locations() {
  auto answer = impl_->call(http::verb::get, "/locations");
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    std::map<std::string, std::vector<ReplicaInfo>> out;
    for (const auto& [key, replicas] : j.at("locations").items()) {
      out.emplace(key, replicas_from_json(replicas));
    }
    return out;
  });
}

Result<LocationListing> Client::list_locations_page(std::string_view pattern, std::size_t limit,
                                                  std::string_view cursor) {
  std::string target = fmt::format("/locations?limit={}", limit);
  if (!pattern.empty()) target += "&pattern=" + url_encode(pattern);
  if (!cursor.empty()) target += "&cursor=" + url_encode(cursor);
  auto answer = impl_->call(http::verb::get, std::move(target));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    LocationListing page;
    for (const auto& [key, replicas] : j.at("locations").items()) {
      page.keys.emplace_back(key, replicas_from_json(replicas));
    }
    const json& next = j.at("next_cursor");
    if (next.is_string()) page.next_cursor = next.get<std::string>();
    return page;
  });
}

Result<std::string> Client::stats() {
  auto answer = impl_->call(http::verb::get, "/stats");
  if (!answer) return tl::unexpected(answer.error());
  auto stats = answer->find("stats");
  if (stats == answer->end() || !stats->is_object()) {
    return make_error(ErrorCode::kProtocol, fmt::format("unexpected answer from server: {}",
                                                        shorten(impl_->last_body())));
  }
  return stats->dump();
}

Result<std::uint64_t> Client::set_max_memory(std::string_view size) {
  auto answer = impl_->call(http::verb::post, "/set_max_memory/" + url_encode(size));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.at("max_memory").get<std::uint64_t>(); });
}

// ---- data pool --------------------------------------------------------------------

namespace {

Chunk chunk_from_json(const json& j) {
  Chunk c;
  c.id = j.at("chunk_id").get<std::string>();
  c.type = j.at("chunk_type").get<std::string>();
  c.format = j.value("format", std::string());
  c.source = j.value("source", std::string());
  c.size = j.at("size").get<std::uint64_t>();
  c.checksum = j.value("checksum", std::string());
  const json& meta = j.at("metadata");
  c.created_by = meta.value("created_by", std::string());
  c.created_at = meta.value("created_at", 0.0);
  c.last_accessed = meta.value("last_accessed", 0.0);
  c.access_count = meta.value("access_count", std::uint64_t{0});
  c.references = j.value("references", std::vector<std::string>());
  for (const auto& l : j.at("locations")) {
    c.locations.push_back({l.at("device").get<std::string>(), l.at("status").get<std::string>(),
                           l.value("progress", 1.0)});
  }
  return c;
}

CreatedChunk created_from_json(const json& j) {
  CreatedChunk c;
  c.id = j.at("chunk_id").get<std::string>();
  c.size = j.value("size", std::uint64_t{0});
  c.checksum = j.value("checksum", std::string());
  c.device = j.value("device", std::string());
  c.task_id = j.value("task_id", std::uint64_t{0});
  return c;
}

std::string chunk_path(std::string_view id) { return "/api/v1/data/" + url_encode(id); }

}  // namespace

Result<std::vector<Chunk>> Client::list_chunks(std::string_view device, std::string_view type) {
  std::string target = "/api/v1/data";
  std::string sep = "?";
  if (!device.empty()) {
    target += sep + "device=" + url_encode(device);
    sep = "&";
  }
  if (!type.empty()) target += sep + "type=" + url_encode(type);
  auto answer = impl_->call(http::verb::get, target);
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) {
    std::vector<Chunk> chunks;
    for (const auto& c : j.at("chunks")) chunks.push_back(chunk_from_json(c));
    return chunks;
  });
}

Result<CreatedChunk> Client::create_chunk(std::string_view source, const ChunkOptions& options) {
  json body = {{"source", source},
               {"device", options.device},
               {"type", options.type},
               {"format", options.format}};
  auto answer =
      impl_->call(http::verb::post, "/api/v1/data", to_text(body), impl_->options().move_timeout);
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, created_from_json);
}

Result<CreatedChunk> Client::start_create_chunk(std::string_view source,
                                                const ChunkOptions& options) {
  json body = {{"source", source},
               {"device", options.device},
               {"type", options.type},
               {"format", options.format},
               {"wait", false}};
  auto answer = impl_->call(http::verb::post, "/api/v1/data", to_text(body));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, created_from_json);
}

Result<CreatedChunk> Client::upload_chunk(std::span<const std::byte> data,
                                          const ChunkOptions& options, std::string_view source,
                                          std::atomic<std::uint64_t>* sent) {
  std::string target =
      fmt::format("/api/v1/data?device={}&type={}&format={}", url_encode(options.device),
                  url_encode(options.type), url_encode(options.format));
  if (!source.empty()) target += "&source=" + url_encode(source);
  const std::span<const std::byte> parts[] = {data};
  http::request<GatherBody> req{http::verb::post, target, 11};
  req.set(http::field::content_type, "application/octet-stream");
  req.set(http::field::accept, "application/json");
  req.body() = {parts, sent};
  auto answered = impl_->send(req, impl_->options().move_timeout);
  if (!answered) return tl::unexpected(answered.error());
  auto answer = impl_->parse_last_body();
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, created_from_json);
}

Result<Chunk> Client::chunk(std::string_view id) {
  auto answer = impl_->call(http::verb::get, chunk_path(id));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, chunk_from_json);
}

Result<std::uint64_t> Client::move_chunk(std::string_view id, std::string_view device,
                                         std::string_view priority) {
  json body = {{"target_device", device}, {"priority", priority}};
  auto answer = impl_->call(http::verb::post, chunk_path(id) + "/move", to_text(body));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.at("task_id").get<std::uint64_t>(); });
}

Result<std::uint64_t> Client::transfer_chunk(std::string_view id, std::string_view node,
                                             std::string_view device, bool delete_source) {
  json body = {{"target_node", node}, {"target_device", device}, {"delete_source", delete_source}};
  auto answer = impl_->call(http::verb::post, chunk_path(id) + "/transfer", to_text(body));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.at("task_id").get<std::uint64_t>(); });
}

Result<void> Client::delete_chunk(std::string_view id, bool force) {
  auto answer = impl_->call(http::verb::delete_, chunk_path(id) + (force ? "?force=true" : ""));
  if (!answer) return tl::unexpected(answer.error());
  return {};
}

Result<Chunk> Client::add_chunk_reference(std::string_view id, std::string_view holder) {
  json body = {{"holder", holder}};
  auto answer = impl_->call(http::verb::post, chunk_path(id) + "/references", to_text(body));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, chunk_from_json);
}

Result<Chunk> Client::drop_chunk_reference(std::string_view id, std::string_view holder) {
  auto answer =
      impl_->call(http::verb::delete_, chunk_path(id) + "/references/" + url_encode(holder));
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, chunk_from_json);
}

Result<std::string> Client::health() {
  auto answer = impl_->call(http::verb::get, "/health");
  if (!answer) return tl::unexpected(answer.error());
  return decode(*answer, [](const json& j) { return j.value("version", std::string()); });
}

}  // namespace gswarm
