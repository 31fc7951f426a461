// The CUDA device backend. The only file that includes CUDA headers.
//
// - Device memory comes from a per-device caching pool: freed blocks are kept and
//   reused for requests of a similar size, so the hot path makes no
//   cudaMalloc/cudaFree calls. Blocks are whole cudaMalloc allocations, so a
//   block's CUDA IPC handle names it with offset 0.
// - Pageable host memory goes to and from devices through a pipeline of two
//   pinned staging buffers: the CPU fills (or drains) one while the copy engine
//   works on the other.
// - Each copy runs on its own non-blocking stream and waits for it; callers are
//   mover threads, which may block.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "core/size.hpp"
#include "storage/device_backend.hpp"

namespace gswarm {
namespace {

constexpr std::uint64_t kStagingChunk = 8 * kMiB;
constexpr std::uint64_t kLargeGranule = 2 * kMiB;
constexpr std::uint64_t kDirectLimit = kStagingChunk / 8;  // pageable copies below this go direct

Error cuda_error(cudaError_t err, std::string_view what) {
  ErrorCode code = err == cudaErrorMemoryAllocation ? ErrorCode::kOverLimit : ErrorCode::kIo;
  return Error{code, fmt::format("{} failed: {}", what, cudaGetErrorString(err))};
}

#define GSWARM_CUDA_TRY(call)                                         \
  do {                                                                \
    cudaError_t gswarm_err_ = (call);                                 \
    if (gswarm_err_ != cudaSuccess) {                                 \
      return tl::unexpected(cuda_error(gswarm_err_, #call));          \
    }                                                                 \
  } while (0)

std::uint64_t block_capacity(std::uint64_t size) {
  if (size >= kLargeGranule) return (size + kLargeGranule - 1) / kLargeGranule * kLargeGranule;
  std::uint64_t cap = 512;
  while (cap < size) cap *= 2;
  return cap;
}

// A stream for one copy, destroyed with it.
class Stream {
 public:
  Stream() { cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking); }
  ~Stream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Two pinned staging buffers and their events; a small pool of these is shared
// by all copies.
struct StagingPair {
  void* buffers[2] = {nullptr, nullptr};
  cudaEvent_t events[2] = {nullptr, nullptr};
};

class CudaBackend final : public DeviceBackend {
 public:
  explicit CudaBackend(int count)
      : pools_(static_cast<std::size_t>(count)),
        count_(count),
        idle_staging_(static_cast<std::size_t>(count)) {}

  ~CudaBackend() override {
    for (auto& pair : staging_) {
      for (int i = 0; i < 2; ++i) {
        cudaFreeHost(pair.buffers[i]);
        cudaEventDestroy(pair.events[i]);
      }
    }
    for (int d = 0; d < count_; ++d) {
      cudaSetDevice(d);
      for (auto& [cap, ptr] : pools_[d].free_blocks) cudaFree(ptr);
    }
  }

  std::string name() const override { return "cuda"; }
  int device_count() const override { return count_; }

  DeviceMemoryInfo memory_info(int device) const override {
    DeviceMemoryInfo info;
    std::size_t free = 0;
    std::size_t total = 0;
    cudaSetDevice(device);
    if (cudaMemGetInfo(&free, &total) == cudaSuccess) {
      info.free = free;
      info.total = total;
    }
    return info;
  }

  Result<void*> allocate(int device, std::uint64_t size) override {
    Pool& pool = pools_[device];
    const std::uint64_t cap = block_capacity(std::max<std::uint64_t>(size, 1));
    {
      std::lock_guard lock(pool.mutex);
      auto it = pool.free_blocks.lower_bound(cap);
      if (it != pool.free_blocks.end() && it->first <= cap + cap / 4) {
        void* ptr = it->second;
        pool.in_use[ptr] = it->first;
        pool.cached -= it->first;
        pool.free_blocks.erase(it);
        return ptr;
      }
    }
    GSWARM_CUDA_TRY(cudaSetDevice(device));
    void* ptr = nullptr;
    cudaError_t err = cudaMalloc(&ptr, cap);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();  // clear the sticky-free error state
      trim(device);
      err = cudaMalloc(&ptr, cap);
    }
    if (err != cudaSuccess) {
      cudaGetLastError();
      return tl::unexpected(cuda_error(err, fmt::format("cudaMalloc of {} on device:{}",
                                                        format_size(cap), device)));
    }
    std::lock_guard lock(pool.mutex);
    pool.in_use[ptr] = cap;
    return ptr;
  }

  void free(int device, void* ptr, std::uint64_t) override {
    Pool& pool = pools_[device];
    std::lock_guard lock(pool.mutex);
    auto it = pool.in_use.find(ptr);
    if (it == pool.in_use.end()) return;
    pool.free_blocks.emplace(it->second, ptr);
    pool.cached += it->second;
    pool.in_use.erase(it);
  }

  Result<void> copy_to_device(int device, void* dst, const void* src, std::uint64_t size,
                              bool host_pinned) override {
    GSWARM_CUDA_TRY(cudaSetDevice(device));
    Stream stream;
    if (host_pinned || size <= kDirectLimit) {
      return direct_copy(dst, src, size, cudaMemcpyHostToDevice, stream.get());
    }
    return staged(device, [&](StagingPair* pair) -> Result<void> {
      const auto* in = static_cast<const std::byte*>(src);
      auto* out = static_cast<std::byte*>(dst);
      for (std::uint64_t off = 0, i = 0; off < size; off += kStagingChunk, ++i) {
        const std::uint64_t n = std::min(kStagingChunk, size - off);
        const int b = static_cast<int>(i % 2);
        // The buffer's previous copy must be done before it is refilled.
        GSWARM_CUDA_TRY(cudaEventSynchronize(pair->events[b]));
        std::memcpy(pair->buffers[b], in + off, n);
        GSWARM_CUDA_TRY(cudaMemcpyAsync(out + off, pair->buffers[b], n, cudaMemcpyHostToDevice,
                                        stream.get()));
        GSWARM_CUDA_TRY(cudaEventRecord(pair->events[b], stream.get()));
      }
      GSWARM_CUDA_TRY(cudaStreamSynchronize(stream.get()));
      return {};
    });
  }

  Result<void> copy_to_host(int device, void* dst, const void* src, std::uint64_t size,
                            bool host_pinned) override {
    GSWARM_CUDA_TRY(cudaSetDevice(device));
    Stream stream;
    if (host_pinned || size <= kDirectLimit) {
      return direct_copy(dst, src, size, cudaMemcpyDeviceToHost, stream.get());
    }
    return staged(device, [&](StagingPair* pair) -> Result<void> {
      const auto* in = static_cast<const std::byte*>(src);
      auto* out = static_cast<std::byte*>(dst);
      const std::uint64_t chunks = (size + kStagingChunk - 1) / kStagingChunk;
      auto issue = [&](std::uint64_t i) -> Result<void> {
        const std::uint64_t off = i * kStagingChunk;
        const int b = static_cast<int>(i % 2);
        GSWARM_CUDA_TRY(cudaMemcpyAsync(pair->buffers[b], in + off,
                                        std::min(kStagingChunk, size - off),
                                        cudaMemcpyDeviceToHost, stream.get()));
        GSWARM_CUDA_TRY(cudaEventRecord(pair->events[b], stream.get()));
        return {};
      };
      if (auto ok = issue(0); !ok) return ok;
      for (std::uint64_t i = 0; i < chunks; ++i) {
        // Chunk i+1 lands in the other buffer while chunk i is drained.
        if (i + 1 < chunks) {
          if (auto ok = issue(i + 1); !ok) return ok;
        }
        const int b = static_cast<int>(i % 2);
        GSWARM_CUDA_TRY(cudaEventSynchronize(pair->events[b]));
        const std::uint64_t off = i * kStagingChunk;
        std::memcpy(out + off, pair->buffers[b], std::min(kStagingChunk, size - off));
      }
      return {};
    });
  }

  Result<void> copy_between(int dst_device, void* dst, int src_device, const void* src,
                            std::uint64_t size) override {
    GSWARM_CUDA_TRY(cudaSetDevice(src_device));
    Stream stream;
    if (dst_device == src_device) {
      GSWARM_CUDA_TRY(cudaMemcpyAsync(dst, src, size, cudaMemcpyDeviceToDevice, stream.get()));
    } else {
      enable_peer(src_device, dst_device);
      // Without peer access the driver stages the copy through host memory.
      GSWARM_CUDA_TRY(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, size, stream.get()));
    }
    GSWARM_CUDA_TRY(cudaStreamSynchronize(stream.get()));
    return {};
  }

  std::string peer_method(int src_device, int dst_device) const override {
    if (src_device == dst_device) return "local";
    int access = 0;
    cudaDeviceCanAccessPeer(&access, src_device, dst_device);
    if (access == 0) return "staged";
    // Native atomics between two GPUs are offered over NVLink, not over PCIe.
    int atomics = 0;
    cudaDeviceGetP2PAttribute(&atomics, cudaDevP2PAttrNativeAtomicSupported, src_device, dst_device);
    return atomics != 0 ? "nvlink" : "p2p";
  }

  bool register_host(void* ptr, std::uint64_t size) override {
    if (cudaHostRegister(ptr, size, cudaHostRegisterPortable) != cudaSuccess) {
      cudaGetLastError();
      return false;
    }
    return true;
  }
  void unregister_host(void* ptr) override { cudaHostUnregister(ptr); }

  std::optional<IpcHandle> ipc_handle(int device, const void* ptr) const override {
    cudaIpcMemHandle_t handle;
    cudaSetDevice(device);
    if (cudaIpcGetMemHandle(&handle, const_cast<void*>(ptr)) != cudaSuccess) {
      cudaGetLastError();
      return std::nullopt;
    }
    std::string hex;
    for (unsigned char c : std::string_view(handle.reserved, sizeof handle.reserved)) {
      fmt::format_to(std::back_inserter(hex), "{:02x}", c);
    }
    return IpcHandle{std::move(hex), 0};
  }

 private:
  // Page-locked host memory, or too little to be worth pipelining: one copy.
  static Result<void> direct_copy(void* dst, const void* src, std::uint64_t size,
                                  cudaMemcpyKind kind, cudaStream_t stream) {
    GSWARM_CUDA_TRY(cudaMemcpyAsync(dst, src, size, kind, stream));
    GSWARM_CUDA_TRY(cudaStreamSynchronize(stream));
    return {};
  }

  // Runs `pipeline` with a pair of staging buffers from `device`'s pool (their
  // events belong to that device). The caller has made `device` current.
  template <typename F>
  Result<void> staged(int device, F pipeline) {
    auto pair = take_staging(device);
    if (!pair) return tl::unexpected(pair.error());
    Result<void> result = pipeline(&*pair);
    give_staging(device, *pair);
    return result;
  }

  struct Pool {
    std::mutex mutex;
    std::multimap<std::uint64_t, void*> free_blocks;  // by capacity
    std::map<void*, std::uint64_t> in_use;            // capacity of each live block
    std::uint64_t cached = 0;
  };

  // Returns cached blocks to the driver, when it runs out.
  void trim(int device) {
    Pool& pool = pools_[device];
    std::lock_guard lock(pool.mutex);
    for (auto& [cap, ptr] : pool.free_blocks) cudaFree(ptr);
    pool.free_blocks.clear();
    pool.cached = 0;
  }

  void enable_peer(int src_device, int dst_device) {
    std::lock_guard lock(peer_mutex_);
    auto key = std::make_pair(src_device, dst_device);
    if (peers_enabled_.count(key) > 0) return;
    peers_enabled_[key] = true;
    int access = 0;
    cudaDeviceCanAccessPeer(&access, src_device, dst_device);
    if (access != 0) {
      cudaSetDevice(src_device);
      if (cudaDeviceEnablePeerAccess(dst_device, 0) != cudaSuccess) cudaGetLastError();
    }
  }

  Result<StagingPair> take_staging(int device) {
    {
      std::lock_guard lock(staging_mutex_);
      auto& idle = idle_staging_[static_cast<std::size_t>(device)];
      if (!idle.empty()) {
        StagingPair pair = idle.back();
        idle.pop_back();
        return pair;
      }
    }
    StagingPair pair;
    for (int i = 0; i < 2; ++i) {
      GSWARM_CUDA_TRY(cudaHostAlloc(&pair.buffers[i], kStagingChunk, cudaHostAllocPortable));
      GSWARM_CUDA_TRY(cudaEventCreateWithFlags(&pair.events[i], cudaEventDisableTiming));
    }
    std::lock_guard lock(staging_mutex_);
    staging_.push_back(pair);
    return pair;
  }
  void give_staging(int device, const StagingPair& pair) {
    std::lock_guard lock(staging_mutex_);
    idle_staging_[static_cast<std::size_t>(device)].push_back(pair);
  }

  std::vector<Pool> pools_;
  const int count_;
  std::mutex peer_mutex_;
  std::map<std::pair<int, int>, bool> peers_enabled_;  // guarded by peer_mutex_
  std::mutex staging_mutex_;
  std::vector<StagingPair> staging_;       // all ever made; guarded by staging_mutex_
  std::vector<std::vector<StagingPair>> idle_staging_;  // per device; guarded by staging_mutex_
};

}  // namespace

std::shared_ptr<DeviceBackend> make_cuda_backend(std::string& why) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    why = cudaGetErrorString(err);
    cudaGetLastError();
    return nullptr;
  }
  if (count == 0) {
    why = "the CUDA driver reports no devices";
    return nullptr;
  }
  return std::make_shared<CudaBackend>(count);
}

}  // namespace gswarm
