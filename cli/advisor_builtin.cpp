// The built-in advisor (`ncd optimize --advisor builtin`, docs/ADVISOR.md):
// proposals found by bounded search, with no model behind them, refereed by
// the same loop as any external advisor's (advisor.cpp).
//
//   mid: the input optimized by the -O2 pipeline with one pass left out
//        (no online-softmax streaming, no contraction reordering, no scalar
//        simplification), or with the second or third cheapest contraction
//        orders by FLOPs (`contract-order=N`): the greedy passes decide
//        locally, and another choice changes the fusion groupings and stream
//        choices downstream.
//   low: coordinate descent over every group and stream size of every
//        schedule, among the divisors of the axis up to 1024 that are
//        multiples of 16 (or the whole axis when shorter; the tile pass
//        tries multiples of 16 up to 256 rows and chunks up to 128), each
//        priced as the whole diagram on the profile.
//   high: the catalogue of algebraic rewrites (advisor_catalogue.cpp), each
//        with the conversion of its params.
//
// Preconditions: `source` is a self-contained .ncd text holding the diagram
// named by the context; the context's hardware and registry are loaded.
#include <algorithm>
#include <cstdio>
#include <set>

#include "advisor.h"
#include "ncd/cost.h"
#include "ncd/frontend.h"
#include "ncd/ir_source.h"
#include "ncd/pass_manager.h"

namespace ncd::cli {
namespace {

constexpr int64_t kLargestTile = 1024;
constexpr int64_t kFragment = 16;
constexpr int kSweeps = 3;
constexpr int kMaxPricings = 4000;

ir::Diagram *find_diagram(ir::Program &program, const std::string &name) {
  for (auto &diagram : program.diagrams)
    if (diagram->name == name) return diagram.get();
  return nullptr;
}

std::optional<double> priced_time(const ir::Program &program, const ir::Diagram &diagram,
                                  const AdvisorContext &context) {
  CostOptions options;
  options.planner = context.registry->planner_for(*context.hardware);
  options.search_tiles = false;
  auto report = price(program, diagram, *context.hardware, options);
  if (!report) return std::nullopt;
  return report->kernel ? report->kernel->time : report->total.time;
}

// Variants of the -O2 pipeline, each run on the input: one pass left out, or
// the second and third cheapest contraction orders by FLOPs.
void pipeline_candidates(const AdvisorContext &context, std::vector<AdvisorCandidate> &out) {
  std::vector<std::string> full;
  pipeline_for_level(2, full);
  std::vector<std::pair<std::vector<std::string>, std::string>> variants;
  for (const char *left_out : {"stream", "contract-order", "simplify"}) {
    std::vector<std::string> names;
    for (const std::string &name : full)
      if (name != left_out) names.push_back(name);
    variants.push_back({names, std::string("the -O2 pipeline without ") + left_out});
  }
  for (const char *rank : {"2", "3"}) {
    std::vector<std::string> names = full;
    for (std::string &name : names)
      if (name == "contract-order") name += std::string("=") + rank;
    variants.push_back({names, std::string("the -O2 pipeline with contract-order=") + rank + " (the " +
                                   (rank[0] == '2' ? "second" : "third") + " fewest-FLOP contraction order)"});
  }
  // The -O2 pipeline itself first: a variant that gives the same text (a
  // contraction order where there is no product of three tensors) is not proposed.
  variants.insert(variants.begin(), {full, ""});
  std::set<std::string> seen;
  for (const auto &[names, rationale] : variants) {
    Compilation compilation;
    compilation.diagnostics.set_warnings_enabled(false);
    if (!compile_file(context.input, advisor_compile_options(context), compilation)) continue;
    ir::Diagram *diagram = find_diagram(compilation.program, context.diagram);
    std::string text;
    if (!diagram ||
        !optimize_and_write(context, compilation, *diagram, names, "a candidate of the built-in advisor", text))
      continue;
    if (!seen.insert(text).second || rationale.empty()) continue;
    out.push_back({text, "", rationale, {}, ""});
  }
}

// Every group and stream size of every schedule, one at a time, among the
// divisors of its axis; the whole diagram's priced time decides.
void tile_candidate(const AdvisorContext &context, const std::string &source, std::vector<AdvisorCandidate> &out) {
  Compilation compilation;
  compilation.diagnostics.set_warnings_enabled(false);
  if (!compile_text("builtin.ncd", source, advisor_compile_options(context), compilation)) return;
  ir::Program &program = compilation.program;
  ir::Diagram *root = find_diagram(program, context.diagram);
  if (!root) return;
  auto start = priced_time(program, *root, context);
  if (!start) return;
  double best = *start;
  int pricings = 0;
  struct Change {
    std::string diagram, what, axis;
    int64_t from, to;
  };
  std::vector<Change> changes;
  for (int sweep = 0; sweep < kSweeps && pricings < kMaxPricings; ++sweep) {
    bool improved = false;
    for (auto &diagram : program.diagrams)
      for (ir::Schedule &schedule : diagram->schedules)
        for (ir::ScheduleDirective &directive : schedule.directives) {
          if (directive.kind == ir::ScheduleDirective::Kind::Level || directive.axis < 0) continue;
          const ir::Axis &axis = program.axis(directive.axis);
          if (!axis.size) continue;
          const int64_t size = *axis.size, original = directive.amount;
          int64_t chosen = original;
          for (int64_t tile = 1; tile <= std::min(size, kLargestTile) && pricings < kMaxPricings; ++tile) {
            // Multiples of the tensor cores' fragment edge (or the whole of a short axis): the
            // model prices a tile of a few rows, but no backend builds one well.
            if (size % tile != 0 || tile == original || (tile % kFragment != 0 && tile != size)) continue;
            directive.amount = tile;
            ++pricings;
            auto time = priced_time(program, *root, context);
            // A strict gain beyond rounding noise: ties keep the greedy choice.
            if (time && *time < best * (1 - 1e-9)) {
              best = *time;
              chosen = tile;
            }
          }
          directive.amount = chosen;
          if (chosen != original) {
            improved = true;
            changes.push_back({diagram->name, directive.kind == ir::ScheduleDirective::Kind::Group ? "group" : "stream",
                               axis.name, original, chosen});
          }
        }
    if (!improved) break;
  }
  if (changes.empty()) return;
  std::string rationale = "tile search (" + std::to_string(pricings) + " pricings):";
  for (size_t i = 0; i < changes.size(); ++i)
    rationale += (i ? ", " : " ") + changes[i].diagram + " " + changes[i].what + " " + changes[i].axis + " " +
                 std::to_string(changes[i].from) + "->" + std::to_string(changes[i].to);
  rationale += "; " + format_micros(*start) + " -> " + format_micros(best);
  std::string text, error;
  SourceWriteOptions write;
  write.header_comment = "tile search";
  if (!write_ncd_source(program, {root}, write, text, error)) return;
  out.push_back({text, "", rationale, {}, ""});
}

}  // namespace

CompileOptions advisor_compile_options(const AdvisorContext &context) {
  CompileOptions options;
  options.include_dirs = context.frontend.include_dirs;
  options.defines = context.frontend.defines;
  return options;
}

bool optimize_and_write(const AdvisorContext &context, Compilation &compilation, ir::Diagram &diagram,
                        const std::vector<std::string> &pipeline, const std::string &header, std::string &text) {
  std::vector<std::string> explain;
  PassContext passes;
  passes.diagnostics = &compilation.diagnostics;
  passes.sources = &compilation.sources;
  passes.explain = &explain;
  passes.hardware = context.hardware;
  passes.planner = context.registry->planner_for(*context.hardware);
  PipelineOptions options;
  std::string error;
  if (run_pipeline(*context.registry, compilation.program, diagram, pipeline, passes, options, error) != 0)
    return false;
  SourceWriteOptions write;
  write.header_comment = header;
  return write_ncd_source(compilation.program, {&diagram}, write, text, error);
}

std::vector<AdvisorCandidate> builtin_candidates(const AdvisorContext &context, AdvisorLevel level,
                                                 const std::string &source) {
  std::vector<AdvisorCandidate> out;
  if (level == AdvisorLevel::High || level == AdvisorLevel::All) {
    std::vector<std::string> pipeline;
    pipeline_for_level(2, pipeline);
    catalogue_candidates(context, pipeline, out);
  }
  if (level == AdvisorLevel::Mid || level == AdvisorLevel::All) pipeline_candidates(context, out);
  if (level == AdvisorLevel::Low || level == AdvisorLevel::All) tile_candidate(context, source, out);
  return out;
}

}  // namespace ncd::cli
