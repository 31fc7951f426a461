// Extent: the bytes of one replica of one value, in one tier.
//
// A tier's allocate() returns an unsealed extent the caller fills with write()
// (or directly through host_data() for host-addressable tiers), then seal()s.
// Once installed in the Store an extent is read-only and shared (ExtentRef, an
// intrusive count: one pointer per reference, no separate control block, which
// keeps the per-key cost of small values low): readers and movers may hold it
// after the key was released or overwritten, and the bytes stay valid until the
// last holder lets go. discard() ends the extent's persistent life (the disk tier
// unlinks its file, or makes sure an unfinished one never appears); memory is
// freed when the last reference goes.
//
// Thread-safety: read(), host_data() and read_pointer() may run concurrently on a
// sealed extent. write() and seal() belong to the single thread filling it;
// discard() may run on any thread at any time, also while it is being filled.
#pragma once

#include <atomic>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <gswarm/error.hpp>

#include "core/location.hpp"
#include "storage/shared_memory.hpp"

namespace gswarm {

// Where another local process can find a replica's bytes without a copy
// (doc/read-pointers.md). Only fields meaningful for `kind` are set.
struct ReadPointer {
  std::string kind;  // "shm" (dram, pinned_dram), "file" (disk), "cuda_ipc" (device:N)
  std::string path;  // file path, or the encoded CUDA IPC handle; empty for "shm",
                     // whose descriptor is passed over the server's local socket
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
  int device = -1;   // device:N replicas
};

class Extent {
 public:
  Extent() = default;
  Extent(const Extent&) = delete;
  Extent& operator=(const Extent&) = delete;
  virtual ~Extent() = default;

  virtual Location location() const = 0;
  virtual std::uint64_t size() const = 0;

  // The bytes, when the CPU can address them (dram, pinned_dram); else nullptr.
  virtual std::byte* host_data() { return nullptr; }
  const std::byte* host_data() const { return const_cast<Extent*>(this)->host_data(); }

  // True for page-locked host memory, which devices can DMA from directly.
  virtual bool page_locked() const { return false; }

  // Copies bytes [offset, offset + out.size()) into host memory.
  [[nodiscard]] virtual Result<void> read(std::uint64_t offset, std::span<std::byte> out) const;
  // Stores `in` at [offset, offset + in.size()). Before seal() only; tiers may
  // require sequential writes (the disk tier does).
  [[nodiscard]] virtual Result<void> write(std::uint64_t offset, std::span<const std::byte> in);
  // Stores one range of a value that arrives in ranges, in any order (a value
  // sent over several connections at once). Before seal() only; ranges are
  // disjoint. Tiers that take ranges concurrently say so (concurrent_ranges());
  // for the others the caller makes the calls one at a time.
  [[nodiscard]] virtual Result<void> write_range(std::uint64_t offset,
                                                 std::span<const std::byte> in) {
    return write(offset, in);
  }
  virtual bool concurrent_ranges() const { return host_data() != nullptr; }
  // read()/write() knowing whether the host buffer is page-locked; tiers that
  // copy through DMA (devices) use it to skip staging.
  [[nodiscard]] virtual Result<void> read_into(std::uint64_t offset, std::span<std::byte> out,
                                               bool out_page_locked) const {
    return read(offset, out);
  }
  [[nodiscard]] virtual Result<void> write_from(std::uint64_t offset, std::span<const std::byte> in,
                                                bool in_page_locked) {
    return write(offset, in);
  }
  // XXH3-64 of the bytes (core/checksum.hpp), e.g. of a pending write whose
  // bytes all arrived, to check them against what their sender says. Blocking
  // for tiers the CPU cannot address. The disk tier keeps it for seal(), so
  // that a value's bytes are read back once, not twice.
  [[nodiscard]] virtual Result<std::uint64_t> digest();
  // Makes the extent durable and complete. Blocking for the disk tier.
  [[nodiscard]] virtual Result<void> seal() { return {}; }
  // Checks a full copy of the bytes against the tier's own checksum, if it has one.
  [[nodiscard]] virtual Result<void> verify(std::span<const std::byte> copy) const { return {}; }
  // Removes the bytes for good (the replica is gone). Idempotent.
  virtual void discard() {}

  virtual std::optional<ReadPointer> read_pointer() const { return std::nullopt; }
  // Disk extents: the file's sequence number (a later write of the same key has
  // a higher one, and recovery keeps the highest). 0 for other tiers.
  virtual std::uint64_t sequence() const { return 0; }
  // A read-only descriptor of exactly this value's bytes, for another local
  // process. Host-addressable extents give a sealed copy unless they override it.
  [[nodiscard]] virtual Result<ExportedValue> export_read_only() const;

  friend void intrusive_ptr_add_ref(const Extent* e) {
    e->references_.fetch_add(1, std::memory_order_relaxed);
  }
  friend void intrusive_ptr_release(const Extent* e) {
    if (e->references_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete e;
  }

 private:
  mutable std::atomic<std::uint32_t> references_{0};
};

using ExtentRef = boost::intrusive_ptr<Extent>;
using ConstExtentRef = boost::intrusive_ptr<const Extent>;

}  // namespace gswarm
