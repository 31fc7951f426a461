// gswarm: the command-line front end. `gswarm data start` runs the server; the
// other `gswarm data` commands talk to a running one (see data_commands.hpp).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include "cli/completion.hpp"
#include "cli/data_commands.hpp"
#include "cli/start_command.hpp"

namespace {

// Usage errors exit 2, as with most Unix tools; CLI11's own codes are 100 and up.
constexpr int kUsageExitCode = 2;
constexpr const char* kVersion = "gswarm " GSWARM_VERSION;

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The command `typed` most likely meant, when one is near enough.
std::optional<std::string> nearest(std::string_view typed, const CLI::App& parent) {
  std::optional<std::string> best;
  std::size_t best_distance = std::max<std::size_t>(2, typed.size() / 3) + 1;
  for (const CLI::App* sub : parent.get_subcommands([](const CLI::App*) { return true; })) {
    const std::string& name = sub->get_name();
    const std::size_t d =
        name.starts_with(typed) && typed.size() >= 3 ? 1 : edit_distance(typed, name);
    if (d < best_distance) {
      best = name;
      best_distance = d;
    }
  }
  return best;
}

bool is_command(std::string_view name, const CLI::App& parent) {
  for (const CLI::App* sub : parent.get_subcommands([](const CLI::App*) { return true; })) {
    if (sub->check_name(std::string(name))) return true;
  }
  return false;
}

// Before CLI11 parses: an unknown command is named with the nearest one, and a
// missing one gets the list of commands (not "A subcommand is required").
std::optional<int> check_commands(CLI::App& app, CLI::App& data, int argc, char** argv) {
  CLI::App* parent = &app;
  std::string path = "gswarm";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h" || arg == "--version") return std::nullopt;
    if (arg.starts_with('-')) continue;
    if (!is_command(arg, *parent)) {
      auto near = nearest(arg, *parent);
      std::fprintf(stderr, "error: unknown command '%s'%s (run %s --help for the commands)\n",
                   argv[i], near ? fmt::format("; did you mean '{}'?", *near).c_str() : "",
                   path.c_str());
      return kUsageExitCode;
    }
    if (parent != &app || arg != "data")
      return std::nullopt;  // a command of its own: CLI11 goes on
    parent = &data;
    path = "gswarm data";
  }
  std::fprintf(stderr, "error: %s needs a command\n\n%s", path.c_str(), parent->help().c_str());
  return kUsageExitCode;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"gswarm: a data server for GPU clusters", "gswarm"};
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersion, "Print the version and exit");
  // Every failure is one line on stderr, usage errors included.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return "error: " + std::string(e.what()) + " (run with --help for usage)\n";
  });
  CLI::App* data = app.add_subcommand(
      "data",
      "Data server: KV storage and the data pool (run the server, write, read, move, "
      "create chunks)");
  data->require_subcommand(1);
  // KV storage first in `gswarm data --help`: the groups show in the order they appear.
  gswarm::cli::add_data_commands(*data);
  gswarm::cli::add_start_command(*data);
  app.add_subcommand("version", "Print the version")->callback([] { std::puts(kVersion); });
  gswarm::cli::add_completion_command(app);
  if (auto code = check_commands(app, *data, argc, argv)) return *code;
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
