// Read pointers: another local process (this test) opens a value the server
// holds through the server's local socket and maps it read-only. The descriptor
// it gets shows exactly that value and cannot be used to change it, and the
// server's other memory and descriptors are out of reach.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <memory>

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

// The process a read pointer names as the one serving it.
LocalServer server_of(const json& rp) {
  return LocalServer{rp.at("socket").get<std::string>(), rp.at("pid").get<std::int64_t>(),
                     rp.at("uid").get<std::int64_t>()};
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
      auto shared = open_read_pointer(server_of(rp), key, location);
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
  auto shared = open_read_pointer(server_of(rp), "mine", "dram");
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
  auto shared = open_read_pointer(server_of(rp), "big", "");
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
  auto shared = open_read_pointer(server_of(rp), "d", "disk");
  ASSERT_TRUE(shared) << shared.error().message;
  EXPECT_EQ(map_read_only(shared->fd(), shared->offset(), shared->size()), value);
}

TEST(ReadPointerTest, BadRequestsOnTheSocketGetClearErrors) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  write_value(server.port(), "k", "v", "dram");
  const LocalServer socket = server_of(read_pointer(server.port(), "k"));
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
  const LocalServer socket = server_of(read_pointer(server.port(), "secret"));
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
  const LocalServer socket = server_of(read_pointer(server.port(), "k"));
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


// Binds the abstract socket `name` ("@...") as user `uid` in a child process
// and reports, through the returned pipe, how many bytes the first process to
// connect sent within `seconds`. -1 when the name could not be bound.
struct Listener {
  pid_t pid = -1;
  int result = -1;  // read end: one int, the byte count
};
Listener listen_as(uid_t uid, const std::string& name, double seconds) {
  int ready[2], result[2];
  EXPECT_EQ(::pipe(ready), 0);
  EXPECT_EQ(::pipe(result), 0);
  Listener l;
  l.pid = ::fork();
  if (l.pid == 0) {
    ::close(ready[0]);
    ::close(result[0]);
    int count = -1;
    if (::setgid(uid) == 0 && ::setuid(uid) == 0) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::string path = name;
      path[0] = '\0';
      std::memcpy(addr.sun_path, path.data(), path.size());
      const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0 && ::listen(fd, 8) == 0) {
        char one = 1;
        (void)!::write(ready[1], &one, 1);
        int conn = ::accept(fd, nullptr, nullptr);
        count = 0;
        timeval tv{static_cast<time_t>(seconds), 0};
        ::setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        char buf[4096];
        for (ssize_t n; (n = ::recv(conn, buf, sizeof buf, 0)) > 0;) count += static_cast<int>(n);
      }
    }
    (void)!::write(result[1], &count, sizeof count);
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(result[1]);
  char byte = 0;
  EXPECT_EQ(::read(ready[0], &byte, 1), 1) << "the listener could not bind " << name;
  ::close(ready[0]);
  l.result = result[0];
  return l;
}

int finish(Listener& l) {
  int count = -2;
  EXPECT_EQ(::read(l.result, &count, sizeof count), static_cast<ssize_t>(sizeof count));
  ::close(l.result);
  ::waitpid(l.pid, nullptr, 0);
  return count;
}

// An abstract name is free again once its server exits, and anyone may bind it.
// A client holding a read pointer of that server checks who is at the name
// before it sends a byte: a listener of another user there learns neither the
// key nor the token, and the read fails with an error that says why.
TEST(ReadPointerTest, AListenerOfAnotherUserOnAStaleNameGetsNothing) {
  TempDir dir;
  auto server = std::make_unique<TestServer>(dir.path() / "disk",
                                             std::vector<std::string>{"--token", "t0ken-s3cret"});
  auto w = http_request(server->port(), "POST", "/write_extended?key=k", "v",
                        "application/octet-stream", {{"Authorization", "Bearer t0ken-s3cret"}});
  ASSERT_EQ(w.status, 200) << w.body;
  auto where = http_request(server->port(), "GET", "/location/k", "", "application/json",
                            {{"Authorization", "Bearer t0ken-s3cret"}});
  const LocalServer stale = server_of(json::parse(where.body)["locations"][0]["read_pointer"]);
  ASSERT_TRUE(open_read_pointer(stale, "k", "dram", "t0ken-s3cret"));
  server->kill9();  // its name is free now
  Listener listener = listen_as(kNobody, stale.socket, 2);
  auto hijacked = open_read_pointer(stale, "k", "dram", "t0ken-s3cret");
  ASSERT_FALSE(hijacked) << "a value came from a process that is not the server";
  EXPECT_EQ(hijacked.error().code, ErrorCode::kConnection);
  EXPECT_NE(hijacked.error().message.find("not by the server"), std::string::npos)
      << hijacked.error().message;
  EXPECT_EQ(finish(listener), 0) << "the client sent its request (and token) to a stranger";
}

// A read pointer that does not say who serves it is not used blindly.
TEST(ReadPointerTest, APointerWithoutItsServerIsRefused) {
  auto opened = open_read_pointer(LocalServer{"@gswarm-1-00", -1, -1}, "k");
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().code, ErrorCode::kBadRequest);
}

// Opens `n` connections to the socket and keeps them silent until the
// returned pipe is closed; run as `uid`. The pipe's other end says when all are open.
struct Flood {
  pid_t pid = -1;
  int stop = -1;
};
Flood flood_as(uid_t uid, const std::string& name, int n) {
  int ready[2], stop[2];
  EXPECT_EQ(::pipe(ready), 0);
  EXPECT_EQ(::pipe(stop), 0);
  Flood f;
  f.pid = ::fork();
  if (f.pid == 0) {
    ::close(ready[0]);
    ::close(stop[1]);
    if (::setgid(uid) != 0 || ::setuid(uid) != 0) ::_exit(1);
    std::vector<int> held;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::string path = name;
    path[0] = '\0';
    std::memcpy(addr.sun_path, path.data(), path.size());
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size());
    for (int i = 0; i < n; ++i) {
      int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) == 0) held.push_back(fd);
    }
    char one = 1;
    (void)!::write(ready[1], &one, 1);
    char byte;
    (void)!::read(stop[0], &byte, 1);  // until the test is done
    ::_exit(0);
  }
  ::close(ready[1]);
  ::close(stop[0]);
  char byte = 0;
  EXPECT_EQ(::read(ready[0], &byte, 1), 1);
  ::close(ready[0]);
  f.stop = stop[1];
  return f;
}

void end(Flood& f) {
  ::close(f.stop);
  ::kill(f.pid, SIGKILL);  // a later child may hold the pipe's other end too
  ::waitpid(f.pid, nullptr, 0);
}

// Silent connections hold no slot of anyone else's: another user's are turned
// away when they connect, and the server's own user cannot take root's slots.
TEST(ReadPointerTest, SilentConnectionsDoNotBlockOtherUsersReads) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  fs::create_directories(disk);
  ASSERT_EQ(::chown(dir.path().c_str(), kNobody, kNobody), 0);
  ASSERT_EQ(::chown(disk.c_str(), kNobody, kNobody), 0);
  TestServer server(disk, ProcessOptions{{}, kNobody});
  write_value(server.port(), "k", "value", "dram");
  const LocalServer socket = server_of(read_pointer(server.port(), "k"));
  constexpr uid_t kStranger = 65533;  // neither root nor the server's user
  Flood strangers = flood_as(kStranger, socket.socket, 200);
  Flood own = flood_as(kNobody, socket.socket, 200);  // the server's user: its slots only
  auto shared = open_read_pointer(socket, "k", "dram");  // as root
  end(strangers);
  end(own);
  ASSERT_TRUE(shared) << "root was turned away or timed out behind silent connections: "
                      << shared.error().message;
  EXPECT_EQ(shared->size(), 5u);
}

}  // namespace
}  // namespace gswarm::testing
