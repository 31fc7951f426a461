// gswarm_gpu_bench [--size BYTES] [--rounds N]
// Compares gswarm's moves with raw cudaMemcpyAsync of the same size, in one run:
//   pinned_dram -> device:0 and device:0 -> pinned_dram   vs raw pinned H2D / D2H
//   dram (pageable) -> device:0                           vs gswarm's pinned -> device rate
//   device -> device (device:0 -> device:1, or within device:0 with one GPU)
//                                                         vs raw D2D cudaMemcpyAsync
// Prints a markdown table with GB/s (10^9 bytes/s) and the ratios the targets use.
// Exits 0 with a note when no CUDA device answers.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "storage/device_backend.hpp"
#include "storage/store.hpp"

namespace {

using gswarm::Location;

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Median GB/s of `rounds` raw copies of `size` bytes.
double raw_copy(void* dst, const void* src, std::size_t size, cudaMemcpyKind kind, int rounds) {
  cudaStream_t stream;
  cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking);
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  std::vector<double> rates;
  for (int i = 0; i < rounds + 1; ++i) {
    cudaEventRecord(start, stream);
    cudaMemcpyAsync(dst, src, size, kind, stream);
    cudaEventRecord(stop, stream);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i > 0) rates.push_back(static_cast<double>(size) / (ms / 1e3) / 1e9);  // first: warm-up
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaStreamDestroy(stream);
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

// Median GB/s of moving `key` from `from` to `to` (each round moves it back
// first, untimed).
double store_move(gswarm::Store& store, const std::string& key, Location from, Location to,
                  std::size_t size, int rounds) {
  std::vector<double> rates;
  for (int i = 0; i < rounds + 1; ++i) {
    if (auto back = store.move(key, from); !back) {
      std::fprintf(stderr, "move to %s failed: %s\n", from.name().c_str(), back.error().message.c_str());
      std::exit(1);
    }
    auto start = std::chrono::steady_clock::now();
    auto moved = store.move(key, to);
    double s = seconds_since(start);
    if (!moved) {
      std::fprintf(stderr, "move to %s failed: %s\n", to.name().c_str(), moved.error().message.c_str());
      std::exit(1);
    }
    if (i > 0) rates.push_back(static_cast<double>(size) / s / 1e9);
  }
  std::sort(rates.begin(), rates.end());
  return rates[rates.size() / 2];
}

void row(const char* what, double gswarm, const char* reference_name, double reference,
         double target) {
  double ratio = gswarm / reference;
  std::printf("| %s | %.2f | %s %.2f | %.2fx | >= %.1fx | %s |\n", what, gswarm, reference_name,
              reference, ratio, target, ratio >= target ? "yes" : "**no**");
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t size = std::size_t{256} << 20;
  int rounds = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--size") == 0) size = std::stoull(argv[i + 1]);
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::stoi(argv[i + 1]);
  }
  auto backend = gswarm::default_device_backend();
  if (backend->device_count() == 0) {
    std::printf("no CUDA device on this machine: nothing to measure\n");
    return 0;
  }
  const bool two = backend->device_count() >= 2;
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);

  // Raw CUDA baselines.
  void* pinned = nullptr;
  void* dev_a = nullptr;
  void* dev_b = nullptr;
  cudaSetDevice(0);
  cudaHostAlloc(&pinned, size, cudaHostAllocPortable);
  std::memset(pinned, 1, size);
  cudaMalloc(&dev_a, size);
  if (two) {
    cudaSetDevice(1);
    cudaMalloc(&dev_b, size);
    cudaSetDevice(0);
    cudaDeviceEnablePeerAccess(1, 0);
  } else {
    cudaMalloc(&dev_b, size);
  }
  const double raw_h2d = raw_copy(dev_a, pinned, size, cudaMemcpyHostToDevice, rounds);
  const double raw_d2h = raw_copy(pinned, dev_a, size, cudaMemcpyDeviceToHost, rounds);
  const double raw_d2d = raw_copy(dev_b, dev_a, size, cudaMemcpyDefault, rounds);
  cudaFreeHost(pinned);
  cudaFree(dev_a);
  if (two) cudaSetDevice(1);
  cudaFree(dev_b);
  cudaSetDevice(0);

  // gswarm moves through the Store (pools warm after the first round).
  auto root = std::filesystem::temp_directory_path() / "gswarm-gpu-bench";
  gswarm::StoreOptions options;
  options.disk_path = root;
  options.max_memory = 4 * size + (std::size_t{1} << 30);
  options.max_pinned = 4 * size + (std::size_t{1} << 30);
  auto store = gswarm::Store::open(options);
  if (!store) {
    std::fprintf(stderr, "%s\n", store.error().message.c_str());
    return 1;
  }
  std::vector<std::byte> value(size, std::byte{7});
  if (!(*store)->write("bench", value, Location::dram(), "bytes")) return 1;
  const double p2d = store_move(**store, "bench", Location::pinned_dram(), Location::device(0), size, rounds);
  const double d2p = store_move(**store, "bench", Location::device(0), Location::pinned_dram(), size, rounds);
  const double h2d = store_move(**store, "bench", Location::dram(), Location::device(0), size, rounds);
  const double d2h = store_move(**store, "bench", Location::device(0), Location::dram(), size, rounds);
  double d2d = 0;
  if (two) {
    d2d = store_move(**store, "bench", Location::device(0), Location::device(1), size, rounds);
  } else {
    // One GPU: the backend's device-to-device copy within device:0.
    auto a = backend->allocate(0, size);
    auto b = backend->allocate(0, size);
    std::vector<double> rates;
    for (int i = 0; i < rounds + 1; ++i) {
      auto start = std::chrono::steady_clock::now();
      (void)backend->copy_between(0, *b, 0, *a, size);
      if (i > 0) rates.push_back(static_cast<double>(size) / seconds_since(start) / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    d2d = rates[rates.size() / 2];
    backend->free(0, *a, size);
    backend->free(0, *b, size);
  }
  store->reset();
  std::filesystem::remove_all(root);

  std::printf("GPU: %s x%d, %zu MiB values, median of %d rounds, GB/s = 10^9 bytes/s\n\n",
              prop.name, backend->device_count(), size >> 20, rounds);
  std::printf("| move | gswarm GB/s | reference GB/s | ratio | target | met |\n");
  std::printf("|---|---:|---:|---:|---:|:---:|\n");
  row("pinned_dram -> device:0", p2d, "raw pinned H2D", raw_h2d, 0.9);
  row("device:0 -> pinned_dram", d2p, "raw pinned D2H", raw_d2h, 0.9);
  row("dram (pageable) -> device:0", h2d, "gswarm pinned -> device", p2d, 0.8);
  row(two ? "device:0 -> device:1" : "device:0 -> device:0 (backend copy)", d2d, "raw D2D", raw_d2d, 0.9);
  std::printf("\ndevice:0 -> dram (pageable): %.2f GB/s\n", d2h);
  return 0;
}
