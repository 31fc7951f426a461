// Test support: runs the real `gswarm data start` binary on an ephemeral port and
// talks raw HTTP to it. Used by integration tests; never part of the product.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace gswarm::testing {

// Path of the gswarm binary under test (set by CMake as GSWARM_BINARY).
std::string gswarm_binary();

// A fresh, empty directory under the system temp dir, removed by the destructor.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// How to run a server process beyond its arguments.
struct ProcessOptions {
  std::vector<std::string> args;  // after --host, --port and --disk-path
  uid_t uid = 0;                  // run as this user and group (0: as the test does)
  std::uint64_t open_files = 0;   // soft and hard open-file limit (0: inherited)
  std::string stderr_path;        // its stderr goes to this file (empty: inherited)
};

// One server process. The constructor starts it with `--host 127.0.0.1 --port 0`,
// the given disk path and extra arguments, and waits until it prints its port.
class TestServer {
 public:
  explicit TestServer(std::filesystem::path disk_path, std::vector<std::string> extra_args = {});
  TestServer(std::filesystem::path disk_path, ProcessOptions process);
  ~TestServer();  // SIGTERM, then waits
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  pid_t pid() const { return pid_; }
  // Sends SIGTERM and returns the exit status (as from waitpid's WEXITSTATUS, or
  // 128+signal when killed).
  int stop();
  // SIGKILL, no clean-up.
  void kill9();
  bool running() const { return pid_ > 0; }

 private:
  int wait_exit();
  pid_t pid_ = -1;
  int port_ = 0;
};

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// One blocking HTTP/1.1 request on a fresh connection. `raw` requests send the
// bytes as given (for malformed-request tests) and read one response.
HttpResponse http_request(int port, const std::string& method, const std::string& target,
                          const std::string& body = "",
                          const std::string& content_type = "application/json",
                          const std::map<std::string, std::string>& headers = {});
HttpResponse http_raw(int port, const std::string& bytes);

// Percent-encodes a key for use in a path segment.
std::string url_encode(const std::string& text);

}  // namespace gswarm::testing
