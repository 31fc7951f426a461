#include "storage/extent.hpp"

#include <cstring>

namespace gswarm {

// Default implementations for host-addressable extents.

Result<void> Extent::read(std::uint64_t offset, std::span<std::byte> out) const {
  const std::byte* p = host_data();
  if (p == nullptr || offset + out.size() > size()) {
    return make_error(ErrorCode::kInternal, "read outside extent");
  }
  std::memcpy(out.data(), p + offset, out.size());
  return {};
}

Result<void> Extent::write(std::uint64_t offset, std::span<const std::byte> in) {
  std::byte* p = host_data();
  if (p == nullptr || offset + in.size() > size()) {
    return make_error(ErrorCode::kInternal, "write outside extent");
  }
  std::memcpy(p + offset, in.data(), in.size());
  return {};
}

}  // namespace gswarm
