#include "server/kv_handlers.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <filesystem>
#include <random>
#include <thread>

namespace gswarm::server {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Handlers are plain functions from request to response: no socket needed.
class HandlersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() / ("gswarm-handlers-" + std::to_string(std::random_device{}()));
    StoreOptions options;
    options.disk_path = root_;
    options.max_memory = kMiB;
    store_ = std::move(*Store::open(options));
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(root_);
  }

  Response call(Reply (*handler)(Request&, Context&), Request req) {
    Context ctx{*store_, Limits{}};
    Reply reply = handler(req, ctx);
    return reply.blocking ? reply.blocking() : std::move(reply.response);
  }
  static std::string body(const Response& r) {
    std::string out = r.head;
    if (r.value) out += r.value->text();
    return out + r.tail;
  }
  static Request with_body(std::string b) {
    Request r;
    r.body = std::move(b);
    return r;
  }
  static Request with_param(std::string p) {
    Request r;
    r.param = std::move(p);
    return r;
  }

  fs::path root_;
  std::unique_ptr<Store> store_;
};

TEST_F(HandlersTest, WriteThenReadSplicesTheStoredJson) {
  auto w = call(handle_write, with_body(R"({"key":"user:123","value":{"name":"john","age":30}})"));
  EXPECT_EQ(w.status, 200);
  EXPECT_EQ(json::parse(body(w)), json::parse(R"({"status":"success","key":"user:123","location":"dram"})"));
  auto r = call(handle_read, with_param("user:123"));
  EXPECT_EQ(r.status, 200);
  auto j = json::parse(body(r));
  EXPECT_EQ(j["value"]["name"], "john");
  EXPECT_EQ(j["found"], true);
}

TEST_F(HandlersTest, PickleIsStoredAsOpaqueBytes) {
  // base64 of b"\x80\x04\x95" (a pickle header): the server must not interpret it.
  auto w = call(handle_write_extended,
                with_body(R"({"key":"p","serialized_value":{"type":"pickle","data":"gASV"}})"));
  ASSERT_EQ(w.status, 200) << body(w);
  auto view = store_->read("p");
  ASSERT_TRUE(view);
  EXPECT_EQ(view->format, "pickle");
  EXPECT_EQ(view->text(), std::string("\x80\x04\x95"));
  auto plain = call(handle_read, with_param("p"));
  EXPECT_EQ(plain.status, 409);
  auto ext = json::parse(body(call(handle_read_extended, with_param("p"))));
  EXPECT_EQ(ext["serialized_value"]["type"], "pickle");
  EXPECT_EQ(ext["serialized_value"]["data"], "gASV");
}

TEST_F(HandlersTest, ErrorsHaveStatusDetailAndCode) {
  auto r = call(handle_write, with_body(R"({"key":"k","value":1,"location":"somewhere"})"));
  EXPECT_EQ(r.status, 400);
  auto j = json::parse(body(r));
  EXPECT_EQ(j["code"], "invalid_location");
  EXPECT_FALSE(j["detail"].get<std::string>().empty());
  EXPECT_EQ(call(handle_read, with_param("missing")).status, 404);
  EXPECT_EQ(call(handle_set_max_memory, with_param("12XB")).status, 400);
  auto big = call(handle_write, with_body(R"({"key":"k","value":")" + std::string(2 * kMiB, 'x') + "\"}"));
  EXPECT_EQ(big.status, 507);
}

TEST_F(HandlersTest, SetMaxMemoryAcceptsSizesAndIntegers) {
  EXPECT_EQ(json::parse(body(call(handle_set_max_memory, with_param("32GB"))))["max_memory"],
            32ull << 30);
  EXPECT_EQ(json::parse(body(call(handle_set_max_memory, with_param("1048576"))))["max_memory"],
            1048576);
  EXPECT_EQ(store_->stats().dram_limit, 1048576u);
}

TEST_F(HandlersTest, MoveWithoutWaitingReturnsAnOperationToPoll) {
  ASSERT_EQ(call(handle_write, with_body(R"({"key":"k","value":[1,2,3]})")).status, 200);
  auto started = call(handle_move, with_body(R"({"key":"k","destination":"disk","wait":false})"));
  ASSERT_EQ(started.status, 202) << body(started);
  auto id = json::parse(body(started))["operation_id"].get<std::uint64_t>();
  json op;
  for (int i = 0; i < 1000; ++i) {
    op = json::parse(body(call(handle_operation, with_param(std::to_string(id)))));
    if (op["state"] == "done" || op["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_EQ(op["state"], "done") << op.dump();
  EXPECT_EQ(op["source"], "dram");
  EXPECT_EQ(op["bytes_done"], op["bytes_total"]);
  EXPECT_EQ(store_->location("k")->primary, Location::disk());
  EXPECT_EQ(call(handle_operation, with_param("999")).status, 404);
  EXPECT_EQ(call(handle_operation, with_param("x")).status, 400);
  // A failed asynchronous move records why.
  auto failing = call(handle_move, with_body(R"({"key":"k","destination":"dram","wait":false})"));
  store_->set_max_memory(1);
  auto fid = json::parse(body(failing))["operation_id"].get<std::uint64_t>();
  for (int i = 0; i < 1000; ++i) {
    op = json::parse(body(call(handle_operation, with_param(std::to_string(fid)))));
    if (op["state"] == "done" || op["state"] == "failed") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  EXPECT_TRUE(op["state"] == "failed" || op["state"] == "done");
  EXPECT_EQ(call(handle_move, with_body(R"({"key":"k","destination":"disk","wait":"no"})")).status, 400);
}

}  // namespace
}  // namespace gswarm::server
