#include "cli/files.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include <fmt/format.h>

namespace gswarm::cli {
namespace {

Error cannot(std::string_view what, const std::string& name) {
  return Error{ErrorCode::kBadRequest,
               fmt::format("cannot {} {}: {}", what, name, std::strerror(errno))};
}

// Copies a stream (a pipe) to an unnamed temporary file; its descriptor, or -1.
int spool(int in, std::string& why) {
  const char* dir = std::getenv("TMPDIR");
  const std::string where = dir != nullptr && *dir != '\0' ? dir : "/tmp";
  const int fd = ::open(where.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    why = fmt::format("cannot make a temporary file in {} for standard input: {}", where,
                      std::strerror(errno));
    return -1;
  }
  std::vector<char> buffer(1 << 20);
  for (;;) {
    const ssize_t n = ::read(in, buffer.data(), buffer.size());
    if (n == 0) return fd;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = fmt::format("cannot read standard input: {}", std::strerror(errno));
      break;
    }
    for (ssize_t at = 0; at < n;) {
      const ssize_t w = ::write(fd, buffer.data() + at, static_cast<std::size_t>(n - at));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        why = fmt::format("cannot copy standard input to {}: {}", where, std::strerror(errno));
        ::close(fd);
        return -1;
      }
      at += w;
    }
  }
  ::close(fd);
  return -1;
}

}  // namespace

Result<InputFile> InputFile::open(const std::string& path) {
  const bool stdin_wanted = path == "-";
  const std::string name = stdin_wanted ? "standard input" : path;
  int fd = stdin_wanted ? ::dup(STDIN_FILENO) : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tl::unexpected(cannot("read", name));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    Error e = cannot("read", name);
    ::close(fd);
    return tl::unexpected(e);
  }
  if (!S_ISREG(st.st_mode)) {
    if (!stdin_wanted) {
      ::close(fd);
      return make_error(ErrorCode::kBadRequest, fmt::format("'{}' is not a regular file", path));
    }
    std::string why;
    const int spooled = spool(fd, why);
    ::close(fd);
    if (spooled < 0) return make_error(ErrorCode::kBadRequest, why);
    fd = spooled;
    if (::fstat(fd, &st) != 0) {
      Error e = cannot("read", name);
      ::close(fd);
      return tl::unexpected(e);
    }
  }
  const std::size_t size = static_cast<std::size_t>(st.st_size);
  void* mapped = size == 0 ? nullptr : ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (mapped == MAP_FAILED) return tl::unexpected(cannot("map", name));
  if (mapped != nullptr) ::madvise(mapped, size, MADV_SEQUENTIAL);
  return InputFile(name, static_cast<const std::byte*>(mapped), size);
}

InputFile::InputFile(InputFile&& other) noexcept
    : name_(std::move(other.name_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

InputFile::~InputFile() {
  if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
}

std::span<std::byte> OutputFile::place(std::uint64_t size) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    why_ = fmt::format("cannot write {}: {}", path_, std::strerror(errno));
    return {};
  }
  if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
    why_ = fmt::format("cannot make {} {} bytes long: {}", path_, size, std::strerror(errno));
    return {};
  }
  size_ = static_cast<std::size_t>(size);
  if (size_ == 0) return {reinterpret_cast<std::byte*>(&size_), 0};  // nothing to map
  void* mapped = ::mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (mapped == MAP_FAILED) {
    why_ = fmt::format("cannot map {}: {}", path_, std::strerror(errno));
    size_ = 0;
    return {};
  }
  data_ = static_cast<std::byte*>(mapped);
  return {data_, size_};
}

void OutputFile::finish(bool read_ok) {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  const bool opened = fd_ >= 0;
  if (opened) ::close(fd_);
  fd_ = -1;
  if (opened && !read_ok) ::unlink(path_.c_str());
}

}  // namespace gswarm::cli
