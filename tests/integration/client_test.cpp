// gswarm::Client against the real server binary on an ephemeral port.
#include <gswarm/client.hpp>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using gswarm::Client;
using itest::SilentListener;
using gswarm::ErrorCode;
using json = nlohmann::json;

class ClientTest : public ::testing::Test {
 protected:
  gswarm::testing::TempDir dir_;
  gswarm::testing::TestServer server_{dir_.path()};
  Client client_{server_.address()};

  // How many GPUs the server has, from its stats.
  std::size_t gpu_count() {
    auto stats = client_.stats();
    EXPECT_TRUE(stats) << stats.error().message;
    return stats ? json::parse(*stats).at("gpu_stats").size() : 0;
  }
};

std::string binary_value(std::size_t size) {
  std::string out(size, '\0');
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + i / 7) & 0xff);
  return out;
}

TEST_F(ClientTest, WriteReadJsonRoundTrip) {
  const std::vector<std::string> values = {
      R"({"name":"john","age":30})", R"("john_doe")", "42", "-1.5", "true", "null",
      R"([1,"two",{"three":[3]}])",  R"("line\nbreak \u00e9")"};
  for (std::size_t i = 0; i < values.size(); ++i) {
    std::string key = "json:" + std::to_string(i);
    auto written = client_.write(key, values[i]);
    ASSERT_TRUE(written) << values[i] << ": " << written.error().message;
    auto read = client_.read(key);
    ASSERT_TRUE(read) << read.error().message;
    EXPECT_EQ(json::parse(*read), json::parse(values[i]));
  }
}

TEST_F(ClientTest, LastResponseBodyIsTheServersAnswer) {
  ASSERT_TRUE(client_.write("user:123", R"("john_doe")"));
  json answer = json::parse(client_.last_response_body());
  EXPECT_EQ(answer.at("status"), "success");
  EXPECT_EQ(answer.at("key"), "user:123");
  EXPECT_EQ(answer.at("location"), "dram");
}

TEST_F(ClientTest, InvalidJsonValueIsRejectedBeforeSending) {
  auto written = client_.write("k", "{not json");
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kBadRequest);
  // A second value spliced in must not be able to add fields to the request.
  auto injected = client_.write("k", R"(1,"location":"disk")");
  ASSERT_FALSE(injected);
  EXPECT_EQ(injected.error().code, ErrorCode::kBadRequest);
}

TEST_F(ClientTest, InvalidKeyIsRejected) {
  auto written = client_.write("", "1");
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kInvalidKey);
  auto read = client_.read(std::string("a\0b", 3));
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kInvalidKey);
}

TEST_F(ClientTest, BytesRoundTripKeepsNulsAndFormat) {
  std::string data = binary_value(4096);
  data[0] = '\0';
  data[100] = '\0';
  auto size = client_.write_bytes("bin", data);
  ASSERT_TRUE(size) << size.error().message;
  EXPECT_EQ(*size, data.size());
  auto read = client_.read_bytes("bin");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->data, data);
  EXPECT_EQ(read->format, "bytes");

  auto tagged = client_.write_bytes("pickled", std::string_view("\x80\x04K*.", 5), "dram", "pickle");
  ASSERT_TRUE(tagged) << tagged.error().message;
  auto tagged_read = client_.read_bytes("pickled");
  ASSERT_TRUE(tagged_read);
  EXPECT_EQ(tagged_read->format, "pickle");
  EXPECT_EQ(tagged_read->data, std::string("\x80\x04K*.", 5));
}

TEST_F(ClientTest, EmptyBytesValueRoundTrips) {
  auto size = client_.write_bytes("empty", std::string_view());
  ASSERT_TRUE(size) << size.error().message;
  EXPECT_EQ(*size, 0u);
  auto read = client_.read_bytes("empty");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_TRUE(read->data.empty());
}

TEST_F(ClientTest, LargeBytesValueRoundTrips) {
  const std::string data = binary_value(8 * 1024 * 1024);
  auto bytes = std::as_bytes(std::span<const char>(data.data(), data.size()));
  auto size = client_.write_bytes("big", bytes);
  ASSERT_TRUE(size) << size.error().message;
  EXPECT_EQ(*size, data.size());
  auto read = client_.read_bytes("big");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->data.size(), data.size());
  EXPECT_TRUE(read->data == data);
}

TEST_F(ClientTest, ReadIntoPlacesTheValueAndKeepsTheConnectionInStep) {
  const std::string data = binary_value(3 * 1024 * 1024 + 7);
  const std::span<const std::byte> parts[] = {
      std::as_bytes(std::span<const char>(data.data(), 10)),
      std::as_bytes(std::span<const char>(data.data() + 10, data.size() - 10))};
  ASSERT_TRUE(client_.write_parts("placed", parts, "dram", "npy"));
  std::vector<std::byte> memory;
  auto format = client_.read_bytes_into("placed", [&](std::uint64_t size, std::string_view tag) {
    EXPECT_EQ(tag, "npy");
    memory.resize(size);
    return std::span<std::byte>(memory);
  });
  ASSERT_TRUE(format) << format.error().message;
  EXPECT_EQ(*format, "npy");
  EXPECT_TRUE(std::equal(memory.begin(), memory.end(),
                         std::as_bytes(std::span<const char>(data)).begin()));
  // Memory the caller cannot get: kOverLimit, and the next calls still work.
  auto refused = client_.read_bytes_into("placed", [](std::uint64_t, std::string_view) {
    return std::span<std::byte>();
  });
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, ErrorCode::kOverLimit);
  auto missing = client_.read_bytes_into("never-written", [](std::uint64_t, std::string_view) {
    ADD_FAILURE() << "no memory is asked for an error answer";
    return std::span<std::byte>();
  });
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  auto again = client_.read_bytes("placed");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_TRUE(again->data == data);
}

TEST_F(ClientTest, JsonValueReadsAsBytes) {
  ASSERT_TRUE(client_.write("j", R"({"a":1})"));
  auto read = client_.read_bytes("j");
  ASSERT_TRUE(read) << read.error().message;
  EXPECT_EQ(read->format, "json");
  EXPECT_EQ(json::parse(read->data), json::parse(R"({"a":1})"));
}

TEST_F(ClientTest, KeysWithReservedCharactersRoundTrip) {
  const std::vector<std::string> keys = {
      "a/b",       "/leading/slash", "with space", "plus+sign", "100%", "%2F",
      "q?x=1&y#z", "..",             "ключ/日本語", "emoji 🚀",  "a\\b", "tab\there"};
  for (const auto& key : keys) {
    std::string value = json(key).dump();
    ASSERT_TRUE(client_.write(key, value)) << key;
    auto read = client_.read(key);
    ASSERT_TRUE(read) << key << ": " << read.error().message;
    EXPECT_EQ(*read, value) << key;
    auto bytes = client_.write_bytes(key + "#raw", key);
    ASSERT_TRUE(bytes) << key << ": " << bytes.error().message;
    auto raw = client_.read_bytes(key + "#raw");
    ASSERT_TRUE(raw) << key << ": " << raw.error().message;
    EXPECT_EQ(raw->data, key);
    auto location = client_.get_location(key);
    ASSERT_TRUE(location) << key << ": " << location.error().message;
    EXPECT_EQ(location->key, key);
  }
  auto all = client_.list_locations();
  ASSERT_TRUE(all) << all.error().message;
  for (const auto& key : keys) {
    EXPECT_TRUE(all->contains(key)) << key;
    EXPECT_TRUE(all->contains(key + "#raw")) << key;
  }
  for (const auto& key : keys) EXPECT_TRUE(client_.release(key)) << key;
  EXPECT_FALSE(client_.read("a/b"));
  EXPECT_TRUE(client_.read_bytes("a/b#raw")) << "releasing 'a/b' must not touch 'a/b#raw'";
}

TEST_F(ClientTest, OneClientServesManyCalls) {
  for (int i = 0; i < 300; ++i) {
    std::string key = "k" + std::to_string(i % 10);
    ASSERT_TRUE(client_.write(key, std::to_string(i))) << i;
    auto read = client_.read(key);
    ASSERT_TRUE(read) << i << ": " << read.error().message;
    ASSERT_EQ(*read, std::to_string(i));
  }
  // Errors must leave the connection usable.
  for (int i = 0; i < 20; ++i) {
    ASSERT_FALSE(client_.read("missing"));
    ASSERT_TRUE(client_.health()) << i;
  }
}

TEST_F(ClientTest, MoveToDiskAndBack) {
  ASSERT_TRUE(client_.write("results:final", R"({"score":0.9})"));
  auto moved = client_.move("results:final", "disk");
  ASSERT_TRUE(moved) << moved.error().message;
  EXPECT_EQ(moved->key, "results:final");
  EXPECT_EQ(moved->source, "dram");
  EXPECT_EQ(moved->destination, "disk");
  EXPECT_GT(moved->size, 0u);
  EXPECT_GE(moved->seconds, 0.0);

  auto location = client_.get_location("results:final");
  ASSERT_TRUE(location) << location.error().message;
  EXPECT_EQ(location->location, "disk");
  ASSERT_EQ(location->replicas.size(), 1u);
  EXPECT_EQ(location->replicas[0].location, "disk");
  EXPECT_EQ(location->replicas[0].copy_status, "complete");
  EXPECT_EQ(location->replicas[0].size, moved->size);

  auto read = client_.read("results:final");
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::kWrongLocation);
  EXPECT_NE(read.error().message.find("disk"), std::string::npos) << read.error().message;
  auto read_bytes = client_.read_bytes("results:final");
  ASSERT_FALSE(read_bytes);
  EXPECT_EQ(read_bytes.error().code, ErrorCode::kWrongLocation);

  ASSERT_TRUE(client_.move("results:final", "dram"));
  auto back = client_.read("results:final");
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(json::parse(*back), json::parse(R"({"score":0.9})"));

  auto again = client_.move("results:final", "dram");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->destination, "dram");
}

TEST_F(ClientTest, ServerErrorsMapToTheirCodes) {
  auto missing = client_.read("nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(missing.error().message.empty());

  EXPECT_EQ(client_.get_location("nope").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(client_.move("nope", "disk").error().code, ErrorCode::kNotFound);
  EXPECT_EQ(client_.read_bytes("nope").error().code, ErrorCode::kNotFound);

  auto bad_location = client_.write("k", "1", "moon");
  ASSERT_FALSE(bad_location);
  EXPECT_EQ(bad_location.error().code, ErrorCode::kInvalidLocation);
  EXPECT_EQ(client_.write_bytes("k", "x", "moon").error().code, ErrorCode::kInvalidLocation);
  ASSERT_TRUE(client_.write("k", "1"));
  EXPECT_EQ(client_.move("k", "moon").error().code, ErrorCode::kInvalidLocation);

  ASSERT_TRUE(client_.write_bytes("raw", "abc"));
  EXPECT_EQ(client_.read("raw").error().code, ErrorCode::kWrongFormat);

  auto bad_size = client_.set_max_memory("12XB");
  ASSERT_FALSE(bad_size);
  EXPECT_EQ(bad_size.error().code, ErrorCode::kInvalidSize);
}

TEST_F(ClientTest, WriteOverTheMemoryLimitIsOverLimit) {
  ASSERT_TRUE(client_.set_max_memory("1KB"));
  auto written = client_.write("big", json(std::string(2048, 'x')).dump());
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kOverLimit) << written.error().message;
  auto raw = client_.write_bytes("big", std::string(2048, 'x'));
  ASSERT_FALSE(raw);
  EXPECT_EQ(raw.error().code, ErrorCode::kOverLimit) << raw.error().message;
  EXPECT_TRUE(client_.health()) << "the client must recover after the server dropped the body";
}

TEST(ClientLimitTest, ValueOverTheServersLimitGetsItsAnswerNotABrokenPipe) {
  // The server answers 413 without reading the body and closes the connection;
  // the client must report that answer even though its write of the body fails.
  gswarm::testing::TempDir dir;
  gswarm::testing::TestServer server(dir.path(), {"--max-value-size", "1MB"});
  Client client(server.address());
  const std::string data = binary_value(32 * 1024 * 1024);
  for (int i = 0; i < 3; ++i) {
    auto size = client.write_bytes("big", data);
    ASSERT_FALSE(size);
    EXPECT_EQ(size.error().code, ErrorCode::kTooLarge) << size.error().message;
  }
  EXPECT_TRUE(client.health());
}

TEST_F(ClientTest, DeviceLocationWithoutThatDeviceIsUnavailable) {
  std::size_t gpus = gpu_count();
  std::string device = "device:" + std::to_string(gpus);
  auto written = client_.write("model:weights", R"("large_tensor")", device);
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().code, ErrorCode::kDeviceUnavailable) << written.error().message;
}

TEST_F(ClientTest, ReleaseRemovesTheKey) {
  ASSERT_TRUE(client_.write("temp:cache", "1"));
  ASSERT_TRUE(client_.release("temp:cache"));
  EXPECT_EQ(client_.read("temp:cache").error().code, ErrorCode::kNotFound);
  EXPECT_FALSE(client_.list_locations()->contains("temp:cache"));
}

TEST_F(ClientTest, StatsAndMaxMemory) {
  ASSERT_TRUE(client_.write("a", R"("abc")"));
  auto text = client_.stats();
  ASSERT_TRUE(text) << text.error().message;
  json stats = json::parse(*text);
  for (const char* field : {"current_size", "max_size", "dram_usage_percent", "total_keys",
                            "location_counts", "disk_usage", "gpu_stats", "active_moves",
                            "memory_info"}) {
    EXPECT_TRUE(stats.contains(field)) << field;
  }
  EXPECT_EQ(stats.at("total_keys"), 1);

  auto limit = client_.set_max_memory("32GB");
  ASSERT_TRUE(limit) << limit.error().message;
  EXPECT_EQ(*limit, 32ull << 30);
  auto bytes_limit = client_.set_max_memory("1048576");
  ASSERT_TRUE(bytes_limit) << bytes_limit.error().message;
  EXPECT_EQ(*bytes_limit, 1048576u);
  EXPECT_EQ(json::parse(*client_.stats()).at("max_dram_size"), 1048576u);
}

TEST_F(ClientTest, HealthAndHttpPrefix) {
  Client prefixed("http://" + server_.address() + "/");
  auto health = prefixed.health();
  ASSERT_TRUE(health) << health.error().message;
  EXPECT_EQ(prefixed.address(), server_.address());
}

TEST(ClientConnectionTest, RefusedConnectionIsAConnectionError) {
  int port = 0;
  {
    gswarm::testing::TempDir dir;
    gswarm::testing::TestServer server(dir.path());
    port = server.port();
  }
  Client client("127.0.0.1:" + std::to_string(port));
  auto health = client.health();
  ASSERT_FALSE(health);
  EXPECT_EQ(health.error().code, ErrorCode::kConnection);
  const std::string& message = health.error().message;
  EXPECT_NE(message.find("cannot connect to 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << message;
  EXPECT_NE(message.find("gswarm data start"), std::string::npos) << message;
}

TEST(ClientConnectionTest, ServerStoppingUnderAClientGivesConnectionError) {
  gswarm::testing::TempDir dir;
  auto server = std::make_unique<gswarm::testing::TestServer>(dir.path());
  Client client(server->address());
  ASSERT_TRUE(client.health());
  server->stop();
  auto health = client.health();
  ASSERT_FALSE(health);
  EXPECT_EQ(health.error().code, ErrorCode::kConnection) << health.error().message;
}

TEST(ClientConnectionTest, SilentServerTimesOut) {
  SilentListener silent;
  gswarm::ClientOptions options;
  options.timeout = std::chrono::milliseconds(300);
  Client client(silent.address(), options);
  auto health = client.health();
  ASSERT_FALSE(health);
  EXPECT_EQ(health.error().code, ErrorCode::kTimeout) << health.error().message;
}

TEST(ClientUrlEncodeTest, EncodesEverythingButUnreserved) {
  EXPECT_EQ(gswarm::url_encode("aZ09-._~"), "aZ09-._~");
  EXPECT_EQ(gswarm::url_encode("a/b c+d%e:f"), "a%2Fb%20c%2Bd%25e%3Af");
  EXPECT_EQ(gswarm::url_encode("é"), "%C3%A9");
}

}  // namespace
