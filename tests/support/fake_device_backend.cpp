#include "fake_device_backend.hpp"

#include <cstdlib>
#include <cstring>

#include <fmt/format.h>

namespace gswarm::testing {

FakeDeviceBackend::FakeDeviceBackend(int count, std::uint64_t capacity)
    : count_(count), capacity_(capacity), used_(static_cast<std::size_t>(count), 0) {}

FakeDeviceBackend::~FakeDeviceBackend() {
  for (auto& [ptr, owner] : live_) std::free(ptr);
}

DeviceMemoryInfo FakeDeviceBackend::memory_info(int device) const {
  std::lock_guard lock(mutex_);
  return {capacity_ - used_[device], capacity_};
}

Result<void*> FakeDeviceBackend::allocate(int device, std::uint64_t size) {
  std::lock_guard lock(mutex_);
  if (used_[device] + size > capacity_) {
    return make_error(ErrorCode::kOverLimit, fmt::format("fake device:{} is out of memory", device));
  }
  void* ptr = std::malloc(size == 0 ? 1 : size);
  used_[device] += size;
  live_[ptr] = {device, size};
  ++allocations;
  return ptr;
}

void FakeDeviceBackend::free(int device, void* ptr, std::uint64_t size) {
  std::lock_guard lock(mutex_);
  auto it = live_.find(ptr);
  if (it == live_.end()) return;
  used_[it->second.first] -= it->second.second;
  live_.erase(it);
  std::free(ptr);
}

Result<void> FakeDeviceBackend::maybe_fail() {
  if (fail_next_copy_.exchange(false)) return make_error(ErrorCode::kIo, "fake copy failure");
  return {};
}

Result<void> FakeDeviceBackend::copy_to_device(int, void* dst, const void* src, std::uint64_t size,
                                               bool host_pinned) {
  if (auto ok = maybe_fail(); !ok) return ok;
  (host_pinned ? pinned_copies : staged_copies)++;
  std::memcpy(dst, src, size);
  return {};
}

Result<void> FakeDeviceBackend::copy_to_host(int, void* dst, const void* src, std::uint64_t size,
                                             bool host_pinned) {
  if (auto ok = maybe_fail(); !ok) return ok;
  (host_pinned ? pinned_copies : staged_copies)++;
  std::memcpy(dst, src, size);
  return {};
}

Result<void> FakeDeviceBackend::copy_between(int, void* dst, int, const void* src,
                                             std::uint64_t size) {
  if (auto ok = maybe_fail(); !ok) return ok;
  ++peer_copies;
  std::memcpy(dst, src, size);
  return {};
}

std::string FakeDeviceBackend::peer_method(int src_device, int dst_device) const {
  if (src_device == dst_device) return "local";
  return src_device / 2 == dst_device / 2 ? "nvlink" : "staged";
}

std::optional<DeviceBackend::IpcHandle> FakeDeviceBackend::ipc_handle(int, const void* ptr) const {
  return IpcHandle{fmt::format("fake-{}", ptr), 0};
}

}  // namespace gswarm::testing
