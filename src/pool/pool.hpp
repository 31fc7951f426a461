// Pool: the data pool (doc/http-api.md, "Data pool"). A chunk is a Store entry
// whose key is the chunk's id ("chunk_" and 16 hex digits) plus metadata the
// Pool keeps: type, format, source, checksum, times, access count and the names
// that hold a reference to it. The bytes live in the Store's tiers and move with
// its movers; the KV endpoints may read a chunk's key (and open read pointers to
// it) but not write, move or release it (Pool::owns).
//
// Keys named like chunk ids are the pool's alone: the KV endpoints may not write,
// move or release them, even before a chunk of that id exists.
//
// Persistence: the metadata of a chunk whose bytes are on disk is a small JSON
// file, <disk root>/pool/<id>.json, written (atomically) before the bytes become
// visible and removed after they are gone; at start-up a file whose chunk has no
// bytes on disk is dropped, and so are bytes named like a chunk without metadata. So a chunk on disk survives restarts and kill -9 with
// its metadata; access times and counts are as of the last metadata write.
//
// Thread-safe. Methods marked blocking do I/O or copies: run them on the
// Store's task pools.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gswarm/error.hpp>

#include "storage/store.hpp"

namespace gswarm::pool {

enum class ChunkType : std::uint8_t { kInput, kOutput, kIntermediate };
[[nodiscard]] Result<ChunkType> parse_chunk_type(std::string_view text);
std::string_view chunk_type_name(ChunkType type);

// Where a new chunk's bytes come from: read in order, in bounded pieces.
class Source {
 public:
  virtual ~Source() = default;
  virtual std::uint64_t size() const = 0;
  // Fills `out` with the next bytes (blocking). An error when the source ends
  // early or fails.
  [[nodiscard]] virtual Result<void> read(std::span<std::byte> out) = 0;
};

// A file on this server, readable only under `roots` (canonical directories):
// kForbidden, naming --source-root, for anything else (symbolic links that
// leave a root included); kNotFound when it does not exist; kBadRequest for a
// relative path or something that is not a regular file.
[[nodiscard]] Result<std::unique_ptr<Source>> open_file_source(
    std::string_view path, const std::vector<std::filesystem::path>& roots);
// A KV key's value (its primary replica), which stays as it is.
[[nodiscard]] Result<std::unique_ptr<Source>> open_key_source(const Store& store,
                                                              std::string_view key);

// A chunk as the pool describes it.
struct Chunk {
  std::string id;
  ChunkType type = ChunkType::kInput;
  std::string format = "tensor";
  std::string source;  // what it was created from, as given
  std::uint64_t size = 0;
  std::string checksum;  // "xxh3:<16 hex>"
  std::string created_by;  // the node that created it
  double created_at = 0;  // unix seconds
  double last_accessed = 0;
  std::uint64_t access_count = 0;
  std::vector<std::string> references;  // names of holders, in the order they came
  std::vector<ReplicaState> locations;    // from the Store, primary first
};

// What create() and the uploads are asked for.
struct ChunkSpec {
  Location device;
  ChunkType type = ChunkType::kInput;
  std::string format = "tensor";
  std::string source;
};

// Which chunks a listing shows: those with a complete copy on a device ("gpu":
// any GPU), of a type.
class ChunkFilter {
 public:
  // kInvalidLocation for a device name that is no device.
  [[nodiscard]] static Result<ChunkFilter> make(std::optional<std::string_view> device,
                                                std::optional<ChunkType> type);
  std::optional<ChunkType> type() const { return type_; }
  bool matches(const Chunk& chunk) const;

 private:
  std::optional<Location> device_;
  bool any_gpu_ = false;
  std::optional<ChunkType> type_;
};

struct PoolOptions {
  std::vector<std::filesystem::path> source_roots;  // canonical; empty: no server files
  std::string node_name;                            // recorded as created_by
};

class Pool {
 public:
  static constexpr std::size_t kMaxReferences = 128;  // metadata stays under 64 KiB
  static constexpr std::size_t kMaxReferenceName = 128;

  // Loads the metadata of the chunks whose bytes the Store recovered from disk.
  // Blocking.
  [[nodiscard]] static Result<std::unique_ptr<Pool>> open(Store& store, PoolOptions options);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Whether `key` is a chunk's (from when its bytes are committed until it is
  // deleted): the KV endpoints leave it alone.
  bool owns(std::string_view key) const;
  // A device name as the pool's clients write it: dram, cpu, pinned_dram, disk,
  // device:N, gpu:N, or gpu (the GPU with the most free memory). kInvalidLocation
  // for unknown names, kDeviceUnavailable for GPUs this server does not have.
  [[nodiscard]] Result<Location> resolve_device(std::string_view name) const;
  const std::vector<std::filesystem::path>& source_roots() const { return options_.source_roots; }

  // A fresh chunk id, for create() (one taken before the bytes arrive lets an
  // asynchronous create name its chunk at once).
  std::string new_id() const;
  // Blocking: chunk `id` (from new_id()) from `source`, its bytes checksummed as
  // they are copied into the device's tier in bounded pieces. Progress, when
  // given, gets the bytes as they arrive and may cancel the copy.
  [[nodiscard]] Result<Chunk> create(const std::string& id, Source& source, const ChunkSpec& spec,
                                     const std::shared_ptr<CopyProgress>& progress = nullptr);
  // An upload: room for `size` bytes whose body is still to arrive (append()
  // computes the checksum); then commit_upload (blocking when
  // pending.needs_io()). Dropping the PendingWrite instead leaves nothing.
  [[nodiscard]] Result<PendingWrite> prepare_upload(const ChunkSpec& spec, std::uint64_t size);
  [[nodiscard]] Result<Chunk> commit_upload(PendingWrite pending, const ChunkSpec& spec);
  // Blocking: the receiving side of a chunk's transfer. Installs `pending` (its
  // bytes all arrived) as chunk `metadata` (as its sender described it): the
  // bytes and the metadata become visible together. kConflict when the bytes'
  // checksum is not the metadata's (nothing is stored) or the chunk exists here.
  [[nodiscard]] Result<Chunk> commit_received(PendingWrite pending, Chunk metadata);

  // A chunk, counted as an access when `access`.
  [[nodiscard]] Result<Chunk> get(std::string_view id, bool access = true);
  // The ids of the chunks of `type` (every type: nullopt), oldest first: a
  // snapshot a listing pages through with get().
  std::vector<std::string> ids(std::optional<ChunkType> type) const;
  std::size_t count() const;

  // Queues a move of the chunk's bytes with `priority`; its operation id.
  [[nodiscard]] Result<std::uint64_t> start_move(std::string_view id, Location destination,
                                                 TaskPriority priority);

  // References: `holder` names who uses the chunk (a job, a model). Adding a
  // name it already holds changes nothing. Blocking (metadata on disk).
  [[nodiscard]] Result<Chunk> add_reference(std::string_view id, std::string_view holder);
  [[nodiscard]] Result<Chunk> drop_reference(std::string_view id, std::string_view holder);

  // kConflict when the chunk is referenced and not `force`.
  [[nodiscard]] Result<void> check_removable(std::string_view id, bool force) const;
  // Blocking: deletes the chunk, its bytes in every tier and its metadata.
  [[nodiscard]] Result<void> remove(std::string_view id, bool force);

 private:
  // A chunk's metadata belongs on disk while its bytes are there or on their
  // way there: creating_on_disk, disk_moves > 0, or a disk replica in the Store.
  struct Record {
    Chunk chunk;  // without locations
    Location location;            // its primary when last seen by the pool
    bool ready = false;           // false until its bytes are in the Store, and once deleting
    bool creating_on_disk = false;  // its bytes are being committed to disk
    int disk_moves = 0;           // moves to disk queued or running
    bool removing = false;        // being deleted: its metadata goes
    bool persisted = false;       // a metadata file exists
  };

  Pool(Store& store, PoolOptions options);
  [[nodiscard]] Result<void> load();
  [[nodiscard]] Result<Chunk> finish_create(PendingWrite pending, const ChunkSpec& spec,
                                            std::string checksum);
  // Makes `pending` chunk `chunk`: its record, then its metadata file (disk), then its bytes.
  [[nodiscard]] Result<Chunk> install(PendingWrite pending, Chunk chunk);
  // Start-up: removes keys named like chunks that have no metadata.
  [[nodiscard]] Result<void> reclaim_strays();
  // Writes or removes the chunk's metadata file as its bytes' place says (see
  // Record). Blocking (only when there is something to do).
  [[nodiscard]] Result<void> sync_metadata(const std::string& id);
  Chunk describe(const Record& record) const;  // with its locations
  // With mutex_ held: the record of a chunk whose bytes are in (kNotFound
  // otherwise), and check_removable.
  [[nodiscard]] Result<Record*> ready_record(std::string_view id);
  [[nodiscard]] Result<const Record*> ready_record(std::string_view id) const;
  [[nodiscard]] Result<void> removable(std::string_view id, bool force) const;
  std::filesystem::path metadata_path(std::string_view id) const;

  Store& store_;
  const PoolOptions options_;
  const std::filesystem::path metadata_dir_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Record> records_;  // guarded by mutex_
  std::mutex files_mutex_;  // one metadata file write at a time, in order
  std::atomic<int> move_callbacks_{0};  // moves whose completion still calls back
};

// Chunk ids: "chunk_" and 16 lowercase hex digits.
bool is_chunk_id(std::string_view text);

// A chunk's metadata (not its locations) as JSON: the form of its file on disk
// and of the "chunk" field of a transfer that carries a chunk to another node.
std::string metadata_json(const Chunk& chunk);
// kBadRequest unless `text` is such metadata with a chunk id, a size and a valid
// type and format (the other fields are optional).
[[nodiscard]] Result<Chunk> parse_metadata_json(std::string_view text);

}  // namespace gswarm::pool
