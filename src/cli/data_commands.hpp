// The `gswarm data` commands that talk to a running server through gswarm::Client:
// write, read, release, move-data, get-location, list-locations, stats, send and
// send-gpu. Each takes --host (default localhost:9015) and --json (print the
// server's JSON answer instead of the human-readable text). On failure a command
// prints one line "error: ..." on stderr and exits 1.
#pragma once

#include <CLI/CLI.hpp>

namespace gswarm::cli {

void add_data_commands(CLI::App& data);

}  // namespace gswarm::cli
