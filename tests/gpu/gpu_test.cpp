// GPU tests on the real CUDA backend: every test skips when no device answers.
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "storage/device_backend.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

class GpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend_ = default_device_backend();
    if (backend_->device_count() == 0) GTEST_SKIP() << "no CUDA device";
    root_ = fs::temp_directory_path() / ("gswarm-gpu-test-" + std::to_string(std::random_device{}()));
    StoreOptions options;
    options.disk_path = root_;
    options.max_memory = 4 * kGiB;
    options.max_device_memory = 4 * kGiB;
    auto s = Store::open(options);
    ASSERT_TRUE(s) << s.error().message;
    store_ = std::move(*s);
  }
  void TearDown() override {
    store_.reset();
    if (!root_.empty()) fs::remove_all(root_);
  }
  static std::string pattern(std::size_t size, int seed) {
    std::string v(size, '\0');
    for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>((i * 13 + seed) & 0xff);
    return v;
  }
  static std::span<const std::byte> bytes(std::string_view s) {
    return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
  }

  std::shared_ptr<DeviceBackend> backend_;
  fs::path root_;
  std::unique_ptr<Store> store_;
};

TEST_F(GpuTest, MovesBetweenEveryPairIncludingDevices) {
  std::vector<Location> all = {Location::dram(), Location::pinned_dram(), Location::disk()};
  for (int d = 0; d < std::min(backend_->device_count(), 2); ++d) all.push_back(Location::device(d));
  int seed = 0;
  for (const auto& from : all) {
    for (const auto& to : all) {
      if (from == to) continue;
      const std::string key = from.name() + "->" + to.name();
      // Not a multiple of the staging chunk, so the pipeline's last piece is partial.
      const std::string value = pattern((std::size_t{37} << 20) + 4097, ++seed);
      ASSERT_TRUE(store_->write(key, bytes(value), from, "bytes")) << key;
      auto moved = store_->move(key, to);
      ASSERT_TRUE(moved) << key << ": " << moved.error().message;
      ASSERT_TRUE(store_->move(key, Location::dram()));
      auto back = store_->read(key);
      ASSERT_TRUE(back);
      EXPECT_TRUE(back->text() == value) << key;
      ASSERT_TRUE(store_->release(key));
    }
  }
}

TEST_F(GpuTest, PinnedCopiesUseDmaAndPageableUseTheStagingPipeline) {
  const std::string value = pattern(64 << 20, 1);
  ASSERT_TRUE(store_->write("p", bytes(value), Location::pinned_dram(), "bytes"));
  EXPECT_EQ(store_->move("p", Location::device(0))->method, "dma");
  EXPECT_EQ(store_->move("p", Location::dram())->method, "staged");
  auto stats = store_->stats();
  ASSERT_FALSE(stats.devices.empty());
  EXPECT_GT(stats.devices[0].total, 0u);
  EXPECT_EQ(stats.device_backend, "cuda");
}

TEST_F(GpuTest, AnotherProcessOpensTheIpcReadPointer) {
  const std::string value = pattern(8 << 20, 2);
  ASSERT_TRUE(store_->write("ipc", bytes(value), Location::device(0), "bytes"));
  auto where = store_->location("ipc");
  ASSERT_TRUE(where);
  auto rp = where->replicas[0].read_pointer;
  ASSERT_TRUE(rp);
  ASSERT_EQ(rp->kind, "cuda_ipc");
  std::string probe = GSWARM_IPC_PROBE;
  std::vector<std::string> args = {probe, rp->path, std::to_string(rp->offset),
                                   std::to_string(rp->size), std::to_string(rp->device),
                                   std::to_string(XXH3_64bits(value.data(), value.size()))};
  pid_t pid = ::fork();
  if (pid == 0) {
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "probe status " << status;
}

TEST_F(GpuTest, SendToAnotherDeviceOfThisNode) {
  if (backend_->device_count() < 2) GTEST_SKIP() << "needs two devices";
  const std::string value = pattern(32 << 20, 3);
  ASSERT_TRUE(store_->write("w", bytes(value), Location::device(0), "bytes"));
  auto sent = store_->copy("w", Location::device(1), Location::device(0));
  ASSERT_TRUE(sent) << sent.error().message;
  EXPECT_TRUE(sent->method == "nvlink" || sent->method == "p2p" || sent->method == "staged");
  EXPECT_EQ(store_->location("w")->replicas.size(), 2u);
}

}  // namespace
}  // namespace gswarm
