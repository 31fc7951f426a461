// gswarm: the command-line front end. `gswarm data start` runs the server; the
// other `gswarm data` commands talk to a running one (see data_commands.hpp).
#include <cstdio>
#include <exception>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/data_commands.hpp"
#include "cli/start_command.hpp"

namespace {

// Usage errors exit 2, as with most Unix tools; CLI11's own codes are 100 and up.
constexpr int kUsageExitCode = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gswarm: a data server for GPU clusters", "gswarm"};
  app.require_subcommand(1);
  // Every failure is one line on stderr, usage errors included.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "error: " + std::string(e.what()) + " (run with --help for usage)\n";
  });
  CLI::App* data = app.add_subcommand("data", "Data server: KV storage and the data pool (run the server, write, read, move, create chunks)");
  data->require_subcommand(1);
  gswarm::cli::add_start_command(*data);
  gswarm::cli::add_data_commands(*data);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    bool usage_error = code != 0 && e.get_name() != "RuntimeError";
    return usage_error ? kUsageExitCode : code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
