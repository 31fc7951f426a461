// The disk directory as a local attacker prepares it: created first by someone
// else, made writable by others, a symlink planted inside, files planted or
// damaged. The server refuses to start with a one-line reason and the fix, or
// sets unknown files aside; it never deletes a file it did not write and never
// serves one that someone else could have written.
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::gswarm_binary;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

constexpr uid_t kNobody = 65534;

std::uint32_t mode_of(const fs::path& p) {
  struct stat st {};
  ::lstat(p.c_str(), &st);
  return st.st_mode & 07777;
}

void write_file(const fs::path& p, std::string_view text) {
  std::ofstream(p, std::ios::binary) << text;
}

TEST(DiskSafetyTest, ANewDirectoryIsPrivate) {
  TempDir dir;
  { TestServer server(dir.path() / "disk"); }
  EXPECT_EQ(mode_of(dir.path() / "disk"), 0700u);
  for (const char* sub : {"values", "tmp", "quarantine"}) {
    EXPECT_EQ(mode_of(dir.path() / "disk" / sub), 0700u) << sub;
  }
}

// values/ planted as a symlink to a victim directory: refused, and the victim's
// files are untouched (a server that walked the link deleted them before).
TEST(DiskSafetyTest, APlantedSymlinkIsRefusedAndNothingIsDeleted) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  const fs::path victim = dir.path() / "victim";
  fs::create_directories(disk);
  fs::permissions(disk, fs::perms::owner_all, fs::perm_options::replace);
  fs::create_directories(victim);
  write_file(victim / "precious.txt", "do not delete");
  fs::create_directory_symlink(victim, disk / "values");
  Refusal r = try_start(disk);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.stderr_text.find("symbolic link"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("values"), std::string::npos) << r.stderr_text;
  EXPECT_TRUE(fs::exists(victim / "precious.txt"));
}

TEST(DiskSafetyTest, ADirectoryOfAnotherUserIsRefused) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  fs::create_directories(disk);
  ASSERT_EQ(::chown(disk.c_str(), kNobody, kNobody), 0);
  Refusal r = try_start(disk);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.stderr_text.find("belongs to uid 65534"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("--disk-path"), std::string::npos) << r.stderr_text;
}

TEST(DiskSafetyTest, ADirectoryOthersCanWriteIsRefusedWithTheFix) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  fs::create_directories(disk);
  fs::permissions(disk, fs::perms::all, fs::perm_options::replace);
  Refusal r = try_start(disk);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.stderr_text.find("writable by other users"), std::string::npos) << r.stderr_text;
  EXPECT_NE(r.stderr_text.find("chmod -R go-w"), std::string::npos) << r.stderr_text;
  // One line, with the reason and the fix.
  std::istringstream lines(r.stderr_text);
  int errors = 0;
  for (std::string line; std::getline(lines, line);) {
    if (line.find("error:") == std::string::npos) continue;
    ++errors;
    EXPECT_NE(line.find("writable by other users"), std::string::npos) << line;
    EXPECT_NE(line.find("chmod -R go-w"), std::string::npos) << line;
  }
  EXPECT_EQ(errors, 1) << r.stderr_text;
}

// A well-formed value file planted by another user is not served: the server
// refuses the directory.
TEST(DiskSafetyTest, AValueFilePlantedByAnotherUserIsRefused) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  {
    TestServer server(disk);
    ASSERT_TRUE(IsOk(write_raw(server.port(), "planted", "attacker's bytes", "disk")));
  }
  auto files = value_files(disk);
  ASSERT_EQ(files.size(), 1u);
  ASSERT_EQ(::chown((disk / "values" / files[0]).c_str(), kNobody, kNobody), 0);
  Refusal r = try_start(disk);
  EXPECT_FALSE(r.started);
  EXPECT_NE(r.stderr_text.find("belongs to uid 65534"), std::string::npos) << r.stderr_text;
}

// Files gswarm did not write, and damaged ones, are moved to quarantine/ and
// logged, never deleted; the server starts and serves the good values.
TEST(DiskSafetyTest, UnknownAndDamagedFilesAreQuarantinedNotDeleted) {
  TempDir dir;
  const fs::path disk = dir.path() / "disk";
  {
    TestServer server(disk);
    ASSERT_TRUE(IsOk(write_raw(server.port(), "good", "good bytes", "disk")));
    ASSERT_TRUE(IsOk(write_raw(server.port(), "damaged", "soon damaged", "disk")));
    json rp = body_json(location_of(server.port(), "damaged"))["locations"][0]["read_pointer"];
    fs::path damaged = rp["path"].get<std::string>();
    server.stop();
    fs::permissions(damaged, fs::perms::owner_write, fs::perm_options::add);
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(20);
    f.put('\x7f');
  }
  write_file(disk / "values" / "notes.txt", "mine");
  write_file(disk / "tmp" / "not-a-temporary", "mine too");
  TestServer server(disk);
  EXPECT_EQ(fetch_bytes(server.port(), "good").status, 409);  // on disk: present
  ASSERT_TRUE(IsOk(move_key(server.port(), "good", "dram")));
  EXPECT_EQ(fetch_bytes(server.port(), "good").data, "good bytes");
  EXPECT_TRUE(IsError(location_of(server.port(), "damaged"), 404, "not_found"));
  std::vector<std::string> kept = files_under(disk / "quarantine");
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_TRUE(std::find(kept.begin(), kept.end(), "notes.txt") != kept.end());
  EXPECT_TRUE(std::find(kept.begin(), kept.end(), "not-a-temporary") != kept.end());
  EXPECT_FALSE(fs::exists(disk / "values" / "notes.txt"));
}

}  // namespace
