#include "cli/completion.hpp"

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace gswarm::cli {
namespace {

std::vector<const CLI::App*> commands_of(const CLI::App& app) {
  return app.get_subcommands([](const CLI::App*) { return true; });
}

// Every spelling of every option of `cmd`: "-l --location --json ...".
std::string option_words(const CLI::App& cmd) {
  std::vector<std::string> words = {"--help"};
  for (const CLI::Option* opt : cmd.get_options()) {
    for (const auto& name : opt->get_snames()) words.push_back("-" + name);
    for (const auto& name : opt->get_lnames()) words.push_back("--" + name);
  }
  return fmt::format("{}", fmt::join(words, " "));
}

constexpr const char* kLocations =
    "dram pinned_dram disk device:0 device:1 device:2 device:3 "
    "device:4 device:5 device:6 device:7";
constexpr const char* kDevices =
    "dram pinned_dram disk gpu cpu device:0 device:1 device:2 "
    "device:3 device:4 device:5 device:6 device:7";

}  // namespace

std::string bash_completion(const CLI::App& app) {
  std::string top;
  std::string data_commands;
  std::string cases;
  for (const CLI::App* cmd : commands_of(app)) {
    top += " " + cmd->get_name();
    if (cmd->get_name() != "data") continue;
    for (const CLI::App* sub : commands_of(*cmd)) {
      data_commands += " " + sub->get_name();
      cases += fmt::format("    {}) opts=\"{}\" ;;\n", sub->get_name(), option_words(*sub));
    }
  }
  return fmt::format(R"(# bash completion for gswarm: commands, options and location names.
# Made by `gswarm completion bash`; load it with
#   source <(gswarm completion bash)
# or install it as /usr/share/bash-completion/completions/gswarm.
_gswarm() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  local i word top="" sub="" positional=0
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="${{COMP_WORDS[i]}}"
    case "$word" in
      -*) ;;
      *) if [ -z "$top" ]; then top=$word
         elif [ "$top" = data ] && [ -z "$sub" ]; then sub=$word
         else positional=$((positional + 1)); fi ;;
    esac
  done
  case "$prev" in
    -l|--location) COMPREPLY=($(compgen -W "{locations}" -- "$cur")); return ;;
    -d|--device|-t|--to) COMPREPLY=($(compgen -W "{devices}" -- "$cur")); return ;;
    -f|--file|-o|--output|--tls-ca|--tls-cert|--tls-key|--token-file|--peers-file|-s|--source)
      COMPREPLY=($(compgen -f -- "$cur")); return ;;
    --disk-path|--source-root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
  esac
  if [ -z "$top" ]; then
    COMPREPLY=($(compgen -W "{top} --help --version" -- "$cur")); return
  fi
  if [ "$top" = completion ]; then COMPREPLY=($(compgen -W "bash" -- "$cur")); return; fi
  if [ "$top" != data ]; then return; fi
  if [ -z "$sub" ]; then
    COMPREPLY=($(compgen -W "{data} --help" -- "$cur")); return
  fi
  local opts=""
  case "$sub" in
{cases}  esac
  if [[ "$cur" == -* ]]; then
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
  elif [ "$sub" = move-data ] && [ "$positional" -eq 1 ]; then
    COMPREPLY=($(compgen -W "{locations}" -- "$cur"))
  fi
}}
complete -F _gswarm gswarm
)",
                     fmt::arg("locations", kLocations), fmt::arg("devices", kDevices),
                     fmt::arg("top", top.empty() ? "" : top.substr(1)),
                     fmt::arg("data", data_commands.empty() ? "" : data_commands.substr(1)),
                     fmt::arg("cases", cases));
}

void add_completion_command(CLI::App& app) {
  auto shell = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "completion", "Print a shell completion script: source <(gswarm completion bash)");
  cmd->add_option("SHELL", *shell, "Shell: bash")->required()->check(CLI::IsMember({"bash"}));
  // The option's storage lives as long as the command: the callback holds it.
  cmd->callback([&app, shell] { std::fputs(bash_completion(app).c_str(), stdout); });
}

}  // namespace gswarm::cli
