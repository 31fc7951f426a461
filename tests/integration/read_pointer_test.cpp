// Read pointers: another local process (this test) maps a value the server holds
// in dram or pinned_dram, read-only, and finds the same bytes; disk pointers name
// the value file and the payload's offset.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "test_server.hpp"

namespace gswarm::testing {
namespace {

using nlohmann::json;

std::string pattern(std::size_t size, int seed) {
  std::string v(size, '\0');
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>((i * 7 + seed) & 0xff);
  return v;
}

// Maps [offset, offset+size) of `path` read-only and returns the bytes.
std::string map_read_only(const std::string& path, std::uint64_t offset, std::uint64_t size) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  EXPECT_GE(fd, 0) << path;
  if (fd < 0) return {};
  const std::uint64_t page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  const std::uint64_t start = offset / page * page;
  const std::uint64_t length = offset - start + size;
  void* p = ::mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(start));
  ::close(fd);
  EXPECT_NE(p, MAP_FAILED);
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

TEST(ReadPointerTest, AnotherProcessMapsDramAndPinnedValues) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  for (std::size_t size : {std::size_t{100}, std::size_t{5000}, std::size_t{3} << 20}) {
    for (const char* location : {"dram", "pinned_dram"}) {
      const std::string key = std::string(location) + "/" + std::to_string(size);
      const std::string value = pattern(size, static_cast<int>(size % 251));
      auto w = http_request(server.port(),
                            "POST", "/write_extended?key=" + url_encode(key) + "&location=" + location,
                            value, "application/octet-stream");
      ASSERT_EQ(w.status, 200) << w.body;
      json rp = read_pointer(server.port(), key);
      ASSERT_TRUE(rp.is_object()) << key;
      EXPECT_EQ(rp["kind"], "shm");
      EXPECT_EQ(rp["size"], size);
      EXPECT_EQ(map_read_only(rp["path"], rp["offset"], rp["size"]), value) << key;
    }
  }
}

TEST(ReadPointerTest, DiskPointerNamesTheFileAndPayloadOffset) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const std::string value = pattern(70000, 3);
  auto w = http_request(server.port(), "POST", "/write_extended?key=d&location=disk", value,
                        "application/octet-stream");
  ASSERT_EQ(w.status, 200) << w.body;
  json rp = read_pointer(server.port(), "d");
  EXPECT_EQ(rp["kind"], "file");
  EXPECT_EQ(map_read_only(rp["path"], rp["offset"], rp["size"]), value);
}

}  // namespace
}  // namespace gswarm::testing
