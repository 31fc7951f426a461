#include "storage/disk_tier.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <map>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "core/size.hpp"

namespace gswarm {
namespace fs = std::filesystem;

namespace {

constexpr char kMagic[4] = {'G', 'S', 'W', 'V'};
constexpr std::uint32_t kFormatVersion = 1;
constexpr std::size_t kFixedHeader = 48;
constexpr std::size_t kMaxFormatBytes = 256;

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

Error io_error(std::string_view what, const fs::path& path, int err = errno) {
  return Error{ErrorCode::kIo, fmt::format("{} {}: {}", what, path.string(), std::strerror(err))};
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
    if (n <= 0) return false;
    p += n;
    size -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

bool fsync_dir(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

struct DiskTier::Shared {
  fs::path root;
  fs::path values;
  fs::path tmp;
  std::shared_ptr<LimitCounter> counter;
  std::atomic<std::uint64_t> next_sequence{1};

  fs::path value_path(const std::string& hash, std::uint64_t seq) const {
    return values / hash.substr(0, 2) / fmt::format("{}-{:016x}.gsv", hash, seq);
  }
};

namespace {

// One value file. Unsealed: an open temporary being filled sequentially. Sealed:
// a closed file under values/, opened per read.
class DiskExtent final : public Extent {
 public:
  // A sealed extent found by recovery.
  DiskExtent(std::shared_ptr<DiskTier::Shared> shared, fs::path path, std::uint64_t size,
             std::uint64_t header_size, std::uint64_t payload_hash)
      : shared_(std::move(shared)),
        path_(std::move(path)),
        size_(size),
        header_size_(header_size),
        payload_hash_(payload_hash),
        sealed_(true) {}

  // A new extent being written to `temp`.
  DiskExtent(std::shared_ptr<DiskTier::Shared> shared, fs::path temp, fs::path path, int fd,
             std::uint64_t size, FixedHeader header, std::string key, std::string format)
      : shared_(std::move(shared)),
        path_(std::move(path)),
        temp_(std::move(temp)),
        fd_(fd),
        size_(size),
        header_size_(kFixedHeader + key.size() + format.size()),
        header_(header),
        key_(std::move(key)),
        format_(std::move(format)) {
    XXH3_64bits_reset(&hash_state_);
  }

  ~DiskExtent() override {
    if (fd_ >= 0) ::close(fd_);
    if (!sealed_) ::unlink(temp_.c_str());
    shared_->counter->release(header_size_ + size_);
  }

  Location location() const override { return Location::disk(); }
  std::uint64_t size() const override { return size_; }

  Result<void> write(std::uint64_t offset, std::span<const std::byte> in) override {
    if (sealed_ || offset != written_ || offset + in.size() > size_) {
      return make_error(ErrorCode::kInternal, "disk extents are written once, in order");
    }
    if (!pwrite_all(fd_, in.data(), in.size(), header_size_ + offset)) {
      return tl::unexpected(io_error("cannot write", temp_));
    }
    XXH3_64bits_update(&hash_state_, in.data(), in.size());
    written_ += in.size();
    return {};
  }

  Result<void> seal() override {
    if (sealed_) return {};
    if (written_ != size_) return make_error(ErrorCode::kInternal, "sealing a partial disk value");
    header_.payload_hash = XXH3_64bits_digest(&hash_state_);
    header_.header_hash = header_hash(header_, key_, format_);
    payload_hash_ = header_.payload_hash;
    if (!pwrite_all(fd_, &header_, sizeof header_, 0)) {
      return tl::unexpected(io_error("cannot write", temp_));
    }
    if (::fsync(fd_) != 0) return tl::unexpected(io_error("cannot fsync", temp_));
    ::close(fd_);
    fd_ = -1;
    if (::rename(temp_.c_str(), path_.c_str()) != 0) {
      return tl::unexpected(io_error("cannot rename into", path_));
    }
    sealed_ = true;
    if (!fsync_dir(path_.parent_path())) {
      return tl::unexpected(io_error("cannot fsync directory", path_.parent_path()));
    }
    return {};
  }

  Result<void> read(std::uint64_t offset, std::span<std::byte> out) const override {
    if (offset + out.size() > size_) return make_error(ErrorCode::kInternal, "read outside value");
    int fd = ::open(path_.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return tl::unexpected(io_error("cannot open", path_));
    bool ok = pread_all(fd, out.data(), out.size(), header_size_ + offset);
    int err = errno;
    ::close(fd);
    if (!ok) return tl::unexpected(io_error("cannot read", path_, err));
    return {};
  }

  Result<void> verify(std::span<const std::byte> copy) const override {
    if (copy.size() != size_ || XXH3_64bits(copy.data(), copy.size()) != payload_hash_) {
      return make_error(ErrorCode::kIo,
                        fmt::format("checksum mismatch in {}: the file is corrupt", path_.string()));
    }
    return {};
  }

  void discard() override {
    if (!sealed_ || discarded_) return;
    discarded_ = true;
    if (::unlink(path_.c_str()) != 0 && errno != ENOENT) {
      spdlog::warn("cannot remove {}: {}", path_.string(), std::strerror(errno));
    }
    fsync_dir(path_.parent_path());
  }

  std::optional<ReadPointer> read_pointer() const override {
    return ReadPointer{"file", path_.string(), header_size_, size_};
  }

 private:
  std::shared_ptr<DiskTier::Shared> shared_;
  fs::path path_;
  fs::path temp_;
  int fd_ = -1;
  std::uint64_t size_;
  std::uint64_t header_size_;
  std::uint64_t payload_hash_ = 0;
  bool sealed_ = false;
  bool discarded_ = false;
  // While filling:
  FixedHeader header_{};
  std::string key_;
  std::string format_;
  XXH3_state_t hash_state_{};
  std::uint64_t written_ = 0;
};

}  // namespace

Result<std::unique_ptr<DiskTier>> DiskTier::open(fs::path root, std::uint64_t max_disk) {
  auto shared = std::make_shared<Shared>();
  std::error_code ec;
  shared->root = fs::absolute(root, ec);
  shared->values = shared->root / "values";
  shared->tmp = shared->root / "tmp";
  shared->counter = std::make_shared<LimitCounter>("--max-disk", max_disk);
  for (const auto& dir : {shared->values, shared->tmp}) {
    fs::create_directories(dir, ec);
    if (ec) {
      return make_error(ErrorCode::kIo, fmt::format("cannot create disk directory {}: {}",
                                                    dir.string(), ec.message()));
    }
  }
  if (::access(shared->tmp.c_str(), W_OK) != 0) {
    return tl::unexpected(io_error("disk path is not writable:", shared->tmp));
  }
  return std::unique_ptr<DiskTier>(new DiskTier(std::move(shared)));
}

const fs::path& DiskTier::root() const { return shared_->root; }

const LimitCounter& DiskTier::counter() const { return *shared_->counter; }

Result<std::unique_ptr<Extent>> DiskTier::allocate(std::uint64_t size, std::string_view key,
                                                   std::string_view format) {
  if (format.size() > kMaxFormatBytes) {
    return make_error(ErrorCode::kBadRequest, "format tag is longer than 256 bytes");
  }
  std::uint64_t header_size = kFixedHeader + key.size() + format.size();
  if (auto ok = shared_->counter->reserve(header_size + size, "disk"); !ok) {
    return tl::unexpected(ok.error());
  }
  std::uint64_t seq = shared_->next_sequence.fetch_add(1);
  std::string hash = key_hash_hex(key);
  fs::path final_path = shared_->value_path(hash, seq);
  fs::path temp = shared_->tmp / fmt::format("{}-{:016x}.tmp", hash, seq);
  std::error_code ec;
  fs::create_directories(final_path.parent_path(), ec);
  int fd = ::open(temp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) {
    shared_->counter->release(header_size + size);
    return tl::unexpected(io_error("cannot create", temp));
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
    shared_->counter->release(header_size + size);
    return tl::unexpected(io_error("cannot write", temp, err));
  }
  // The extent's destructor releases the reservation and removes the temporary.
  return std::make_unique<DiskExtent>(shared_, temp, final_path, fd, size, header,
                                      std::string(key), std::string(format));
}

Result<std::vector<DiskTier::Recovered>> DiskTier::recover() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(shared_->tmp, ec)) {
    spdlog::info("removing unfinished write {}", entry.path().string());
    fs::remove(entry.path(), ec);
  }

  struct Candidate {
    std::uint64_t sequence;
    fs::path path;
    std::string key;
    std::string format;
    FixedHeader header;
  };
  std::map<std::string, Candidate> newest;  // by key
  std::uint64_t max_sequence = 0;
  auto drop = [](const fs::path& path, std::string_view why) {
    spdlog::warn("removing {}: {}", path.string(), why);
    std::error_code ignored;
    fs::remove(path, ignored);
  };

  for (const auto& entry : fs::recursive_directory_iterator(shared_->values, ec)) {
    if (!entry.is_regular_file()) continue;
    const fs::path& path = entry.path();
    if (path.extension() != ".gsv") {
      drop(path, "not a value file");
      continue;
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      spdlog::warn("cannot open {}: {}", path.string(), std::strerror(errno));
      continue;
    }
    FixedHeader h{};
    std::string key;
    std::string format;
    std::string problem;
    std::uint64_t file_size = entry.file_size(ec);
    if (!pread_all(fd, &h, sizeof h, 0) || std::memcmp(h.magic, kMagic, 4) != 0) {
      problem = "bad header";
    } else if (h.version != kFormatVersion) {
      problem = fmt::format("unknown format version {}", h.version);
    } else if (h.key_size == 0 || h.key_size > 65536 || h.format_size > kMaxFormatBytes) {
      problem = "bad header sizes";
    } else {
      key.resize(h.key_size);
      format.resize(h.format_size);
      if (!pread_all(fd, key.data(), key.size(), kFixedHeader) ||
          !pread_all(fd, format.data(), format.size(), kFixedHeader + key.size())) {
        problem = "truncated header";
      } else if (header_hash(h, key, format) != h.header_hash) {
        problem = "header checksum mismatch";
      } else if (file_size != kFixedHeader + key.size() + format.size() + h.payload_size) {
        problem = "file size does not match its header";
      } else if (!path.filename().string().starts_with(key_hash_hex(key))) {
        problem = "file name does not match its key";
      }
    }
    ::close(fd);
    if (!problem.empty()) {
      drop(path, problem);
      continue;
    }
    max_sequence = std::max(max_sequence, h.sequence);
    auto it = newest.find(key);
    if (it != newest.end()) {
      if (it->second.sequence > h.sequence) {
        drop(path, "superseded by a newer write of the same key");
        continue;
      }
      drop(it->second.path, "superseded by a newer write of the same key");
    }
    Candidate candidate{h.sequence, path, key, std::move(format), h};
    newest.insert_or_assign(std::move(key), std::move(candidate));
  }
  if (ec) {
    return make_error(ErrorCode::kIo, fmt::format("cannot scan {}: {}",
                                                  shared_->values.string(), ec.message()));
  }
  shared_->next_sequence = max_sequence + 1;

  std::vector<Recovered> out;
  out.reserve(newest.size());
  for (auto& [key, c] : newest) {
    std::uint64_t header_size = kFixedHeader + c.key.size() + c.format.size();
    // Recovered files count against --max-disk even when they exceed it.
    shared_->counter->add(header_size + c.header.payload_size);
    out.push_back(Recovered{
        c.key, c.format,
        std::make_unique<DiskExtent>(shared_, c.path, c.header.payload_size, header_size,
                                     c.header.payload_hash)});
  }
  return out;
}

}  // namespace gswarm
