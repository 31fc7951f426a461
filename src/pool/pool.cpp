#include "pool/pool.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <regex>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "core/checksum.hpp"
#include "core/random.hpp"
#include "core/test_point.hpp"
#include "storage/disk_tier.hpp"
#include "storage/format_table.hpp"

namespace gswarm::pool {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

constexpr std::size_t kPiece = 4 << 20;  // bytes copied at a time from a source
constexpr std::string_view kPrefix = "chunk_";
constexpr std::size_t kIdDigits = 16;

double now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Error chunk_not_found(std::string_view id) {
  return Error{ErrorCode::kNotFound,
               fmt::format("no chunk '{}' (gswarm data list shows the chunks)", id)};
}

// Writes `text` to `path` atomically and durably (temporary, fsync, rename,
// directory fsync).
Result<void> write_file(const fs::path& path, const std::string& text) {
  const fs::path temp = fs::path(path).concat(".tmp");
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  auto fail = [&](const char* what) {
    const int err = errno;
    if (fd >= 0) ::close(fd);
    ::unlink(temp.c_str());
    return make_error(ErrorCode::kIo, fmt::format("cannot {} chunk metadata: {}", what,
                                                  std::strerror(err)));
  };
  if (fd < 0) return fail("create");
  for (std::size_t done = 0; done < text.size();) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail("write");
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("sync");
  ::close(fd);
  fd = -1;
  if (::rename(temp.c_str(), path.c_str()) != 0) return fail("save");
  fsync_dir(path.parent_path());  // best effort: the file itself is durable
  return {};
}

bool has_disk_replica(const KeyLocations& where) {
  return std::any_of(where.replicas.begin(), where.replicas.end(), [](const ReplicaState& r) {
    return r.location == Location::disk() && r.status == CopyStatus::kComplete;
  });
}

bool has_disk_replica(const Store& store, std::string_view key) {
  auto where = store.location(key);
  return where && has_disk_replica(*where);
}

Error unknown_device(std::string_view name) {
  return Error{ErrorCode::kInvalidLocation,
               fmt::format("unknown device '{}': use dram (or cpu), pinned_dram, disk, gpu (the "
                           "GPU with the most free memory) or device:N (gpu:N)",
                           name)};
}

// A reference names its holder: 1 to kMaxReferenceName bytes, no control characters.
bool valid_reference(std::string_view holder) {
  return !holder.empty() && holder.size() <= Pool::kMaxReferenceName &&
         std::none_of(holder.begin(), holder.end(), [](char c) {
           return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
         });
}

}  // namespace

std::string metadata_json(const Chunk& c) {
  json j = {{"chunk_id", c.id},
            {"chunk_type", chunk_type_name(c.type)},
            {"format", c.format},
            {"source", c.source},
            {"size", c.size},
            {"checksum", c.checksum},
            {"created_by", c.created_by},
            {"created_at", c.created_at},
            {"last_accessed", c.last_accessed},
            {"access_count", c.access_count},
            {"references", c.references}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Chunk> parse_metadata_json(std::string_view text) {
  json j = json::parse(text, nullptr, false);
  if (!j.is_object()) {
    return make_error(ErrorCode::kBadRequest, "chunk metadata must be a JSON object");
  }
  Chunk c;
  try {
    c.id = j.at("chunk_id").get<std::string>();
    auto type = parse_chunk_type(j.value("chunk_type", std::string("input")));
    if (!type) return tl::unexpected(type.error());
    c.type = *type;
    c.format = j.value("format", std::string("tensor"));
    c.source = j.value("source", std::string());
    if (!j.at("size").is_number_unsigned()) {
      return make_error(ErrorCode::kBadRequest, "a chunk's size is a non-negative integer");
    }
    c.size = j.at("size").get<std::uint64_t>();
    c.checksum = j.value("checksum", std::string());
    c.created_by = j.value("created_by", std::string());
    c.created_at = j.value("created_at", 0.0);
    c.last_accessed = j.value("last_accessed", c.created_at);
    c.access_count = j.value("access_count", std::uint64_t{0});
    c.references = j.value("references", std::vector<std::string>());
  } catch (const json::exception& e) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("malformed chunk metadata: {}", e.what()));
  }
  if (!is_chunk_id(c.id)) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("'{}' is not a chunk id (chunk_ and 16 hex digits)", c.id));
  }
  if (auto ok = validate_format(c.format); !ok) return tl::unexpected(ok.error());
  if (c.references.size() > Pool::kMaxReferences) {
    return make_error(ErrorCode::kBadRequest, "too many references in the chunk metadata");
  }
  if (!std::all_of(c.references.begin(), c.references.end(), valid_reference)) {
    return make_error(ErrorCode::kBadRequest, "a reference in the chunk metadata is malformed");
  }
  return c;
}

bool is_chunk_id(std::string_view text) {
  if (!text.starts_with(kPrefix) || text.size() != kPrefix.size() + kIdDigits) return false;
  return std::all_of(text.begin() + kPrefix.size(), text.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Result<ChunkType> parse_chunk_type(std::string_view text) {
  if (text == "input") return ChunkType::kInput;
  if (text == "output") return ChunkType::kOutput;
  if (text == "intermediate") return ChunkType::kIntermediate;
  return make_error(ErrorCode::kBadRequest,
                    fmt::format("unknown chunk type '{}': use input, output or intermediate", text));
}

std::string_view chunk_type_name(ChunkType type) {
  switch (type) {
    case ChunkType::kInput:
      return "input";
    case ChunkType::kOutput:
      return "output";
    case ChunkType::kIntermediate:
      return "intermediate";
  }
  return "input";
}

Pool::Pool(Store& store, PoolOptions options)
    : store_(store), options_(std::move(options)), metadata_dir_(store.disk_root() / "pool") {}

Pool::~Pool() {
  // Queued moves call back when they end (at once when the Store is stopping).
  while (move_callbacks_.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
}

Result<std::unique_ptr<Pool>> Pool::open(Store& store, PoolOptions options) {
  std::unique_ptr<Pool> pool(new Pool(store, std::move(options)));
  if (auto ok = pool->load(); !ok) return tl::unexpected(ok.error());
  return pool;
}

fs::path Pool::metadata_path(std::string_view id) const {
  return metadata_dir_ / fmt::format("{}.json", id);
}

Result<void> Pool::load() {
  if (::mkdir(metadata_dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return make_error(ErrorCode::kIo, fmt::format("cannot create {}: {}", metadata_dir_.string(),
                                                  std::strerror(errno)));
  }
  static const std::regex name("chunk_[0-9a-f]{16}\\.json");
  std::error_code ec;
  std::size_t loaded = 0;
  for (const auto& entry : fs::directory_iterator(metadata_dir_, ec)) {
    const std::string file = entry.path().filename().string();
    auto drop = [&](std::string_view why) {
      spdlog::warn("pool: dropping {}: {}", entry.path().string(), why);
      std::error_code ignored;
      fs::remove(entry.path(), ignored);
    };
    if (!std::regex_match(file, name)) {
      if (file.ends_with(".tmp")) {
        std::error_code ignored;
        fs::remove(entry.path(), ignored);  // a metadata write cut short
      } else {
        spdlog::warn("pool: ignoring {}: not a chunk's metadata", entry.path().string());
      }
      continue;
    }
    std::error_code size_error;
    if (entry.file_size(size_error) > (1u << 20)) {  // references are bounded: far below this
      drop("too large for chunk metadata");
      continue;
    }
    std::ifstream in(entry.path());
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto chunk = parse_metadata_json(text);
    if (!chunk) {
      drop(chunk.error().message);
      continue;
    }
    if (file != chunk->id + ".json") {
      drop("its name and its chunk id differ");
      continue;
    }
    auto where = store_.location(chunk->id);
    if (!where || !has_disk_replica(*where) || where->replicas.front().size != chunk->size) {
      drop("the chunk's bytes are not on disk (they were in memory, or never arrived)");
      continue;
    }
    Record record;
    record.chunk = std::move(*chunk);
    record.location = Location::disk();
    record.ready = true;
    record.persisted = true;
    std::string id = record.chunk.id;
    records_.emplace(std::move(id), std::move(record));
    ++loaded;
  }
  if (ec) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot read {}: {}", metadata_dir_.string(), ec.message()));
  }
  if (loaded > 0) spdlog::info("pool: recovered {} chunks from disk", loaded);
  return reclaim_strays();
}

Result<void> Pool::reclaim_strays() {
  // Keys named like chunks are the pool's alone (the key-value endpoints refuse
  // them), so one without metadata is the bytes of a chunk whose metadata never
  // arrived: a transfer of an earlier version cut short.
  std::vector<std::string> strays;
  std::string cursor;
  do {
    auto page = store_.locations_page(cursor, 1024, "chunk_*");
    if (!page) return tl::unexpected(page.error());
    for (const auto& key : page->keys) {
      if (is_chunk_id(key.key) && !records_.contains(key.key)) strays.push_back(key.key);
    }
    cursor = std::move(page->next_cursor);
  } while (!cursor.empty());
  for (const auto& key : strays) {
    spdlog::warn("pool: removing {}: the bytes of a chunk without its metadata", key);
    if (auto ok = store_.release(key); !ok && ok.error().code != ErrorCode::kNotFound) return ok;
  }
  return {};
}

bool Pool::owns(std::string_view key) const {
  if (!is_chunk_id(key)) return false;
  std::lock_guard lock(mutex_);
  return records_.find(std::string(key)) != records_.end();
}

Result<Location> Pool::resolve_device(std::string_view name) const {
  if (name == "gpu") {
    const StoreStats stats = store_.stats();
    if (stats.devices.empty()) {
      return make_error(ErrorCode::kDeviceUnavailable,
                        "gpu is not available: this server has no GPU devices (use dram, "
                        "pinned_dram or disk)");
    }
    std::size_t best = 0;
    for (std::size_t i = 1; i < stats.devices.size(); ++i) {
      if (stats.devices[i].free > stats.devices[best].free) best = i;
    }
    return Location::device(static_cast<int>(best));
  }
  auto location = Location::parse(name);
  if (!location) return tl::unexpected(unknown_device(name));
  if (auto ok = store_.check_location(*location); !ok) return tl::unexpected(ok.error());
  return *location;
}

std::string Pool::new_id() const {
  while (true) {
    std::string id = std::string(kPrefix) + random_hex(kIdDigits / 2);
    bool taken = false;
    {
      std::lock_guard lock(mutex_);
      taken = records_.contains(id);
    }
    if (!taken && !store_.location(id)) return id;  // 2^64 ids: a clash is a curiosity
  }
}

Result<Chunk> Pool::create(const std::string& id, Source& source, const ChunkSpec& spec,
                           const std::shared_ptr<CopyProgress>& progress) {
  auto pending = store_.prepare_write(id, spec.device, source.size(), spec.format);
  if (!pending) return tl::unexpected(pending.error());
  Checksum checksum;
  const std::uint64_t size = source.size();
  std::unique_ptr<std::byte[]> bounce;
  if (!pending->direct()) {
    bounce = std::make_unique_for_overwrite<std::byte[]>(std::min<std::uint64_t>(kPiece, size));
  }
  for (std::uint64_t at = 0; at < size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, size - at));
    std::span<std::byte> piece = pending->direct() ? pending->buffer().subspan(at, n)
                                                   : std::span<std::byte>(bounce.get(), n);
    Result<void> ok = progress ? progress->stopped() : Result<void>();
    if (ok) ok = source.read(piece);
    if (ok) checksum.update(piece);
    if (ok && !pending->direct()) ok = pending->append(piece);
    if (!ok) return tl::unexpected(ok.error());
    at += n;
    if (progress) progress->bytes.fetch_add(n, std::memory_order_relaxed);
  }
  return finish_create(std::move(*pending), spec, checksum.text());
}

Result<PendingWrite> Pool::prepare_upload(const ChunkSpec& spec, std::uint64_t size) {
  auto pending = store_.prepare_write(new_id(), spec.device, size, spec.format);
  if (!pending) return tl::unexpected(pending.error());
  pending->track_checksum();
  return pending;
}

Result<Chunk> Pool::commit_upload(PendingWrite pending, const ChunkSpec& spec) {
  std::string checksum = pending.checksum() != nullptr ? pending.checksum()->text() : "";
  return finish_create(std::move(pending), spec, std::move(checksum));
}

Result<Chunk> Pool::finish_create(PendingWrite pending, const ChunkSpec& spec,
                                  std::string checksum) {
  Chunk c;
  c.id = pending.key();
  c.type = spec.type;
  c.format = spec.format;
  c.source = spec.source;
  c.created_by = options_.node_name;
  c.size = pending.size();
  c.checksum = std::move(checksum);
  c.created_at = c.last_accessed = now();
  return install(std::move(pending), std::move(c));
}

Result<Chunk> Pool::commit_received(PendingWrite pending, Chunk metadata) {
  if (metadata.id != pending.key() || metadata.size != pending.size()) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the chunk's metadata ({}, {} bytes) does not describe the value "
                                  "received ({}, {} bytes)",
                                  metadata.id, metadata.size, pending.key(), pending.size()));
  }
  auto digest = pending.digest();
  if (!digest) return tl::unexpected(digest.error());
  if (Checksum::format(*digest) != metadata.checksum) {
    return make_error(ErrorCode::kConflict,
                      fmt::format("the bytes received for chunk '{}' have checksum {}, its "
                                  "metadata says '{}': nothing was stored",
                                  metadata.id, Checksum::format(*digest), metadata.checksum));
  }
  metadata.locations.clear();
  return install(std::move(pending), std::move(metadata));
}

Result<Chunk> Pool::install(PendingWrite pending, Chunk chunk) {
  const std::string id = pending.key();
  {
    Record record;
    record.chunk = std::move(chunk);
    record.location = pending.location();
    record.creating_on_disk = record.location == Location::disk();
    std::lock_guard lock(mutex_);
    if (!records_.emplace(id, std::move(record)).second) {
      return make_error(ErrorCode::kConflict, fmt::format("chunk '{}' exists already", id));
    }
  }
  // The metadata of a chunk on disk is durable before its bytes are visible: a
  // crash between the two leaves metadata without bytes, which start-up drops.
  auto written = sync_metadata(id).and_then([&] {
    GSWARM_TEST_POINT("pool.metadata_written");
    return store_.commit_write(std::move(pending));
  });
  GSWARM_TEST_POINT("pool.committed");
  std::lock_guard lock(mutex_);
  auto it = records_.find(id);
  if (!written) {
    // Its metadata file, if any, goes too (or is dropped at the next start: no bytes).
    if (it != records_.end() && it->second.persisted) ::unlink(metadata_path(id).c_str());
    if (it != records_.end()) records_.erase(it);
    return tl::unexpected(written.error());
  }
  it->second.ready = true;
  it->second.creating_on_disk = false;  // its disk replica keeps the metadata now
  Chunk out = it->second.chunk;
  ReplicaState replica;
  replica.location = written->location;
  replica.size = written->size;
  replica.last_accessed = out.created_at;
  out.locations.push_back(replica);
  return out;
}

Result<void> Pool::sync_metadata(const std::string& id) {
  auto may_touch_disk = [](const Record& r) {
    return r.creating_on_disk || r.disk_moves > 0 || r.persisted || r.removing ||
           r.location == Location::disk();
  };
  {  // most chunks are in memory and were never on disk: nothing to do
    std::lock_guard lock(mutex_);
    auto it = records_.find(id);
    if (it == records_.end() || !may_touch_disk(it->second)) return {};
  }
  std::lock_guard files(files_mutex_);
  std::optional<std::string> record;  // to write; nullopt: remove
  {
    std::lock_guard lock(mutex_);
    auto it = records_.find(id);
    if (it == records_.end()) return {};
    const Record& r = it->second;
    const bool keep = !r.removing && (r.creating_on_disk || r.disk_moves > 0 ||
                                      has_disk_replica(store_, id));
    if (keep) {
      record = metadata_json(r.chunk);
    } else if (!r.persisted) {
      return {};
    }
  }
  if (record) {
    if (auto ok = write_file(metadata_path(id), *record); !ok) return ok;
  } else if (::unlink(metadata_path(id).c_str()) != 0 && errno != ENOENT) {
    spdlog::warn("pool: cannot remove the metadata of {}: {}", id, std::strerror(errno));
  }
  std::lock_guard lock(mutex_);
  auto it = records_.find(id);
  if (it != records_.end()) it->second.persisted = record.has_value();
  return {};
}

Chunk Pool::describe(const Record& record) const {
  Chunk chunk = record.chunk;
  if (auto where = store_.location(chunk.id)) {
    chunk.locations = std::move(where->replicas);
    for (const auto& r : chunk.locations) chunk.last_accessed = std::max(chunk.last_accessed, r.last_accessed);
  }
  return chunk;
}

Result<const Pool::Record*> Pool::ready_record(std::string_view id) const {
  auto it = records_.find(std::string(id));
  if (it == records_.end() || !it->second.ready) return tl::unexpected(chunk_not_found(id));
  return &it->second;
}

Result<Pool::Record*> Pool::ready_record(std::string_view id) {
  return std::as_const(*this).ready_record(id).map(
      [](const Record* record) { return const_cast<Record*>(record); });
}

Result<Chunk> Pool::get(std::string_view id, bool access) {
  Record copy;
  {
    std::lock_guard lock(mutex_);
    auto record = ready_record(id);
    if (!record) return tl::unexpected(record.error());
    if (access) {
      (*record)->chunk.access_count += 1;
      (*record)->chunk.last_accessed = now();
    }
    copy = **record;
  }
  return describe(copy);
}

Result<ChunkFilter> ChunkFilter::make(std::optional<std::string_view> device,
                                      std::optional<ChunkType> type) {
  ChunkFilter filter;
  filter.type_ = type;
  if (device && *device == "gpu") {
    filter.any_gpu_ = true;
  } else if (device) {
    auto parsed = Location::parse(*device);
    if (!parsed) return tl::unexpected(unknown_device(*device));
    filter.device_ = *parsed;
  }
  return filter;
}

bool ChunkFilter::matches(const Chunk& chunk) const {
  if (type_ && chunk.type != *type_) return false;
  if (!device_ && !any_gpu_) return true;
  return std::any_of(chunk.locations.begin(), chunk.locations.end(), [this](const ReplicaState& r) {
    return r.status == CopyStatus::kComplete &&
           (any_gpu_ ? r.location.kind() == LocationKind::kDevice : r.location == *device_);
  });
}

std::vector<std::string> Pool::ids(std::optional<ChunkType> type) const {
  std::vector<std::pair<double, std::string>> found;
  {
    std::lock_guard lock(mutex_);
    found.reserve(records_.size());
    for (const auto& [id, record] : records_) {
      if (record.ready && (!type || record.chunk.type == *type)) {
        found.emplace_back(record.chunk.created_at, id);
      }
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  out.reserve(found.size());
  for (auto& [created, id] : found) out.push_back(std::move(id));
  return out;
}

std::size_t Pool::count() const {
  std::lock_guard lock(mutex_);
  return records_.size();
}

Result<std::uint64_t> Pool::start_move(std::string_view id_view, Location destination,
                                       TaskPriority priority) {
  std::string id(id_view);
  const bool to_disk = destination == Location::disk();
  {
    std::lock_guard lock(mutex_);
    auto record = ready_record(id);
    if (!record) return tl::unexpected(record.error());
    (*record)->chunk.access_count += 1;
    (*record)->chunk.last_accessed = now();
    // Going to disk: the metadata is there before the bytes can be.
    if (to_disk) (*record)->disk_moves += 1;
  }
  // Ends this move's claim on the metadata file (the record may be gone by then).
  auto settle = [this, id, to_disk](std::optional<Location> moved_to) {
    {
      std::lock_guard lock(mutex_);
      auto it = records_.find(id);
      if (it == records_.end()) return;
      if (to_disk) it->second.disk_moves -= 1;
      if (moved_to) it->second.location = *moved_to;
    }
    if (auto ok = sync_metadata(id); !ok) {
      spdlog::warn("pool: the metadata of {} could not follow its bytes: {}", id,
                   ok.error().message);
    }
  };
  if (to_disk) {
    if (auto ok = sync_metadata(id); !ok) {
      settle(std::nullopt);
      return tl::unexpected(ok.error());
    }
  }
  auto done = [this, settle](const Result<MoveOutcome>& moved) {
    struct Leave {
      std::atomic<int>& count;
      ~Leave() { count.fetch_sub(1); }
    } leave{move_callbacks_};
    settle(moved ? std::optional<Location>(moved->destination) : std::nullopt);
  };
  move_callbacks_.fetch_add(1);
  auto started = store_.start_move(id, destination, priority, done);
  if (!started) {
    move_callbacks_.fetch_sub(1);
    settle(std::nullopt);
    return tl::unexpected(started.error());
  }
  return *started;
}

Result<Chunk> Pool::add_reference(std::string_view id, std::string_view holder) {
  if (!valid_reference(holder)) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("a reference is a name of 1 to {} bytes without control "
                                  "characters",
                                  kMaxReferenceName));
  }
  {
    std::lock_guard lock(mutex_);
    auto record = ready_record(id);
    if (!record) return tl::unexpected(record.error());
    auto& refs = (*record)->chunk.references;
    if (std::find(refs.begin(), refs.end(), holder) == refs.end()) {
      if (refs.size() >= kMaxReferences) {
        return make_error(ErrorCode::kTooLarge,
                          fmt::format("'{}' already has {} references, the most a chunk keeps", id,
                                      kMaxReferences));
      }
      refs.emplace_back(holder);
    }
  }
  if (auto ok = sync_metadata(std::string(id)); !ok) return tl::unexpected(ok.error());
  return get(id, false);
}

Result<Chunk> Pool::drop_reference(std::string_view id, std::string_view holder) {
  {
    std::lock_guard lock(mutex_);
    auto record = ready_record(id);
    if (!record) return tl::unexpected(record.error());
    auto& refs = (*record)->chunk.references;
    auto ref = std::find(refs.begin(), refs.end(), holder);
    if (ref == refs.end()) {
      return make_error(ErrorCode::kNotFound,
                        fmt::format("'{}' holds no reference to '{}'", holder, id));
    }
    refs.erase(ref);
  }
  if (auto ok = sync_metadata(std::string(id)); !ok) return tl::unexpected(ok.error());
  return get(id, false);
}

Result<void> Pool::check_removable(std::string_view id, bool force) const {
  std::lock_guard lock(mutex_);
  return removable(id, force);
}

Result<void> Pool::removable(std::string_view id, bool force) const {
  auto record = ready_record(id);
  if (!record) return tl::unexpected(record.error());
  const auto& refs = (*record)->chunk.references;
  if (!refs.empty() && !force) {
    return make_error(ErrorCode::kConflict,
                      fmt::format("'{}' is referenced by {} ({}{}): drop the references first, or "
                                  "delete with force (gswarm data delete --force)",
                                  id, refs.size(), refs.front(), refs.size() > 1 ? ", ..." : ""));
  }
  return {};
}

Result<void> Pool::remove(std::string_view id_view, bool force) {
  const std::string id(id_view);
  {  // checked and marked at once: a reference added now finds no chunk
    std::lock_guard lock(mutex_);
    if (auto ok = removable(id, force); !ok) return ok;
    Record& record = records_.at(id);
    record.ready = false;
    record.removing = true;
  }
  // Bytes first: metadata without bytes is dropped at the next start, bytes
  // without metadata would be a stray key.
  if (auto released = store_.release(id); !released && released.error().code != ErrorCode::kNotFound) {
    std::lock_guard lock(mutex_);
    if (auto it = records_.find(id); it != records_.end()) {
      it->second.ready = true;
      it->second.removing = false;
    }
    return released;
  }
  if (auto ok = sync_metadata(id); !ok) return ok;
  std::lock_guard lock(mutex_);
  records_.erase(id);
  return {};
}

}  // namespace gswarm::pool
