// The `gswarm data` commands that talk to a running server through gswarm::Client
// (KV storage, the data pool, cluster and server commands; `gswarm data --help`
// lists them by group). Each takes --host (default GSWARM_HOST, else
// localhost:9015), --port, --json (the answer as JSON, a failure as
// {"detail", "code"}), --token and --tls-ca. On failure a command prints one
// line "error: ..." on stderr and exits 1; usage mistakes exit 2.
#pragma once

#include <CLI/CLI.hpp>

namespace gswarm::cli {

void add_data_commands(CLI::App& data);

}  // namespace gswarm::cli
