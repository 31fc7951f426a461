// gswarm_ipc_probe HANDLE_HEX OFFSET SIZE DEVICE EXPECTED_XXH3
// Opens a device read pointer (a CUDA IPC handle) in this separate process, copies
// the bytes to the host and exits 0 when their XXH3-64 matches. Test-only.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: gswarm_ipc_probe HANDLE_HEX OFFSET SIZE DEVICE EXPECTED_XXH3\n");
    return 2;
  }
  std::string hex = argv[1];
  cudaIpcMemHandle_t handle{};
  if (hex.size() != 2 * sizeof handle.reserved) return 3;
  for (std::size_t i = 0; i < sizeof handle.reserved; ++i) {
    handle.reserved[i] = static_cast<char>(std::stoi(hex.substr(2 * i, 2), nullptr, 16));
  }
  std::size_t offset = std::stoull(argv[2]);
  std::size_t size = std::stoull(argv[3]);
  int device = std::atoi(argv[4]);
  unsigned long long expected = std::stoull(argv[5]);
  cudaSetDevice(device);
  void* base = nullptr;
  if (cudaIpcOpenMemHandle(&base, handle, cudaIpcMemLazyEnablePeerAccess) != cudaSuccess) {
    std::fprintf(stderr, "cudaIpcOpenMemHandle failed\n");
    return 4;
  }
  std::vector<char> host(size);
  cudaMemcpy(host.data(), static_cast<char*>(base) + offset, size, cudaMemcpyDeviceToHost);
  cudaIpcCloseMemHandle(base);
  return XXH3_64bits(host.data(), size) == expected ? 0 : 1;
}
