// Web pages as clients (doc/security.md, "Web pages"). A page open in any
// browser on the machine can send requests to the server's loopback port: the
// "simple" cross-site requests a browser sends without asking the server first
// (a POST of text/plain or a form, with the page's Origin), and, once the page
// made a name of its own point at 127.0.0.1 (DNS rebinding), any request with
// that name as Host. Each request below is what Chromium sends in such a case.
// None of them may change or read anything; scripts and tools (no Origin, an IP
// address or localhost as Host) are served as before.
#include <string>

#include <gtest/gtest.h>

#include "integration_util.hpp"
#include "test_server.hpp"

namespace {

using namespace itest;
using gswarm::testing::TempDir;
using gswarm::testing::TestServer;

// A page on http://evil.example posting to the server, as fetch(url, {method:
// "POST", mode: "no-cors", body}) does: text/plain, the page's Origin.
std::string page_post(int port, const std::string& target, const std::string& body,
                      const std::string& content_type = "text/plain;charset=UTF-8",
                      const std::string& origin = "http://evil.example") {
  return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nsec-ch-ua-platform: \"Linux\"\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) "
         "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36\r\n"
         "Content-Type: " +
         content_type + "\r\nAccept: */*\r\nOrigin: " + origin +
         "\r\nSec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Dest: empty\r\n"
         "Referer: " + origin + "/\r\nAccept-Encoding: gzip, deflate, br\r\n\r\n" + body;
}

int status_of(const std::string& answer) {
  if (answer.rfind("HTTP/1.1 ", 0) != 0) return 0;
  return std::stoi(answer.substr(9, 3));
}

TEST(BrowserTest, ACrossSitePageCannotWriteSendOrChangeLimits) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  ASSERT_TRUE(IsOk(write_json(port, "kept", "original")));
  const auto max_memory = get_stats(port)["max_size"];
  const std::vector<std::pair<std::string, std::string>> attempts = {
      {"/write", R"({"key":"kept","value":"from a web page"})"},
      {"/write_extended", R"({"key":"new","value":"from a web page"})"},
      {"/set_max_memory/1MB", ""},
      {"/send", R"({"key":"kept","target":"127.0.0.1:1"})"},
      {"/api/v1/data", R"({"source":"key:kept","device":"dram"})"},
      {"/move", R"({"key":"kept","destination":"disk"})"},
  };
  for (const auto& [target, body] : attempts) {
    SCOPED_TRACE(target);
    for (const char* type : {"text/plain;charset=UTF-8", "application/x-www-form-urlencoded"}) {
      const std::string answer = raw_exchange(port, page_post(port, target, body, type)).received;
      EXPECT_EQ(status_of(answer), 403) << answer;
      EXPECT_NE(answer.find("--allow-origin http://evil.example"), std::string::npos) << answer;
    }
  }
  // Nothing changed.
  EXPECT_EQ(body_json(read_json(port, "kept"))["value"], "original");
  EXPECT_TRUE(IsError(location_of(port, "new"), 404, "not_found"));
  EXPECT_EQ(get_stats(port)["max_size"], max_memory);
  EXPECT_EQ(body_json(http_request(port, "GET", "/api/v1/data"))["count"], 0);
  EXPECT_EQ(get_stats(port).value("active_moves", 0) + get_stats(port).value("queued_moves", 0), 0);
  EXPECT_NE(location_of(port, "kept").body.find("\"dram\""), std::string::npos);
}

// Without an Origin (a page sandboxed to "null", or a form some browsers post
// without one) a JSON endpoint still takes only application/json, which no page
// can send to another site without the server agreeing first (CORS preflight).
TEST(BrowserTest, JsonBodiesMustSayTheyAreJson) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  for (const char* type : {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", ""}) {
    SCOPED_TRACE(type);
    auto answer = http_request(port, "POST", "/write", R"({"key":"k","value":1})", type);
    EXPECT_TRUE(IsError(answer, 415, "unsupported_media_type")) << describe(answer);
    EXPECT_NE(detail_of(answer).find("application/json"), std::string::npos) << detail_of(answer);
  }
  EXPECT_TRUE(IsError(location_of(port, "k"), 404, "not_found"));
  EXPECT_TRUE(IsOk(http_request(port, "POST", "/write", R"({"key":"k","value":1})",
                                "application/json; charset=utf-8")));
  // A sandboxed page's Origin is "null": refused like any other page.
  const std::string answer =
      raw_exchange(port, page_post(port, "/write", R"({"key":"k","value":2})", "application/json",
                                   "null"))
          .received;
  EXPECT_EQ(status_of(answer), 403) << answer;
  EXPECT_EQ(body_json(read_json(port, "k"))["value"], 1);
}

// DNS rebinding: the page's own name now resolves to 127.0.0.1, so the browser
// sends same-origin requests, with that name as Host and no Origin on a GET.
TEST(BrowserTest, ARebindingPageCannotReadValues) {
  TempDir dir;
  TestServer server(dir.path() / "disk");
  const int port = server.port();
  ASSERT_TRUE(IsOk(write_json(port, "secret", "s3cr3t")));
  for (const char* target : {"/read/secret", "/read_extended/secret", "/stats", "/locations"}) {
    SCOPED_TRACE(target);
    const std::string request = std::string("GET ") + target +
                                " HTTP/1.1\r\nHost: rebind.evil.example:" + std::to_string(port) +
                                "\r\nConnection: close\r\nUser-Agent: Mozilla/5.0\r\nAccept: "
                                "*/*\r\nSec-Fetch-Site: same-origin\r\nSec-Fetch-Mode: cors\r\n\r\n";
    const std::string answer = raw_exchange(port, request).received;
    EXPECT_EQ(status_of(answer), 403) << answer;
    EXPECT_EQ(answer.find("s3cr3t"), std::string::npos) << answer;
    EXPECT_NE(answer.find("--allow-host rebind.evil.example"), std::string::npos) << answer;
  }
  // Scripts and tools name the server by address or localhost: served.
  for (const std::string& host : std::vector<std::string>{"127.0.0.1", "localhost", "[::1]", "LOCALHOST:" + std::to_string(port)}) {
    const std::string answer =
        raw_exchange(port, "GET /read/secret HTTP/1.1\r\nHost: " + host +
                               "\r\nConnection: close\r\n\r\n")
            .received;
    EXPECT_EQ(status_of(answer), 200) << host << ": " << answer;
  }
}

// What the operator allows, it gets: a page of its own (--allow-origin) and a
// name of its own (--allow-host).
TEST(BrowserTest, AllowedOriginsAndHostsAreServed) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--allow-origin", "http://localhost:3000",
                                          "--allow-host", "gswarm.internal"});
  const int port = server.port();
  std::string answer = raw_exchange(port, page_post(port, "/write", R"({"key":"k","value":"ok"})",
                                                    "application/json", "http://localhost:3000"))
                           .received;
  EXPECT_EQ(status_of(answer), 200) << answer;
  answer = raw_exchange(port, page_post(port, "/write", R"({"key":"k","value":"no"})",
                                        "application/json", "http://localhost:3001"))
               .received;
  EXPECT_EQ(status_of(answer), 403) << answer;
  answer = raw_exchange(port, "GET /read/k HTTP/1.1\r\nHost: gswarm.internal:" + std::to_string(port) +
                                  "\r\nConnection: close\r\n\r\n")
               .received;
  EXPECT_EQ(status_of(answer), 200) << answer;
  EXPECT_NE(answer.find("\"ok\""), std::string::npos) << answer;
}

// With a token, any name is answered (a rebinding page has no token), but a
// page's Origin is still refused: a token does not make a page trusted.
TEST(BrowserTest, WithATokenTheNameIsFreeButPagesAreStillRefused) {
  TempDir dir;
  TestServer server(dir.path() / "disk", {"--token", "br0wser-t0ken"});
  const int port = server.port();
  std::string answer =
      raw_exchange(port, "GET /stats HTTP/1.1\r\nHost: gswarm.example\r\nAuthorization: Bearer "
                         "br0wser-t0ken\r\nConnection: close\r\n\r\n")
          .received;
  EXPECT_EQ(status_of(answer), 200) << answer;
  std::string page = page_post(port, "/write", R"({"key":"k","value":1})", "application/json");
  page.insert(page.find("\r\n") + 2, "Authorization: Bearer br0wser-t0ken\r\n");
  answer = raw_exchange(port, page).received;
  EXPECT_EQ(status_of(answer), 403) << answer;
}

}  // namespace
