#include "storage/disk_tier.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>
#include <regex>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/size.hpp"
#include "core/test_point.hpp"

namespace gswarm {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[4] = {'G', 'S', 'W', 'V'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kFixedHeader = 48;
constexpr std::size_t kMaxFormatBytes = 256;
// Written data is handed to the disk every this many bytes, so that the fsync
// that ends a large write has little left to do.
constexpr std::uint64_t kWritebackStep = 8 * kMiB;

// Fixed part of the header, little-endian (x86-64 and aarch64 both are).
struct FixedHeader {
  char magic[4];
  std::uint32_t version;
  std::uint64_t payload_size;
  std::uint64_t payload_hash;
  std::uint64_t sequence;
  std::uint32_t key_size;
  std::uint32_t format_size;
  std::uint64_t header_hash;  // XXH3 of the fixed header (this field 0), key and format
};
static_assert(sizeof(FixedHeader) == kFixedHeader);

std::uint64_t header_hash(FixedHeader h, std::string_view key, std::string_view format) {
  h.header_hash = 0;
  XXH3_state_t state;
  XXH3_64bits_reset(&state);
  XXH3_64bits_update(&state, &h, sizeof h);
  XXH3_64bits_update(&state, key.data(), key.size());
  XXH3_64bits_update(&state, format.data(), format.size());
  return XXH3_64bits_digest(&state);
}

std::string key_hash_hex(std::string_view key) {
  XXH128_hash_t h = XXH3_128bits(key.data(), key.size());
  return fmt::format("{:016x}{:016x}", h.high64, h.low64);
}

// Logs the failure with its path and returns an error that names neither the
// path nor anything else about the server's file system.
Error disk_error(std::string_view what, const fs::path& path, int err = errno) {
  spdlog::warn("disk: {} {}: {}", what, path.string(), std::strerror(err));
  return Error{ErrorCode::kIo, fmt::format("disk I/O failed ({}): {}", what, std::strerror(err))};
}

bool pwrite_all(int fd, const void* data, std::size_t size, std::uint64_t offset) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::pwrite(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

bool pread_all(int fd, void* data, std::size_t size, std::uint64_t offset) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) errno = EIO;  // the file is shorter than its header says
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

int open_read_only(const fs::path& path) {
  return ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
}

}  // namespace

std::string read_value_header(
    const std::function<bool(std::uint64_t offset, std::span<std::byte> into)>& read,
    std::uint64_t file_size, ValueFileHeader& out) {
  FixedHeader h{};
  if (!read(0, std::as_writable_bytes(std::span(&h, 1))) || std::memcmp(h.magic, kMagic, 4) != 0) {
    return "bad header";
  }
  if (h.version != kFormatVersion) return fmt::format("unknown format version {}", h.version);
  if (h.key_size == 0 || h.key_size > 65536 || h.format_size > kMaxFormatBytes) {
    return "bad header sizes";
  }
  std::string key(h.key_size, '\0');
  std::string format(h.format_size, '\0');
  if (!read(kFixedHeader, std::as_writable_bytes(std::span(key))) ||
      !read(kFixedHeader + key.size(), std::as_writable_bytes(std::span(format)))) {
    return "truncated header";
  }
  if (header_hash(h, key, format) != h.header_hash) return "header checksum mismatch";
  const std::uint64_t header_size = kFixedHeader + key.size() + format.size();
  if (h.payload_size > file_size || file_size - h.payload_size != header_size) {
    return "file size does not match its header";
  }
  out = ValueFileHeader{std::move(key), std::move(format), h.payload_size, h.payload_hash,
                        h.sequence, header_size};
  return "";
}

std::string value_file_name(const ValueFileHeader& header) {
  return fmt::format("{}-{:016x}.gsv", key_hash_hex(header.key), header.sequence);
}

struct DiskTier::Shared {
  fs::path root;
  fs::path values;
  fs::path tmp;
  fs::path quarantine;
  LimitCounter counter{"--max-disk", 0};
  std::atomic<std::uint64_t> next_sequence{1};
  int lock_fd = -1;  // holds flock(LOCK_EX) on <root>/lock while the tier lives

  ~Shared() {
    if (lock_fd >= 0) ::close(lock_fd);
  }

  fs::path value_path(const std::string& hash, std::uint64_t seq) const {
    return values / hash.substr(0, 2) / fmt::format("{}-{:016x}.gsv", hash, seq);
  }
};

namespace {

// One value file. While being written: an open temporary filled in order. Once
// published: a read-only file under values/, opened per read.
class DiskExtent final : public Extent {
 public:
  // A published extent found by recovery.
  DiskExtent(std::shared_ptr<DiskTier::Shared> shared, fs::path path, std::uint64_t size,
             std::uint64_t header_size, std::uint64_t payload_hash, std::uint64_t sequence)
      : shared_(std::move(shared)),
        path_(std::move(path)),
        size_(size),
        header_size_(header_size),
        sequence_(sequence),
        payload_hash_(payload_hash),
        published_(true) {}

  // A new extent being written to `temp`.
  DiskExtent(std::shared_ptr<DiskTier::Shared> shared, fs::path temp, fs::path path, int fd,
             std::uint64_t size, FixedHeader header, std::string key, std::string format)
      : shared_(std::move(shared)),
        path_(std::move(path)),
        temp_(std::move(temp)),
        fd_(fd),
        size_(size),
        header_size_(kFixedHeader + key.size() + format.size()),
        sequence_(header.sequence),
        header_(header),
        key_(std::move(key)),
        format_(std::move(format)) {
    XXH3_64bits_reset(&hash_state_);
  }

  ~DiskExtent() override {
    if (fd_ >= 0) ::close(fd_);
    if (!published_) ::unlink(temp_.c_str());
    shared_->counter.release(header_size_ + size_);
  }

  Location location() const override { return Location::disk(); }
  std::uint64_t size() const override { return size_; }

  Result<void> write(std::uint64_t offset, std::span<const std::byte> in) override {
    if (published_ || offset != written_ || offset + in.size() > size_) {
      return make_error(ErrorCode::kInternal, "disk extents are written once, in order");
    }
    if (abandoned_.load(std::memory_order_relaxed)) return replaced();
    if (!pwrite_all(fd_, in.data(), in.size(), header_size_ + offset)) {
      return tl::unexpected(disk_error("cannot write a value file", temp_));
    }
    XXH3_64bits_update(&hash_state_, in.data(), in.size());
    written_ += in.size();
    if (written_ - flushed_ >= kWritebackStep) {
      // Start writing back what is there without waiting for it.
      ::sync_file_range(fd_, static_cast<off_t>(header_size_ + flushed_),
                        static_cast<off_t>(written_ - flushed_), SYNC_FILE_RANGE_WRITE);
      flushed_ = written_;
    }
    return {};
  }

  // Ranges may arrive on several threads at once: each is written where it
  // belongs and handed to the disk; the checksum is computed from the file at
  // seal(), while its pages are still cached.
  Result<void> write_range(std::uint64_t offset, std::span<const std::byte> in) override {
    if (offset > size_ || in.size() > size_ - offset || written_ != 0) {
      return make_error(ErrorCode::kInternal, "a disk value range outside the value");
    }
    if (abandoned_.load(std::memory_order_relaxed)) return replaced();
    if (!pwrite_all(fd_, in.data(), in.size(), header_size_ + offset)) {
      return tl::unexpected(disk_error("cannot write a value file", temp_));
    }
    ::sync_file_range(fd_, static_cast<off_t>(header_size_ + offset),
                      static_cast<off_t>(in.size()), SYNC_FILE_RANGE_WRITE);
    ranged_.fetch_add(in.size(), std::memory_order_relaxed);
    return {};
  }
  bool concurrent_ranges() const override { return true; }

  Result<void> seal() override {
    if (published_) return {};
    const std::uint64_t ranged = ranged_.load(std::memory_order_relaxed);
    if (written_ + ranged != size_) {
      return make_error(ErrorCode::kInternal, "sealing a partial disk value");
    }
    if (abandoned_.load(std::memory_order_relaxed)) return replaced();
    if (ranged > 0 && !hashed_) {
      if (auto hashed = hash_file(); !hashed) return hashed;
    }
    header_.payload_hash = XXH3_64bits_digest(&hash_state_);
    header_.header_hash = header_hash(header_, key_, format_);
    payload_hash_ = header_.payload_hash;
    if (!pwrite_all(fd_, &header_, sizeof header_, 0)) {
      return tl::unexpected(disk_error("cannot write a value file", temp_));
    }
    if (::fsync(fd_) != 0) return tl::unexpected(disk_error("cannot fsync a value file", temp_));
    ::close(fd_);
    fd_ = -1;
    GSWARM_TEST_POINT("disk.before_publish");
    {
      std::lock_guard lock(publish_mutex_);
      if (discarded_) {
        ::unlink(temp_.c_str());
        return replaced();
      }
      if (::rename(temp_.c_str(), path_.c_str()) != 0) {
        return tl::unexpected(disk_error("cannot rename a value file into", path_));
      }
      GSWARM_TEST_POINT("disk.after_rename");
      if (!fsync_dir(path_.parent_path())) {
        int err = errno;
        ::unlink(path_.c_str());
        fsync_dir(path_.parent_path());  // best effort: the write is answered as failed
        return tl::unexpected(disk_error("cannot fsync directory", path_.parent_path(), err));
      }
      published_ = true;
    }
    GSWARM_TEST_POINT("disk.published");
    return {};
  }

  Result<std::uint64_t> digest() override {
    if (published_) return payload_hash_;
    const std::uint64_t ranged = ranged_.load(std::memory_order_relaxed);
    if (written_ + ranged != size_) {
      return make_error(ErrorCode::kInternal, "the digest of a partial disk value");
    }
    if (ranged > 0 && !hashed_) {
      if (auto hashed = hash_file(); !hashed) return tl::unexpected(hashed.error());
      hashed_ = true;
    }
    return XXH3_64bits_digest(&hash_state_);
  }

  Result<void> read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset + out.size() > size_) return make_error(ErrorCode::kInternal, "read outside value");
    int fd = open_read_only(path_);
    if (fd < 0) return tl::unexpected(disk_error("cannot open a value file", path_));
    bool ok = pread_all(fd, out.data(), out.size(), header_size_ + offset);
    int err = errno;
    ::close(fd);
    if (!ok) return tl::unexpected(disk_error("cannot read a value file", path_, err));
    return {};
  }

  Result<void> verify(std::span<const std::byte> copy) const override {
    if (copy.size() != size_ || XXH3_64bits(copy.data(), copy.size()) != payload_hash_) {
      spdlog::error("disk: checksum mismatch in {}: the file is corrupt", path_.string());
      return make_error(ErrorCode::kIo,
                        "the value's file on disk is corrupt (checksum mismatch); it was kept "
                        "for inspection and the key still points at it");
    }
    return {};
  }

  void discard() override {
    std::lock_guard lock(publish_mutex_);
    if (discarded_) return;
    discarded_ = true;
    if (!published_) {
      // Not visible yet: make sure it never becomes visible.
      abandoned_.store(true, std::memory_order_relaxed);
      return;
    }
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("disk: cannot remove {}: {}", path_.string(), std::strerror(errno));
    }
    fsync_dir(path_.parent_path());
  }

  std::optional<ReadPointer> read_pointer() const override {
    return ReadPointer{"file", path_.string(), header_size_, size_};
  }
  std::uint64_t sequence() const override { return sequence_; }

  Result<ExportedValue> export_read_only() const override {
    UniqueFd fd(open_read_only(path_));
    if (!fd) return tl::unexpected(disk_error("cannot open a value file", path_));
    return ExportedValue{std::move(fd), header_size_, size_};
  }

 private:
  // Feeds the payload, as written to the file, to the checksum.
  Result<void> hash_file() {
    constexpr std::size_t kPiece = 1 << 20;
    auto piece = std::make_unique_for_overwrite<std::byte[]>(kPiece);
    for (std::uint64_t at = 0; at < size_;) {
      const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, size_ - at));
      if (!pread_all(fd_, piece.get(), n, header_size_ + at)) {
        return tl::unexpected(disk_error("cannot read back a value file", temp_));
      }
      XXH3_64bits_update(&hash_state_, piece.get(), n);
      at += n;
    }
    return {};
  }

  static tl::unexpected<Error> replaced() {
    return make_error(ErrorCode::kConflict,
                      "the key was overwritten or released while this copy was being written");
  }

  std::shared_ptr<DiskTier::Shared> shared_;
  fs::path path_;
  fs::path temp_;
  int fd_ = -1;
  const std::uint64_t size_;
  const std::uint64_t header_size_;
  const std::uint64_t sequence_;
  std::uint64_t payload_hash_ = 0;
  std::mutex publish_mutex_;
  bool published_ = false;              // written under publish_mutex_; read by the filler too
  bool discarded_ = false;              // guarded by publish_mutex_
  std::atomic<bool> abandoned_{false};  // discarded before publication: stop writing
  // While filling (the filler's thread only):
  FixedHeader header_{};
  std::string key_;
  std::string format_;
  XXH3_state_t hash_state_{};
  std::uint64_t written_ = 0;
  std::uint64_t flushed_ = 0;
  std::atomic<std::uint64_t> ranged_{0};  // bytes written by write_range(), any thread
  bool hashed_ = false;  // hash_state_ holds the ranged bytes (digest() read them back)
};

// ---- start-up checks -------------------------------------------------------------

tl::unexpected<Error> unsafe(const fs::path& root, const fs::path& path, std::string_view problem,
                             std::string_view fix) {
  std::string where = path == root ? std::string("it") : path.lexically_relative(root).string();
  return make_error(ErrorCode::kIo, fmt::format("refusing to use --disk-path {}: {} {}; {}",
                                                root.string(), where, problem, fix));
}

// The root and everything in it must be ours, writable only by us, and real
// files and directories: a local user who planted the directory (or a symlink
// in it) could otherwise redirect our writes and deletes, or feed us values.
Result<void> check_tree(const fs::path& root) {
  const uid_t me = ::geteuid();
  auto check = [&](const fs::path& path) -> Result<void> {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return unsafe(root, path, fmt::format("cannot be examined ({})", std::strerror(errno)),
                    "check its permissions");
    }
    if (S_ISLNK(st.st_mode)) {
      return unsafe(root, path, "is a symbolic link",
                    "remove the link or choose another --disk-path");
    }
    if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
      return unsafe(root, path, "is neither a file nor a directory",
                    "remove it or choose another --disk-path");
    }
    if (st.st_uid != me) {
      return unsafe(
          root, path,
          fmt::format("belongs to uid {}, not to this server's user (uid {})", st.st_uid, me),
          "remove it, or run gswarm as its owner, or choose another --disk-path");
    }
    if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
      return unsafe(root, path, "is writable by other users",
                    fmt::format("run `chmod -R go-w {}`", root.string()));
    }
    return {};
  };
  if (auto ok = check(root); !ok) return ok;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (auto ok = check(it->path()); !ok) return ok;
  }
  if (ec) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot scan --disk-path {}: {}", root.string(), ec.message()));
  }
  return {};
}

// mkdir with mode 0700; an existing directory is left for check_tree to judge.
Result<void> make_private_dir(const fs::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return {};
  return make_error(ErrorCode::kIo, fmt::format("cannot create disk directory {}: {}", dir.string(),
                                                std::strerror(errno)));
}

// Names gswarm gives its files.
const std::regex& temp_name() {
  static const std::regex re("[0-9a-f]{32}-[0-9a-f]{16}\\.tmp");
  return re;
}
const std::regex& value_name() {
  static const std::regex re("[0-9a-f]{32}-[0-9a-f]{16}\\.gsv");
  return re;
}

}  // namespace

bool fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

Result<std::unique_ptr<DiskTier>> DiskTier::open(fs::path root, std::uint64_t max_disk) {
  auto shared = std::make_shared<Shared>();
  std::error_code ec;
  shared->root = fs::absolute(root, ec).lexically_normal();
  if (shared->root.has_filename() == false) shared->root = shared->root.parent_path();
  shared->values = shared->root / "values";
  shared->tmp = shared->root / "tmp";
  shared->quarantine = shared->root / "quarantine";
  shared->counter.set_limit(max_disk);
  if (shared->root.has_parent_path()) {
    fs::create_directories(shared->root.parent_path(), ec);  // the parents as the user made them
  }
  for (const auto& dir : {shared->root, shared->values, shared->tmp, shared->quarantine}) {
    if (auto ok = make_private_dir(dir); !ok) return tl::unexpected(ok.error());
  }
  if (auto ok = check_tree(shared->root); !ok) return tl::unexpected(ok.error());
  // One process per root: another one's recovery would take this one's
  // temporaries for leftovers of a crash and remove them.
  fs::path lock_path = shared->root / "lock";
  shared->lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (shared->lock_fd < 0) {
    return make_error(ErrorCode::kIo, fmt::format("cannot open {}: {}", lock_path.string(),
                                                  std::strerror(errno)));
  }
  if (::flock(shared->lock_fd, LOCK_EX | LOCK_NB) != 0) {
    return make_error(ErrorCode::kUnavailable,
                      fmt::format("--disk-path {} is in use by another gswarm process; give each "
                                  "server (and each embedded store) its own --disk-path",
                                  shared->root.string()));
  }
  if (::access(shared->tmp.c_str(), W_OK) != 0) {
    return make_error(ErrorCode::kIo, fmt::format("--disk-path {} is not writable: {}",
                                                  shared->root.string(), std::strerror(errno)));
  }
  return std::unique_ptr<DiskTier>(new DiskTier(std::move(shared)));
}

const fs::path& DiskTier::root() const { return shared_->root; }

const LimitCounter& DiskTier::counter() const { return shared_->counter; }

Result<ExtentRef> DiskTier::allocate(std::uint64_t size, std::string_view key,
                                     std::string_view format) {
  if (format.size() > kMaxFormatBytes) {
    return make_error(ErrorCode::kBadRequest, "format tag is longer than 256 bytes");
  }
  std::uint64_t header_size = kFixedHeader + key.size() + format.size();
  if (auto ok = shared_->counter.reserve(header_size + size, "disk"); !ok) {
    return tl::unexpected(ok.error());
  }
  std::uint64_t seq = shared_->next_sequence.fetch_add(1);
  std::string hash = key_hash_hex(key);
  fs::path final_path = shared_->value_path(hash, seq);
  fs::path temp = shared_->tmp / fmt::format("{}-{:016x}.tmp", hash, seq);
  if (auto ok = make_private_dir(final_path.parent_path()); !ok) {
    shared_->counter.release(header_size + size);
    return tl::unexpected(disk_error("cannot create a directory", final_path.parent_path()));
  }
  // Read-only once written: the descriptor opened here is the only writer.
  int fd = ::open(temp.c_str(), O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0400);
  if (fd < 0) {
    shared_->counter.release(header_size + size);
    return tl::unexpected(disk_error("cannot create a value file", temp));
  }
  FixedHeader header{};
  std::memcpy(header.magic, kMagic, sizeof kMagic);
  header.version = kFormatVersion;
  header.payload_size = size;
  header.sequence = seq;
  header.key_size = static_cast<std::uint32_t>(key.size());
  header.format_size = static_cast<std::uint32_t>(format.size());
  // Key and format now; the fixed header, with its checksums, at seal().
  std::string tail = std::string(key) + std::string(format);
  if (!pwrite_all(fd, tail.data(), tail.size(), kFixedHeader)) {
    int err = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    shared_->counter.release(header_size + size);
    return tl::unexpected(disk_error("cannot write a value file", temp, err));
  }
  // The extent's destructor releases the reservation and removes the temporary.
  return ExtentRef(new DiskExtent(shared_, temp, final_path, fd, size, header, std::string(key),
                                  std::string(format)));
}

Result<std::vector<DiskTier::Recovered>> DiskTier::recover() {
  const auto quarantine = [this](const fs::path& path, std::string_view why) {
    fs::path target = shared_->quarantine / path.filename();
    std::error_code ec;
    for (int n = 1; fs::exists(target, ec); ++n) {
      target = shared_->quarantine / fmt::format("{}.{}", path.filename().string(), n);
    }
    if (::rename(path.c_str(), target.c_str()) == 0) {
      spdlog::warn("disk: moved {} to {}: {}", path.string(), target.string(), why);
    } else {
      spdlog::warn("disk: ignoring {} ({}); cannot move it to quarantine: {}", path.string(), why,
                   std::strerror(errno));
    }
  };
  const auto remove_ours = [](const fs::path& path, std::string_view why) {
    spdlog::info("disk: removing {}: {}", path.string(), why);
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("disk: cannot remove {}: {}", path.string(), std::strerror(errno));
    }
  };

  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(shared_->tmp, ec)) {
    const std::string name = entry.path().filename().string();
    if (entry.is_regular_file() && std::regex_match(name, temp_name())) {
      remove_ours(entry.path(), "an unfinished write");
    } else {
      quarantine(entry.path(), "not a file gswarm writes in tmp/");
    }
  }

  struct Candidate {
    fs::path path;
    ValueFileHeader header;
  };
  std::map<std::string, Candidate> newest;  // by key
  std::uint64_t max_sequence = 0;

  std::vector<fs::path> files;
  for (auto it = fs::recursive_directory_iterator(shared_->values, ec); !ec && it != fs::end(it);
       it.increment(ec)) {
    if (it->is_regular_file()) files.push_back(it->path());
  }
  if (ec) {
    return make_error(ErrorCode::kIo,
                      fmt::format("cannot scan {}: {}", shared_->values.string(), ec.message()));
  }
  for (const fs::path& path : files) {
    if (!std::regex_match(path.filename().string(), value_name())) {
      quarantine(path, "not a value file");
      continue;
    }
    int fd = open_read_only(path);
    if (fd < 0) {
      quarantine(path, fmt::format("cannot open it: {}", std::strerror(errno)));
      continue;
    }
    ValueFileHeader h;
    struct stat st {};
    const std::uint64_t file_size =
        ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    std::string problem = read_value_header(
        [fd](std::uint64_t offset, std::span<std::byte> into) {
          return pread_all(fd, into.data(), into.size(), offset);
        },
        file_size, h);
    if (problem.empty()) {
      const std::string hash = key_hash_hex(h.key);
      if (!path.filename().string().starts_with(hash) ||
          path.parent_path().filename() != hash.substr(0, 2)) {
        problem = "file name does not match its key";
      } else if (path.filename().string() != value_file_name(h)) {
        problem = "file name does not match its sequence number";
      }
    }
    ::close(fd);
    if (!problem.empty()) {
      quarantine(path, problem);
      continue;
    }
    max_sequence = std::max(max_sequence, h.sequence);
    auto it = newest.find(h.key);
    if (it != newest.end()) {
      if (it->second.header.sequence > h.sequence) {
        remove_ours(path, "superseded by a newer write of the same key");
        continue;
      }
      remove_ours(it->second.path, "superseded by a newer write of the same key");
    }
    std::string key = h.key;
    newest.insert_or_assign(std::move(key), Candidate{path, std::move(h)});
  }
  shared_->next_sequence = max_sequence + 1;

  std::vector<Recovered> out;
  out.reserve(newest.size());
  for (auto& [key, c] : newest) {
    // Recovered files count against --max-disk even when they exceed it.
    shared_->counter.add(c.header.header_size + c.header.payload_size);
    out.push_back(Recovered{c.header.key, c.header.format,
                            ExtentRef(new DiskExtent(shared_, c.path, c.header.payload_size,
                                                     c.header.header_size, c.header.payload_hash,
                                                     c.header.sequence))});
  }
  return out;
}

}  // namespace gswarm
