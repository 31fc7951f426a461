// A file planted or damaged in --disk-path: recovery reads its header before
// trusting anything in it. The input is the whole file.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "storage/disk_tier.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto read = [data, size](std::uint64_t offset, std::span<std::byte> into) {
    if (offset > size || into.size() > size - offset) return false;
    std::memcpy(into.data(), data + offset, into.size());
    return true;
  };
  gswarm::ValueFileHeader header;
  const std::string problem = gswarm::read_value_header(read, size, header);
  if (problem.empty()) {
    // Accepted: the header and payload are exactly the file.
    if (header.header_size + header.payload_size != size || header.key.empty()) __builtin_trap();
    (void)gswarm::value_file_name(header);
  }
  return 0;
}
