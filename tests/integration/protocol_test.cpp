// What a hostile client can put on the wire: values that claim to be JSON and
// are not, transfer codings the server does not implement, and error paths that
// could tell it about the server's file system.
#include <string>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;
namespace fs = std::filesystem;

class ProtocolTest : public ::testing::Test {
 protected:
  void SetUp() override { server_ = std::make_unique<TestServer>(dir_.path() / "disk"); }
  int port() const { return server_->port(); }
  fs::path disk() const { return dir_.path() / "disk"; }

  TempDir dir_;
  std::unique_ptr<TestServer> server_;
};

// /read pastes a JSON value into its answer, so a raw value tagged json must be
// JSON; anything else is refused when written, in every location.
TEST_F(ProtocolTest, RawValuesTaggedJsonMustBeJson) {
  const std::string not_json[] = {
      R"(1,"key":"admin","found":false)", "{{{not json", "", "[1,2", "\"unterminated", "nul\x00l"};
  for (const char* location : {"dram", "disk", "pinned_dram"}) {
    for (const std::string& bad : not_json) {
      SCOPED_TRACE(std::string(location) + ": " + bad);
      auto r = write_raw(port(), "j", bad, location, "json");
      EXPECT_TRUE(IsError(r, 400, "bad_request"));
      EXPECT_NE(detail_of(r).find("format=json"), std::string::npos) << detail_of(r);
      EXPECT_TRUE(IsError(location_of(port(), "j"), 404, "not_found"));
    }
  }
  ASSERT_TRUE(IsOk(write_raw(port(), "good", R"( {"a": [1, 2.5, "x"]} )", "dram", "json")));
  auto r = read_json(port(), "good");
  ASSERT_TRUE(IsOk(r));
  json answer = body_json(r);
  ASSERT_TRUE(answer.is_object()) << r.body;
  EXPECT_EQ(answer.size(), 3u) << r.body;
  EXPECT_EQ(answer["key"], "good");
  EXPECT_EQ(answer["value"], json::parse(R"({"a": [1, 2.5, "x"]})"));
  EXPECT_EQ(answer["found"], true);
  // The same on disk: validated before it is stored, JSON again after a move.
  ASSERT_TRUE(IsOk(write_raw(port(), "good-disk", "[true,null]", "disk", "json")));
  ASSERT_TRUE(IsOk(move_key(port(), "good-disk", "dram")));
  EXPECT_EQ(body_json(read_json(port(), "good-disk"))["value"], json::parse("[true,null]"));
  EXPECT_TRUE(healthy(port()));
}

// RFC 9112: a Transfer-Encoding the server does not implement is a 400 and the
// connection closes, so bytes after the headers never run as another request.
TEST_F(ProtocolTest, UnknownTransferEncodingsAreRefused) {
  struct Case {
    std::string name;
    std::string headers;
    int status;
  };
  const std::string target =
      "POST /write_extended?key=te HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
      "application/octet-stream\r\n";
  const std::string smuggled = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  const Case cases[] = {
      {"xchunked", "Transfer-Encoding: xchunked\r\n", 400},
      {"gzip with length", "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n", 400},
      {"gzip, chunked", "Transfer-Encoding: gzip, chunked\r\n", 400},
      {"two headers", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n", 400},
      {"chunked", "Transfer-Encoding: chunked\r\n", 411},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RawConnection conn(port());
    ASSERT_TRUE(conn.send(target + c.headers + "\r\n" + "5\r\nhello\r\n0\r\n\r\n" + smuggled));
    std::string all = conn.receive_all(5);
    EXPECT_EQ(all.rfind("HTTP/1.1 " + std::to_string(c.status), 0), 0u) << all;
    EXPECT_EQ(all.find("HTTP/1.1", 1), std::string::npos) << "a second answer came back: " << all;
    EXPECT_NE(all.find("Connection: close"), std::string::npos) << all;
  }
  EXPECT_TRUE(IsError(location_of(port(), "te"), 404, "not_found"));
  EXPECT_TRUE(healthy(port()));
}

// Errors tell the client what went wrong, not where the server keeps its files
// or which process it is.
TEST_F(ProtocolTest, ErrorsNameNoServerPathsOrProcess) {
  const std::string value = binary_value(100000, 5);
  ASSERT_TRUE(IsOk(write_raw(port(), "gone", value, "disk")));
  ASSERT_TRUE(IsOk(write_raw(port(), "damaged", value, "disk")));
  // Remove one value's file behind the server's back and damage the other's.
  json gone = body_json(location_of(port(), "gone"))["locations"][0]["read_pointer"];
  json damaged = body_json(location_of(port(), "damaged"))["locations"][0]["read_pointer"];
  fs::remove(gone["path"].get<std::string>());
  fs::permissions(damaged["path"].get<std::string>(), fs::perms::owner_write,
                  fs::perm_options::add);
  {
    std::fstream f(damaged["path"].get<std::string>(),
                   std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(damaged["offset"].get<std::streamoff>() + 10);
    f.put('\x42');
  }
  const std::string pid = std::to_string(server_->pid());
  for (const char* key : {"gone", "damaged"}) {
    SCOPED_TRACE(key);
    auto r = move_key(port(), key, "dram");
    EXPECT_TRUE(IsError(r, 500, "io_error"));
    const std::string detail = detail_of(r);
    EXPECT_EQ(detail.find(disk().string()), std::string::npos) << detail;
    EXPECT_EQ(detail.find(".gsv"), std::string::npos) << detail;
    EXPECT_EQ(detail.find("/proc/"), std::string::npos) << detail;
    EXPECT_EQ(detail.find(pid), std::string::npos) << detail;
  }
  EXPECT_TRUE(healthy(port()));
}

}  // namespace
