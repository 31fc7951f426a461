// DiskTier: one file per value under the disk root, persistent across restarts.
//
// Layout (doc/disk-format.md): <root>/values/<hh>/<key-hash>-<seq>.gsv holds a
// header (magic, version, sizes, checksums, key, format) and then the payload;
// <root>/tmp/ holds files being written; <root>/quarantine/ holds files found at
// start-up that gswarm did not write or that are damaged (never deleted). A value
// is written to tmp/, fsynced, renamed into values/ and the directory fsynced
// before the write is acknowledged, so a crash leaves either the whole value or
// nothing visible. File names come from a 128-bit hash of the key and a sequence
// number, never from the key.
//
// Publication and discard are ordered per file: discard() of an extent still
// being written makes sure its file never appears, and discard() of a published
// one unlinks it, so a write or release that replaces an unfinished copy can be
// acknowledged knowing the copy's file will not come back after a crash.
//
// The root must belong to this process's user and be writable by no one else,
// and nothing in it may be a symbolic link; open() refuses it otherwise. A new
// root is created with mode 0700.
//
// Thread-safe: allocate(), recover() and usage() may run on any thread; recover()
// runs once, before the tier is used.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <span>
#include <memory>
#include <string>
#include <vector>

#include "storage/tier.hpp"

namespace gswarm {

// The header of a value file (doc/disk-format.md), as recovery reads it.
struct ValueFileHeader {
  std::string key;
  std::string format;
  std::uint64_t payload_size = 0;
  std::uint64_t payload_hash = 0;
  std::uint64_t sequence = 0;
  std::uint64_t header_size = 0;  // where the payload starts
};

// Reads the header of a value file of `file_size` bytes through `read`, which
// fills its span from the file's offset or returns false, and checks it: magic,
// version, sizes, checksum, and that the file is exactly header and payload.
// Returns what is wrong ("" when nothing is; `out` is then set).
std::string read_value_header(
    const std::function<bool(std::uint64_t offset, std::span<std::byte> into)>& read,
    std::uint64_t file_size, ValueFileHeader& out);

// "<key-hash>-<sequence>.gsv": the name of the file that holds this header.
std::string value_file_name(const ValueFileHeader& header);

class DiskTier final : public Tier {
 public:
  // Creates the directories if needed and checks that they are safe to use.
  [[nodiscard]] static Result<std::unique_ptr<DiskTier>> open(std::filesystem::path root,
                                                              std::uint64_t max_disk);

  struct Recovered {
    std::string key;
    std::string format;
    ExtentRef extent;
  };
  // Scans the root: removes unfinished writes and superseded versions, moves
  // damaged and unknown files to quarantine/ (logging each), and returns the
  // newest valid file of every key.
  [[nodiscard]] Result<std::vector<Recovered>> recover();

  Location location() const override { return Location::disk(); }
  // An extent whose file is created at once in tmp/; write() appends to it in
  // order (blocking I/O) and seal() publishes it.
  Result<ExtentRef> allocate(std::uint64_t size, std::string_view key,
                             std::string_view format) override;
  const LimitCounter& counter() const override;
  const std::filesystem::path& root() const;

  struct Shared;  // state shared with extents (root, counter, sequence)

 private:
  explicit DiskTier(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  std::shared_ptr<Shared> shared_;
};

// Makes the entries of `dir` (files created, renamed or removed) durable.
bool fsync_dir(const std::filesystem::path& dir);

}  // namespace gswarm
