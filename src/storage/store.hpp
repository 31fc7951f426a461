// Store: the storage engine. Keys map to entries; an entry has one value (size,
// format tag, version) held by one or more replicas, each in one tier.
//
// Semantics (doc/http-api.md):
//  - write is atomic per key: the new value is complete before it replaces the
//    old one; a failed write leaves the old value as it was.
//  - read serves DRAM only; a key elsewhere is kWrongLocation.
//  - move is copy-then-switch: the destination replica shows as "copying", is
//    filled and sealed, then replaces the source, which is discarded. A write or
//    release during the move wins: it cancels the copy, makes sure the copy's
//    file can never appear on disk, and only then is acknowledged; the move then
//    fails with kConflict. So after a crash the disk holds exactly the last
//    acknowledged state of every key.
//  - release removes the key from every tier.
//
// Memory: every key costs DRAM for its metadata (kKeyOverhead plus the key's
// bytes), counted against --max-memory with the DRAM values themselves. An entry
// is 32 bytes, allocated with its key; the index is an open-addressing table of
// pointers; a small DRAM value shares one allocation with its extent header.
//
// Thread-safety: every method may be called concurrently from any thread. The
// index is sharded, a mutex per shard, and no lock is held during I/O or copies.
// Methods marked "blocking" do disk I/O or copies: call them from the task pools
// (io() for request steps, movers() for copies) or other threads that may
// block, not from network threads.
#pragma once

#include <array>
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/unordered/unordered_flat_set.hpp>
#include <gswarm/error.hpp>

#include "core/checksum.hpp"
#include "core/location.hpp"
#include "core/size.hpp"
#include "storage/device_backend.hpp"
#include "storage/extent.hpp"
#include "storage/operations.hpp"
#include "storage/shared_memory.hpp"
#include "storage/task_pool.hpp"
#include "storage/tier.hpp"

namespace gswarm {

class DramTier;
class DiskTier;
class PinnedTier;
class DeviceTier;
class Tier;

struct StoreOptions {
  std::uint64_t max_memory = 16 * kGiB;    // DRAM limit (--max-memory)
  std::uint64_t max_pinned = 4 * kGiB;     // pinned_dram limit (--max-pinned)
  std::uint64_t max_device_memory = 0;     // per device; 0: 90% of free at start
  std::shared_ptr<DeviceBackend> devices;  // null: default_device_backend()
  std::filesystem::path disk_path = "/tmp/gswarm_data";
  std::uint64_t max_disk = 0;           // 0: bounded by the file system only
  int move_threads = 4;                 // copies between tiers
  int io_threads = 4;                   // blocking steps of requests
  std::size_t max_queued_moves = 1024;  // asynchronous moves waiting to run
  std::uint64_t move_rate_limit = 0;    // bytes/s per move; 0: unlimited
  // What key metadata may take (--max-key-metadata). It is counted in DRAM's
  // use but bounded by this allowance instead of --max-memory, so that a full
  // DRAM still takes writes to other tiers. 0: max_memory / 16, at least 64 MiB
  // (unbounded when max_memory is).
  std::uint64_t max_key_metadata = 0;
};

enum class CopyStatus : std::uint8_t { kComplete, kCopying, kError };
std::string_view copy_status_name(CopyStatus status);

struct ReplicaState {
  Location location;
  std::uint64_t size = 0;
  double last_accessed = 0;  // unix seconds
  CopyStatus status = CopyStatus::kComplete;
  double progress = 1.0;  // 0..1
  std::optional<ReadPointer> read_pointer;
};

struct KeyLocations {
  std::string key;
  Location primary;
  std::string format;
  std::vector<ReplicaState> replicas;  // primary first
};

// One page of GET /locations: keys in a stable order, and where to go on.
struct LocationsPage {
  std::vector<KeyLocations> keys;
  std::string next_cursor;  // empty: this was the last page
};

struct WriteResult {
  Location location;
  std::uint64_t size = 0;
  std::string format;
};

struct MoveOutcome {
  Location source;
  Location destination;
  std::uint64_t size = 0;
  double seconds = 0;
  std::string method;  // how the bytes travelled (copy_extent)
  std::optional<ReadPointer> read_pointer;
};

// One replica of a key, held for reading (a send streams from it): the bytes stay
// valid after the key changes. `version` identifies the value it belongs to.
struct ReplicaView {
  ConstExtentRef extent;
  std::string format;
  std::uint64_t version = 0;
};

// A DRAM value being read: holds the bytes alive after the key changes.
struct ValueView {
  ConstExtentRef extent;
  std::string format;
  std::span<const std::byte> bytes() const { return {extent->host_data(), extent->size()}; }
  std::string_view text() const {
    return {reinterpret_cast<const char*>(extent->host_data()), extent->size()};
  }
};

struct DeviceStats {
  std::string name;         // "device:N"
  std::uint64_t used = 0;   // bytes gswarm holds there
  std::uint64_t limit = 0;  // --max-device-memory
  std::uint64_t free = 0;   // the driver's view of the whole device
  std::uint64_t total = 0;
  std::uint64_t keys = 0;
};

struct StoreStats {
  std::uint64_t dram_used = 0, dram_limit = 0;  // used: values, headers and key metadata
  std::uint64_t dram_value_bytes = 0;           // the DRAM values alone
  std::uint64_t metadata_bytes = 0;             // what keys cost, in every tier
  std::uint64_t pinned_used = 0, pinned_limit = 0;
  std::uint64_t disk_used = 0, disk_limit = 0;
  std::uint64_t total_keys = 0;
  std::uint64_t dram_keys = 0, pinned_keys = 0, disk_keys = 0, device_keys = 0;
  std::map<std::string, std::uint64_t> location_counts;
  std::uint64_t active_moves = 0;
  std::uint64_t queued_moves = 0;
  int move_threads = 0;
  int io_threads = 0;
  std::string disk_path;
  std::uint64_t host_cache_bytes = 0;    // freed DRAM segments kept for reuse
  std::uint64_t pinned_cache_bytes = 0;  // freed pinned segments kept for reuse
  std::string device_backend;
  std::vector<DeviceStats> devices;
};

// A write whose bytes are still arriving. For host tiers (direct()) they go
// straight into the destination's memory, buffer(); for disk and devices they
// are append()ed in order, in bounded pieces, so no tier needs a staging copy of
// the whole value.
class PendingWrite {
 public:
  bool direct() const { return extent_->host_data() != nullptr; }
  // The destination bytes (direct() only). Mark them received with
  // append_direct() or just commit once full.
  std::span<std::byte> buffer() { return {extent_->host_data(), extent_->size()}; }
  // Appends the next bytes in order. Blocking unless direct().
  [[nodiscard]] Result<void> append(std::span<const std::byte> bytes);
  // Stores bytes at `offset`, for a value that arrives in disjoint ranges (over
  // several connections at once). Concurrent calls are safe when
  // concurrent_ranges(); otherwise the caller makes them one at a time.
  // Blocking unless direct(). Once every byte was stored, mark_all_received().
  [[nodiscard]] Result<void> write_at(std::uint64_t offset, std::span<const std::byte> bytes);
  bool concurrent_ranges() const { return extent_->concurrent_ranges(); }
  void mark_all_received() { received_ = size(); }
  std::uint64_t size() const { return extent_->size(); }
  std::uint64_t received() const { return received_; }
  // True when commit_write does disk I/O (sealing a disk file, or removing the
  // file of a value it replaces): run it on the io pool.
  bool needs_io() const { return needs_io_; }
  const std::string& key() const { return key_; }
  Location location() const { return location_; }
  // From now on append() also computes the bytes' checksum (data pool uploads).
  // Fills through buffer() are not seen: a writer that wants one appends.
  void track_checksum() { checksum_ = std::make_unique<Checksum>(); }
  bool tracks_checksum() const { return checksum_ != nullptr; }
  // For a small direct() value received whole through buffer(): checksums it
  // now, while its bytes are still in the cache.
  void checksum_buffer() {
    if (checksum_ && direct()) checksum_->update(buffer());
  }
  const Checksum* checksum() const { return checksum_.get(); }
  // XXH3-64 of the bytes once they all arrived (however they came: appended,
  // through buffer(), in ranges), to check them against their sender's
  // checksum before commit_write. Blocking unless direct().
  [[nodiscard]] Result<std::uint64_t> digest() { return extent_->digest(); }

 private:
  friend class Store;
  std::string key_;
  std::string format_;
  Location location_;
  ExtentRef extent_;
  std::uint64_t received_ = 0;
  bool needs_io_ = false;
  std::unique_ptr<Checksum> checksum_;
};

class Store {
 public:
  // DRAM a key costs beyond its key bytes: entry, index slot, allocation slack.
  static constexpr std::uint64_t kKeyOverhead = 48;

  // Opens the disk root and recovers the values persisted there.
  [[nodiscard]] static Result<std::unique_ptr<Store>> open(const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // kDeviceUnavailable / kNotSupported for locations this server cannot hold.
  [[nodiscard]] Result<void> check_location(Location location) const;

  // Reserves room for a value of `size` bytes (limits are checked here, before
  // any byte arrives; a disk file is created).
  [[nodiscard]] Result<PendingWrite> prepare_write(std::string key, Location location,
                                                   std::uint64_t size, std::string_view format);
  // Installs the value once all its bytes were received. Blocking when
  // pending.needs_io().
  [[nodiscard]] Result<WriteResult> commit_write(PendingWrite pending);
  // prepare + copy + commit. Blocking for non-DRAM locations.
  [[nodiscard]] Result<WriteResult> write(std::string key, std::span<const std::byte> value,
                                          Location location, std::string_view format);

  [[nodiscard]] Result<ValueView> read(std::string_view key);
  // Blocking (disk files are removed). With `version`, only that value is
  // removed: a key written since is kept and the answer is kConflict.
  [[nodiscard]] Result<void> release(std::string_view key,
                                     std::optional<std::uint64_t> version = std::nullopt);
  // The key's complete replica in `location` (its primary when nullopt), held
  // for reading. kNotFound, or kWrongLocation when it has no copy there.
  [[nodiscard]] Result<ReplicaView> open_replica(std::string_view key,
                                                 std::optional<Location> location) const;
  // Blocking: copies on the calling thread.
  [[nodiscard]] Result<MoveOutcome> move(std::string_view key, Location destination);
  // Queues the move on the movers and returns its operation id at once; progress
  // and outcome are in operations(). kTooManyRequests when max_queued_moves
  // moves are already waiting. Higher priorities are taken first; `done`, when
  // set, runs on the mover with the outcome, before the operation shows it.
  using MoveDone = std::function<void(const Result<MoveOutcome>&)>;
  [[nodiscard]] Result<std::uint64_t> start_move(std::string key, Location destination,
                                                 TaskPriority priority = TaskPriority::kNormal,
                                                 MoveDone done = {});
  // Blocking: like move(), but the source replica stays, so the key then lives in
  // both places (what `send` to a device of this node does). `source`, when set,
  // picks the replica to copy from. Release removes every replica.
  [[nodiscard]] Result<MoveOutcome> copy(std::string_view key, Location destination,
                                        std::optional<Location> source = std::nullopt);
  const Operations& operations() const { return operations_; }
  // Where other long copies (sends to other servers) record their progress.
  Operations& operations() { return operations_; }

  // A read-only descriptor of exactly the bytes of the key's replica in
  // `location` (its primary when nullopt), for another local process.
  // Blocking (small values are copied into a sealed segment, disk files opened).
  [[nodiscard]] Result<ExportedValue> export_value(std::string_view key,
                                                   std::optional<Location> location);

  [[nodiscard]] Result<KeyLocations> location(std::string_view key) const;
  // Up to `limit` keys after `cursor` (empty: from the start), in the order of
  // the index's shards and, within one, of the keys; only those matching the
  // glob `pattern` (fnmatch(3): *, ?, [...]; "*" matches "/" too) when it is
  // not empty. kBadRequest for a cursor this server did not make.
  [[nodiscard]] Result<LocationsPage> locations_page(std::string_view cursor, std::size_t limit,
                                                     std::string_view pattern = {}) const;
  StoreStats stats() const;
  void set_max_memory(std::uint64_t bytes);

  // From now on, queued and running copies stop early and new ones are refused
  // (kUnavailable), so that shutdown takes bounded time.
  void begin_shutdown();
  // Set by begin_shutdown(), for other long work (sends) to watch.
  const std::atomic<bool>& stopping() const { return stopping_; }

  // The disk tier's directory (--disk-path), made absolute.
  const std::filesystem::path& disk_root() const;

  TaskPool& movers() { return *movers_; }
  // How many tasks may wait for the movers (--max-queued-moves).
  std::size_t max_queued_moves() const { return options_.max_queued_moves; }
  TaskPool& io() { return *io_; }
  int device_count() const { return static_cast<int>(devices_.size()); }

 private:
  struct Replica {
    ExtentRef extent;  // null while a copy is being prepared
    Location location;
    CopyStatus status = CopyStatus::kComplete;
    Operations::Progress progress;  // while copying
  };
  // What most keys do not need: further replicas and copies in flight.
  struct Extras {
    std::vector<Replica> replicas;  // besides the primary
    bool moving = false;
  };
  struct Entry {
    std::uint64_t version = 0;
    ExtentRef primary;  // always complete; its tier is the key's location
    std::unique_ptr<Extras> extras;
    std::uint32_t last_accessed = 0;  // unix seconds
    std::uint16_t format = 0;         // interned format tag; the entry holds a reference
    std::uint16_t key_size = 0;
  };
  // An entry and its key in one allocation: the key's bytes follow the node.
  struct Node {
    Entry entry;
    std::string_view key() const {
      return {reinterpret_cast<const char*>(this + 1), entry.key_size};
    }
    static Node* create(std::string_view key);
    static void destroy(Node* node);
  };
  struct NodeHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const;
    std::size_t operator()(const Node* node) const { return (*this)(node->key()); }
  };
  struct NodeEqual {
    using is_transparent = void;
    static std::string_view key_of(std::string_view k) { return k; }
    static std::string_view key_of(const Node* n) { return n->key(); }
    template <typename A, typename B>
    bool operator()(const A& a, const B& b) const {
      return key_of(a) == key_of(b);
    }
  };
  struct Shard {
    mutable std::mutex mutex;
    boost::unordered_flat_set<Node*, NodeHash, NodeEqual> nodes;  // guarded by mutex
    // Disk replicas taken out of the index whose files may still exist, by key
    // (usually empty). Whatever next changes the key retires them too before it
    // is acknowledged, so a crash cannot bring back a file that an acknowledged
    // write or release replaced. Guarded by mutex.
    std::unordered_map<std::string, std::vector<ExtentRef>, NodeHash, std::equal_to<>> retiring;
  };
  static constexpr std::size_t kShards = 64;
  static constexpr int kMaxDevices = 16;
  static constexpr std::size_t kLocationSlots = 3 + kMaxDevices;

  explicit Store(const StoreOptions& options);
  std::size_t shard_index(std::string_view key) const;
  Shard& shard_for(std::string_view key) const { return shards_[shard_index(key)]; }
  Tier* tier(Location location) const;
  static std::size_t slot(Location location);
  // Adjusts key counts for the entry's complete replicas. Caller holds its shard lock.
  void count(const Entry& entry, int delta);
  KeyLocations describe(std::string_view key, const Entry& entry) const;
  struct MoveMode {
    bool keep_source = false;
    std::optional<Location> source;
  };
  Result<MoveOutcome> move_impl(std::string_view key, Location destination,
                               Operations::Progress progress, std::uint64_t operation,
                               MoveMode mode);
  // How a new key's metadata is paid for when install() adds it.
  enum class KeyCharge {
    kReserve,    // reserve it now (kOverLimit when it does not fit)
    kReserved,   // the caller reserved it; given back if the key exists
    kRecovered,  // found at start-up: counted whatever the limit
  };
  // Makes `extent` the key's only replica.
  Result<WriteResult> install(std::string_view key, ExtentRef extent, std::string_view format,
                              KeyCharge charge);
  // Under the shard lock: `old` leaves the index for `key`. Its disk replicas
  // are noted as being retired, and those an earlier operation on the key is
  // still retiring join `old`.
  static void note_retiring(Shard& shard, std::string_view key, std::vector<Replica>& old);
  // Outside the lock: ends `old`, cancelling copies in flight and discarding the
  // bytes (disk files are unlinked, or kept from ever appearing), then forgets
  // its disk replicas in `shard`. Blocking for disk replicas.
  static void retire(Shard& shard, std::string_view key, std::vector<Replica>& old);
  // Whether recovery would keep disk file `file` over every disk replica in `old`
  // (all complete, all older), so that removing them can wait.
  static bool outranks(const Extent& file, const std::vector<Replica>& old);
  // Takes every replica out of `entry` (the caller holds the shard lock).
  static std::vector<Replica> take_replicas(Entry& entry);
  std::uint64_t key_charge(std::string_view key) const { return kKeyOverhead + key.size(); }
  // A new key's metadata: reserved in its own allowance, then added to DRAM's use
  // whatever DRAM's limit (kOverLimit only when the allowance is spent).
  [[nodiscard]] Result<void> reserve_key(std::uint64_t bytes);
  [[nodiscard]] Result<void> check_key(std::uint64_t bytes) const;
  void release_key(std::uint64_t bytes);

  const StoreOptions options_;
  std::unique_ptr<DramTier> dram_;
  LimitCounter key_metadata_;  // the allowance of reserve_key()
  std::unique_ptr<PinnedTier> pinned_;
  std::unique_ptr<DiskTier> disk_;
  std::shared_ptr<DeviceBackend> backend_;
  std::vector<std::unique_ptr<DeviceTier>> devices_;  // index = device number
  mutable std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> next_version_{1};
  std::atomic<std::int64_t> total_keys_{0};
  std::atomic<std::uint64_t> metadata_bytes_{0};
  std::array<std::atomic<std::int64_t>, kLocationSlots> location_keys_{};
  std::atomic<std::uint64_t> active_moves_{0};
  std::atomic<bool> stopping_{false};
  Operations operations_;
  // Last: their threads stop first, while everything they use still exists.
  std::unique_ptr<TaskPool> io_;
  std::unique_ptr<TaskPool> movers_;
};

// Format tags: 1 to 64 characters of [A-Za-z0-9._+-], not starting with '.'.
[[nodiscard]] Result<void> validate_format(std::string_view format);

}  // namespace gswarm
