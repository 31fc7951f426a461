#include "storage/extent.hpp"

#include <cstring>

#include <fmt/format.h>

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

Result<ExportedValue> Extent::export_read_only() const {
  const std::byte* p = host_data();
  if (p == nullptr) {
    return make_error(ErrorCode::kNotSupported,
                      fmt::format("{} values cannot be shared by descriptor", location().name()));
  }
  return SharedMemory::sealed_copy({p, size()});
}

}  // namespace gswarm
