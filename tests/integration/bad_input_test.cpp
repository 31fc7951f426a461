// Malformed and out-of-contract requests against the real server: every one gets
// the documented status and {"detail", "code"} body (doc/http-api.md, "Errors"),
// and none of them disturbs the server or the values stored before.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;

constexpr std::uint64_t kMaxRequest = 8 * 1024;        // --max-request-size 8KB
constexpr std::uint64_t kMaxValue = 4 * 1024 * 1024;   // --max-value-size 4MB
constexpr std::uint64_t kMaxMemory = 1024 * 1024;      // --max-memory 1MB

struct Case {
  std::string name;
  // Either a whole raw request (sent as is on a fresh connection) ...
  std::string raw;
  // ... or a request built from these.
  std::string method;
  std::string target;
  std::string body;
  std::string content_type = "application/json";
  std::map<std::string, std::string> headers;
  int status = 0;
  std::string code;
  std::string allow;             // expected Allow header (405 only)
  std::string detail_mentions;   // a substring the detail must contain
  bool half_close = false;       // raw only: shut the write side after sending
  bool closing_is_fine = false;  // the connection may close without an answer
};

Case req(std::string name, std::string method, std::string target, std::string body, int status,
         std::string code) {
  Case c;
  c.name = std::move(name);
  c.method = std::move(method);
  c.target = std::move(target);
  c.body = std::move(body);
  c.status = status;
  c.code = std::move(code);
  return c;
}

// A raw (application/octet-stream) write_extended request.
Case octet(std::string name, std::string target, std::string body, int status, std::string code) {
  Case c = req(std::move(name), "POST", std::move(target), std::move(body), status, std::move(code));
  c.content_type = "application/octet-stream";
  return c;
}

Case raw(std::string name, std::string bytes, int status, std::string code) {
  Case c;
  c.name = std::move(name);
  c.raw = std::move(bytes);
  c.status = status;
  c.code = std::move(code);
  return c;
}

// A raw octet-stream write announcing `length` bytes and sending `body`.
std::string raw_write_request(const std::string& target, std::uint64_t length, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
         "Content-Length: " + std::to_string(length) + "\r\nConnection: close\r\n\r\n" + body;
}

std::string json_request(const std::string& target, const std::string& body) {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
         "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

std::vector<Case> make_cases() {
  const std::string long_key(4097, 'k');
  std::vector<Case> cases = {
      // --- JSON bodies ---------------------------------------------------------
      req("write_bad_json", "POST", "/write", R"({"key": "a", "value": )", 400, "bad_request"),
      req("write_not_json_at_all", "POST", "/write", "key=a&value=1", 400, "bad_request"),
      req("write_json_array", "POST", "/write", R"(["a", 1])", 400, "bad_request"),
      req("write_json_string", "POST", "/write", R"("a")", 400, "bad_request"),
      req("write_empty_body", "POST", "/write", "", 400, "bad_request"),
      req("write_missing_key", "POST", "/write", R"({"value": 1})", 400, "bad_request"),
      req("write_key_number", "POST", "/write", R"({"key": 5, "value": 1})", 400, "bad_request"),
      req("write_key_null", "POST", "/write", R"({"key": null, "value": 1})", 400, "bad_request"),
      req("write_key_object", "POST", "/write", R"({"key": {"a": 1}, "value": 1})", 400, "bad_request"),
      req("write_missing_value", "POST", "/write", R"({"key": "a"})", 400, "bad_request"),
      req("write_unknown_location", "POST", "/write", R"({"key": "a", "value": 1, "location": "tape"})", 400,
          "invalid_location"),
      req("write_location_number", "POST", "/write", R"({"key": "a", "value": 1, "location": 3})", 400,
          "bad_request"),
      req("write_device_0", "POST", "/write", R"({"key": "a", "value": 1, "location": "device:0"})", 400,
          "device_unavailable"),
      req("write_device_bad_index", "POST", "/write", R"({"key": "a", "value": 1, "location": "device:x"})",
          400, "invalid_location"),
      req("write_empty_key", "POST", "/write", R"({"key": "", "value": 1})", 400, "invalid_key"),
      req("write_overlong_key", "POST", "/write", json({{"key", long_key}, {"value", 1}}).dump(), 400,
          "invalid_key"),
      req("write_key_with_nul", "POST", "/write", R"({"key": "a\u0000b", "value": 1})", 400, "invalid_key"),
      req("write_body_over_max_request_size", "POST", "/write",
          json({{"key", "big"}, {"value", std::string(2 * kMaxRequest, 'x')}}).dump(), 413, "too_large"),
      // --- keys in paths -------------------------------------------------------
      req("read_empty_key", "GET", "/read/", "", 400, "invalid_key"),
      req("read_overlong_key", "GET", "/read/" + long_key, "", 400, "invalid_key"),
      req("read_invalid_utf8_key", "GET", "/read/%FF", "", 400, "invalid_key"),
      req("read_overlong_utf8_key", "GET", "/read/%C0%AF", "", 400, "invalid_key"),
      req("read_nul_in_key", "GET", "/read/a%00b", "", 400, "invalid_key"),
      req("read_bad_percent_encoding", "GET", "/read/%zz", "", 400, "bad_request"),
      req("read_truncated_percent_encoding", "GET", "/read/abc%4", "", 400, "bad_request"),
      req("location_invalid_utf8_key", "GET", "/location/%FE%FF", "", 400, "invalid_key"),
      req("release_empty_key", "DELETE", "/release/", "", 400, "invalid_key"),
      // --- write_extended --------------------------------------------------------
      req("write_extended_bad_base64", "POST", "/write_extended",
          R"({"key": "p", "serialized_value": {"type": "pickle", "data": "not*base64!"}})", 400, "bad_request"),
      req("write_extended_missing_type", "POST", "/write_extended",
          R"({"key": "p", "serialized_value": {"data": "gAQu"}})", 400, "bad_request"),
      req("write_extended_missing_data", "POST", "/write_extended",
          R"({"key": "p", "serialized_value": {"type": "pickle"}})", 400, "bad_request"),
      req("write_extended_missing_serialized_value", "POST", "/write_extended", R"({"key": "p"})", 400,
          "bad_request"),
      req("write_extended_pickle_data_not_string", "POST", "/write_extended",
          R"({"key": "p", "serialized_value": {"type": "pickle", "data": [1, 2]}})", 400, "bad_request"),
      octet("raw_write_without_key", "/write_extended", "abc", 400, "bad_request"),
      octet("raw_write_empty_key", "/write_extended?key=", "abc", 400, "invalid_key"),
      octet("raw_write_unknown_location", "/write_extended?key=r&location=nowhere", "abc", 400,
          "invalid_location"),
      octet("raw_write_device_0", "/write_extended?key=r&location=device%3A0", "abc", 400,
          "device_unavailable"),
      octet("raw_write_format_with_space", "/write_extended?key=r&format=a%20b", "abc", 400,
          "bad_request"),
      octet("raw_write_format_path_traversal", "/write_extended?key=r&format=../x", "abc", 400,
          "bad_request"),
      octet("raw_write_format_empty", "/write_extended?key=r&format=", "abc", 400, "bad_request"),
      octet("raw_write_format_too_long", "/write_extended?key=r&format=" + std::string(300, 'f'), "abc", 400,
            "bad_request"),
      octet("raw_write_bad_query_encoding", "/write_extended?key=%zz", "abc", 400, "bad_request"),
      // --- sizes -------------------------------------------------------------------
      req("set_max_memory_bad_unit", "POST", "/set_max_memory/12XB", "", 400, "invalid_size"),
      req("set_max_memory_zero", "POST", "/set_max_memory/0", "", 400, "invalid_size"),
      req("set_max_memory_negative", "POST", "/set_max_memory/-5", "", 400, "invalid_size"),
      req("set_max_memory_empty", "POST", "/set_max_memory/", "", 400, "invalid_size"),
      // --- move ----------------------------------------------------------------------
      req("move_missing_destination", "POST", "/move", R"({"key": "pre:dram:0"})", 400, "bad_request"),
      req("move_missing_key_field", "POST", "/move", R"({"destination": "disk"})", 400, "bad_request"),
      req("move_unknown_destination", "POST", "/move", R"({"key": "pre:dram:0", "destination": "moon"})", 400,
          "invalid_location"),
      req("move_to_device_0", "POST", "/move", R"({"key": "pre:dram:0", "destination": "device:0"})", 400,
          "device_unavailable"),
      req("move_wait_not_boolean", "POST", "/move",
          R"({"key": "pre:dram:0", "destination": "disk", "wait": "no"})", 400, "bad_request"),
      req("move_of_missing_key", "POST", "/move", R"({"key": "no-such-key", "destination": "disk"})", 404,
          "not_found"),
      // --- missing keys --------------------------------------------------------------
      req("read_missing_key", "GET", "/read/no-such-key", "", 404, "not_found"),
      req("read_extended_missing_key", "GET", "/read_extended/no-such-key", "", 404, "not_found"),
      req("location_missing_key", "GET", "/location/no-such-key", "", 404, "not_found"),
      req("release_missing_key", "DELETE", "/release/no-such-key", "", 404, "not_found"),
      req("operation_unknown_id", "GET", "/operations/987654321", "", 404, "not_found"),
      req("operation_id_not_a_number", "GET", "/operations/abc", "", 400, "bad_request"),
      // --- routing -------------------------------------------------------------------
      req("unknown_path", "GET", "/no/such/endpoint", "", 404, "no_route"),
      req("unknown_path_post", "POST", "/writes", "{}", 404, "no_route"),
  };

  // The detail names what is missing.
  for (auto& c : cases) {
    if (c.name == "write_missing_key" || c.name == "move_missing_key_field") c.detail_mentions = "key";
    if (c.name == "write_missing_value") c.detail_mentions = "value";
    if (c.name == "move_missing_destination") c.detail_mentions = "destination";
  }

  Case del_read = req("delete_on_read", "DELETE", "/read/x", "", 405, "method_not_allowed");
  del_read.allow = "GET";
  cases.push_back(del_read);
  Case get_write = req("get_on_write", "GET", "/write", "", 405, "method_not_allowed");
  get_write.allow = "POST";
  cases.push_back(get_write);
  Case post_stats = req("post_on_stats", "POST", "/stats", "{}", 405, "method_not_allowed");
  post_stats.allow = "GET";
  cases.push_back(post_stats);

  // --- raw requests ------------------------------------------------------------------
  cases.push_back(raw("garbage_request_line", "HELLO\r\n\r\n", 400, "bad_request"));
  cases.push_back(raw("bad_content_length",
                      "POST /write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Content-Length: abc\r\n\r\n{}",
                      400, "bad_request"));
  cases.push_back(raw("chunked_body",
                      "POST /write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                      "14\r\n{\"key\":\"c\",\"value\":1\r\n1\r\n}\r\n0\r\n\r\n",
                      411, "length_required"));
  cases.push_back(raw("chunked_raw_value",
                      "POST /write_extended?key=c HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                      "Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n"
                      "Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
                      411, "length_required"));
  {
    Case c = raw("json_body_over_max_request_size_raw",
                 json_request("/move", std::string(kMaxRequest + 1, ' ')), 413, "too_large");
    cases.push_back(c);
  }
  {
    // 5 MB raw value with --max-value-size 4MB: the whole body is sent.
    Case c = raw("raw_value_over_max_value_size",
                 raw_write_request("/write_extended?key=huge&location=disk", kMaxValue + kMaxValue / 4,
                                   std::string(kMaxValue + kMaxValue / 4, 'v')),
                 413, "too_large");
    cases.push_back(c);
  }
  {
    // 2 MB into DRAM with --max-memory 1MB: within --max-value-size, over the tier limit.
    Case c = raw("raw_write_over_max_memory",
                 raw_write_request("/write_extended?key=too-big&location=dram", 2 * kMaxMemory,
                                   binary_value(2 * kMaxMemory, 9)),
                 507, "over_limit");
    c.detail_mentions = std::to_string(kMaxMemory);
    cases.push_back(c);
  }
  {
    // Content-Length 100, 10 bytes sent, then the write side closes: the server may
    // close without answering or answer 408 after --request-timeout; it must not crash.
    Case c = raw("truncated_body_then_half_close",
                 raw_write_request("/write_extended?key=trunc&location=dram", 100, std::string(10, 't')), 408,
                 "timeout");
    c.half_close = true;
    c.closing_is_fine = true;
    cases.push_back(c);
  }
  {
    // The same without closing: the body stalls, --request-timeout 1 answers 408.
    Case c = raw("truncated_body_stalled",
                 raw_write_request("/write_extended?key=stall&location=dram", 100, std::string(10, 's')), 408,
                 "timeout");
    cases.push_back(c);
  }
  // Headers that stop half-way: 408 once --header-timeout (1 s here) has passed.
  cases.push_back(raw("partial_headers_stalled", "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n", 408, "timeout"));
  {
    Case c = raw("truncated_json_body_then_half_close",
                 "POST /write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
                 "{\"key\": \"t\",",
                 408, "timeout");
    c.half_close = true;
    c.closing_is_fine = true;
    cases.push_back(c);
  }
  return cases;
}

class BadInputTest : public ::testing::Test {
 protected:
  TempDir dir_;
  TestServer server_{dir_.path() / "disk",
                     {"--max-request-size", "8KB", "--max-value-size", "4MB", "--max-memory", "1MB",
                      "--request-timeout", "1", "--idle-timeout", "1", "--header-timeout", "1", "--log-level", "warn"}};
};

TEST_F(BadInputTest, EveryMalformedRequestGetsItsDocumentedError) {
  const int port = server_.port();

  // Values stored before the table; they must come through untouched.
  std::map<std::string, std::string> dram_raw = {{"pre:dram:0", binary_value(10000, 1)},
                                                 {"pre:dram:1", binary_value(3, 2)}};
  std::map<std::string, json> dram_json = {{"pre:json:0", json{{"a", {1, 2, 3}}, {"s", "é\n"}}},
                                           {"pre:json:1", "just a string"}};
  std::map<std::string, std::string> disk_raw = {{"pre:disk:0", binary_value(200000, 3)},
                                                 {"pre:disk:1", binary_value(1, 4)}};
  for (const auto& [k, v] : dram_raw) ASSERT_TRUE(IsOk(write_raw(port, k, v, "dram"))) << k;
  for (const auto& [k, v] : dram_json) ASSERT_TRUE(IsOk(write_json(port, k, v))) << k;
  for (const auto& [k, v] : disk_raw) ASSERT_TRUE(IsOk(write_raw(port, k, v, "disk"))) << k;
  ASSERT_TRUE(IsOk(write_json(port, "pre:disk:json", json{{"x", 1}}, "disk")));
  const json stats_before = get_stats(port);
  const std::uint64_t keys_before = stats_before.value("total_keys", 0ull);
  ASSERT_EQ(keys_before, 7u);

  const auto cases = make_cases();
  ASSERT_GE(cases.size(), 30u);
  for (const auto& c : cases) {
    SCOPED_TRACE("case " + c.name);
    HttpResponse response;
    if (!c.raw.empty()) {
      RawOutcome out = raw_exchange(port, c.raw, c.half_close, c.closing_is_fine ? 10 : 15);
      if (!out.answered) {
        if (c.closing_is_fine && !out.timed_out) continue;  // closed without an answer: allowed
        ADD_FAILURE() << (out.timed_out ? "no answer within the timeout" : "connection closed without an answer")
                      << "; received " << out.received.size() << " bytes: " << out.received.substr(0, 200);
        continue;
      }
      response = out.response;
    } else {
      try {
        response = http_request(port, c.method, c.target, c.body, c.content_type, c.headers);
      } catch (const std::exception& e) {
        ADD_FAILURE() << c.method << " " << c.target.substr(0, 80) << ": no answer: " << e.what();
        continue;
      }
    }
    EXPECT_TRUE(IsError(response, c.status, c.code)) << c.method << " " << c.target.substr(0, 80);
    if (!c.allow.empty()) {
      auto it = response.headers.find("allow");
      if (it == response.headers.end()) {
        ADD_FAILURE() << "405 without an Allow header";
      } else {
        EXPECT_EQ(it->second, c.allow);
      }
    }
    if (!c.detail_mentions.empty()) {
      EXPECT_NE(detail_of(response).find(c.detail_mentions), std::string::npos)
          << "detail should mention " << c.detail_mentions << ": " << detail_of(response);
    }
  }

  // The server survived the whole table and still holds exactly what it held.
  ASSERT_TRUE(healthy(port));
  const json stats_after = get_stats(port);
  EXPECT_EQ(stats_after.value("total_keys", 0ull), keys_before);
  EXPECT_EQ(stats_after.value("current_dram_size", 0ull), stats_before.value("current_dram_size", 0ull));
  EXPECT_EQ(stats_after.value("dram_keys", 0ull), stats_before.value("dram_keys", 0ull));
  EXPECT_EQ(stats_after.value("disk_keys", 0ull), stats_before.value("disk_keys", 0ull));
  for (const auto& name : {"too-big", "huge", "trunc", "stall", "t", "c", "r", "p", "a", "big"}) {
    EXPECT_TRUE(IsError(location_of(port, name), 404, "not_found")) << "key '" << name << "' appeared";
  }
  EXPECT_TRUE(value_files(dir_.path() / "disk").size() == 3) << "disk holds other files than the 3 values";
  EXPECT_TRUE(files_under(dir_.path() / "disk" / "tmp").empty());

  for (const auto& [k, v] : dram_raw) {
    Bytes b = fetch_bytes(port, k);
    EXPECT_EQ(b.status, 200) << k;
    EXPECT_TRUE(b.data == v) << k << " changed";
    EXPECT_EQ(b.format, "bytes") << k;
  }
  for (const auto& [k, v] : dram_json) {
    auto r = read_json(port, k);
    ASSERT_EQ(r.status, 200) << describe(r);
    EXPECT_EQ(body_json(r)["value"], v) << k;
  }
  for (const auto& [k, v] : disk_raw) {
    auto loc = body_json(location_of(port, k));
    EXPECT_EQ(loc.value("location", ""), "disk") << k;
    ASSERT_TRUE(IsOk(move_key(port, k, "dram"))) << k;
    Bytes b = fetch_bytes(port, k);
    EXPECT_EQ(b.status, 200) << k;
    EXPECT_TRUE(b.data == v) << k << " changed";
  }
  ASSERT_TRUE(IsOk(move_key(port, "pre:disk:json", "dram")));
  EXPECT_EQ(body_json(read_json(port, "pre:disk:json"))["value"], (json{{"x", 1}}));
}

// Errors on a keep-alive connection answer and leave it usable (no desync): send
// several requests back to back on one connection, bad ones in between good ones.
TEST_F(BadInputTest, ErrorsKeepTheConnectionInSync) {
  const int port = server_.port();
  ASSERT_TRUE(IsOk(write_json(port, "sync", 7)));
  std::string pipeline;
  auto get = [](const std::string& target) {
    return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  };
  pipeline += get("/read/sync");
  pipeline += "POST /write HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n"
              "[1,2,3,4]";
  pipeline += get("/read/%zz");
  pipeline += get("/nowhere");
  pipeline += "GET /read/sync HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  RawOutcome out = raw_exchange(port, pipeline, false, 15, /*read_to_eof=*/true);
  ASSERT_FALSE(out.timed_out);
  // Five responses in order: 200, 400, 400, 404, 200.
  std::vector<int> statuses;
  std::string rest = out.received;
  for (std::size_t pos = rest.find("HTTP/1.1 "); pos != std::string::npos; pos = rest.find("HTTP/1.1 ", pos + 1)) {
    statuses.push_back(std::stoi(rest.substr(pos + 9, 3)));
  }
  EXPECT_EQ(statuses, (std::vector<int>{200, 400, 400, 404, 200})) << out.received.substr(0, 2000);
  EXPECT_NE(out.received.rfind("\"value\":7"), std::string::npos);
}

}  // namespace
