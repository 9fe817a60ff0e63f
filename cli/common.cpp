// Shared CLI helpers.
#include "common.h"

#include <unistd.h>

#include <cstdlib>
#include <iostream>

#include "ncd/output.h"
#include "ncd/plugin_loader.h"
#include "ncd/sharding.h"

namespace ncd::cli {

void add_frontend_options(CLI::App &app, FrontendOptions &options) {
  // Repeatable options take one value per occurrence, so they never swallow the file names after them.
  app.add_option("-I", options.include_dirs, "Add a folder to the import search path")
      ->type_name("DIR")
      ->allow_extra_args(false);
  app.add_option("-D", options.defines, "Override an axis size (-D seq=8192) or every file's default dtype (-D dtype=f32)")
      ->type_name("AXIS=N")
      ->allow_extra_args(false);
  // -MD, -MF and -MT are also accepted with one dash, as gcc spells them (see main.cpp).
  app.add_flag("--MD", options.dependency_file, "Write a Makefile dependency file of the imported .ncd files");
  app.add_option("--MF", options.dependency_path, "Dependency file path (default: OUTPUT.d)")->type_name("FILE");
  app.add_option("--MT", options.dependency_target, "Target named in the dependency file")->type_name("TARGET");
  app.add_option("--plugin", options.plugins, "Load this plugin (a shared library) too")
      ->type_name("FILE")
      ->allow_extra_args(false);
  app.add_flag("--no-warnings,-w", options.no_warnings, "Do not print warnings");
  app.add_flag("--Werror", options.warnings_as_errors, "Treat warnings as errors");
}

bool use_color() {
  const char *no_color = std::getenv("NO_COLOR");
  if (no_color && *no_color) return false;
  return isatty(STDERR_FILENO) != 0;
}

void print_diagnostics(Compilation &compilation) { compilation.diagnostics.flush(std::cerr, use_color()); }

Registry *load_registry(const std::vector<std::string> &extra_plugins) {
  static std::unique_ptr<Registry> registry;
  static bool failed = false;
  if (registry || failed) return failed ? nullptr : registry.get();
  auto loaded = std::make_unique<Registry>();
  std::vector<std::string> errors;
  if (!load_plugins(*loaded, extra_plugins, errors)) {
    for (const auto &error : errors) std::cerr << "ncd: error: " << error << "\n";
    failed = true;
    return nullptr;
  }
  registry = std::move(loaded);
  return registry.get();
}

std::unique_ptr<Compilation> load_program(const std::string &path, const FrontendOptions &options) {
  // Plugins named on the command line are loaded (and their errors reported) by every verb.
  if (!options.plugins.empty() && !load_registry(options.plugins)) return nullptr;
  auto compilation = std::make_unique<Compilation>();
  compilation->diagnostics.set_warnings_enabled(!options.no_warnings);
  CompileOptions compile_options;
  compile_options.include_dirs = options.include_dirs;
  compile_options.defines = options.defines;
  bool ok = compile_file(path, compile_options, *compilation);
  bool warnings_fail = ok && options.warnings_as_errors && compilation->diagnostics.warning_count() > 0;
  print_diagnostics(*compilation);
  if (warnings_fail) {
    std::cerr << "ncd: error: " << path << ": " << compilation->diagnostics.warning_count()
              << " warning(s) treated as errors (--Werror)\n";
    ok = false;
  }
  if (!ok) return nullptr;
  return compilation;
}

bool write_dependency_file(const FrontendOptions &options, const Compilation &compilation,
                           const std::string &input, const std::string &output,
                           const std::vector<std::string> &extra) {
  if (!options.dependency_file && options.dependency_path.empty()) return true;
  std::string target = !options.dependency_target.empty() ? options.dependency_target
                       : (!output.empty() && output != "-") ? output
                                                            : input;
  std::string path = !options.dependency_path.empty() ? options.dependency_path : target + ".d";
  std::vector<std::string> dependencies = compilation.dependencies();
  dependencies.insert(dependencies.end(), extra.begin(), extra.end());
  return write_or_report(path, make_dependency_file(target, dependencies));
}

ir::Diagram *select_diagram(Compilation &compilation, const std::string &name, bool required) {
  auto diagrams = compilation.program.editable_root_diagrams();
  if (name.empty()) {
    if (!required) return nullptr;
    if (diagrams.size() == 1) return diagrams[0];
    std::string names;
    for (const auto *diagram : diagrams) names += (names.empty() ? "" : ", ") + diagram->name;
    std::cerr << "ncd: error: " << compilation.modules[0].path << " defines "
              << (diagrams.empty() ? "no diagrams" : "several diagrams (" + names + ")") << "; choose one with --diagram NAME\n";
    return nullptr;
  }
  std::vector<std::string> names;
  for (auto *diagram : diagrams) {
    if (diagram->name == name) return diagram;
    names.push_back(diagram->name);
  }
  std::cerr << "ncd: error: " << compilation.modules[0].path << " has no diagram '" << name << "'"
            << did_you_mean(name, names) << "\n";
  return nullptr;
}

bool write_or_report(const std::string &path, const std::string &content) {
  std::string error;
  if (write_output(path, content, error)) return true;
  std::cerr << "ncd: error: " << error << "\n";
  return false;
}

// --devices N: a one-dimensional mesh takes N devices (N must divide every
// axis it shards); a larger mesh must already have N. A diagram without shards
// cannot be spread: it says how to shard it.
bool apply_devices(const std::string &verb, ir::Diagram &diagram, const ir::Program &program, int64_t devices) {
  if (diagram.shards.empty()) {
    if (devices <= 1) return true;
    std::cerr << "ncd " << verb << ": error: --devices " << devices << ": diagram '" << diagram.name
              << "' has no `shard` directive, so there is nothing to spread; add one to a schedule, e.g. "
                 "`schedule "
              << diagram.name << " { shard heads over " << devices << " }` (docs/SHARDING.md)\n";
    return false;
  }
  if (devices == 0) return true;
  if (devices < 1) {
    std::cerr << "ncd " << verb << ": error: --devices " << devices << ": at least 1 device\n";
    return false;
  }
  int64_t product = 1;
  for (const auto &shard : diagram.shards) product *= shard.devices;
  if (diagram.shards.size() > 1) {
    if (product == devices) return true;
    std::cerr << "ncd " << verb << ": error: --devices " << devices << ": the mesh of '" << diagram.name << "' has " << product
              << " devices in " << diagram.shards.size() << " dimensions; change its `shard` lines instead\n";
    return false;
  }
  if (std::string why = shard_refusal(program, diagram.shards[0], devices); !why.empty()) {
    std::cerr << "ncd " << verb << ": error: --devices " << devices << ": " << why << ", which the mesh shards\n";
    return false;
  }
  diagram.shards[0].devices = devices;
  return true;
}

}  // namespace ncd::cli
