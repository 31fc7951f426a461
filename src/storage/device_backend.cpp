#include "storage/device_backend.hpp"

#include <mutex>

#include <spdlog/spdlog.h>

namespace gswarm {

#ifdef GSWARM_HAVE_CUDA
// cuda_backend.cpp: nullptr (with `why` set) when no driver or device answers.
std::shared_ptr<DeviceBackend> make_cuda_backend(std::string& why);
#endif

namespace {

class NoDevices final : public DeviceBackend {
 public:
  std::string name() const override { return "none"; }
  int device_count() const override { return 0; }
  DeviceMemoryInfo memory_info(int) const override { return {}; }
  Result<void*> allocate(int device, std::uint64_t) override { return unavailable(device); }
  void free(int, void*, std::uint64_t) override {}
  Result<void> copy_to_device(int device, void*, const void*, std::uint64_t, bool) override {
    return unavailable(device);
  }
  Result<void> copy_to_host(int device, void*, const void*, std::uint64_t, bool) override {
    return unavailable(device);
  }
  Result<void> copy_between(int device, void*, int, const void*, std::uint64_t) override {
    return unavailable(device);
  }
  std::string peer_method(int, int) const override { return "none"; }

 private:
  static tl::unexpected<Error> unavailable(int device) {
    return make_error(ErrorCode::kDeviceUnavailable, "this server has no GPU devices");
  }
};

}  // namespace

std::shared_ptr<DeviceBackend> no_device_backend() { return std::make_shared<NoDevices>(); }

std::shared_ptr<DeviceBackend> default_device_backend() {
  static std::once_flag once;
  static std::shared_ptr<DeviceBackend> backend;
  std::call_once(once, [] {
#ifdef GSWARM_HAVE_CUDA
    std::string why;
    backend = make_cuda_backend(why);
    if (!backend) spdlog::info("no GPU devices: {}", why);
#else
    spdlog::info("no GPU devices: this build has no CUDA support");
#endif
    if (!backend) backend = no_device_backend();
  });
  return backend;
}

}  // namespace gswarm
