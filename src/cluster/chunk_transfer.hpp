// A data pool chunk's transfer to another node (POST /api/v1/data/{id}/transfer):
// its bytes go through the Sender, like any send; then its metadata is handed
// to the target (PUT /api/v1/data/{id}), which makes the received key a chunk
// of its own pool. Only once the target acknowledged both is the local chunk
// deleted, when asked.
#pragma once

#include <cstdint>
#include <string>

#include <gswarm/error.hpp>

#include "cluster/sender.hpp"
#include "pool/pool.hpp"

namespace gswarm::cluster {

struct ChunkTransfer {
  std::string id;
  Target target;
  bool delete_source = false;
  std::uint64_t operation = 0;  // made by the caller, who finishes it
};

struct ChunkTransferOutcome {
  SendOutcome sent;
  bool source_deleted = false;
};

// Blocking (run it on a mover).
[[nodiscard]] Result<ChunkTransferOutcome> transfer_chunk(pool::Pool& pool, Sender& sender,
                                                          const ChunkTransfer& transfer);

}  // namespace gswarm::cluster
