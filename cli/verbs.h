// The CLI's verbs: each is one row of the table in main.cpp, with a function
// that declares its options on a CLI11 subcommand and returns the handler
// that runs it (called after parsing; returns the exit code).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>

namespace ncd::cli {

using Handler = std::function<int()>;
using Setup = Handler (*)(CLI::App &command);

struct Verb {
  const char *name;
  const char *help;
  Setup setup;
};

Handler setup_check(CLI::App &command);
Handler setup_fmt(CLI::App &command);
Handler setup_show(CLI::App &command);
Handler setup_render(CLI::App &command);
Handler setup_plugins(CLI::App &command);
Handler setup_cost(CLI::App &command);
Handler setup_run(CLI::App &command);
Handler setup_equiv(CLI::App &command);
Handler setup_optimize(CLI::App &command);
Handler setup_grad(CLI::App &command);
Handler setup_emit(CLI::App &command);
Handler setup_import(CLI::App &command);
Handler setup_merge(CLI::App &command);

}  // namespace ncd::cli
