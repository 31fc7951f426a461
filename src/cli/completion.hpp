// `gswarm completion bash`: a bash completion script made from the command tree
// itself (commands, their options, location names), so it never drifts from it.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

namespace gswarm::cli {

// The script for `app` (the whole `gswarm` tree).
std::string bash_completion(const CLI::App& app);

// Adds `completion SHELL` to `app`.
void add_completion_command(CLI::App& app);

}  // namespace gswarm::cli
