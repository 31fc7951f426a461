// DeviceBackend: what the Store needs from GPUs, and nothing more. The product
// uses the CUDA backend (cuda_backend.cpp, built when the CUDA toolkit is found);
// without a driver or a device it reports zero devices. Tests use a fake backend
// (tests/support/) so the Store's device logic is exercised on machines without GPUs.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <gswarm/error.hpp>

namespace gswarm {

struct DeviceMemoryInfo {
  std::uint64_t free = 0;
  std::uint64_t total = 0;
};

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;

  virtual std::string name() const = 0;
  virtual int device_count() const = 0;
  virtual DeviceMemoryInfo memory_info(int device) const = 0;

  // Device memory from a pool: freed blocks are reused, not returned to the driver.
  [[nodiscard]] virtual Result<void*> allocate(int device, std::uint64_t size) = 0;
  virtual void free(int device, void* ptr, std::uint64_t size) = 0;

  // Host ⇄ device copies. `host_pinned`: the host side is page-locked and can be
  // used for DMA directly; otherwise the backend pipelines through its own
  // pinned staging buffers.
  [[nodiscard]] virtual Result<void> copy_to_device(int device, void* dst, const void* src,
                                                    std::uint64_t size, bool host_pinned) = 0;
  [[nodiscard]] virtual Result<void> copy_to_host(int device, void* dst, const void* src,
                                                  std::uint64_t size, bool host_pinned) = 0;
  // Device ⇄ device, peer-to-peer when the devices allow it, else staged.
  [[nodiscard]] virtual Result<void> copy_between(int dst_device, void* dst, int src_device,
                                                  const void* src, std::uint64_t size) = 0;
  // How copies from `src` to `dst` run: "local", "nvlink", "p2p" or "staged".
  virtual std::string peer_method(int src_device, int dst_device) const = 0;

  // Pins host memory for DMA (cudaHostRegister). False when the backend cannot;
  // pinned_dram then uses mlock.
  virtual bool register_host(void* ptr, std::uint64_t size) { return false; }
  virtual void unregister_host(void* ptr) {}

  // A handle another local process can open (cudaIpcOpenMemHandle), encoded as
  // text, plus the offset of `ptr` inside the allocation it names.
  struct IpcHandle {
    std::string handle;
    std::uint64_t offset = 0;
  };
  virtual std::optional<IpcHandle> ipc_handle(int device, const void* ptr) const {
    return std::nullopt;
  }
};

// The CUDA backend when this build has CUDA and a driver answers; otherwise a
// backend with zero devices.
std::shared_ptr<DeviceBackend> default_device_backend();

// A backend with no devices.
std::shared_ptr<DeviceBackend> no_device_backend();

}  // namespace gswarm
