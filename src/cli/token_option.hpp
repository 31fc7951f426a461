// --token / --token-file / GSWARM_TOKEN, the same for the server and the
// client commands (doc/security.md).
#pragma once

#include <memory>
#include <string>

#include <CLI/CLI.hpp>
#include <gswarm/error.hpp>

namespace gswarm::cli {

struct TokenArgs {
  std::string token;  // --token, or GSWARM_TOKEN
  std::string file;   // --token-file
};

// Adds --token (falling back to GSWARM_TOKEN) and --token-file to `cmd`.
void add_token_options(CLI::App& cmd, TokenArgs& args, const std::string& what);

// The token the options give ("" for none). A file holds the token on its first
// line; kBadRequest when it cannot be read, is empty, or when both are given.
// `warn_if_shared`: say so on stderr when others may read the file.
[[nodiscard]] Result<std::string> resolve_token(const TokenArgs& args, bool warn_if_shared);

}  // namespace gswarm::cli
