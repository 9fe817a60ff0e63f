// `ncd show --ast|--ir|--json|--source FILE [--diagram NAME] [--passes a,b,c] [--ranks]`:
// the program as the compiler sees it. --json is the versioned interface for
// external tools; --source writes the IR back as a self-contained .ncd file (a
// debugging aid for passes and the source writer). --passes runs passes from
// the plugin registry first, in order, on the shown diagram(s), with the IR
// verifier after each. --ir --ranks shows a sharded diagram's rank program
// (ncd/rank_program.h) instead: each copy, then the reductions between ranks.
#include <iostream>

#include "common.h"
#include "ncd/format.h"
#include "ncd/ir_print.h"
#include "ncd/ir_source.h"
#include "ncd/pass_manager.h"
#include "ncd/rank_program.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

// Runs `names` through the pass manager on `only` (or on every diagram of the
// root file), with the IR verifier after each pass.
int run_passes(Compilation &compilation, const ir::Diagram *only, const std::vector<std::string> &names,
               const std::vector<std::string> &plugins) {
  Registry *registry = load_registry(plugins);
  if (!registry) return kUserError;
  PassContext context;
  context.diagnostics = &compilation.diagnostics;
  context.sources = &compilation.sources;
  PipelineOptions options;
  for (ir::Diagram *diagram : compilation.program.editable_root_diagrams()) {
    if (only && diagram != only) continue;
    std::string error;
    int status = run_pipeline(*registry, compilation.program, *diagram, names, context,
                              options, error);
    print_diagnostics(compilation);
    if (status != 0) {
      std::cerr << "ncd: " << (status == 3 ? "internal error: " : "error: ") << error << "\n";
      return status == 3 ? kInternalError : kUserError;
    }
  }
  return kSuccess;
}

// The rank program of `diagram` as text: every copy (the root's first), each with the axes it uses,
// then the reductions; or "" after reporting why there is none.
std::string rank_program_text(const Compilation &compilation, const ir::Diagram &diagram) {
  if (diagram.shards.empty()) {
    std::cerr << "ncd: error: diagram '" << diagram.name << "' has no shard lines, so it has no rank program\n";
    return "";
  }
  std::string why;
  std::optional<RankProgram> ranks =
      build_rank_program(compilation.program, diagram, plan_sharding(compilation.program, diagram), why);
  if (!ranks) {
    std::cerr << "ncd: error: diagram '" << diagram.name << "' has no rank program: " << why << "\n";
    return "";
  }
  const ir::Program &program = ranks->program;
  std::string text = "# the rank program of " + diagram.name + ", one of " + std::to_string(ranks->devices) +
                     " ranks (docs/SHARDING.md, \"Rank programs\")\n";
  std::vector<const ir::Diagram *> order{program.diagrams.at(static_cast<size_t>(ranks->root)).get()};
  for (const auto &copy : program.diagrams)
    if (copy.get() != order.front()) order.push_back(copy.get());
  for (const ir::Diagram *copy : order) text += "\n" + print_ir(program, compilation.sources, copy);
  text += "\nreductions across the ranks, in place:\n";
  for (const RankProgram::Reduction &r : ranks->reductions)
    text += "  all-reduce (" + std::string(ops::info(r.fn).name) + ") of " + (r.diagram->value(r.value).name) + " in " +
            r.site + (r.op->location.valid() ? "  @" + compilation.sources.describe(r.op->location) : "") + "\n";
  if (ranks->reductions.empty()) text += "  none\n";
  return text;
}

}  // namespace

Handler setup_show(CLI::App &command) {
  struct Options {
    std::string file;
    bool ast = false, ir = false, json = false, source = false, locations = false, ranks = false;
    std::string diagram;
    std::string output = "-";
    std::vector<std::string> passes;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  auto *group = command.add_option_group("form", "What to show (exactly one)");
  group->add_flag("--ast", options->ast, "The syntax tree of the file");
  group->add_flag("--ir", options->ir, "The core IR as text");
  group->add_flag("--json", options->json, "The core IR as JSON (schema: docs/IR_JSON.md)");
  group->add_flag("--source", options->source, "The core IR written back as a self-contained .ncd file");
  group->require_option(1);
  command.add_flag("--locations", options->locations, "With --ast: print source locations");
  command.add_flag("--ranks", options->ranks,
                   "With --ir: the rank program of the diagram (its shard lines), each rank's IR and the "
                   "reductions between ranks (docs/SHARDING.md)");
  command.add_option("--diagram", options->diagram, "Show only this diagram")->type_name("NAME");
  command.add_option("-o,--output", options->output, "Write here instead of standard output")->type_name("FILE");
  command
      .add_option("--passes", options->passes,
                  "With --ir, --json or --source: run these passes (plugins) first, in order")
      ->delimiter(',')
      ->type_name("PASS,...");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    if (options->ranks && (!options->ir || !options->passes.empty())) {
      std::cerr << "ncd: error: --ranks shows a rank program's IR: use it with --ir, without --passes\n";
      return kUsageError;
    }
    if (options->ast && !options->passes.empty()) {
      std::cerr << "ncd: error: --passes works on the IR; use it with --ir, --json or --source\n";
      return kUsageError;
    }
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    std::string text;
    if (options->ast) {
      text = ast::dump(*compilation->modules[0].ast, options->locations);
    } else {
      const ir::Diagram *only = nullptr;
      if (!options->diagram.empty()) {
        only = select_diagram(*compilation, options->diagram, true);
        if (!only) return kUserError;
      }
      if (!options->passes.empty()) {
        int status = run_passes(*compilation, only, options->passes, options->frontend.plugins);
        if (status != kSuccess) return status;
      }
      if (options->ranks) {
        if (!only) only = select_diagram(*compilation, options->diagram, true);
        if (!only) return kUserError;
        text = rank_program_text(*compilation, *only);
        if (text.empty()) return kUserError;
      } else if (options->source) {
        std::vector<const ir::Diagram *> roots =
            only ? std::vector<const ir::Diagram *>{only} : compilation->program.root_diagrams();
        SourceWriteOptions write_options{"Written from the core IR by `ncd show --source`."};
        std::string error;
        if (!write_ncd_source(compilation->program, roots, write_options, text, error)) {
          std::cerr << "ncd: error: cannot write the IR as source: " << error << "\n";
          return kUserError;
        }
      } else {
        text = options->json ? ir_to_json(compilation->program, compilation->sources, only)
                             : print_ir(compilation->program, compilation->sources, only);
      }
    }
    if (!write_or_report(options->output, text)) return kUserError;
    if (!write_dependency_file(options->frontend, *compilation, options->file, options->output)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
