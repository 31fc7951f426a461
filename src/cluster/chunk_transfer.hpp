// A data pool chunk's transfer to another node (POST /api/v1/data/{id}/transfer):
// its bytes go through the Sender as a transfer in ranges that carries the
// chunk's metadata, and the target makes them a chunk of its own pool, bytes
// and metadata at once, once the bytes match the metadata's checksum. Only once
// the target acknowledged is the local chunk deleted, when asked.
#pragma once

#include <cstdint>
#include <string>

#include <gswarm/error.hpp>

#include "cluster/sender.hpp"
#include "pool/pool.hpp"

namespace gswarm::cluster {

// A transfer sends the chunk as it was when it was asked for: its metadata and
// its bytes (held open) are taken then, so a delete that follows the request
// does not stop it.
struct ChunkTransfer {
  pool::Chunk chunk;
  ReplicaView replica;
  Target target;
  bool delete_source = false;
  std::uint64_t operation = 0;  // made by the caller, who finishes it
};

struct ChunkTransferOutcome {
  SendOutcome sent;
  bool source_deleted = false;
};

// Takes the chunk's metadata and opens its bytes (kNotFound for no such chunk).
[[nodiscard]] Result<ChunkTransfer> prepare_chunk_transfer(pool::Pool& pool, const Store& store,
                                                           std::string_view id);
// Blocking (run it on a mover).
[[nodiscard]] Result<ChunkTransferOutcome> transfer_chunk(pool::Pool& pool, Sender& sender,
                                                          const ChunkTransfer& transfer);

}  // namespace gswarm::cluster
