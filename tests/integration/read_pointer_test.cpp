// Read pointers: another local process (this test) opens a value the server
// holds through the server's local socket and maps it read-only. The descriptor
// it gets shows exactly that value and cannot be used to change it, and the
// server's other memory and descriptors are out of reach.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>
#include <gswarm/client.hpp>
#include <nlohmann/json.hpp>

#include "test_server.hpp"

namespace gswarm::testing {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

std::string pattern(std::size_t size, int seed) {
  std::string v(size, '\0');
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>((i * 7 + seed) & 0xff);
  return v;
}

// Maps [offset, offset+size) of `fd` read-only and returns the bytes.
std::string map_read_only(int fd, std::uint64_t offset, std::uint64_t size) {
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = offset / page * page;
  const std::uint64_t length = std::max<std::uint64_t>(offset - start + size, 1);
  void* p = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  EXPECT_NE(p, MAP_FAILED) << std::strerror(errno);
  if (p == MAP_FAILED) return {};
  std::string out(static_cast<const char*>(p) + (offset - start), size);
  ::munmap(p, length);
  return out;
}

json read_pointer(int port, const std::string& key) {
  auto res = http_request(port, "GET", "/location/" + url_encode(key));
  EXPECT_EQ(res.status, 200) << res.body;
  return json::parse(res.body)["locations"][0]["read_pointer"];
}

void write_value(int port, const std::string& key, const std::string& value,
                 const std::string& location) {
  auto w =
      http_request(port, "POST", "/write_extended?key=" + url_encode(key) + "&location=" + location,
                   value, "application/octet-stream");
  ASSERT_EQ(w.status, 200) << w.body;
}

// Every way to write through a shared descriptor fails: mapping it writable,
// writing to it, and opening its file again for writing.
void expect_unwritable(int fd) {
  void* p = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  EXPECT_EQ(p, MAP_FAILED) << "a shared descriptor could be mapped writable";
  if (p != MAP_FAILED) ::munmap(p, 4096);
  EXPECT_LT(::pwrite(fd, "x", 1, 0), 0) << "a shared descriptor could be written";
  int again = ::open(("/proc/self/fd/" + std::to_string(fd)).c_str(), O_RDWR);
  if (again >= 0) {  // reopening may work; writing through it must not
    EXPECT_LT(::pwrite(again, "x", 1, 0), 0) << "the reopened file could be written";
    void* q = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, again, 0);
    EXPECT_EQ(q, MAP_FAILED) << "the reopened file could be mapped writable";
    if (q != MAP_FAILED) ::munmap(q, 4096);
    ::close(again);
  }
}

TEST(ReadPointerTest, AnotherProcessMapsDramAndPinnedValues) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  for (std::size_t size :
       {std::size_t{0}, std::size_t{100}, std::size_t{5000}, std::size_t{3} << 20}) {
    for (const char* location : {"dram", "pinned_dram"}) {
      const std::string key = std::string(location) + "/" + std::to_string(size);
      SCOPED_TRACE(key);
      const std::string value = pattern(size, static_cast<int>(size % 251));
      write_value(server.port(), key, value, location);
      json rp = read_pointer(server.port(), key);
      ASSERT_TRUE(rp.is_object());
      EXPECT_EQ(rp["kind"], "shm");
      EXPECT_EQ(rp["size"], size);
      EXPECT_EQ(rp["location"], location);
      ASSERT_TRUE(rp.contains("socket") && rp["socket"].is_string());
      EXPECT_FALSE(rp.contains("path")) << "no /proc path of the server is handed out";
      auto shared = open_read_pointer(rp["socket"].get<std::string>(), key, location);
      ASSERT_TRUE(shared) << shared.error().message;
      EXPECT_EQ(shared->size(), size);
      EXPECT_EQ(shared->format(), "bytes");
      if (size > 0) {
        EXPECT_EQ(map_read_only(shared->fd(), shared->offset(), size), value);
      }
      expect_unwritable(shared->fd());
    }
  }
}

// The descriptor of a small value shows that value and nothing else, even when
// many small values sit side by side in the server's memory.
TEST(ReadPointerTest, ASmallValueIsSharedAloneAndCannotBeChanged) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  for (int i = 0; i < 50; ++i)
    write_value(port, "neighbour/" + std::to_string(i), pattern(64, i), "dram");
  write_value(port, "mine", "0123456789", "dram");
  for (int i = 50; i < 100; ++i)
    write_value(port, "neighbour/" + std::to_string(i), pattern(64, i), "dram");
  json rp = read_pointer(port, "mine");
  auto shared = open_read_pointer(rp["socket"].get<std::string>(), "mine", "dram");
  ASSERT_TRUE(shared) << shared.error().message;
  struct stat st {};
  ASSERT_EQ(::fstat(shared->fd(), &st), 0);
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), 10u) << "the file holds more than the value";
  EXPECT_EQ(map_read_only(shared->fd(), 0, 10), "0123456789");
  expect_unwritable(shared->fd());
  // The server still serves the value as written.
  auto r = http_request(port, "GET", "/read_extended/mine", "", "application/json",
                        {{"Accept", "application/octet-stream"}});
  EXPECT_EQ(r.body, "0123456789");
}

// A large value is shared without a copy; its segment shows nothing beyond the
// value's last page, and the server never reuses it for another value.
TEST(ReadPointerTest, ALargeValueIsSharedWithoutACopyAndTrimmed) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  // A freed segment of a larger value is what the next large value reuses.
  write_value(port, "before", std::string(3 << 20, 'S'), "dram");
  ASSERT_EQ(http_request(port, "DELETE", "/release/before").status, 200);
  const std::string value = pattern((2 << 20) + 5, 9);
  write_value(port, "big", value, "dram");
  json rp = read_pointer(port, "big");
  auto shared = open_read_pointer(rp["socket"].get<std::string>(), "big", "");
  ASSERT_TRUE(shared) << shared.error().message;
  struct stat st {};
  ASSERT_EQ(::fstat(shared->fd(), &st), 0);
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  EXPECT_EQ(static_cast<std::uint64_t>(st.st_size), (value.size() + page - 1) / page * page);
  std::string all = map_read_only(shared->fd(), 0, static_cast<std::uint64_t>(st.st_size));
  EXPECT_EQ(all.substr(0, value.size()), value);
  EXPECT_EQ(all.find('S', value.size()), std::string::npos) << "bytes of an earlier value show";
  expect_unwritable(shared->fd());
  // After a release and a new value of the same size, the old descriptor still
  // shows the old bytes: the segment was not reused.
  ASSERT_EQ(http_request(port, "DELETE", "/release/big").status, 200);
  write_value(port, "other", std::string(value.size(), 'O'), "dram");
  EXPECT_EQ(map_read_only(shared->fd(), 0, value.size()), value);
}

TEST(ReadPointerTest, DiskPointerNamesTheFileAndOpensOverTheSocketToo) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const std::string value = pattern(70000, 3);
  write_value(server.port(), "d", value, "disk");
  json rp = read_pointer(server.port(), "d");
  EXPECT_EQ(rp["kind"], "file");
  int fd = ::open(rp["path"].get<std::string>().c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(map_read_only(fd, rp["offset"], rp["size"]), value);
  ::close(fd);
  auto shared = open_read_pointer(rp["socket"].get<std::string>(), "d", "disk");
  ASSERT_TRUE(shared) << shared.error().message;
  EXPECT_EQ(map_read_only(shared->fd(), shared->offset(), shared->size()), value);
}

TEST(ReadPointerTest, BadRequestsOnTheSocketGetClearErrors) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  write_value(server.port(), "k", "v", "dram");
  const std::string socket = read_pointer(server.port(), "k")["socket"];
  auto missing = open_read_pointer(socket, "no such key", "");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto elsewhere = open_read_pointer(socket, "k", "disk");
  ASSERT_FALSE(elsewhere);
  EXPECT_EQ(elsewhere.error().code, ErrorCode::kWrongLocation);
  auto bad = open_read_pointer(socket, "k", "dramm");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, ErrorCode::kInvalidLocation);
  EXPECT_EQ(http_request(server.port(), "GET", "/health").status, 200);
}

// Run as an unprivileged user, the server is not dumpable: another process of
// that user cannot open the server's descriptors or memory through /proc, and
// gets values only through the socket.
TEST(ReadPointerTest, TheServerIsNotDumpableSoProcGivesNothingAway) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  fs::create_directories(disk);
  ASSERT_EQ(::chown(dir.path().c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::chown(disk.c_str(), kNobody, kNobody), 0);
  TestServer server(disk, ProcessOptions{{}, kNobody});
  write_value(server.port(), "secret", "s3cr3t", "dram");
  const std::string socket = read_pointer(server.port(), "secret")["socket"];
  const std::string proc = "/proc/" + std::to_string(server.pid());
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(10);
    // Same user as the server, and still shut out of its /proc entries.
    if (::open((proc + "/mem").c_str(), O_RDONLY) >= 0) ::_exit(11);
    if (::opendir((proc + "/fd").c_str()) != nullptr) ::_exit(12);
    if (::open((proc + "/fd/0").c_str(), O_RDONLY) >= 0) ::_exit(13);
    // The socket serves the same user.
    auto shared = open_read_pointer(socket, "secret", "dram");
    if (!shared) ::_exit(14);
    char buf[6];
    if (::pread(shared->fd(), buf, 6, 0) != 6 || std::string(buf, 6) != "s3cr3t") ::_exit(15);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "11: /proc/PID/mem opened, 12/13: /proc/PID/fd opened, "
                                       "14/15: the socket did not serve the server's own user";
}

// The socket answers processes of the server's user (and root) only.
TEST(ReadPointerTest, OtherUsersAreRefused) {
  TempDir dir;
  TestServer server(dir.path() / "disk");  // runs as root here
  write_value(server.port(), "k", "v", "dram");
  const std::string socket = read_pointer(server.port(), "k")["socket"];
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) ::_exit(10);
    auto shared = open_read_pointer(socket, "k", "dram");
    ::_exit(!shared && shared.error().code == ErrorCode::kForbidden ? 0 : 20);
  }
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "another user was served";
}

}  // namespace
}  // namespace gswarm::testing
