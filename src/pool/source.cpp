// Sources of new chunks that live on this server: files under the allowed
// roots, and KV keys.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

#include "pool/pool.hpp"

namespace gswarm::pool {
namespace fs = std::filesystem;
namespace {

// Whether `path` is `root` or inside it, component by component (both canonical).
bool is_under(const fs::path& path, const fs::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

Error outside_roots(std::string_view path) {
  return Error{ErrorCode::kForbidden,
               fmt::format("'{}' is outside the directories this server reads sources from: "
                           "start it with --source-root DIR to allow files under DIR, or upload "
                           "the bytes (gswarm data create does when the server cannot read the file)",
                           path)};
}

class FileSource final : public Source {
 public:
  FileSource(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  ~FileSource() override { ::close(fd_); }
  std::uint64_t size() const override { return size_; }
  Result<void> read(std::span<std::byte> out) override {
    for (std::size_t got = 0; got < out.size();) {
      ssize_t n = ::pread(fd_, out.data() + got, out.size() - got, static_cast<off_t>(offset_));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        return make_error(ErrorCode::kIo,
                          fmt::format("reading the source file failed: {}", std::strerror(errno)));
      }
      if (n == 0) {
        return make_error(ErrorCode::kConflict,
                          "the source file became shorter while it was read; try again");
      }
      got += static_cast<std::size_t>(n);
      offset_ += static_cast<std::uint64_t>(n);
    }
    return {};
  }

 private:
  int fd_;
  std::uint64_t size_;
  std::uint64_t offset_ = 0;
};

// Opens `relative` beneath `root` refusing every symbolic link on the way, so
// that a link swapped in after the checks cannot lead out of the root.
int open_beneath(const fs::path& root, const fs::path& relative) {
  int dir = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return -1;
  open_how how{};
  // Non-blocking: opening a FIFO would otherwise wait for a writer.
  how.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const fs::path target = relative.empty() ? fs::path(".") : relative;
  long fd = ::syscall(SYS_openat2, dir, target.c_str(), &how, sizeof how);
  const int saved = errno;
  if (fd < 0 && saved == ENOSYS) {  // kernels before 5.6: the last component at least
    fd = ::openat(dir, target.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOFOLLOW | O_NONBLOCK);
  }
  const int saved_open = errno;
  ::close(dir);
  errno = fd < 0 ? (saved == ENOSYS ? saved_open : saved) : 0;
  return static_cast<int>(fd);
}

class KeySource final : public Source {
 public:
  explicit KeySource(ReplicaView view) : view_(std::move(view)) {}
  std::uint64_t size() const override { return view_.extent->size(); }
  Result<void> read(std::span<std::byte> out) override {
    if (auto ok = view_.extent->read(offset_, out); !ok) return ok;
    offset_ += out.size();
    return {};
  }

 private:
  ReplicaView view_;
  std::uint64_t offset_ = 0;
};

}  // namespace

Result<std::unique_ptr<Source>> open_file_source(std::string_view text,
                                                 const std::vector<fs::path>& roots) {
  const fs::path requested(text);
  if (!requested.is_absolute()) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the source path '{}' is relative: give an absolute path", text));
  }
  if (roots.empty()) return tl::unexpected(outside_roots(text));
  const fs::path normal = requested.lexically_normal();
  char resolved[PATH_MAX];
  if (::realpath(normal.c_str(), resolved) == nullptr) {
    const int err = errno;
    // Judged by the deepest part of the path that exists, resolved: a missing file
    // behind a link that leads out of the roots is as forbidden as an existing one.
    fs::path existing = normal.parent_path();
    char resolved_parent[PATH_MAX];
    while (::realpath(existing.c_str(), resolved_parent) == nullptr && existing.has_relative_path()) {
      existing = existing.parent_path();
    }
    const fs::path parent = ::realpath(existing.c_str(), resolved_parent) != nullptr
                                ? fs::path(resolved_parent)
                                : existing;
    bool under_a_root = false;
    for (const auto& root : roots) under_a_root = under_a_root || is_under(parent, root);
    if (!under_a_root) return tl::unexpected(outside_roots(text));
    if (err == ENOENT || err == ENOTDIR) {
      return make_error(ErrorCode::kNotFound, fmt::format("no file '{}' on the server", text));
    }
    return make_error(ErrorCode::kForbidden,
                      fmt::format("the server cannot read '{}': {}", text, std::strerror(err)));
  }
  const fs::path canonical(resolved);
  const fs::path* root = nullptr;
  for (const auto& r : roots) {
    if (is_under(canonical, r)) root = &r;
  }
  if (root == nullptr) return tl::unexpected(outside_roots(text));
  int fd = open_beneath(*root, canonical.lexically_relative(*root));
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT) {
      return make_error(ErrorCode::kNotFound, fmt::format("no file '{}' on the server", text));
    }
    if (err == ELOOP || err == EXDEV) return tl::unexpected(outside_roots(text));
    return make_error(ErrorCode::kForbidden,
                      fmt::format("the server cannot read '{}': {}", text, std::strerror(err)));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("the source '{}' is not a regular file", text));
  }
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  return std::unique_ptr<Source>(
      std::make_unique<FileSource>(fd, static_cast<std::uint64_t>(st.st_size)));
}

Result<std::unique_ptr<Source>> open_key_source(const Store& store, std::string_view key) {
  auto view = store.open_replica(key, std::nullopt);
  if (!view) return tl::unexpected(view.error());
  return std::unique_ptr<Source>(std::make_unique<KeySource>(std::move(*view)));
}

}  // namespace gswarm::pool
