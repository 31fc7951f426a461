#include "cli/token_option.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include <fmt/format.h>

namespace gswarm::cli {

void add_token_options(CLI::App& cmd, TokenArgs& args, const std::string& what) {
  cmd.add_option("--token", args.token, what + " (default: GSWARM_TOKEN)")->envname("GSWARM_TOKEN");
  cmd.add_option("--token-file", args.file,
                 "File whose first line is the token: keeps it out of the process list");
}

Result<std::string> resolve_token(const TokenArgs& args, bool warn_if_shared) {
  if (args.file.empty()) return args.token;
  // The file wins over --token and GSWARM_TOKEN.
  std::ifstream in(args.file);
  if (!in) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--token-file {}: {}", args.file, std::strerror(errno)));
  }
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
    line.pop_back();
  }
  if (line.empty()) {
    return make_error(ErrorCode::kBadRequest,
                      fmt::format("--token-file {}: the first line is empty", args.file));
  }
  struct stat st {};
  if (warn_if_shared && ::stat(args.file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    fmt::print(stderr,
               "warning: --token-file {} may be read by other users (mode {:o}); "
               "chmod 600 it\n",
               args.file, st.st_mode & 0777);
  }
  return line;
}

}  // namespace gswarm::cli
