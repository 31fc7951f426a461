#include "cluster/chunk_transfer.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "cluster/peer_connection.hpp"
#include "core/url.hpp"

namespace gswarm::cluster {
Result<ChunkTransferOutcome> transfer_chunk(pool::Pool& pool, Sender& sender,
                                            const ChunkTransfer& transfer) {
  auto chunk = pool.get(transfer.id, true);
  if (!chunk) return tl::unexpected(chunk.error());
  if (transfer.delete_source) {
    if (auto ok = pool.check_removable(transfer.id, false); !ok) return tl::unexpected(ok.error());
  }
  SendRequest request;
  request.key = transfer.id;
  request.target = transfer.target;
  request.operation = transfer.operation;
  auto sent = sender.send(request);
  if (!sent) return tl::unexpected(sent.error());

  ChunkTransferOutcome outcome;
  outcome.sent = *sent;
  auto conn = PeerConnection::open(sent->address, sender.options().timeout);
  Result<PeerAnswer> answer = conn ? conn->call("PUT", "/api/v1/data/" + url_encode(transfer.id),
                                                pool::metadata_json(*chunk), sender.auth_header())
                                   : Result<PeerAnswer>(tl::unexpected(conn.error()));
  if (!answer || answer->status != 200) {
    Error why = answer ? peer_error(sent->address, *answer) : answer.error();
    // The bytes without their metadata would be a stray key there.
    if (conn) {
      auto released = conn->call("DELETE", "/release/" + url_encode(transfer.id), "",
                                 sender.auth_header());
      if (!released) spdlog::info("transfer {}: {}", transfer.id, released.error().message);
    }
    why.message = fmt::format("the bytes arrived but the chunk's metadata did not: {}", why.message);
    return tl::unexpected(why);
  }
  if (transfer.delete_source) {
    auto removed = pool.remove(transfer.id, false);
    outcome.source_deleted = removed.has_value();
    if (!removed) spdlog::info("transfer {}: source kept: {}", transfer.id, removed.error().message);
  }
  return outcome;
}

}  // namespace gswarm::cluster
