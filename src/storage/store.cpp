#include "storage/store.hpp"

#include <fnmatch.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <functional>
#include <new>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/key.hpp"
#include "core/test_point.hpp"
#include "storage/copy.hpp"
#include "storage/device_tier.hpp"
#include "storage/disk_tier.hpp"
#include "storage/dram_tier.hpp"
#include "storage/format_table.hpp"
#include "storage/pinned_tier.hpp"

namespace gswarm {
namespace {

std::uint32_t unix_seconds() { return static_cast<std::uint32_t>(std::time(nullptr)); }

tl::unexpected<Error> key_not_found(std::string_view key) {
  return make_error(ErrorCode::kNotFound, fmt::format("key '{}' not found", key));
}

tl::unexpected<Error> changed_during_move(std::string_view key) {
  return make_error(ErrorCode::kConflict,
                    fmt::format("key '{}' was overwritten or released during the move", key));
}

tl::unexpected<Error> shutting_down() {
  return make_error(ErrorCode::kUnavailable, "the server is shutting down");
}

// Cursors of GET /locations: the shard (2 hex digits), then the last key in hex.
std::string make_cursor(std::size_t shard, std::string_view key) {
  std::string out = fmt::format("{:02x}", shard);
  for (unsigned char c : key) fmt::format_to(std::back_inserter(out), "{:02x}", c);
  return out;
}

std::optional<std::pair<std::size_t, std::string>> parse_cursor(std::string_view cursor,
                                                                std::size_t shards) {
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  if (cursor.size() < 2 || cursor.size() % 2 != 0) return std::nullopt;
  std::string bytes;
  for (std::size_t i = 0; i < cursor.size(); i += 2) {
    int hi = nibble(cursor[i]);
    int lo = nibble(cursor[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    bytes.push_back(static_cast<char>(hi * 16 + lo));
  }
  auto shard = static_cast<unsigned char>(bytes[0]);
  if (shard >= shards) return std::nullopt;
  return std::make_pair(std::size_t{shard}, bytes.substr(1));
}

}  // namespace

std::string_view copy_status_name(CopyStatus status) {
  switch (status) {
    case CopyStatus::kComplete:
      return "complete";
    case CopyStatus::kCopying:
      return "copying";
    case CopyStatus::kError:
      return "error";
  }
  return "error";
}

Result<void> validate_format(std::string_view format) {
  bool ok = !format.empty() && format.size() <= 64 && format.front() != '.';
  for (char c : format) {
    ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' ||
                c == '+');
  }
  if (!ok) {
    return make_error(ErrorCode::kBadRequest,
                      "format must be 1 to 64 characters of letters, digits and . _ - + "
                      "(not starting with '.')");
  }
  return {};
}

// ---- PendingWrite -----------------------------------------------------------------

Result<void> PendingWrite::append(std::span<const std::byte> bytes) {
  if (bytes.size() > size() - received_) {
    return make_error(ErrorCode::kInternal, "more bytes than the value's size");
  }
  if (checksum_) checksum_->update(bytes);
  if (direct()) {
    if (!bytes.empty()) std::memcpy(extent_->host_data() + received_, bytes.data(), bytes.size());
  } else if (auto ok = extent_->write(received_, bytes); !ok) {
    return ok;
  }
  received_ += bytes.size();
  return {};
}

Result<void> PendingWrite::write_at(std::uint64_t offset, std::span<const std::byte> bytes) {
  if (offset > size() || bytes.size() > size() - offset) {
    return make_error(ErrorCode::kInternal, "a range outside the value");
  }
  if (direct()) {
    if (!bytes.empty()) std::memcpy(extent_->host_data() + offset, bytes.data(), bytes.size());
    return {};
  }
  return extent_->write_range(offset, bytes);
}

// ---- nodes ------------------------------------------------------------------------

Store::Node* Store::Node::create(std::string_view key) {
  void* memory = ::operator new(sizeof(Node) + key.size());
  Node* node = new (memory) Node();
  node->entry.key_size = static_cast<std::uint16_t>(key.size());
  std::memcpy(node + 1, key.data(), key.size());
  return node;
}

void Store::Node::destroy(Node* node) {
  node->~Node();
  ::operator delete(node);
}

std::size_t Store::NodeHash::operator()(std::string_view key) const {
  return std::hash<std::string_view>{}(key);
}

std::size_t Store::shard_index(std::string_view key) const {
  // The high bits: the index's own table uses the low ones.
  return (NodeHash{}(key) >> 48) % kShards;
}

// ---- construction -----------------------------------------------------------------

Store::Store(const StoreOptions& options)
    : options_(options),
      dram_(std::make_unique<DramTier>(options.max_memory)),
      key_metadata_("--max-key-metadata", options.max_key_metadata != 0 ? options.max_key_metadata
                                          : options.max_memory == 0
                                              ? 0
                                              : std::max(64 * kMiB, options.max_memory / 16)),
      backend_(options.devices ? options.devices : default_device_backend()),
      io_(std::make_unique<TaskPool>("gswarm-io", options.io_threads)),
      movers_(std::make_unique<TaskPool>("gswarm-mover", options.move_threads)) {
  pinned_ = std::make_unique<PinnedTier>(options.max_pinned, backend_);
  const int count = std::min(backend_->device_count(), kMaxDevices);
  for (int d = 0; d < count; ++d) {
    std::uint64_t limit = options.max_device_memory;
    if (limit == 0) limit = backend_->memory_info(d).free / 10 * 9;
    devices_.push_back(std::make_unique<DeviceTier>(backend_, d, limit));
    spdlog::info("device:{}: {} available to gswarm ({})", d, format_size(limit), backend_->name());
  }
}

Store::~Store() {
  begin_shutdown();
  // Stop the threads while the index and tiers they use still exist.
  movers_.reset();
  io_.reset();
  for (auto& shard : shards_) {
    for (Node* node : shard.nodes) {
      FormatTable::release(node->entry.format);
      Node::destroy(node);
    }
    shard.nodes.clear();
  }
}

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options) {
  std::unique_ptr<Store> store(new Store(options));
  auto disk = DiskTier::open(options.disk_path, options.max_disk);
  if (!disk) return tl::unexpected(disk.error());
  store->disk_ = std::move(*disk);
  auto recovered = store->disk_->recover();
  if (!recovered) return tl::unexpected(recovered.error());
  std::size_t installed = 0;
  for (auto& value : *recovered) {
    if (!validate_key(value.key) || !validate_format(value.format)) {
      spdlog::warn("disk: not serving a value whose key or format this version does not accept");
      continue;
    }
    if (store->install(value.key, std::move(value.extent), value.format, KeyCharge::kRecovered)) {
      ++installed;
    }
  }
  if (installed > 0) {
    spdlog::info("recovered {} keys from {}", installed, store->disk_->root().string());
  }
  return store;
}

void Store::begin_shutdown() { stopping_.store(true, std::memory_order_relaxed); }

std::size_t Store::slot(Location location) {
  switch (location.kind()) {
    case LocationKind::kDram:
      return 0;
    case LocationKind::kPinnedDram:
      return 1;
    case LocationKind::kDisk:
      return 2;
    case LocationKind::kDevice:
      return 3 + static_cast<std::size_t>(location.device_index());
  }
  return 0;
}

Tier* Store::tier(Location location) const {
  switch (location.kind()) {
    case LocationKind::kDram:
      return dram_.get();
    case LocationKind::kDisk:
      return disk_.get();
    case LocationKind::kPinnedDram:
      return pinned_.get();
    case LocationKind::kDevice:
      if (location.device_index() < device_count()) return devices_[location.device_index()].get();
      return nullptr;
  }
  return nullptr;
}

Result<void> Store::check_location(Location location) const {
  if (location.kind() == LocationKind::kDevice && location.device_index() >= device_count()) {
    if (device_count() == 0) {
      return make_error(
          ErrorCode::kDeviceUnavailable,
          fmt::format("{} is not available: this server has no GPU devices", location.name()));
    }
    return make_error(ErrorCode::kDeviceUnavailable,
                      fmt::format("{} is not available: this server has {} GPU device(s), "
                                  "device:0 to device:{}",
                                  location.name(), device_count(), device_count() - 1));
  }
  if (tier(location) == nullptr) {
    return make_error(ErrorCode::kNotSupported,
                      fmt::format("{} is not supported by this server yet", location.name()));
  }
  return {};
}

// ---- entries ----------------------------------------------------------------------

void Store::count(const Entry& entry, int delta) {
  location_keys_[slot(entry.primary->location())].fetch_add(delta, std::memory_order_relaxed);
  if (!entry.extras) return;
  for (const auto& r : entry.extras->replicas) {
    if (r.status == CopyStatus::kComplete) {
      location_keys_[slot(r.location)].fetch_add(delta, std::memory_order_relaxed);
    }
  }
}

std::vector<Store::Replica> Store::take_replicas(Entry& entry) {
  std::vector<Replica> out;
  if (entry.primary) {
    Location where = entry.primary->location();
    out.push_back(Replica{std::move(entry.primary), where, CopyStatus::kComplete, {}});
  }
  if (entry.extras) {
    for (auto& r : entry.extras->replicas) out.push_back(std::move(r));
    entry.extras.reset();
  }
  return out;
}

void Store::note_retiring(Shard& shard, std::string_view key, std::vector<Replica>& old) {
  const bool any_disk = std::any_of(old.begin(), old.end(), [](const Replica& r) {
    return r.extent && r.location == Location::disk();
  });
  if (!any_disk && shard.retiring.empty()) return;  // the common case: no hashing
  auto it = shard.retiring.find(key);
  const std::size_t earlier = it == shard.retiring.end() ? 0 : it->second.size();
  for (const auto& r : old) {
    if (!r.extent || r.location != Location::disk()) continue;
    if (it == shard.retiring.end()) it = shard.retiring.try_emplace(std::string(key)).first;
    it->second.push_back(r.extent);
  }
  for (std::size_t i = 0; i < earlier; ++i) {
    old.push_back(Replica{it->second[i], Location::disk(), CopyStatus::kComplete, {}});
  }
}

bool Store::outranks(const Extent& file, const std::vector<Replica>& old) {
  if (file.location() != Location::disk() || old.empty()) return false;
  return std::all_of(old.begin(), old.end(), [&](const Replica& r) {
    return r.location != Location::disk() || (r.status == CopyStatus::kComplete && r.extent &&
                                              r.extent->sequence() < file.sequence());
  });
}

void Store::retire(Shard& shard, std::string_view key, std::vector<Replica>& old) {
  std::vector<Extent*> gone;
  for (auto& r : old) {
    if (r.progress) r.progress->cancelled.store(true, std::memory_order_relaxed);
    if (!r.extent) continue;
    r.extent->discard();  // waits for another thread's unlink of the same file
    if (r.location == Location::disk()) gone.push_back(r.extent.get());
  }
  if (!gone.empty()) {
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.retiring.find(key); it != shard.retiring.end()) {
      std::erase_if(it->second, [&](const ExtentRef& e) {
        return std::find(gone.begin(), gone.end(), e.get()) != gone.end();
      });
      if (it->second.empty()) shard.retiring.erase(it);
    }
  }
  old.clear();
}

Result<PendingWrite> Store::prepare_write(std::string key, Location location, std::uint64_t size,
                                          std::string_view format) {
  if (auto ok = validate_key(key); !ok) return tl::unexpected(ok.error());
  if (auto ok = validate_format(format); !ok) return tl::unexpected(ok.error());
  if (auto ok = check_location(location); !ok) return tl::unexpected(ok.error());
  if (stopping_.load(std::memory_order_relaxed)) return shutting_down();
  PendingWrite pending;
  pending.format_ = std::string(format);
  pending.location_ = location;
  pending.needs_io_ = location == Location::disk();
  bool new_key = true;
  {
    Shard& shard = shard_for(key);
    std::lock_guard lock(shard.mutex);
    if (auto it = shard.nodes.find(std::string_view(key)); it != shard.nodes.end()) {
      new_key = false;
      // Replacing a value that is (or is being copied) on disk removes its file.
      const Entry& e = (*it)->entry;
      pending.needs_io_ = pending.needs_io_ || e.primary->location() == Location::disk();
      if (e.extras) {
        for (const auto& r : e.extras->replicas) {
          pending.needs_io_ = pending.needs_io_ || r.location == Location::disk();
        }
      }
    }
    pending.needs_io_ = pending.needs_io_ ||
                        (!shard.retiring.empty() && shard.retiring.contains(std::string_view(key)));
  }
  // A new key's metadata must fit too: say so now, before any byte arrives.
  if (new_key) {
    if (auto ok = check_key(key_charge(key)); !ok) return tl::unexpected(ok.error());
  }
  auto extent = tier(location)->allocate(size, key, format);
  if (!extent) {
    Error error = std::move(extent.error());
    // Name the value: a sender or a data pool create learns which one it was.
    if (error.code == ErrorCode::kOverLimit) {
      error.message = fmt::format("'{}' ({}) does not fit: {}", key, format_size(size),
                                  error.message);
    }
    return tl::unexpected(std::move(error));
  }
  pending.extent_ = std::move(*extent);
  pending.key_ = std::move(key);
  return pending;
}

Result<WriteResult> Store::commit_write(PendingWrite pending) {
  if (pending.direct()) pending.received_ = pending.size();  // filled through buffer()
  if (pending.received_ != pending.size()) {
    return make_error(ErrorCode::kInternal, "committing a value whose bytes did not all arrive");
  }
  // A new key's metadata is reserved before the value becomes durable: a write
  // refused for lack of room must leave nothing on disk.
  const bool reserved = reserve_key(key_charge(pending.key_)).has_value();
  if (!reserved) {
    Shard& shard = shard_for(pending.key_);
    std::lock_guard lock(shard.mutex);
    if (!shard.nodes.contains(std::string_view(pending.key_))) {
      return tl::unexpected(check_key(key_charge(pending.key_)).error());
    }
  }
  if (auto ok = pending.extent_->seal(); !ok) {
    if (reserved) release_key(key_charge(pending.key_));
    return tl::unexpected(ok.error());
  }
  auto result = install(pending.key_, pending.extent_, pending.format_,
                        reserved ? KeyCharge::kReserved : KeyCharge::kReserve);
  if (!result) pending.extent_->discard();
  return result;
}

Result<WriteResult> Store::write(std::string key, std::span<const std::byte> value,
                                 Location location, std::string_view format) {
  auto pending = prepare_write(std::move(key), location, value.size(), format);
  if (!pending) return tl::unexpected(pending.error());
  if (auto ok = pending->append(value); !ok) return tl::unexpected(ok.error());
  return commit_write(std::move(*pending));
}

Result<WriteResult> Store::install(std::string_view key, ExtentRef extent, std::string_view format,
                                   KeyCharge charge) {
  WriteResult result{extent->location(), extent->size(), std::string(format)};
  const std::uint64_t key_bytes = key_charge(key);
  auto format_id = FormatTable::acquire(format);
  if (!format_id) {
    if (charge == KeyCharge::kReserved) release_key(key_bytes);
    return tl::unexpected(format_id.error());
  }
  std::vector<Replica> old;
  bool later = false;  // removing `old` can wait (see outranks)
  Shard& shard = shard_for(key);
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.nodes.find(key);
    Node* node = nullptr;
    if (it == shard.nodes.end()) {
      if (charge == KeyCharge::kRecovered) {
        key_metadata_.add(key_bytes);
        dram_->counter().add(key_bytes);
      } else if (charge == KeyCharge::kReserve) {
        if (auto ok = reserve_key(key_bytes); !ok) {
          FormatTable::release(*format_id);
          return tl::unexpected(ok.error());
        }
      }
      metadata_bytes_.fetch_add(key_bytes, std::memory_order_relaxed);
      node = Node::create(key);
      shard.nodes.insert(node);
      total_keys_.fetch_add(1, std::memory_order_relaxed);
    } else {
      node = *it;
      count(node->entry, -1);
      old = take_replicas(node->entry);
      FormatTable::release(node->entry.format);
      if (charge == KeyCharge::kReserved) release_key(key_bytes);
    }
    note_retiring(shard, key, old);
    Entry& entry = node->entry;
    entry.version = next_version_.fetch_add(1, std::memory_order_relaxed);
    entry.format = *format_id;
    entry.primary = std::move(extent);
    entry.last_accessed = unix_seconds();
    count(entry, +1);
    later = outranks(*entry.primary, old);
  }
  GSWARM_TEST_POINT("store.installed");
  if (later) {
    // Recovery keeps the new file over every old one, so their removal (an
    // unlink of a large file takes long) need not delay the answer. They stay
    // noted as retiring until gone: another change of the key waits for them.
    io_->submit([this, &shard, key = std::string(key), old = std::move(old)]() mutable {
      retire(shard, key, old);
    });
  } else {
    retire(shard, key, old);
  }
  return result;
}

Result<ValueView> Store::read(std::string_view key) {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.nodes.find(key);
  if (it == shard.nodes.end()) return key_not_found(key);
  Entry& entry = (*it)->entry;
  const Location where = entry.primary->location();
  if (where != Location::dram()) {
    return make_error(ErrorCode::kWrongLocation,
                      fmt::format("key '{}' is in {}, and only dram can be read: move it first "
                                  "with `gswarm data move-data \"{}\" dram` (POST /move)",
                                  key, where.name(), key));
  }
  entry.last_accessed = unix_seconds();
  return ValueView{entry.primary, std::string(FormatTable::name(entry.format))};
}

Result<void> Store::release(std::string_view key, std::optional<std::uint64_t> version) {
  std::vector<Replica> old;
  bool found = false;
  Shard& shard = shard_for(key);
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.nodes.find(key);
    if (it != shard.nodes.end() && version && (*it)->entry.version != *version) {
      return make_error(
          ErrorCode::kConflict,
          fmt::format("key '{}' was written again meanwhile; the new value was kept", key));
    }
    if (it != shard.nodes.end()) {
      found = true;
      Node* node = *it;
      count(node->entry, -1);
      old = take_replicas(node->entry);
      FormatTable::release(node->entry.format);
      const std::uint64_t charge = key_charge(key);
      shard.nodes.erase(it);
      Node::destroy(node);
      release_key(charge);
      metadata_bytes_.fetch_sub(charge, std::memory_order_relaxed);
      total_keys_.fetch_sub(1, std::memory_order_relaxed);
    }
    // Also when not found: that answer says the key is gone, so a file another
    // operation is still removing must be gone before it is given.
    note_retiring(shard, key, old);
  }
  if (found) GSWARM_TEST_POINT("store.released");
  retire(shard, key, old);
  if (!found) return key_not_found(key);
  return {};
}

// ---- moves ------------------------------------------------------------------------

Result<MoveOutcome> Store::move(std::string_view key, Location destination) {
  return move_impl(key, destination, std::make_shared<CopyProgress>(), 0, MoveMode{});
}

Result<MoveOutcome> Store::copy(std::string_view key, Location destination,
                                std::optional<Location> source) {
  return move_impl(key, destination, std::make_shared<CopyProgress>(), 0, MoveMode{true, source});
}

Result<std::uint64_t> Store::start_move(std::string key, Location destination,
                                        TaskPriority priority, MoveDone done) {
  if (auto ok = check_location(destination); !ok) return tl::unexpected(ok.error());
  if (stopping_.load(std::memory_order_relaxed)) return shutting_down();
  std::uint64_t size = 0;
  {
    Shard& shard = shard_for(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.nodes.find(std::string_view(key));
    if (it == shard.nodes.end()) return key_not_found(key);
    size = (*it)->entry.primary->size();
  }
  std::uint64_t id = operations_.add("move", key, destination, size, &stopping_);
  bool queued = movers_->try_submit(
      [this, id, key = std::move(key), destination, done = std::move(done)] {
        auto moved = move_impl(key, destination, operations_.progress(id), id, MoveMode{});
        if (done) done(moved);
        if (moved) {
          operations_.start(id, moved->source);  // no-op moves never reached the copy
          operations_.finish(id, std::nullopt, moved->seconds);
        } else {
          operations_.finish(id, moved.error(), 0);
        }
      },
      options_.max_queued_moves, priority);
  if (!queued) {
    Error busy{ErrorCode::kTooManyRequests,
               fmt::format("{} moves are already waiting to run (the most this server queues); "
                           "wait for some to finish (GET /operations) and try again",
                           options_.max_queued_moves)};
    operations_.finish(id, busy, 0);
    return tl::unexpected(std::move(busy));
  }
  return id;
}

Result<MoveOutcome> Store::move_impl(std::string_view key_view, Location destination,
                                     Operations::Progress progress, std::uint64_t operation,
                                     MoveMode mode) {
  if (auto ok = check_location(destination); !ok) return tl::unexpected(ok.error());
  if (progress) {  // cancelled while it was queued
    if (auto ok = progress->stopped(); !ok) return tl::unexpected(ok.error());
  }
  if (mode.source) {
    if (auto ok = check_location(*mode.source); !ok) return tl::unexpected(ok.error());
  }
  if (stopping_.load(std::memory_order_relaxed)) return shutting_down();
  progress->stopping = &stopping_;
  const std::string key(key_view);
  Shard& shard = shard_for(key);
  const auto started = std::chrono::steady_clock::now();

  ExtentRef source;
  std::uint64_t version = 0;
  std::string format;        // a copy: the entry's tag may be forgotten once the lock is gone
  std::vector<Replica> old;  // replicas the move retires, outside the lock
  std::optional<MoveOutcome> already;
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.nodes.find(std::string_view(key));
    if (it == shard.nodes.end()) return key_not_found(key);
    Entry& entry = (*it)->entry;
    // The complete replica in `where`, or null.
    auto complete_at = [&entry](Location where) -> ExtentRef {
      if (entry.primary->location() == where) return entry.primary;
      if (!entry.extras) return nullptr;
      for (const auto& r : entry.extras->replicas) {
        if (r.location == where && r.status == CopyStatus::kComplete) return r.extent;
      }
      return nullptr;
    };
    source = mode.source ? complete_at(*mode.source) : entry.primary;
    if (!source) {
      return make_error(ErrorCode::kWrongLocation,
                        fmt::format("key '{}' has no copy in {}; it is in {}", key,
                                    mode.source->name(), entry.primary->location().name()));
    }
    const bool moving = entry.extras && entry.extras->moving;
    if (ExtentRef there = complete_at(destination)) {
      // Already there: a copy has nothing to do; a move keeps only that replica.
      already = MoveOutcome{source->location(),   destination, there->size(), 0, "none",
                            there->read_pointer()};
      if (!mode.keep_source && !moving && there != entry.primary) {
        count(entry, -1);
        old = take_replicas(entry);
        auto keep = std::find_if(old.begin(), old.end(),
                                 [&](const Replica& r) { return r.extent == there; });
        entry.primary = std::move(keep->extent);
        old.erase(keep);
        count(entry, +1);
      } else if (!mode.keep_source && !moving && entry.extras) {
        count(entry, -1);
        old = std::move(entry.extras->replicas);
        entry.extras.reset();
        count(entry, +1);
      }
      note_retiring(shard, key, old);
    } else {
      if (moving) {
        return make_error(ErrorCode::kConflict,
                          fmt::format("key '{}' is already being moved; wait for that move", key));
      }
      if (!entry.extras) entry.extras = std::make_unique<Extras>();
      entry.extras->moving = true;
      entry.extras->replicas.push_back(
          Replica{nullptr, destination, CopyStatus::kCopying, progress});
      version = entry.version;
      format = FormatTable::name(entry.format);
    }
  }
  if (already) {
    retire(shard, key, old);  // disk files are unlinked outside the lock
    return *already;
  }
  active_moves_.fetch_add(1, std::memory_order_relaxed);
  if (operation != 0) operations_.start(operation, source->location());

  // Runs `f` on the entry under the shard lock if it is still the one we copy.
  auto with_entry = [&](auto f) {
    std::lock_guard lock(shard.mutex);
    auto it = shard.nodes.find(std::string_view(key));
    if (it == shard.nodes.end() || (*it)->entry.version != version) return false;
    f((*it)->entry);
    return true;
  };
  // Ends the move: `done` becomes a replica, or (null) the placeholder goes.
  // False when the key was overwritten or released meanwhile.
  auto finish = [&](ExtentRef done) {
    const bool copied = static_cast<bool>(done);
    return with_entry([&](Entry& entry) {
      auto& extras = *entry.extras;
      extras.moving = false;
      std::erase_if(extras.replicas,
                    [](const Replica& r) { return r.status != CopyStatus::kComplete; });
      if (done && mode.keep_source) {
        extras.replicas.push_back(Replica{std::move(done), destination, CopyStatus::kComplete, {}});
        location_keys_[slot(destination)].fetch_add(1, std::memory_order_relaxed);
      } else if (done) {
        count(entry, -1);
        old = take_replicas(entry);
        entry.primary = std::move(done);
        entry.last_accessed = unix_seconds();
        count(entry, +1);
      }
      if (entry.extras && entry.extras->replicas.empty()) entry.extras.reset();
      if (copied) note_retiring(shard, key, old);
    });
  };
  auto fail = [&](Error error) -> Result<MoveOutcome> {
    active_moves_.fetch_sub(1, std::memory_order_relaxed);
    if (!finish(nullptr)) return changed_during_move(key);
    return tl::unexpected(std::move(error));
  };

  const std::uint64_t size = source->size();
  progress->phase.store(CopyPhase::kAllocating, std::memory_order_relaxed);
  auto allocated = tier(destination)->allocate(size, key, format);
  if (!allocated) return fail(allocated.error());
  ExtentRef copy = std::move(*allocated);
  // Attached to its placeholder, the copy is retired by a write or release of
  // the key like any replica: its file then never appears.
  if (!with_entry([&](Entry& entry) {
        for (auto& r : entry.extras->replicas) {
          if (r.status == CopyStatus::kCopying) r.extent = copy;
        }
      })) {
    copy->discard();
    active_moves_.fetch_sub(1, std::memory_order_relaxed);
    return changed_during_move(key);
  }
  GSWARM_TEST_POINT("move.attached");
  progress->phase.store(CopyPhase::kCopying, std::memory_order_relaxed);
  auto method = copy_extent(*source, *copy, *progress, options_.move_rate_limit);
  if (!method) return fail(method.error());
  GSWARM_TEST_POINT("move.copied");
  if (destination == Location::disk()) progress->phase.store(CopyPhase::kSyncing);
  if (auto ok = copy->seal(); !ok) return fail(ok.error());
  GSWARM_TEST_POINT("move.sealed");
  if (progress->cancelled_by_client.load(std::memory_order_relaxed)) {
    copy->discard();  // cancelled while it was made durable: it never becomes the key's
    return fail(progress->stopped().error());
  }
  progress->phase.store(CopyPhase::kFinishing, std::memory_order_relaxed);

  const bool installed = finish(copy);
  active_moves_.fetch_sub(1, std::memory_order_relaxed);
  if (!installed) {
    copy->discard();
    return changed_during_move(key);
  }
  GSWARM_TEST_POINT("move.installed");
  retire(shard, key, old);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return MoveOutcome{source->location(), destination,         size, seconds,
                     std::move(*method), copy->read_pointer()};
}

// ---- export -----------------------------------------------------------------------

Result<ReplicaView> Store::open_replica(std::string_view key,
                                        std::optional<Location> location) const {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.nodes.find(key);
  if (it == shard.nodes.end()) return key_not_found(key);
  const Entry& entry = (*it)->entry;
  ConstExtentRef extent;
  if (!location || entry.primary->location() == *location) {
    extent = entry.primary;
  } else if (entry.extras) {
    for (const auto& r : entry.extras->replicas) {
      if (r.location == *location && r.status == CopyStatus::kComplete) extent = r.extent;
    }
  }
  if (!extent) {
    return make_error(ErrorCode::kWrongLocation,
                      fmt::format("key '{}' has no copy in {}; it is in {}", key, location->name(),
                                  entry.primary->location().name()));
  }
  return ReplicaView{std::move(extent), std::string(FormatTable::name(entry.format)),
                     entry.version};
}

Result<ExportedValue> Store::export_value(std::string_view key, std::optional<Location> location) {
  auto replica = open_replica(key, location);
  if (!replica) return tl::unexpected(replica.error());
  return replica->extent->export_read_only();
}

// ---- listing and stats ------------------------------------------------------------

KeyLocations Store::describe(std::string_view key, const Entry& entry) const {
  const std::uint64_t size = entry.primary->size();
  const double accessed = entry.last_accessed;
  KeyLocations out{std::string(key),
                   entry.primary->location(),
                   std::string(FormatTable::name(entry.format)),
                   {}};
  auto info = [&](const Replica& r) {
    ReplicaState i;
    i.location = r.location;
    i.size = size;
    i.last_accessed = accessed;
    i.status = r.status;
    if (r.status == CopyStatus::kCopying && r.progress && size > 0) {
      i.progress = static_cast<double>(r.progress->bytes.load(std::memory_order_relaxed)) /
                   static_cast<double>(size);
    } else {
      i.progress = r.status == CopyStatus::kComplete ? 1.0 : 0.0;
    }
    if (r.extent && r.status == CopyStatus::kComplete) i.read_pointer = r.extent->read_pointer();
    return i;
  };
  out.replicas.push_back(
      info(Replica{entry.primary, entry.primary->location(), CopyStatus::kComplete, {}}));
  if (entry.extras) {
    for (const auto& r : entry.extras->replicas) out.replicas.push_back(info(r));
  }
  return out;
}

Result<KeyLocations> Store::location(std::string_view key) const {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.nodes.find(key);
  if (it == shard.nodes.end()) return key_not_found(key);
  return describe((*it)->key(), (*it)->entry);
}

Result<LocationsPage> Store::locations_page(std::string_view cursor, std::size_t limit,
                                            std::string_view pattern) const {
  const std::string glob(pattern);
  std::string key_text;
  auto matches = [&](std::string_view key) {
    if (glob.empty()) return true;
    key_text.assign(key);
    return ::fnmatch(glob.c_str(), key_text.c_str(), 0) == 0;
  };
  std::size_t first_shard = 0;
  std::optional<std::string> after;
  if (!cursor.empty()) {
    auto parsed = parse_cursor(cursor, kShards);
    if (!parsed) {
      return make_error(ErrorCode::kBadRequest,
                        "invalid cursor: pass the next_cursor of a previous answer unchanged");
    }
    first_shard = parsed->first;
    after = std::move(parsed->second);
  }
  LocationsPage page;
  limit = std::max<std::size_t>(limit, 1);
  for (std::size_t s = first_shard; s < kShards && page.keys.size() < limit; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard lock(shard.mutex);
    // The next keys of this shard in key order: pick them without sorting it all.
    std::vector<const Node*> rest;
    for (const Node* node : shard.nodes) {
      if ((!after || s != first_shard || node->key() > *after) && matches(node->key())) {
        rest.push_back(node);
      }
    }
    const std::size_t take = std::min(limit - page.keys.size(), rest.size());
    auto by_key = [](const Node* a, const Node* b) { return a->key() < b->key(); };
    std::partial_sort(rest.begin(), rest.begin() + static_cast<std::ptrdiff_t>(take), rest.end(),
                      by_key);
    for (std::size_t i = 0; i < take; ++i)
      page.keys.push_back(describe(rest[i]->key(), rest[i]->entry));
    if (page.keys.size() == limit && (take < rest.size() || s + 1 < kShards)) {
      page.next_cursor = make_cursor(s, page.keys.back().key);
    }
  }
  return page;
}

const std::filesystem::path& Store::disk_root() const { return disk_->root(); }

StoreStats Store::stats() const {
  StoreStats s;
  auto dram = dram_->usage();
  auto disk = disk_->usage();
  auto pinned = pinned_->usage();
  s.pinned_used = pinned.used;
  s.pinned_limit = pinned.limit;
  s.dram_used = dram.used;
  s.dram_limit = dram.limit;
  s.dram_value_bytes = dram_->value_bytes();
  s.metadata_bytes = metadata_bytes_.load(std::memory_order_relaxed);
  s.disk_used = disk.used;
  s.disk_limit = disk.limit;
  s.total_keys = static_cast<std::uint64_t>(std::max<std::int64_t>(total_keys_.load(), 0));
  auto keys_at = [&](std::size_t i) {
    return static_cast<std::uint64_t>(std::max<std::int64_t>(location_keys_[i].load(), 0));
  };
  s.dram_keys = keys_at(0);
  s.pinned_keys = keys_at(1);
  s.disk_keys = keys_at(2);
  s.location_counts["dram"] = s.dram_keys;
  s.location_counts["pinned_dram"] = s.pinned_keys;
  s.location_counts["disk"] = s.disk_keys;
  for (int d = 0; d < kMaxDevices; ++d) {
    std::uint64_t n = keys_at(3 + static_cast<std::size_t>(d));
    s.device_keys += n;
    if (n > 0) s.location_counts[Location::device(d).name()] = n;
  }
  s.active_moves = active_moves_.load();
  s.queued_moves = movers_->queued();
  s.move_threads = movers_->threads();
  s.io_threads = io_->threads();
  s.disk_path = disk_->root().string();
  s.host_cache_bytes = SharedMemory::cached_bytes();
  s.pinned_cache_bytes = pinned_->cached_bytes();
  s.device_backend = backend_->name();
  for (int d = 0; d < device_count(); ++d) {
    auto usage = devices_[d]->usage();
    auto info = devices_[d]->memory_info();
    s.devices.push_back(DeviceStats{Location::device(d).name(), usage.used, usage.limit, info.free,
                                    info.total, keys_at(3 + static_cast<std::size_t>(d))});
  }
  return s;
}

void Store::set_max_memory(std::uint64_t bytes) { dram_->set_limit(bytes); }

Result<void> Store::reserve_key(std::uint64_t bytes) {
  if (auto ok = key_metadata_.reserve(bytes, "key metadata"); !ok) return ok;
  dram_->counter().add(bytes);
  return {};
}

Result<void> Store::check_key(std::uint64_t bytes) const {
  return key_metadata_.check(bytes, "key metadata");
}

void Store::release_key(std::uint64_t bytes) {
  key_metadata_.release(bytes);
  dram_->counter().release(bytes);
}

}  // namespace gswarm
