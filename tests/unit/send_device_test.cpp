// Sends between two servers in this process whose GPUs are the fake backend, so
// the device paths of sends (a device replica read through host buffers at the
// source; device writes at the target, one stream or ranges) run without GPUs.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <random>
#include <thread>

#include "cluster/peer_connection.hpp"
#include "fake_device_backend.hpp"
#include "server/server.hpp"
#include "storage/store.hpp"

namespace gswarm {
namespace {

namespace fs = std::filesystem;

// A Store with two fake GPUs and a Server for it on a loopback port.
class Node {
 public:
  explicit Node(const std::string& name)
      : root_(fs::temp_directory_path() /
              ("gswarm-send-device-" + name + std::to_string(std::random_device{}()))) {
    StoreOptions options;
    options.disk_path = root_;
    options.max_memory = 256 * kMiB;
    options.devices = std::make_shared<testing::FakeDeviceBackend>(2, 256 * kMiB);
    auto store = Store::open(options);
    EXPECT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    server::ServerOptions server_options;
    server_options.host = "127.0.0.1";
    server_options.port = 0;
    server_options.threads = 1;
    server_options.node_name = name;
    server_options.handle_signals = false;
    server_options.local_socket = false;
    server_options.cluster.sender.parallel_threshold = kMiB;
    server_ = std::make_unique<server::Server>(*store_, server_options);
    auto listening = server_->listen();
    EXPECT_TRUE(listening) << listening.error().message;
    thread_ = std::thread([this] { server_->run(); });
  }
  ~Node() {
    server_->stop();
    thread_.join();
    server_.reset();
    store_.reset();
    fs::remove_all(root_);
  }
  Store& store() { return *store_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  // POST /send_extended on this server; the answer's JSON, or {"error": ...}.
  nlohmann::json send(const std::string& key, const std::string& target,
                      const std::string& source, int streams) {
    auto conn = cluster::PeerConnection::open({"127.0.0.1", server_->port()},
                                              std::chrono::seconds(60));
    if (!conn) return {{"error", conn.error().message}};
    nlohmann::json body = {
        {"key", key}, {"target", target}, {"source_location", source}, {"streams", streams}};
    auto answer = conn->call("POST", "/send_extended", body.dump());
    if (!answer) return {{"error", answer.error().message}};
    if (answer->status != 200) return {{"error", answer->body}};
    return nlohmann::json::parse(answer->body);
  }

 private:
  fs::path root_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<server::Server> server_;
  std::thread thread_;
};

std::string pattern(std::size_t size, int seed) {
  std::string v(size, '\0');
  for (std::size_t i = 0; i < size; ++i) v[i] = static_cast<char>(i * 131 + seed);
  return v;
}

std::string bytes_at(Store& store, const std::string& key, Location where) {
  auto replica = store.open_replica(key, where);
  if (!replica) return "(" + replica.error().message + ")";
  std::string out(replica->extent->size(), '\0');
  auto ok = replica->extent->read(0, std::as_writable_bytes(std::span(out)));
  if (!ok) return "(" + ok.error().message + ")";
  return out;
}

TEST(SendDeviceTest, DeviceToDeviceAcrossServersInOneStreamAndInRanges) {
  Node a("a");
  Node b("b");
  const std::string value = pattern(9 * kMiB + 5, 3);
  ASSERT_TRUE(a.store().write("w", std::as_bytes(std::span(value)), Location::device(1), "numpy"));
  for (int streams : {1, 4}) {
    SCOPED_TRACE(std::to_string(streams) + " streams");
    (void)b.store().release("w");
    auto sent = a.send("w", b.address() + ":device:0", "device:1", streams);
    ASSERT_FALSE(sent.contains("error")) << sent.dump();
    EXPECT_EQ(sent["source"], "device:1");
    EXPECT_EQ(sent["destination"], "device:0");
    EXPECT_EQ(sent["streams"], streams);
    auto replica = b.store().open_replica("w", Location::device(0));
    ASSERT_TRUE(replica) << replica.error().message;
    EXPECT_EQ(replica->format, "numpy");
    EXPECT_TRUE(bytes_at(b.store(), "w", Location::device(0)) == value);
  }
  // From a device into the other server's disk, and from there to a device here.
  (void)b.store().release("w");
  auto to_disk = a.send("w", b.address() + ":disk", "device:1", 4);
  ASSERT_FALSE(to_disk.contains("error")) << to_disk.dump();
  auto back = b.send("w", a.address() + ":device:0", "disk", 4);
  ASSERT_FALSE(back.contains("error")) << back.dump();
  EXPECT_TRUE(bytes_at(a.store(), "w", Location::device(0)) == value);
}

}  // namespace
}  // namespace gswarm
