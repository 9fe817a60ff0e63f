// What the CLI verbs share: front-end options (-I, -D, -MD/-MF/-MT), loading a
// program with its diagnostics printed, choosing a diagram, writing outputs.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "ncd/frontend.h"
#include "ncd/registry.h"

namespace ncd::cli {

// Exit codes (firm): success, user error, usage error, internal error.
enum ExitCode { kSuccess = 0, kUserError = 1, kUsageError = 2, kInternalError = 3 };

struct FrontendOptions {
  std::vector<std::string> include_dirs;
  std::vector<std::string> defines;
  bool dependency_file = false;  // -MD
  std::string dependency_path;   // -MF
  std::string dependency_target; // -MT
  bool no_warnings = false;
  bool warnings_as_errors = false;
  std::vector<std::string> plugins;  // --plugin FILE
};

// The plugin registry, loaded once (search path plus --plugin files); prints
// every load error and returns nullptr when any plugin failed to load.
Registry *load_registry(const std::vector<std::string> &extra_plugins);

void add_frontend_options(CLI::App &app, FrontendOptions &options);

// Whether diagnostics may be coloured: a terminal, and NO_COLOR unset.
bool use_color();

// Compiles `path`; prints diagnostics; returns nullptr (after printing) on errors.
std::unique_ptr<Compilation> load_program(const std::string &path, const FrontendOptions &options);

// Prints and clears what the compilation collected.
void print_diagnostics(Compilation &compilation);

// Writes the -MD dependency file when asked; `output` is the verb's -o (or "");
// `extra` lists files read besides the .ncd sources (a hardware profile).
bool write_dependency_file(const FrontendOptions &options, const Compilation &compilation,
                           const std::string &input, const std::string &output,
                           const std::vector<std::string> &extra = {});

// The diagram named `name` in the root file, or the root file's only/first
// diagram when `name` is empty; prints an error and returns nullptr when absent.
ir::Diagram *select_diagram(Compilation &compilation, const std::string &name, bool required);

// Writes `content` atomically to `path` ("-": stdout); prints an error on failure.
bool write_or_report(const std::string &path, const std::string &content);

// --devices N for `verb` (cost, run): a one-dimensional mesh takes N devices
// (N must divide every axis it shards); a larger mesh must already have N; 0
// keeps the diagram's own. Prints the error and returns false otherwise.
bool apply_devices(const std::string &verb, ir::Diagram &diagram, const ir::Program &program, int64_t devices);

}  // namespace ncd::cli
