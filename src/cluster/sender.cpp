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
  if (auto ok = source.stream(conn, offset, length); !ok) return tl::unexpected(ok.error());
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

  if (streams == 1) {
    auto conn = connect(address);
    if (!conn) return tl::unexpected(conn.error());
    auto answer = send_body(
        *conn, "POST",
        fmt::format("/write_extended?key={}&location={}&format={}", key, location, format), source,
        0, outcome.size, auth);
    if (!answer) return tl::unexpected(answer.error());
    bytes_sent_.fetch_add(outcome.size, std::memory_order_relaxed);
  } else {
    // Begin a transfer at the target (which reserves the value's room), send the
    // ranges at once, then commit.
    std::string transfer;
    {
      auto conn = connect(address);
      if (!conn) return tl::unexpected(conn.error());
      json begin = {{"key", request.key},
                    {"size", outcome.size},
                    {"location", outcome.destination.name()},
                    {"format", outcome.format}};
      auto answer = accepted(address, conn->call("POST", "/transfers", begin.dump(), auth));
      if (!answer) return tl::unexpected(answer.error());
      auto id = json_field(address, *answer, "transfer");
      if (!id) return tl::unexpected(id.error());
      transfer = std::move(*id);
    }
    const std::string range_target = fmt::format("/transfers/{}", url_encode(transfer));

    std::mutex mutex;
    std::optional<Error> failure;  // the first one
    std::vector<int> sockets;      // of ranges in flight, shut down when one fails
    auto fail = [&](Error error) {
      std::lock_guard lock(mutex);
      if (failure) return;
      failure = std::move(error);
      for (int fd : sockets) ::shutdown(fd, SHUT_RDWR);
    };
    std::uint64_t per = (outcome.size / static_cast<std::uint64_t>(streams)) & ~(kRangeAlign - 1);
    auto run_range = [&](int index) {
      const std::uint64_t offset = per * static_cast<std::uint64_t>(index);
      const std::uint64_t length = index == streams - 1 ? outcome.size - offset : per;
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

    auto conn = connect(address);
    if (failure || !conn) {
      // The target drops what it received; it would also on its own, after its timeout.
      if (conn) (void)conn->call("DELETE", range_target, "", auth);
      return tl::unexpected(failure ? *failure : conn.error());
    }
    auto answer = accepted(address, conn->call("POST", range_target, "", auth));
    if (!answer) return tl::unexpected(answer.error());
  }
  return {};
}

}  // namespace gswarm::cluster
