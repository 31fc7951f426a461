// Checksum: the checksum of a data pool chunk, computed while its bytes stream
// in. XXH3-64 (the hash the disk format uses), written "xxh3:<16 hex digits>":
// the same digits `xxhsum -H3 FILE` prints, so a user can check a chunk against
// its source file.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

namespace gswarm {

class Checksum {
 public:
  Checksum();
  ~Checksum();
  Checksum(Checksum&&) noexcept;
  Checksum& operator=(Checksum&&) noexcept;

  void update(std::span<const std::byte> bytes);
  std::uint64_t digest() const;
  std::string text() const { return format(digest()); }
  static std::string format(std::uint64_t digest);

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace gswarm
