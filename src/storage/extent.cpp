#include "storage/extent.hpp"

#include <algorithm>
#include <cstring>
#include <memory>

#include <fmt/format.h>

#include "core/checksum.hpp"

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

Result<std::uint64_t> Extent::digest() {
  Checksum checksum;
  if (const std::byte* p = host_data()) {
    checksum.update({p, size()});
    return checksum.digest();
  }
  constexpr std::size_t kPiece = 4 << 20;
  auto piece = std::make_unique_for_overwrite<std::byte[]>(std::min<std::uint64_t>(kPiece, size()));
  for (std::uint64_t at = 0; at < size();) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(kPiece, size() - at));
    if (auto ok = read(at, {piece.get(), n}); !ok) return tl::unexpected(ok.error());
    checksum.update({piece.get(), n});
    at += n;
  }
  return checksum.digest();
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
