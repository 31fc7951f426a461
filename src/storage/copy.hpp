// copy_extent: copies a value between two extents of any tiers, in bounded
// chunks, reporting progress and stopping early when cancelled.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <gswarm/error.hpp>

#include "storage/extent.hpp"
#include "storage/operations.hpp"

namespace gswarm {

// Copies all of `src` into `dst` (same size) in chunks, adding the bytes done to
// `progress`, and returns how: "memcpy" (host to host), "file" (through a disk
// file), "dma" (page-locked host memory to or from a device), "staged" (pageable
// host memory through the device backend's pinned staging buffers), or the
// device-to-device method ("local", "nvlink", "p2p", "staged").
// `bytes_per_second` > 0 paces the copy. When `dst` holds the whole value in host
// memory, `src` checks it against its own checksum. A cancelled progress stops
// the copy between chunks with kConflict (or kUnavailable when the server stops).
[[nodiscard]] Result<std::string> copy_extent(const Extent& src, Extent& dst,
                                              CopyProgress& progress,
                                              std::uint64_t bytes_per_second = 0);

}  // namespace gswarm
