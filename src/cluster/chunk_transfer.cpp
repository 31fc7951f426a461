#include "cluster/chunk_transfer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cluster/peer_connection.hpp"
#include "core/url.hpp"

namespace gswarm::cluster {
Result<ChunkTransfer> prepare_chunk_transfer(pool::Pool& pool, const Store& store,
                                             std::string_view id) {
  auto chunk = pool.get(id, true);
  if (!chunk) return tl::unexpected(chunk.error());
  auto replica = store.open_replica(id, std::nullopt);
  if (!replica) return tl::unexpected(replica.error());
  ChunkTransfer transfer;
  transfer.chunk = std::move(*chunk);
  transfer.replica = std::move(*replica);
  return transfer;
}

Result<ChunkTransferOutcome> transfer_chunk(pool::Pool& pool, Sender& sender,
                                            const ChunkTransfer& transfer) {
  const std::string& id = transfer.chunk.id;
  SendRequest request;
  request.key = id;
  request.target = transfer.target;
  request.replica = transfer.replica;
  request.operation = transfer.operation;
  auto sent = sender.send(request);
  if (!sent) return tl::unexpected(sent.error());

  ChunkTransferOutcome outcome;
  outcome.sent = *sent;
  auto conn = sender.connect(sent->address);
  Result<PeerAnswer> answer =
      conn ? conn->call("PUT", "/api/v1/data/" + url_encode(id),
                        pool::metadata_json(transfer.chunk), sender.peer_headers())
           : Result<PeerAnswer>(tl::unexpected(conn.error()));
  if (!answer || answer->status != 200) {
    Error why = answer ? peer_error(sent->address, *answer) : answer.error();
    // The bytes without their metadata would be a stray key there.
    if (conn) {
      auto released = conn->call("DELETE", "/release/" + url_encode(id), "", sender.peer_headers());
      if (!released) spdlog::info("transfer {}: {}", id, released.error().message);
    }
    why.message =
        fmt::format("the bytes arrived but the chunk's metadata did not: {}", why.message);
    return tl::unexpected(why);
  }
  if (transfer.delete_source) {
    auto removed = pool.remove(id, false);
    outcome.source_deleted = removed.has_value();
    if (!removed) spdlog::info("transfer {}: source kept: {}", id, removed.error().message);
  }
  return outcome;
}

}  // namespace gswarm::cluster
