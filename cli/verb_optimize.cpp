// `ncd optimize FILE --diagram NAME [--hw NAME] [-O N | --passes a,b] -o OUT.ncd
//               [--explain] [--verify | --no-verify] [--print-after-all] [--time-passes]`:
// runs a pass pipeline on a diagram and writes the result as a self-contained
// .ncd file (kernels as called diagrams with their schedules) that `check`,
// `render` and `cost` read.
//
// --verify (the default) runs the input and the output on the CPU reference
// backend at reduced sizes on the same random data and refuses to write the
// output when they differ: an optimization that changes the function is a bug
// the user must never receive silently.
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <set>
#include <sstream>

#include "common.h"
#include "ncd/hardware.h"
#include "ncd/ir_source.h"
#include "ncd/pass_manager.h"
#include "run_support.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

namespace fs = std::filesystem;

// -D overrides that shrink every base axis of the written diagrams to about
// `target` (kept a multiple of the tiles that partition it), for verification.
std::vector<std::string> reduced_sizes(ir::Program &program, ir::Diagram &root, int64_t target,
                                       const std::vector<std::string> &user_defines) {
  std::set<std::string> user;
  for (const auto &define : user_defines) user.insert(define.substr(0, define.find('=')));
  std::map<int, int64_t> tile_lcm;
  std::set<int> used;
  for (ir::Diagram *diagram : reachable_diagrams(program, root)) {
    for (const auto &value : diagram->values)
      for (int axis : value.axes) used.insert(axis);
    for (const auto &schedule : diagram->schedules)
      for (const auto &directive : schedule.directives)
        if (directive.axis >= 0 && directive.amount > 0) {
          int64_t &l = tile_lcm.emplace(directive.axis, 1).first->second;
          l = std::lcm(l, directive.amount);
        }
  }
  // -D names an axis in both files; an axis derived in any file (the written
  // file merges same-named axes of several files) cannot take one.
  std::set<std::string> derived, named;
  for (const ir::Axis &a : program.axes)
    if (a.derived) derived.insert(a.name);
  std::vector<std::string> out;
  for (int axis : used) {
    const ir::Axis &a = program.axis(axis);
    if (derived.count(a.name) || !a.size || user.count(a.name) || !named.insert(a.name).second) continue;
    int64_t size = *a.size;
    if (size <= target) continue;
    // Keep the tiles dividing the axis where that stays small (the CPU backend ignores schedules).
    int64_t step = tile_lcm.count(axis) ? tile_lcm[axis] : 1;
    int64_t reduced = step <= target ? ((target + step - 1) / step) * step : target;
    reduced = std::min(size, reduced);
    out.push_back(a.name + "=" + std::to_string(reduced));
  }
  return out;
}

}  // namespace

Handler setup_optimize(CLI::App &command) {
  struct Options {
    std::string file, diagram, hardware = "h100-sxm", output, passes;
    int level = -1;
    bool explain = false, verify = true, print_after_all = false, time_passes = false;
    int64_t verify_size = 64;
    uint64_t seed = 1;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_option("--diagram", options->diagram, "The diagram to optimize (default: the file's only diagram)")
      ->type_name("NAME");
  command.add_option("--hw", options->hardware, "Hardware profile for the cost-driven passes (default h100-sxm)")
      ->type_name("NAME|FILE");
  auto *level = command.add_option("-O", options->level, "Optimization level: 0, 1 or 2 (default 2)")
                    ->type_name("N")
                    ->check(CLI::Range(0, 2));
  auto *passes = command.add_option("--passes", options->passes, "The pipeline, e.g. 'inline,cse,dce,fuse'")
                     ->type_name("PASS,...");
  level->excludes(passes);
  command.add_option("-o,--output", options->output, "The optimized .ncd file")->required()->type_name("FILE");
  command.add_flag("--explain", options->explain, "Log what each pass did, where, and why it declined (stderr)");
  command.add_flag("--verify,!--no-verify", options->verify,
                   "Check the output against the input on the CPU backend at reduced sizes (default on)");
  command
      .add_option("--verify-size", options->verify_size,
                  "Axis size the verification shrinks larger axes to (default 64)")
      ->type_name("N")
      ->check(CLI::Range(1, 1 << 20));
  command.add_option("--seed", options->seed, "Seed of the verification's random data (default 1)")->type_name("N");
  command.add_flag("--print-after-all", options->print_after_all, "Print the IR after every pass (stderr)");
  command.add_flag("--time-passes", options->time_passes, "Print the time of every pass (stderr)");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    const ir::Diagram *selected = select_diagram(*compilation, options->diagram, true);
    if (!selected) return kUserError;
    ir::Diagram &diagram = *const_cast<ir::Diagram *>(selected);
    auto hardware = load_hardware(options->hardware, compilation->sources, compilation->diagnostics);
    if (!hardware) {
      print_diagnostics(*compilation);
      return kUserError;
    }
    Registry *registry = load_registry(options->frontend.plugins);
    if (!registry) return kUserError;
    std::vector<std::string> names;
    std::string error;
    if (!options->passes.empty()) {
      if (!parse_pipeline(options->passes, names, error)) {
        std::cerr << "ncd: error: " << error << "\n";
        return kUsageError;
      }
    } else {
      pipeline_for_level(options->level < 0 ? 2 : options->level, names);
    }
    std::vector<std::string> explain;
    PassContext context;
    context.diagnostics = &compilation->diagnostics;
    context.sources = &compilation->sources;
    context.explain = &explain;
    context.hardware = &*hardware;
    PipelineOptions pipeline;
    pipeline.print_after_all = options->print_after_all;
    pipeline.time_passes = options->time_passes;
    pipeline.log = &std::cerr;
    int status = run_pipeline(*registry, compilation->program, diagram, names, context, pipeline, error);
    print_diagnostics(*compilation);
    if (options->explain)
      for (const auto &line : explain) std::cerr << line << "\n";
    if (status != 0) {
      std::cerr << "ncd: " << (status == 3 ? "internal error: " : "error: ") << error << "\n";
      return status == 3 ? kInternalError : kUserError;
    }
    std::string pipeline_text;
    for (const auto &name : names) pipeline_text += (pipeline_text.empty() ? "" : ",") + name;
    SourceWriteOptions write;
    write.header_comment = "'" + diagram.name + "' of " + fs::path(options->file).filename().string() +
                           ", optimized by ncd optimize for " + hardware->name +
                           (pipeline_text.empty() ? " (no passes)" : " (passes: " + pipeline_text + ")");
    std::string text;
    if (!write_ncd_source(compilation->program, {&diagram}, write, text, error)) {
      std::cerr << "ncd: error: cannot write the optimized diagram as .ncd: " << error << "\n";
      return kUserError;
    }
    if (options->verify) {
      fs::path scratch = fs::temp_directory_path() / ("ncd-optimize-" + std::to_string(getpid()) + ".ncd");
      {
        std::ofstream file(scratch, std::ios::binary);
        file << text;
        if (!file) {
          std::cerr << "ncd: error: cannot write the scratch file " << scratch.string() << "\n";
          return kUserError;
        }
      }
      EquivRequest request;
      request.a = options->file;
      request.b = scratch.string();
      request.diagram = diagram.name;
      request.seed = options->seed;
      request.frontend.include_dirs = options->frontend.include_dirs;
      request.frontend.plugins = options->frontend.plugins;
      request.frontend.no_warnings = true;
      request.frontend.defines = options->frontend.defines;
      for (auto &define : reduced_sizes(compilation->program, diagram, options->verify_size, options->frontend.defines))
        request.frontend.defines.push_back(define);
      std::ostringstream figures;
      int verdict = run_equiv(request, figures);
      std::error_code ignored;
      fs::remove(scratch, ignored);
      std::string sizes;
      for (const auto &define : request.frontend.defines) sizes += " -D " + define;
      if (verdict != 0) {
        std::cerr << "ncd: error: the optimized '" << diagram.name
                  << "' differs from the input on the CPU backend (sizes:" << sizes << "); nothing written\n"
                  << figures.str();
        return kUserError;
      }
      if (options->explain) {
        std::cerr << "verify: output matches the input on the CPU backend (seed " << options->seed
                  << ", sizes:" << sizes << ")\n";
      }
    }
    if (!write_or_report(options->output, text)) return kUserError;
    // The hardware profile priced the passes' choices: a change to it must remake the output.
    std::vector<std::string> read;
    if (!hardware->path.empty()) {
      std::error_code code;
      std::string relative = relative_to_cwd(hardware->path);
      read.push_back(!relative.empty() ? relative : std::filesystem::absolute(hardware->path, code).string());
    }
    return write_dependency_file(options->frontend, *compilation, options->file, options->output, read) ? kSuccess
                                                                                                        : kUserError;
  };
}

}  // namespace ncd::cli
