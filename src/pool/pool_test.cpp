#include "pool/pool.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <random>
#include <thread>

namespace gswarm::pool {
namespace {

namespace fs = std::filesystem;

class PoolUnitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gswarm-pool-test-" + std::to_string(std::random_device{}()));
    fs::create_directories(root_ / "src");
    sources_ = {fs::canonical(root_ / "src")};
    StoreOptions options;
    options.disk_path = root_ / "disk";
    options.max_memory = 64 * kMiB;
    auto store = Store::open(options);
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    pool_ = open_pool();
  }
  void TearDown() override {
    pool_.reset();
    store_.reset();
    fs::remove_all(root_);
  }
  std::unique_ptr<Pool> open_pool() {
    auto pool = Pool::open(*store_, PoolOptions{sources_, "unit"});
    EXPECT_TRUE(pool) << pool.error().message;
    return pool ? std::move(*pool) : nullptr;
  }
  void write(const fs::path& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
  }

  fs::path root_;
  std::vector<fs::path> sources_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<Pool> pool_;
};

TEST_F(PoolUnitTest, AFileSourceBecomesAChunkWithItsChecksum) {
  write(root_ / "src" / "a.bin", "hello pool");
  auto source = open_file_source((root_ / "src" / "a.bin").string(), sources_);
  ASSERT_TRUE(source) << source.error().message;
  EXPECT_EQ((*source)->size(), 10u);
  ChunkSpec spec{Location::disk(), ChunkType::kIntermediate, "tensor", "a.bin"};
  const std::string id = pool_->new_id();
  EXPECT_TRUE(is_chunk_id(id)) << id;
  auto chunk = pool_->create(id, **source, spec);
  ASSERT_TRUE(chunk) << chunk.error().message;
  Checksum expected;
  expected.update(std::as_bytes(std::span(std::string_view("hello pool"))));
  EXPECT_EQ(chunk->checksum, expected.text());
  EXPECT_TRUE(pool_->owns(id));
  EXPECT_FALSE(pool_->owns("chunk_0000000000000000"));
  EXPECT_TRUE(fs::exists(root_ / "disk" / "pool" / (id + ".json")));
  // Moving it off disk takes its metadata file away; deleting it takes the bytes.
  auto task = pool_->start_move(id, Location::dram(), TaskPriority::kHigh);
  ASSERT_TRUE(task) << task.error().message;
  for (int i = 0; i < 1000 && fs::exists(root_ / "disk" / "pool" / (id + ".json")); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_FALSE(fs::exists(root_ / "disk" / "pool" / (id + ".json")));
  ASSERT_TRUE(pool_->remove(id, false));
  EXPECT_FALSE(store_->location(id).has_value());
  EXPECT_FALSE(pool_->owns(id));
}

// Two moves of one chunk queued behind each other, off disk and back: when the
// first ends, the metadata must stay, since the second brings the bytes back.
TEST_F(PoolUnitTest, MetadataStaysWhileAMoveToDiskIsQueued) {
  write(root_ / "src" / "m.bin", "moving");
  auto source = open_file_source((root_ / "src" / "m.bin").string(), sources_);
  ASSERT_TRUE(source);
  const std::string id = pool_->new_id();
  ASSERT_TRUE(pool_->create(id, **source, {Location::disk(), ChunkType::kInput, "tensor", "m"}));
  const fs::path file = root_ / "disk" / "pool" / (id + ".json");

  // Every mover held, so the queue is what the test says it is.
  std::vector<std::promise<void>> gates(store_->movers().threads());
  std::vector<std::promise<void>> holding(gates.size());
  for (std::size_t i = 0; i < gates.size(); ++i) {
    store_->movers().submit([gate = gates[i].get_future().share(), &held = holding[i]] {
      held.set_value();
      gate.wait();
    });
    holding[i].get_future().wait();
  }
  ASSERT_TRUE(pool_->start_move(id, Location::dram(), TaskPriority::kNormal));
  std::promise<void> first_done, go_on;
  store_->movers().submit([&first_done, go = go_on.get_future().share()] {
    first_done.set_value();
    go.wait();
  });
  ASSERT_TRUE(pool_->start_move(id, Location::disk(), TaskPriority::kNormal));
  gates[0].set_value();  // one mover runs the queue in order; the others stay held
  first_done.get_future().wait();
  EXPECT_EQ(store_->location(id)->primary, Location::dram());
  EXPECT_TRUE(fs::exists(file)) << "the metadata went while a move to disk was queued";
  go_on.set_value();
  for (std::size_t i = 1; i < gates.size(); ++i) gates[i].set_value();
  for (int i = 0; i < 1000 && store_->location(id)->primary != Location::disk(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(store_->location(id)->primary, Location::disk());
  EXPECT_TRUE(fs::exists(file));
}

TEST_F(PoolUnitTest, FileSourcesRefuseEveryWayOutOfTheRoots) {
  write(root_ / "outside", "secret");
  fs::create_symlink(root_ / "outside", root_ / "src" / "escape");
  fs::create_directory_symlink(root_, root_ / "src" / "parent");
  const auto code = [&](const fs::path& path) {
    auto source = open_file_source(path.string(), sources_);
    return source ? ErrorCode::kInternal : source.error().code;
  };
  EXPECT_EQ(code(root_ / "outside"), ErrorCode::kForbidden);
  EXPECT_EQ(code(root_ / "src" / "escape"), ErrorCode::kForbidden);
  EXPECT_EQ(code(root_ / "src" / "parent" / "outside"), ErrorCode::kForbidden);
  EXPECT_EQ(code(root_ / "src" / ".." / "outside"), ErrorCode::kForbidden);
  EXPECT_EQ(code(root_ / "src" / "nothing"), ErrorCode::kNotFound);
  EXPECT_EQ(code(root_ / "src"), ErrorCode::kBadRequest);  // a directory
  EXPECT_EQ(code("relative"), ErrorCode::kBadRequest);
  auto none = open_file_source((root_ / "src" / "escape").string(), {});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("--source-root"), std::string::npos);
}

TEST_F(PoolUnitTest, MetadataJsonRoundTripsAndRejectsWhatIsNotMetadata) {
  Chunk c;
  c.id = "chunk_0123456789abcdef";
  c.type = ChunkType::kOutput;
  c.format = "safetensors";
  c.size = 42;
  c.checksum = "xxh3:00000000000000ff";
  c.references = {"job-1", "job 2"};
  auto back = parse_metadata_json(metadata_json(c));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->id, c.id);
  EXPECT_EQ(back->type, ChunkType::kOutput);
  EXPECT_EQ(back->references, c.references);
  for (const char* bad : {"", "[]", "{}", R"({"chunk_id":"chunk_1","size":1})",
                          R"({"chunk_id":"chunk_0123456789abcdef"})",
                          R"({"chunk_id":"chunk_0123456789abcdef","size":-1})",
                          R"({"chunk_id":"chunk_0123456789abcdef","size":1,"chunk_type":"x"})",
                          R"({"chunk_id":"chunk_0123456789abcdef","size":1,"format":"a b"})",
                          R"({"chunk_id":"chunk_0123456789abcdef","size":1,"references":[""]})"}) {
    EXPECT_FALSE(parse_metadata_json(bad)) << bad;
  }
}

TEST_F(PoolUnitTest, GpuWithoutDevicesIsRefusedAndAliasesResolve) {
  auto gpu = pool_->resolve_device("gpu");
  ASSERT_FALSE(gpu);
  EXPECT_EQ(gpu.error().code, ErrorCode::kDeviceUnavailable);
  EXPECT_EQ(pool_->resolve_device("cpu").value(), Location::dram());
  EXPECT_EQ(pool_->resolve_device("pinned_dram").value(), Location::pinned_dram());
  EXPECT_EQ(pool_->resolve_device("disk").value(), Location::disk());
  EXPECT_EQ(pool_->resolve_device("gpu:0").error().code, ErrorCode::kDeviceUnavailable);
  EXPECT_EQ(pool_->resolve_device("moon").error().code, ErrorCode::kInvalidLocation);
}

}  // namespace
}  // namespace gswarm::pool
