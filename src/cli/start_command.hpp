// `gswarm data start`: parses the server options and runs the server until
// SIGINT/SIGTERM.
#pragma once

#include <CLI/CLI.hpp>

namespace gswarm::cli {

void add_start_command(CLI::App& data);

}  // namespace gswarm::cli
