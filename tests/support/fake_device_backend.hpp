// A DeviceBackend for tests on machines without GPUs: "device memory" is host
// memory, copies are memcpy, and every call is counted so tests can check which
// path the Store took. Test-only; the product uses the CUDA backend.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "storage/device_backend.hpp"

namespace gswarm::testing {

class FakeDeviceBackend final : public DeviceBackend {
 public:
  // `count` devices of `capacity` bytes each; devices 2k and 2k+1 are "NVLinked".
  FakeDeviceBackend(int count, std::uint64_t capacity);
  ~FakeDeviceBackend() override;

  std::string name() const override { return "fake"; }
  int device_count() const override { return count_; }
  DeviceMemoryInfo memory_info(int device) const override;
  Result<void*> allocate(int device, std::uint64_t size) override;
  void free(int device, void* ptr, std::uint64_t size) override;
  Result<void> copy_to_device(int device, void* dst, const void* src, std::uint64_t size,
                              bool host_pinned) override;
  Result<void> copy_to_host(int device, void* dst, const void* src, std::uint64_t size,
                            bool host_pinned) override;
  Result<void> copy_between(int dst_device, void* dst, int src_device, const void* src,
                            std::uint64_t size) override;
  std::string peer_method(int src_device, int dst_device) const override;
  std::optional<IpcHandle> ipc_handle(int device, const void* ptr) const override;

  // Makes the next copy fail (to test that failed moves leave the source intact).
  void fail_next_copy() { fail_next_copy_ = true; }

  std::atomic<int> pinned_copies{0};  // host side page-locked
  std::atomic<int> staged_copies{0};  // host side pageable
  std::atomic<int> peer_copies{0};
  std::atomic<int> allocations{0};

 private:
  Result<void> maybe_fail();
  const int count_;
  const std::uint64_t capacity_;
  mutable std::mutex mutex_;
  std::vector<std::uint64_t> used_;               // guarded by mutex_
  std::map<void*, std::pair<int, std::uint64_t>> live_;  // guarded by mutex_
  std::atomic<bool> fail_next_copy_{false};
};

}  // namespace gswarm::testing
