// Sender: copies a key to another server (POST /send_extended, `gswarm data
// send`). The value streams from the replica it is read from (dram and pinned
// from memory, disk with sendfile, device:N through host buffers) to the
// target's write path, over one connection, or over several at once for a large
// value, each carrying one byte range (doc/http-api.md, "Transfers in ranges").
// Nothing is held whole on either side, and the target makes the key visible
// only once every byte arrived.
//
// Thread-safe; send() blocks (run it on a mover).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <gswarm/error.hpp>

#include "cluster/membership.hpp"
#include "cluster/peer_connection.hpp"
#include "cluster/target.hpp"
#include "storage/store.hpp"
#include "tls/tls.hpp"

namespace gswarm::cluster {

struct SenderOptions {
  int streams = 4;                                 // connections for one large value
  std::uint64_t parallel_threshold = 64ull << 20;  // values from this size use `streams`
  std::chrono::milliseconds timeout{30'000};       // connect, and no progress, before failing
  std::string token;  // sent as "Authorization: Bearer <token>" when not empty
  // Not null: other servers are spoken to over TLS, their certificates checked
  // against these (the cluster's --tls-ca).
  std::shared_ptr<const tls::ClientContext> tls;
};

struct SendRequest {
  std::string key;
  Target target;                   // resolved through membership when it names a node
  std::optional<Location> source;  // the replica to send; nullopt: the primary
  bool delete_source = false;      // release the key here once the target has it
  int streams = 0;                 // 0: the server's default
  // An operation the caller made and finishes (a chunk transfer); 0: the send
  // records its own, of kind "send".
  std::uint64_t operation = 0;
  // A replica opened beforehand (a chunk transfer sends the chunk as it was
  // when asked); nullopt: opened when the send starts.
  std::optional<ReplicaView> replica;
  // A data pool chunk's metadata (pool::metadata_json): the value goes as a
  // transfer that carries it, so that the target makes it a chunk, bytes and
  // metadata at once.
  std::optional<std::string> chunk;
};

struct SendOutcome {
  std::string node;  // the target's node name; empty for an explicit address
  Address address;
  Location source;
  Location destination;
  std::string format;
  std::uint64_t size = 0;
  double seconds = 0;
  int streams = 1;
  bool source_deleted = false;
  std::uint64_t operation = 0;  // its record in GET /operations (kind "send")
};

class Sender {
 public:
  Sender(Store& store, Membership& membership, SenderOptions options)
      : store_(store), membership_(membership), options_(std::move(options)) {}

  // Blocking. kNotFound for a missing key or an unknown node; the target's own
  // error when it refuses; kPeerFailed / kPeerTimeout when it cannot be reached
  // or stops answering; kOutcomeUnknown when it received every byte but cannot
  // say whether it stored them. Errors name the target (node and address). The
  // source is untouched unless delete_source and the target acknowledged.
  // While it runs, its progress is an operation of kind "send" in
  // store.operations().
  [[nodiscard]] Result<SendOutcome> send(const SendRequest& request);
  const SenderOptions& options() const { return options_; }
  // The header lines every request to a peer carries: this node's name
  // (X-Gswarm-Node, so the peer counts what it receives from other nodes) and
  // the token, when there is one.
  std::string peer_headers() const;
  // A connection to a peer as every request to one is made: this server's
  // timeout, its stop flag, and TLS when the cluster uses it.
  [[nodiscard]] Result<PeerConnection> connect(const Address& address) const;
  // Value bytes sent to peers so far.
  std::uint64_t bytes_sent() const { return bytes_sent_.load(std::memory_order_relaxed); }
  Membership& membership() { return membership_; }

 private:
  class Source;
  // The bytes' journey, one connection or several.
  [[nodiscard]] Result<void> transfer(const SendRequest& request, const Source& source,
                                      SendOutcome& outcome);
  // As a transfer (POST /transfers, ranges, commit), over `streams` connections.
  [[nodiscard]] Result<void> transfer_in_ranges(const SendRequest& request, const Source& source,
                                                SendOutcome& outcome, int streams);
  // After a commit that got no answer: asks the target how transfer `id` ended.
  [[nodiscard]] Result<void> outcome_of(const Address& address, const std::string& id,
                                        const Error& lost) const;

  Store& store_;
  Membership& membership_;
  const SenderOptions options_;
  std::atomic<std::uint64_t> bytes_sent_{0};
};

}  // namespace gswarm::cluster
