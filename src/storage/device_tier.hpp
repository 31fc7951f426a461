// DeviceTier: values in one GPU's memory (device:N), allocated through the
// DeviceBackend's pool and counted against that device's limit
// (--max-device-memory, default 90% of the memory free when the server starts).
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "storage/device_backend.hpp"
#include "storage/tier.hpp"

namespace gswarm {

class DeviceTier final : public Tier {
 public:
  DeviceTier(std::shared_ptr<DeviceBackend> backend, int device, std::uint64_t limit);

  Location location() const override { return Location::device(device_); }
  Result<ExtentRef> allocate(std::uint64_t size, std::string_view key,
                             std::string_view format) override;
  const LimitCounter& counter() const override { return *counter_; }
  DeviceMemoryInfo memory_info() const { return backend_->memory_info(device_); }

 private:
  std::shared_ptr<DeviceBackend> backend_;
  const int device_;
  std::shared_ptr<LimitCounter> counter_;
};

// When both extents are device replicas: copies src into dst on the devices and
// returns the method used ("local", "nvlink", "p2p", "staged"). Otherwise nullopt.
std::optional<Result<std::string>> copy_between_devices(const Extent& src, Extent& dst);

}  // namespace gswarm
