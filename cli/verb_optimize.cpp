// `ncd optimize FILE --diagram NAME [--hw NAME] [-O N | --passes a,b] -o OUT.ncd
//               [--explain] [--verify | --no-verify] [--print-after-all] [--time-passes]
//               [--advisor CMD|builtin [--advisor-rounds N] [--level L] [--advisor-timeout S] [--allow-inexact]]`:
// runs a pass pipeline on a diagram and writes the result as a self-contained
// .ncd file (kernels as called diagrams with their schedules) that `check`,
// `render` and `cost` read.
//
// --verify (the default) runs the input and the output on the CPU reference
// backend at reduced sizes on the same random data and refuses to write the
// output when they differ: an optimization that changes the function is a bug
// the user must never receive silently (optimize_verify.cpp).
//
// --advisor then asks an advisor for better versions and keeps the fastest
// verified one (advisor.cpp, docs/ADVISOR.md).
#include <filesystem>
#include <iostream>

#include "advisor.h"
#include "common.h"
#include "ncd/hardware.h"
#include "ncd/ir_source.h"
#include "ncd/pass_manager.h"
#include "optimize_verify.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

namespace fs = std::filesystem;

}  // namespace

Handler setup_optimize(CLI::App &command) {
  struct Options {
    std::string file, diagram, hardware = "h100-sxm", output, passes;
    int level = -1;
    bool explain = false, verify = true, print_after_all = false, time_passes = false;
    int64_t verify_size = 64;
    uint64_t seed = 1;
    double tolerance = -1;
    FrontendOptions frontend;
    std::string advisor, advisor_level = "all";
    int advisor_rounds = 1;
    double advisor_timeout = 60;
    bool allow_inexact = false;
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
                  "Axis size the verification shrinks larger axes to, -D and derived ones included (default 64)")
      ->type_name("N")
      ->check(CLI::Range(1, 1 << 20));
  command
      .add_option("--tolerance", options->tolerance,
                  "For an inexact pipeline (quantize), or an advisor's inexact candidate (--allow-inexact): the "
                  "largest relative L2 error accepted per output (default 0.05)")
      ->type_name("E")
      ->check(CLI::NonNegativeNumber);
  command.add_option("--seed", options->seed, "Seed of the verification's random data (default 1)")->type_name("N");
  command.add_flag("--print-after-all", options->print_after_all, "Print the IR after every pass (stderr)");
  command.add_flag("--time-passes", options->time_passes, "Print the time of every pass (stderr)");
  auto *advisor = command
                      .add_option("--advisor", options->advisor,
                                  "Ask an advisor for better versions of the result and keep the fastest verified "
                                  "one: a command speaking docs/ADVISOR.md's protocol, or 'builtin'")
                      ->type_name("CMD|builtin");
  command.add_option("--advisor-rounds", options->advisor_rounds, "Rounds of proposals (default 1)")
      ->type_name("N")
      ->check(CLI::Range(1, 100))
      ->needs(advisor);
  command
      .add_option("--level", options->advisor_level,
                  "What the advisor may change: high (architecture), mid (rewrites), low (schedules), all (default)")
      ->type_name("high|mid|low|all")
      ->check(CLI::IsMember({"high", "mid", "low", "all"}))
      ->needs(advisor);
  command
      .add_option("--advisor-timeout", options->advisor_timeout,
                  "Seconds an advisor may take to answer one request before it is killed (default 60)")
      ->type_name("S")
      ->check(CLI::Range(0.001, 86400.0))
      ->needs(advisor);
  command
      .add_flag("--allow-inexact", options->allow_inexact,
                "Accept an advisor's candidate that changes the outputs (level high or all) within --tolerance")
      ->needs(advisor);
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    ir::Diagram *selected = select_diagram(*compilation, options->diagram, true);
    if (!selected) return kUserError;
    ir::Diagram &diagram = *selected;
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
    if (options->tolerance >= 0 && pipeline_is_exact(*registry, names) && !options->allow_inexact) {
      std::cerr << "ncd: error: --tolerance is for inexact pipelines (quantize=...); this one must keep the "
                   "diagram's values, and verification checks them within each dtype's rounding\n";
      return kUsageError;
    }
    std::vector<std::string> explain;
    PassContext context;
    context.diagnostics = &compilation->diagnostics;
    context.sources = &compilation->sources;
    context.explain = &explain;
    context.hardware = &*hardware;
    context.planner = registry->planner_for(*hardware);
    PipelineOptions pipeline;
    pipeline.print_after_all = options->print_after_all;
    pipeline.time_passes = options->time_passes;
    pipeline.log = &std::cerr;
    const size_t axes_before = compilation->program.axes.size();
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
      VerifyRequest request;
      request.input = options->file;
      request.output = options->output;
      request.text = &text;
      request.diagram = diagram.name;
      request.seed = options->seed;
      request.target = options->verify_size;
      request.explain = options->explain;
      request.frontend = options->frontend;
      request.inexact = !pipeline_is_exact(*registry, names);
      request.pipeline = pipeline_text;
      if (options->tolerance >= 0) request.tolerance = options->tolerance;
      if (int verdict = verify_optimized(compilation->program, diagram, axes_before, request); verdict != kSuccess)
        return verdict;
    }
    if (!options->advisor.empty()) {
      AdvisorSettings settings;
      settings.command = options->advisor;
      settings.rounds = options->advisor_rounds;
      settings.level = options->advisor_level == "high"  ? AdvisorLevel::High
                       : options->advisor_level == "mid" ? AdvisorLevel::Mid
                       : options->advisor_level == "low" ? AdvisorLevel::Low
                                                         : AdvisorLevel::All;
      settings.timeout = options->advisor_timeout;
      settings.allow_inexact = options->allow_inexact;
      if (options->tolerance >= 0) settings.tolerance = options->tolerance;
      settings.explain = options->explain;
      AdvisorContext context;
      context.input = options->file;
      context.output = options->output;
      context.diagram = diagram.name;
      context.pipeline = pipeline_text;
      context.hardware = &*hardware;
      context.registry = registry;
      context.frontend = options->frontend;
      context.verify_size = options->verify_size;
      context.seed = options->seed;
      for (size_t a = 0; a < axes_before; ++a) context.input_axes.push_back(compilation->program.axes[a].name);
      context.explain = explain;
      if (int status = run_advisor(settings, context, text); status != kSuccess) return status;
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
