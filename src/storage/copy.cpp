#include "storage/copy.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "core/size.hpp"
#include "storage/device_tier.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {

namespace {

// Large enough to amortise per-chunk costs, small enough for smooth progress.
constexpr std::uint64_t kChunk = 8 * kMiB;
// Device copies pipeline inside each call, so they get bigger pieces.
constexpr std::uint64_t kDeviceChunk = 64 * kMiB;

bool on_device(const Extent& e) { return e.location().kind() == LocationKind::kDevice; }

std::string method_of(const Extent& src, const Extent& dst) {
  if (!on_device(src) && !on_device(dst)) {
    return src.host_data() != nullptr && dst.host_data() != nullptr ? "memcpy" : "file";
  }
  const Extent& host_side = on_device(src) ? dst : src;
  return host_side.page_locked() ? "dma" : "staged";
}

}  // namespace

Result<std::string> copy_extent(const Extent& src, Extent& dst, CopyProgress& progress,
                                std::uint64_t bytes_per_second) {
  const std::uint64_t size = src.size();
  if (dst.size() != size) return make_error(ErrorCode::kInternal, "copy between unequal extents");
  if (auto peer = copy_between_devices(src, dst)) {
    if (*peer) progress.bytes.fetch_add(size, std::memory_order_relaxed);
    return *peer;
  }
  const std::uint64_t chunk = on_device(src) || on_device(dst) ? kDeviceChunk : kChunk;
  const std::byte* src_host = src.host_data();
  std::byte* dst_host = dst.host_data();
  std::unique_ptr<HostBuffer> staging;
  if (src_host == nullptr && dst_host == nullptr) {
    staging = HostBuffer::allocate(static_cast<std::size_t>(std::min(size, chunk)));
    if (!staging) return make_error(ErrorCode::kOverLimit, "out of memory for a staging buffer");
  }
  const auto start = std::chrono::steady_clock::now();
  for (std::uint64_t offset = 0; offset < size;) {
    if (auto stop = progress.stopped(); !stop) return tl::unexpected(stop.error());
    const std::uint64_t n = std::min(chunk, size - offset);
    Result<void> step;
    if (src_host != nullptr && dst_host != nullptr) {
      std::memcpy(dst_host + offset, src_host + offset, n);
    } else if (src_host != nullptr) {
      step = dst.write_from(offset, {src_host + offset, n}, src.page_locked());
    } else if (dst_host != nullptr) {
      step = src.read_into(offset, {dst_host + offset, n}, dst.page_locked());
    } else {
      std::span<std::byte> buf{staging->data(), n};
      step = src.read(offset, buf);
      if (step) step = dst.write(offset, buf);
    }
    if (!step) return tl::unexpected(step.error());
    offset += n;
    progress.bytes.fetch_add(n, std::memory_order_relaxed);
    if (bytes_per_second > 0) {
      auto due = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                             std::chrono::duration<double>(static_cast<double>(offset) /
                                                           static_cast<double>(bytes_per_second)));
      // In short naps, so that a cancelled copy stops soon.
      while (std::chrono::steady_clock::now() < due && progress.stopped()) {
        std::this_thread::sleep_until(
            std::min(due, std::chrono::steady_clock::now() + std::chrono::milliseconds(50)));
      }
    }
  }
  if (dst_host != nullptr) {
    progress.phase.store(CopyPhase::kVerifying, std::memory_order_relaxed);
    if (auto ok = src.verify({dst_host, size}); !ok) return tl::unexpected(ok.error());
  }
  return method_of(src, dst);
}

}  // namespace gswarm
