// DiskTier: one file per value under the disk root, persistent across restarts.
//
// Layout (doc/disk-format.md): <root>/values/<hh>/<key-hash>-<seq>.gsv holds a
// header (magic, version, sizes, checksums, key, format) and then the payload;
// <root>/tmp/ holds files being written. A value is written to tmp/, fsynced,
// renamed into values/ and the directory fsynced before the write is acknowledged,
// so a crash leaves either the whole value or nothing visible. File names come
// from a 128-bit hash of the key and a sequence number, never from the key.
//
// Thread-safe: allocate(), recover() and usage() may run on any thread; recover()
// runs once, before the tier is used.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "storage/tier.hpp"

namespace gswarm {

class DiskTier final : public Tier {
 public:
  // Creates the directories if needed and checks the root is writable.
  [[nodiscard]] static Result<std::unique_ptr<DiskTier>> open(std::filesystem::path root,
                                                              std::uint64_t max_disk);

  struct Recovered {
    std::string key;
    std::string format;
    std::unique_ptr<Extent> extent;
  };
  // Scans the root: removes temporaries, corrupt files and superseded versions
  // (logging each) and returns the newest valid file of every key.
  [[nodiscard]] Result<std::vector<Recovered>> recover();

  Location location() const override { return Location::disk(); }
  Result<std::unique_ptr<Extent>> allocate(std::uint64_t size, std::string_view key,
                                           std::string_view format) override;
  const LimitCounter& counter() const override;
  const std::filesystem::path& root() const;

  struct Shared;  // state shared with extents (root, counter, sequence)

 private:
  explicit DiskTier(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  std::shared_ptr<Shared> shared_;
};

}  // namespace gswarm
