#include "storage/store.hpp"

#include <algorithm>
#include <chrono>
#include <functional>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/key.hpp"
#include "storage/device_tier.hpp"
#include "storage/disk_tier.hpp"
#include "storage/dram_tier.hpp"
#include "storage/pinned_tier.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {
namespace {

double unix_now() {
  using namespace std::chrono;
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

tl::unexpected<Error> key_not_found(std::string_view key) {
  return make_error(ErrorCode::kNotFound, fmt::format("key '{}' not found", key));
}

tl::unexpected<Error> changed_during_move(std::string_view key) {
  return make_error(ErrorCode::kConflict,
                    fmt::format("key '{}' was overwritten or released during the move", key));
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

std::span<std::byte> PendingWrite::buffer() {
  if (staging_) return staging_->span();
  return {extent_->host_data(), extent_->size()};
}

Store::Store(const StoreOptions& options)
    : options_(options),
      dram_(std::make_unique<DramTier>(options.max_memory)),
      backend_(options.devices ? options.devices : default_device_backend()),
      mover_(std::make_unique<Mover>(options.move_threads)) {
  pinned_ = std::make_unique<PinnedTier>(options.max_pinned, backend_);
  const int count = std::min(backend_->device_count(), kMaxDevices);
  for (int d = 0; d < count; ++d) {
    std::uint64_t limit = options.max_device_memory;
    if (limit == 0) limit = backend_->memory_info(d).free / 10 * 9;
    devices_.push_back(std::make_unique<DeviceTier>(backend_, d, limit));
    spdlog::info("device:{}: {} available to gswarm ({})", d, format_size(limit), backend_->name());
  }
}

Store::~Store() = default;

Result<std::unique_ptr<Store>> Store::open(const StoreOptions& options) {
  SharedMemory::raise_fd_limit();  // large DRAM values are one memfd each
  std::unique_ptr<Store> store(new Store(options));
  auto disk = DiskTier::open(options.disk_path, options.max_disk);
  if (!disk) return tl::unexpected(disk.error());
  store->disk_ = std::move(*disk);
  auto recovered = store->disk_->recover();
  if (!recovered) return tl::unexpected(recovered.error());
  for (auto& value : *recovered) {
    (void)store->install(std::move(value.key), std::move(value.extent), std::move(value.format));
  }
  if (!recovered->empty()) {
    spdlog::info("recovered {} keys from {}", recovered->size(), store->disk_->root().string());
  }
  return store;
}

Store::Shard& Store::shard_for(std::string_view key) const {
  return shards_[std::hash<std::string_view>{}(key) % kShards];
}

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
      return make_error(ErrorCode::kDeviceUnavailable,
                        fmt::format("{} is not available: this server has no GPU devices",
                                    location.name()));
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

// Adjusts key counts for the entry's complete replicas. Caller holds its shard lock.
void Store::count(const Entry& entry, int delta) {
  for (const auto& r : entry.replicas) {
    if (r.status == CopyStatus::kComplete) {
      location_keys_[slot(r.location)].fetch_add(delta, std::memory_order_relaxed);
    }
  }
}

void Store::discard(std::vector<Replica>& replicas) {
  for (auto& r : replicas) {
    if (r.extent) r.extent->discard();
  }
  replicas.clear();
}

Result<PendingWrite> Store::prepare_write(std::string key, Location location, std::uint64_t size,
                                          std::string format) {
  if (auto ok = validate_key(key); !ok) return tl::unexpected(ok.error());
  if (auto ok = validate_format(format); !ok) return tl::unexpected(ok.error());
  if (auto ok = check_location(location); !ok) return tl::unexpected(ok.error());
  PendingWrite pending;
  pending.key_ = std::move(key);
  pending.format_ = std::move(format);
  pending.location_ = location;
  Tier* t = tier(location);
  if (location.host_addressable()) {
    auto extent = t->allocate(size, pending.key_, pending.format_);
    if (!extent) return tl::unexpected(extent.error());
    pending.extent_ = std::move(*extent);
    return pending;
  }
  // Fail early when the value cannot fit, before its bytes are received.
  if (auto ok = t->counter().check(size, location.name()); !ok) return tl::unexpected(ok.error());
  pending.staging_ = SharedBuffer::allocate(size);
  if (!pending.staging_) {
    return make_error(ErrorCode::kOverLimit,
                      fmt::format("out of memory staging a {} value", format_size(size)));
  }
  return pending;
}

Result<WriteResult> Store::commit_write(PendingWrite pending) {
  if (pending.staging_) {
    auto extent = tier(pending.location_)->allocate(pending.staging_->size(), pending.key_,
                                                    pending.format_);
    if (!extent) return tl::unexpected(extent.error());
    if (auto ok = (*extent)->write(0, pending.staging_->span()); !ok) {
      return tl::unexpected(ok.error());
    }
    pending.staging_.reset();
    pending.extent_ = std::move(*extent);
  }
  if (auto ok = pending.extent_->seal(); !ok) return tl::unexpected(ok.error());
  return install(std::move(pending.key_), std::move(pending.extent_), std::move(pending.format_));
}

Result<WriteResult> Store::write(std::string key, std::span<const std::byte> value,
                                 Location location, std::string format) {
  auto pending = prepare_write(std::move(key), location, value.size(), std::move(format));
  if (!pending) return tl::unexpected(pending.error());
  if (!value.empty()) std::memcpy(pending->buffer().data(), value.data(), value.size());
  return commit_write(std::move(*pending));
}

Result<WriteResult> Store::install(std::string key, std::unique_ptr<Extent> extent,
                                   std::string format) {
  WriteResult result{extent->location(), extent->size(), format};
  std::vector<Replica> old;
  Shard& shard = shard_for(key);
  {
    std::lock_guard lock(shard.mutex);
    auto [it, inserted] = shard.entries.try_emplace(std::move(key));
    Entry& entry = it->second;
    if (inserted) {
      total_keys_.fetch_add(1, std::memory_order_relaxed);
    } else {
      count(entry, -1);
      old = std::move(entry.replicas);
    }
    entry.version = next_version_.fetch_add(1, std::memory_order_relaxed);
    entry.format = std::move(format);
    entry.size = extent->size();
    entry.moving = false;
    entry.last_accessed = unix_now();
    entry.replicas.clear();
    entry.replicas.push_back(Replica{std::move(extent), result.location, CopyStatus::kComplete, {}});
    count(entry, +1);
  }
  discard(old);
  return result;
}

Result<ValueView> Store::read(std::string_view key) {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.entries.find(key);
  if (it == shard.entries.end()) {
    return key_not_found(key);
  }
  Entry& entry = it->second;
  const Replica& primary = entry.replicas.front();
  if (primary.location != Location::dram()) {
    return make_error(ErrorCode::kWrongLocation,
                      fmt::format("key '{}' is in {}, and only dram can be read: move it first "
                                  "with `gswarm data move-data \"{}\" dram` (POST /move)",
                                  key, primary.location.name(), key));
  }
  entry.last_accessed = unix_now();
  return ValueView{primary.extent, entry.format};
}

Result<void> Store::release(std::string_view key) {
  std::vector<Replica> old;
  Shard& shard = shard_for(key);
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it == shard.entries.end()) {
      return key_not_found(key);
    }
    count(it->second, -1);
    old = std::move(it->second.replicas);
    shard.entries.erase(it);
    total_keys_.fetch_sub(1, std::memory_order_relaxed);
  }
  discard(old);
  return {};
}

Result<MoveResult> Store::move(std::string_view key, Location destination) {
  return move_impl(key, destination, std::make_shared<std::atomic<std::uint64_t>>(0), 0,
                   MoveMode{});
}

Result<MoveResult> Store::copy(std::string_view key, Location destination,
                               std::optional<Location> source) {
  return move_impl(key, destination, std::make_shared<std::atomic<std::uint64_t>>(0), 0,
                   MoveMode{true, source});
}

Result<std::uint64_t> Store::start_move(std::string key, Location destination) {
  if (auto ok = check_location(destination); !ok) return tl::unexpected(ok.error());
  std::uint64_t size = 0;
  {
    Shard& shard = shard_for(key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it == shard.entries.end()) {
      return key_not_found(key);
    }
    size = it->second.size;
  }
  std::uint64_t id = operations_.add("move", key, destination, size);
  mover_->submit([this, id, key = std::move(key), destination] {
    auto moved = move_impl(key, destination, operations_.progress(id), id, MoveMode{});
    if (moved) {
      operations_.start(id, moved->source);  // no-op moves never reached the copy
      operations_.finish(id, std::nullopt, moved->seconds);
    } else {
      operations_.finish(id, moved.error(), 0);
    }
  });
  return id;
}

Result<MoveResult> Store::move_impl(std::string_view key_view, Location destination,
                                    Operations::Progress progress, std::uint64_t operation,
                                    MoveMode mode) {
  if (auto ok = check_location(destination); !ok) return tl::unexpected(ok.error());
  if (mode.source) {
    if (auto ok = check_location(*mode.source); !ok) return tl::unexpected(ok.error());
  }
  const std::string key(key_view);
  Shard& shard = shard_for(key);
  const auto started = std::chrono::steady_clock::now();

  Replica source;
  std::uint64_t version = 0;
  std::string format;
  std::vector<Replica> old;  // replicas the move retires; discarded outside the lock
  std::optional<MoveResult> already;
  {
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it == shard.entries.end()) {
      return key_not_found(key);
    }
    Entry& entry = it->second;
    auto at = [&entry](Location where) {
      return std::find_if(entry.replicas.begin(), entry.replicas.end(), [where](const Replica& r) {
        return r.location == where && r.status == CopyStatus::kComplete;
      });
    };
    auto from = mode.source ? at(*mode.source) : entry.replicas.begin();
    if (from == entry.replicas.end()) {
      return make_error(ErrorCode::kWrongLocation,
                        fmt::format("key '{}' has no copy in {}; it is in {}", key,
                                    mode.source->name(), entry.replicas.front().location.name()));
    }
    source = *from;
    if (auto there = at(destination); there != entry.replicas.end()) {
      // Already there: a copy has nothing to do; a move keeps only that replica.
      already = MoveResult{source.location, destination, entry.size, 0, "none",
                           there->extent->read_pointer()};
      if (!mode.keep_source && !entry.moving) {
        Replica keep = *there;
        count(entry, -1);
        for (auto& r : entry.replicas) {
          if (r.extent != keep.extent) old.push_back(std::move(r));
        }
        entry.replicas = {std::move(keep)};
        count(entry, +1);
      }
    } else {
      if (entry.moving) {
        return make_error(ErrorCode::kConflict,
                          fmt::format("key '{}' is already being moved; wait for that move", key));
      }
      entry.moving = true;
      version = entry.version;
      format = entry.format;
      entry.replicas.push_back(Replica{nullptr, destination, CopyStatus::kCopying, progress});
    }
  }
  if (already) {
    discard(old);  // disk files are unlinked outside the lock
    return *already;
  }
  active_moves_.fetch_add(1, std::memory_order_relaxed);
  if (operation != 0) operations_.start(operation, source.location);

  // Ends the move under the shard lock: `done` installs the copy, otherwise the
  // placeholder goes. Returns whether the entry was still the one we copied.
  auto finish = [&](std::shared_ptr<Extent> done) {
    std::lock_guard lock(shard.mutex);
    auto it = shard.entries.find(key);
    if (it == shard.entries.end() || it->second.version != version) return false;
    Entry& entry = it->second;
    entry.moving = false;
    std::erase_if(entry.replicas, [](const Replica& r) { return r.status != CopyStatus::kComplete; });
    if (done && mode.keep_source) {
      entry.replicas.push_back(Replica{std::move(done), destination, CopyStatus::kComplete, {}});
      location_keys_[slot(destination)].fetch_add(1, std::memory_order_relaxed);
    } else if (done) {
      count(entry, -1);
      old = std::move(entry.replicas);
      entry.replicas = {Replica{std::move(done), destination, CopyStatus::kComplete, {}}};
      entry.last_accessed = unix_now();
      count(entry, +1);
    }
    return true;
  };
  auto fail = [&](Error error) -> Result<MoveResult> {
    active_moves_.fetch_sub(1, std::memory_order_relaxed);
    if (!finish(nullptr)) {
      return changed_during_move(key);
    }
    return tl::unexpected(std::move(error));
  };

  const std::uint64_t size = source.extent->size();
  auto allocated = tier(destination)->allocate(size, key, format);
  if (!allocated) return fail(allocated.error());
  std::shared_ptr<Extent> copy = std::move(*allocated);
  auto method = copy_extent(*source.extent, *copy, *progress, options_.move_rate_limit);
  if (!method) return fail(method.error());
  if (auto ok = copy->seal(); !ok) return fail(ok.error());

  const bool installed = finish(copy);
  active_moves_.fetch_sub(1, std::memory_order_relaxed);
  if (!installed) {
    copy->discard();
    return changed_during_move(key);
  }
  discard(old);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return MoveResult{source.location, destination, size, seconds, std::move(*method),
                    copy->read_pointer()};
}

KeyLocations Store::describe(const std::string& key, const Entry& entry) const {
  KeyLocations out{key, entry.replicas.front().location, entry.format, {}};
  for (const auto& r : entry.replicas) {
    ReplicaInfo info;
    info.location = r.location;
    info.size = entry.size;
    info.last_accessed = entry.last_accessed;
    info.status = r.status;
    if (r.status == CopyStatus::kCopying && r.progress && entry.size > 0) {
      info.progress = static_cast<double>(r.progress->load(std::memory_order_relaxed)) /
                      static_cast<double>(entry.size);
    } else {
      info.progress = r.status == CopyStatus::kComplete ? 1.0 : 0.0;
    }
    if (r.extent && r.status == CopyStatus::kComplete) info.read_pointer = r.extent->read_pointer();
    out.replicas.push_back(std::move(info));
  }
  return out;
}

Result<KeyLocations> Store::location(std::string_view key) const {
  Shard& shard = shard_for(key);
  std::lock_guard lock(shard.mutex);
  auto it = shard.entries.find(key);
  if (it == shard.entries.end()) {
    return key_not_found(key);
  }
  return describe(it->first, it->second);
}

std::vector<KeyLocations> Store::locations() const {
  std::vector<KeyLocations> out;
  for (auto& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [key, entry] : shard.entries) out.push_back(describe(key, entry));
  }
  return out;
}

StoreStats Store::stats() const {
  StoreStats s;
  auto dram = dram_->usage();
  auto disk = disk_->usage();
  auto pinned = pinned_->usage();
  s.pinned_used = pinned.used;
  s.pinned_limit = pinned.limit;
  s.dram_used = dram.used;
  s.dram_limit = dram.limit;
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
  s.move_threads = mover_->threads();
  s.disk_path = disk_->root().string();
  s.host_cache_bytes = SharedMemory::cached_bytes();
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

}  // namespace gswarm
