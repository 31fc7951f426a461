// Store: the storage engine. Keys map to entries; an entry has one value (size,
// format tag, version) held by one or more replicas, each in one tier.
//
// Semantics (doc/http-api.md):
//  - write is atomic per key: the new value is complete before it replaces the
//    old one; a failed write leaves the old value as it was.
//  - read serves DRAM only; a key elsewhere is kWrongLocation.
//  - move is copy-then-switch: the destination replica shows as "copying", is
//    filled and sealed, then replaces the source, which is discarded. A write or
//    release during the move wins; the move then fails with kConflict.
//  - release removes the key from every tier.
//
// Thread-safety: every method may be called concurrently from any thread. The
// index is sharded, a mutex per shard, and no lock is held during I/O or copies.
// Methods marked "blocking" do disk I/O or copies: call them from mover threads
// (mover().submit) or other threads that may block, not from network threads.
#pragma once

#include <array>
#include <atomic>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <gswarm/error.hpp>

#include "core/location.hpp"
#include "core/size.hpp"
#include "storage/device_backend.hpp"
#include "storage/extent.hpp"
#include "storage/shared_memory.hpp"
#include "storage/mover.hpp"
#include "storage/operations.hpp"

namespace gswarm {

class DramTier;
class DiskTier;
class PinnedTier;
class DeviceTier;
class Tier;

struct StoreOptions {
  std::uint64_t max_memory = 16 * kGiB;           // DRAM limit (--max-memory)
  std::uint64_t max_pinned = 4 * kGiB;            // pinned_dram limit (--max-pinned)
  std::uint64_t max_device_memory = 0;            // per device; 0: 90% of free at start
  std::shared_ptr<DeviceBackend> devices;         // null: default_device_backend()
  std::filesystem::path disk_path = "/tmp/gswarm_data";
  std::uint64_t max_disk = 0;                     // 0: bounded by the file system only
  int move_threads = 4;
  std::uint64_t move_rate_limit = 0;              // bytes/s per move; 0: unlimited
};

enum class CopyStatus : std::uint8_t { kComplete, kCopying, kError };
std::string_view copy_status_name(CopyStatus status);

struct ReplicaInfo {
  Location location;
  std::uint64_t size = 0;
  double last_accessed = 0;  // unix seconds
  CopyStatus status = CopyStatus::kComplete;
  double progress = 1.0;     // 0..1
  std::optional<ReadPointer> read_pointer;
};

struct KeyLocations {
  std::string key;
  Location primary;
  std::string format;
  std::vector<ReplicaInfo> replicas;  // primary first
};

struct WriteResult {
  Location location;
  std::uint64_t size = 0;
  std::string format;
};

struct MoveResult {
  Location source;
  Location destination;
  std::uint64_t size = 0;
  double seconds = 0;
  std::string method;  // how the bytes travelled (copy_extent)
  std::optional<ReadPointer> read_pointer;
};

// A DRAM value being read: holds the bytes alive after the key changes.
struct ValueView {
  std::shared_ptr<const Extent> extent;
  std::string format;
  std::span<const std::byte> bytes() const { return {extent->host_data(), extent->size()}; }
  std::string_view text() const {
    return {reinterpret_cast<const char*>(extent->host_data()), extent->size()};
  }
};

struct DeviceStats {
  std::string name;           // "device:N"
  std::uint64_t used = 0;     // bytes gswarm holds there
  std::uint64_t limit = 0;    // --max-device-memory
  std::uint64_t free = 0;     // the driver's view of the whole device
  std::uint64_t total = 0;
  std::uint64_t keys = 0;
};

struct StoreStats {
  std::uint64_t dram_used = 0, dram_limit = 0;
  std::uint64_t pinned_used = 0, pinned_limit = 0;
  std::uint64_t disk_used = 0, disk_limit = 0;
  std::uint64_t total_keys = 0;
  std::uint64_t dram_keys = 0, pinned_keys = 0, disk_keys = 0, device_keys = 0;
  std::map<std::string, std::uint64_t> location_counts;
  std::uint64_t active_moves = 0;
  int move_threads = 0;
  std::string disk_path;
  std::uint64_t host_cache_bytes = 0;
  std::string device_backend;
  std::vector<DeviceStats> devices;
};

// A write whose bytes are still arriving. buffer() is where they go: the
// destination tier's own memory for DRAM, a staging block otherwise.
class PendingWrite {
 public:
  std::span<std::byte> buffer();
  // True when commit_write does I/O (disk): run it on a mover thread.
  bool needs_io() const { return staging_ != nullptr; }
  const std::string& key() const { return key_; }
  Location location() const { return location_; }

 private:
  friend class Store;
  std::string key_;
  std::string format_;
  Location location_;
  std::unique_ptr<Extent> extent_;
  std::unique_ptr<SharedBuffer> staging_;
};

class Store {
 public:
  // Opens the disk root and recovers the values persisted there.
  [[nodiscard]] static Result<std::unique_ptr<Store>> open(const StoreOptions& options);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // kDeviceUnavailable / kNotSupported for locations this server cannot hold.
  [[nodiscard]] Result<void> check_location(Location location) const;

  // Reserves room for a value of `size` bytes (limits are checked here, before
  // any byte arrives).
  [[nodiscard]] Result<PendingWrite> prepare_write(std::string key, Location location,
                                                   std::uint64_t size, std::string format);
  // Installs the value. Blocking when pending.needs_io().
  [[nodiscard]] Result<WriteResult> commit_write(PendingWrite pending);
  // prepare + copy + commit. Blocking for non-DRAM locations.
  [[nodiscard]] Result<WriteResult> write(std::string key, std::span<const std::byte> value,
                                          Location location, std::string format);

  [[nodiscard]] Result<ValueView> read(std::string_view key);
  // Blocking (disk files are removed).
  [[nodiscard]] Result<void> release(std::string_view key);
  // Blocking: copies on the calling thread.
  [[nodiscard]] Result<MoveResult> move(std::string_view key, Location destination);
  // Queues the move on the mover and returns its operation id at once; progress
  // and outcome are in operations().
  [[nodiscard]] Result<std::uint64_t> start_move(std::string key, Location destination);
  // Blocking: like move(), but the source replica stays, so the key then lives in
  // both places (what `send` to a device of this node does). `source`, when set,
  // picks the replica to copy from. Release removes every replica.
  [[nodiscard]] Result<MoveResult> copy(std::string_view key, Location destination,
                                        std::optional<Location> source = std::nullopt);
  const Operations& operations() const { return operations_; }

  [[nodiscard]] Result<KeyLocations> location(std::string_view key) const;
  std::vector<KeyLocations> locations() const;
  StoreStats stats() const;
  void set_max_memory(std::uint64_t bytes);

  Mover& mover() { return *mover_; }
  int device_count() const { return static_cast<int>(devices_.size()); }

 private:
  struct Replica {
    std::shared_ptr<Extent> extent;  // null while a copy is being prepared
    Location location;
    CopyStatus status = CopyStatus::kComplete;
    std::shared_ptr<std::atomic<std::uint64_t>> progress;  // bytes copied, while copying
  };
  struct Entry {
    std::uint64_t version = 0;
    std::string format;
    std::uint64_t size = 0;
    std::vector<Replica> replicas;  // [0]: the primary, always complete
    bool moving = false;
    double last_accessed = 0;
  };
  // Transparent hashing: lookups by string_view allocate nothing.
  struct KeyHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<std::string, Entry, KeyHash, std::equal_to<>> entries;  // guarded by mutex
  };
  static constexpr std::size_t kShards = 64;
  static constexpr int kMaxDevices = 16;
  static constexpr std::size_t kLocationSlots = 3 + kMaxDevices;

  explicit Store(const StoreOptions& options);
  Shard& shard_for(std::string_view key) const;
  Tier* tier(Location location) const;
  static std::size_t slot(Location location);
  void count(const Entry& entry, int delta);
  KeyLocations describe(const std::string& key, const Entry& entry) const;
  struct MoveMode {
    bool keep_source = false;
    std::optional<Location> source;
  };
  Result<MoveResult> move_impl(std::string_view key, Location destination,
                               Operations::Progress progress, std::uint64_t operation,
                               MoveMode mode);
  Result<WriteResult> install(std::string key, std::unique_ptr<Extent> extent, std::string format);
  static void discard(std::vector<Replica>& replicas);

  const StoreOptions options_;
  std::unique_ptr<DramTier> dram_;
  std::unique_ptr<PinnedTier> pinned_;
  std::unique_ptr<DiskTier> disk_;
  std::shared_ptr<DeviceBackend> backend_;
  std::vector<std::unique_ptr<DeviceTier>> devices_;  // index = device number
  mutable std::array<Shard, kShards> shards_;
  std::atomic<std::uint64_t> next_version_{1};
  std::atomic<std::int64_t> total_keys_{0};
  std::array<std::atomic<std::int64_t>, kLocationSlots> location_keys_{};
  std::atomic<std::uint64_t> active_moves_{0};
  Operations operations_;
  std::unique_ptr<Mover> mover_;  // last: its threads stop first
};

// Format tags: 1 to 64 characters of [A-Za-z0-9._+-], not starting with '.'.
[[nodiscard]] Result<void> validate_format(std::string_view format);

}  // namespace gswarm
