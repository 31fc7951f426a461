#include "cluster/chunk_transfer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>


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
  request.chunk = pool::metadata_json(transfer.chunk);
  auto sent = sender.send(request);
  if (!sent) return tl::unexpected(sent.error());

  ChunkTransferOutcome outcome;
  outcome.sent = *sent;
  if (transfer.delete_source) {
    auto removed = pool.remove(id, false);
    outcome.source_deleted = removed.has_value();
    if (!removed) spdlog::info("transfer {}: source kept: {}", id, removed.error().message);
  }
  return outcome;
}

}  // namespace gswarm::cluster
