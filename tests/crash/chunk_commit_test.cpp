// Crashes at every step of the target side of a chunk's transfer to disk: a
// received value committed as a chunk with the metadata its sender gave
// (Pool::commit_received). Each case runs in a child process that ends with
// _Exit at the crash point, like kill -9. Reopened, the disk holds the chunk
// with its metadata, or nothing of it: never its bytes as a key without
// metadata, never metadata without bytes. Bytes named like a chunk without
// metadata, as an interrupted transfer of an earlier version left them, are
// removed at start-up.
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include "core/checksum.hpp"
#include "core/test_point.hpp"
#include "pool/pool.hpp"
#include "crash_store.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

constexpr int kCrashed = 42;
constexpr const char* kId = "chunk_00000000000000c7";
const std::string kBytes(3 * 1024 * 1024 + 5, 'c');

// The points the commit passes, in order.
const std::vector<std::string> kPoints = {"pool.metadata_written", "disk.before_publish",
                                          "disk.after_rename",     "disk.published",
                                          "store.installed",       "pool.committed"};

using crash::bytes;

pool::Chunk metadata() {
  pool::Chunk c;
  c.id = kId;
  c.size = kBytes.size();
  c.source = "/data/c.bin";
  c.created_by = "nodeA";
  c.created_at = c.last_accessed = 1.7e9;
  c.references = {"job-1"};
  Checksum sum;
  sum.update(bytes(kBytes));
  c.checksum = sum.text();
  return c;
}

fs::path fresh_root() {
  const fs::path root = fs::temp_directory_path() /
                        ("gswarm-chunk-crash-" + std::to_string(std::random_device{}()));
  fs::create_directories(root);
  return root;
}

// The child: receives the chunk's bytes (in two ranges, as a transfer does)
// and commits them, crashing at `crash`.
[[noreturn]] void play(const fs::path& root, const std::string& crash) {
  spdlog::set_level(spdlog::level::off);
  auto store = Store::open(crash::store_options(root));
  if (!store) std::_Exit(2);
  auto pool = pool::Pool::open(**store, pool::PoolOptions{{}, "nodeB"});
  if (!pool) std::_Exit(3);
  test_points::set(crash, [] { std::_Exit(kCrashed); });
  auto pending = (*store)->prepare_write(kId, Location::disk(), kBytes.size(), "tensor");
  if (!pending) std::_Exit(4);
  const std::size_t half = kBytes.size() / 2;
  if (!pending->write_at(half, bytes(kBytes).subspan(half)) ||
      !pending->write_at(0, bytes(kBytes).first(half))) {
    std::_Exit(5);
  }
  pending->mark_all_received();
  if (!(*pool)->commit_received(std::move(*pending), metadata())) std::_Exit(6);
  std::_Exit(0);
}

TEST(ChunkCommitCrashTest, ACrashAnywhereLeavesTheChunkWholeOrNothingOfIt) {
  for (const auto& crash : kPoints) {
    SCOPED_TRACE("crash at " + crash);
    const fs::path root = fresh_root();
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) play(root, crash);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), kCrashed) << "the child did not reach " << crash;

    auto store = Store::open(crash::store_options(root));
    ASSERT_TRUE(store) << store.error().message;
    auto pool = pool::Pool::open(**store, pool::PoolOptions{{}, "nodeB"});
    ASSERT_TRUE(pool) << pool.error().message;
    const bool has_bytes = (*store)->location(kId).has_value();
    auto chunk = (*pool)->get(kId, false);
    EXPECT_EQ(has_bytes, chunk.has_value()) << "bytes and metadata must come back together";
    if (chunk) {
      EXPECT_EQ(chunk->checksum, metadata().checksum);
      EXPECT_EQ(chunk->references, metadata().references);
      EXPECT_EQ(chunk->created_by, "nodeA");
      ASSERT_TRUE((*store)->move(kId, Location::dram()));
      auto value = (*store)->read(kId);
      ASSERT_TRUE(value);
      EXPECT_TRUE(value->text() == kBytes);
    }
    // Past the install, the commit took effect.
    if (crash == "store.installed" || crash == "pool.committed") {
      EXPECT_TRUE(chunk.has_value());
    }
    if (crash == "pool.metadata_written" || crash == "disk.before_publish") {
      EXPECT_FALSE(has_bytes);
    }
    pool->reset();
    store->reset();
    fs::remove_all(root);
  }
}

TEST(ChunkCommitCrashTest, BytesNamedLikeAChunkWithoutMetadataAreRemovedAtStart) {
  const fs::path root = fresh_root();
  {
    auto store = Store::open(crash::store_options(root));
    ASSERT_TRUE(store);
    ASSERT_TRUE((*store)->write(kId, bytes(kBytes), Location::disk(), "tensor"));
    ASSERT_TRUE((*store)->write("chunk_lookalike", bytes("kept"), Location::disk(), "bytes"));
  }
  auto store = Store::open(crash::store_options(root));
  ASSERT_TRUE(store);
  ASSERT_TRUE((*store)->location(kId));  // the Store alone keeps every value
  auto pool = pool::Pool::open(**store, pool::PoolOptions{{}, "nodeB"});
  ASSERT_TRUE(pool) << pool.error().message;
  EXPECT_FALSE((*store)->location(kId)) << "a stray chunk's bytes survived the start";
  EXPECT_TRUE((*store)->location("chunk_lookalike")) << "not a chunk id: an ordinary key";
  EXPECT_EQ((*pool)->count(), 0u);
  pool->reset();
  store->reset();
  fs::remove_all(root);
}

}  // namespace
}  // namespace gswarm
