#include "cluster/sender.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "cluster/peer_connection.hpp"
#include "core/url.hpp"

namespace gswarm::cluster {
namespace {

using json = nlohmann::json;

// Values go out in pieces of this size (progress is counted per piece); device
// replicas are read through a host buffer of this size.
constexpr std::size_t kPiece = 4 << 20;
// Byte ranges start on this boundary, so that the target's pieces stay aligned.
constexpr std::uint64_t kRangeAlign = 1 << 20;
constexpr int kMaxStreams = 64;
// How long a target whose connection broke mid-body may take to be heard.
constexpr std::chrono::milliseconds kAnswerLeft{1000};
// A transfer whose commit got no answer: how long each question about its
// outcome may take, how often it is asked, and for how long at most while the
// target answers that it is still committing.
constexpr std::chrono::milliseconds kOutcomeTimeout{5000};
constexpr std::chrono::milliseconds kOutcomePoll{200};
constexpr std::chrono::minutes kMaxCommit{10};

}  // namespace

// Where the bytes of the replica being sent come from; counts what it sent.
class Sender::Source {
 public:
  Source(ReplicaView replica, Operations::Progress progress)
      : replica_(std::move(replica)), progress_(std::move(progress)) {}

  // Disk replicas are sent from one open descriptor, which stays readable even
  // if the key is overwritten or released during the send.
  Result<void> open() {
    if (replica_.extent->host_data() != nullptr ||
        replica_.extent->location() != Location::disk()) {
      return {};
    }
    auto exported = replica_.extent->export_read_only();
    if (!exported) return tl::unexpected(exported.error());
    file_ = std::move(*exported);
    return {};
  }

  // Sends [offset, offset + length) in pieces, counting each.
  Result<void> stream(PeerConnection& conn, std::uint64_t offset, std::uint64_t length) const {
    const Extent& extent = *replica_.extent;
    std::unique_ptr<std::byte[]> buffer;  // devices: a host copy of each piece
    for (std::uint64_t at = 0; at < length;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, length - at));
      if (const std::byte* data = extent.host_data()) {
        if (auto ok = conn.send({data + offset + at, n}); !ok) return ok;
      } else if (file_) {
        if (auto ok = conn.send_file(file_->fd.get(), file_->offset + offset + at, n); !ok) {
          return ok;
        }
      } else {
        if (!buffer) buffer = std::make_unique_for_overwrite<std::byte[]>(kPiece);
        std::span<std::byte> piece{buffer.get(), n};
        if (auto ok = extent.read(offset + at, piece); !ok) return ok;
        if (auto ok = conn.send(piece); !ok) return ok;
      }
      progress_->bytes.fetch_add(n, std::memory_order_relaxed);
      if (auto ok = progress_->stopped(); !ok) return ok;
      at += n;
    }
    return {};
  }

 private:
  ReplicaView replica_;
  Operations::Progress progress_;
  std::optional<ExportedValue> file_;
};

namespace {

// The answer, or the error it stands for.
Result<PeerAnswer> accepted(const Address& address, Result<PeerAnswer> answer) {
  if (!answer) return answer;
  if (answer->status >= 300) return tl::unexpected(peer_error(address, *answer));
  return answer;
}

// Sends a request whose body is [offset, offset + length) of the value: the head
// with "Expect: 100-continue", so that a target that refuses says why before
// any byte is sent, then the bytes, then the target's answer.
template <typename Source>
Result<PeerAnswer> send_body(PeerConnection& conn, std::string_view method, std::string_view target,
                             const Source& source, std::uint64_t offset, std::uint64_t length,
                             const std::string& auth) {
  const std::string headers = auth + "Expect: 100-continue\r\n";
  if (auto ok = conn.send_head(method, target, "application/octet-stream", length, headers); !ok) {
    return tl::unexpected(ok.error());
  }
  auto interim = conn.receive();
  if (!interim) return interim;
  if (interim->status != 100) return accepted(conn.address(), std::move(interim));
  if (auto ok = source.stream(conn, offset, length); !ok) {
    // A target that fails while the body arrives (its disk filled) answers and
    // closes: its answer says why, where the broken connection does not.
    const ErrorCode code = ok.error().code;
    if (code == ErrorCode::kPeerFailed || code == ErrorCode::kPeerTimeout) {
      auto answer = conn.receive_within(kAnswerLeft);
      if (answer && answer->status >= 300) return accepted(conn.address(), std::move(answer));
    }
    return tl::unexpected(ok.error());
  }
  return accepted(conn.address(), conn.receive());
}

Result<std::string> json_field(const Address& address, const PeerAnswer& answer,
                               std::string_view field) {
  auto parsed = json::parse(answer.body, nullptr, false);
  if (!parsed.is_object() || !parsed.contains(field) || !parsed[field].is_string()) {
    return make_error(ErrorCode::kPeerFailed,
                      fmt::format("target {} answered without \"{}\": is it a gswarm server?",
                                  address.text(), field));
  }
  return parsed[field].get<std::string>();
}

}  // namespace

Result<SendOutcome> Sender::send(const SendRequest& request) {
  const auto started = std::chrono::steady_clock::now();
  auto replica = request.replica ? Result<ReplicaView>(*request.replica)
                                 : store_.open_replica(request.key, request.source);
  if (!replica) return tl::unexpected(replica.error());

  SendOutcome outcome;
  if (request.target.address) {
    outcome.address = *request.target.address;
  } else {
    auto member = membership_.resolve(request.target.node);
    if (!member) return tl::unexpected(member.error());
    outcome.node = member->name;
    outcome.address = member->address;
  }
  outcome.source = replica->extent->location();
  outcome.destination = request.target.location;
  outcome.format = replica->format;
  outcome.size = replica->extent->size();
  const std::uint64_t version = replica->version;

  Operations& operations = store_.operations();
  const bool own_operation = request.operation == 0;
  outcome.operation = own_operation ? operations.add("send", request.key, outcome.destination,
                                                     outcome.size, &store_.stopping())
                                    : request.operation;
  operations.start(outcome.operation, outcome.source);
  Source source(std::move(*replica), operations.progress(outcome.operation));
  auto sent = source.open();
  if (sent) sent = transfer(request, source, outcome);
  if (!sent && sent.error().code != ErrorCode::kUnavailable) {
    // Whatever failed, the message says where the value was going.
    const std::string where = outcome.node.empty()
                                  ? outcome.address.text()
                                  : fmt::format("{} ({})", outcome.node, outcome.address.text());
    sent.error().message =
        fmt::format("send of '{}' to {}: {}", request.key, where, sent.error().message);
  }
  outcome.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (own_operation) {
    operations.finish(outcome.operation, sent ? std::nullopt : std::optional<Error>(sent.error()),
                      outcome.seconds);
  }
  if (!sent) return tl::unexpected(sent.error());

  if (request.delete_source) {
    auto released = store_.release(request.key, version);
    outcome.source_deleted = released.has_value();
    if (!released && released.error().code != ErrorCode::kNotFound) {
      spdlog::info("send {}: {}", request.key, released.error().message);
    }
  }
  return outcome;
}

Result<PeerConnection> Sender::connect(const Address& address) const {
  return PeerConnection::open(address, options_.timeout, &store_.stopping(), options_.tls.get());
}

std::string Sender::peer_headers() const {
  const std::string& name = membership_.self_name();
  const bool plain =
      std::all_of(name.begin(), name.end(), [](char c) { return c > 0x20 && c < 0x7f; });
  std::string headers = fmt::format("X-Gswarm-Node: {}\r\n", plain ? name : "unnamed");
  if (!options_.token.empty())
    headers += fmt::format("Authorization: Bearer {}\r\n", options_.token);
  return headers;
}

Result<void> Sender::transfer(const SendRequest& request, const Source& source,
                              SendOutcome& outcome) {
  const std::string auth = peer_headers();
  const Address& address = outcome.address;
  const std::string key = url_encode(request.key);
  const std::string location = url_encode(outcome.destination.name());
  const std::string format = url_encode(outcome.format);

  int streams =
      std::clamp(request.streams > 0 ? request.streams : options_.streams, 1, kMaxStreams);
  // JSON values go whole: the target checks them as one document.
  if (outcome.size < options_.parallel_threshold || outcome.format == "json") streams = 1;
  // Every range at least one alignment unit.
  streams = static_cast<int>(
      std::max<std::uint64_t>(1, std::min<std::uint64_t>(streams, outcome.size / kRangeAlign)));
  outcome.streams = streams;

  if (streams == 1 && !request.chunk) {
    auto conn = connect(address);
    if (!conn) return tl::unexpected(conn.error());
    auto answer = send_body(
        *conn, "POST",
        fmt::format("/write_extended?key={}&location={}&format={}", key, location, format), source,
        0, outcome.size, auth);
    if (!answer) return tl::unexpected(answer.error());
    bytes_sent_.fetch_add(outcome.size, std::memory_order_relaxed);
    return {};
  }
  return transfer_in_ranges(request, source, outcome, streams);
}

Result<void> Sender::transfer_in_ranges(const SendRequest& request, const Source& source,
                                        SendOutcome& outcome, int streams) {
  const std::string auth = peer_headers();
  const Address& address = outcome.address;
  // Begin a transfer at the target (which reserves the value's room) on a
  // connection kept open until the commit: the transfer is tied to it, so if
  // this server fails or dies, its closing tells the target to drop what it
  // received, at once, with no request to make.
  auto control = connect(address);
  if (!control) return tl::unexpected(control.error());
  json begin = {{"key", request.key},
                {"size", outcome.size},
                {"location", outcome.destination.name()},
                {"format", outcome.format}};
  if (request.chunk) begin["chunk"] = json::parse(*request.chunk);
  auto begun = accepted(address, control->call("POST", "/transfers", begin.dump(), auth));
  if (!begun) return tl::unexpected(begun.error());
  auto id = json_field(address, *begun, "transfer");
  if (!id) return tl::unexpected(id.error());
  const std::string range_target = fmt::format("/transfers/{}", url_encode(*id));

  std::mutex mutex;
  std::optional<Error> failure;  // the first one
  std::vector<int> sockets;      // of ranges in flight, shut down when one fails
  auto fail = [&](Error error) {
    std::lock_guard lock(mutex);
    if (failure) return;
    failure = std::move(error);
    for (int fd : sockets) ::shutdown(fd, SHUT_RDWR);
  };
  const std::uint64_t per =
      (outcome.size / static_cast<std::uint64_t>(streams)) & ~(kRangeAlign - 1);
  auto run_range = [&](int index) {
    const std::uint64_t offset = per * static_cast<std::uint64_t>(index);
    const std::uint64_t length = index == streams - 1 ? outcome.size - offset : per;
    if (length == 0) return;
    auto conn = connect(address);
    if (!conn) return fail(conn.error());
    {
      std::lock_guard lock(mutex);
      if (failure) return;
      sockets.push_back(conn->native_handle());
    }
    auto answer = send_body(*conn, "PUT", fmt::format("{}?offset={}", range_target, offset),
                            source, offset, length, auth);
    {
      std::lock_guard lock(mutex);
      std::erase(sockets, conn->native_handle());
    }
    if (!answer) return fail(answer.error());
    bytes_sent_.fetch_add(length, std::memory_order_relaxed);
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < streams; ++i) {
    try {
      threads.emplace_back(run_range, i);
    } catch (const std::system_error& e) {  // out of threads: the send fails, cleanly
      fail(Error{ErrorCode::kUnavailable,
                 fmt::format("cannot start a thread for stream {}: {}", i + 1, e.what())});
      break;
    }
  }
  run_range(0);
  for (auto& t : threads) t.join();
  // The control connection closes on the way out: the target drops the transfer.
  if (failure) return tl::unexpected(*failure);

  auto committed = control->call("POST", range_target, "", auth);
  if (committed) return accepted(address, std::move(committed)).map([](const PeerAnswer&) {});
  // No answer: the target may have stored the value, or not yet, or never will.
  // Closing the connection first settles a transfer whose commit it never read.
  control = tl::unexpected(committed.error());
  return outcome_of(address, *id, committed.error());
}

Result<void> Sender::outcome_of(const Address& address, const std::string& id,
                                const Error& lost) const {
  const std::string auth = peer_headers();
  const std::string target = fmt::format("/transfers/{}", url_encode(id));
  const auto started = std::chrono::steady_clock::now();
  const auto quiet_until = started + options_.timeout;  // "receiving": the commit may be on its way
  std::string last = lost.message;
  while (!store_.stopping().load(std::memory_order_relaxed)) {
    auto conn = PeerConnection::open(address, std::min(options_.timeout, kOutcomeTimeout),
                                     &store_.stopping(), options_.tls.get());
    auto answer = conn ? conn->call("GET", target, "", auth)
                       : Result<PeerAnswer>(tl::unexpected(conn.error()));
    if (!answer) {
      last = answer.error().message;
      break;  // the target does not answer either
    }
    if (answer->status != 200) {
      last = peer_error(address, *answer).message;
      break;  // it forgot the transfer, or never knew it
    }
    auto state = json::parse(answer->body, nullptr, false);
    const std::string name = state.is_object() ? state.value("state", "") : "";
    if (name == "committed") return {};
    if (name == "failed") {
      return make_error(ErrorCode::kPeerFailed,
                        fmt::format("target {} did not store the value: {}", address.text(),
                                    state.value("detail", "its commit failed")));
    }
    const auto now = std::chrono::steady_clock::now();
    if ((name == "committing" && now - started > kMaxCommit) ||
        (name != "committing" && now > quiet_until)) {
      last = fmt::format("it still says '{}'", name);
      break;
    }
    std::this_thread::sleep_for(kOutcomePoll);
  }
  return make_error(ErrorCode::kOutcomeUnknown,
                    fmt::format("target {} received every byte but did not say whether it stored "
                                "them ({}), so the source was kept: see whether the target has "
                                "the key before sending it again",
                                address.text(), last));
}

}  // namespace gswarm::cluster
