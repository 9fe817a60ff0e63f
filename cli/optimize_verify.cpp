// `ncd optimize --verify`: compiling the input and the optimized text at the
// sizes ncd/equiv.h plans, running both on one draw of random data, and
// telling the user what ran: whatever could not shrink is named on stderr, so
// nobody believes a check ran at sizes it did not run at.
#include "optimize_verify.h"

#include <algorithm>
#include <cmath>
#include <iostream>
#include <map>
#include <numeric>
#include <optional>
#include <set>
#include <sstream>

#include "ncd/equiv.h"
#include "ncd/frontend.h"
#include "ncd/pass_manager.h"
#include "run_support.h"

namespace ncd::cli {
namespace {

std::string sizes_text(const SizePlan &plan) {
  std::string out;
  for (const auto &define : plan.defines) out += " -D " + define;
  if (out.empty()) out = " as given";
  if (!plan.derived.empty()) {
    out += "; derived:";
    for (size_t i = 0; i < plan.derived.size(); ++i) out += (i ? ", " : " ") + plan.derived[i];
  }
  return out;
}

// Compiles without printing: a failure is reported by the caller as one line.
std::unique_ptr<Compilation> compile_quietly(const std::string &path, const std::string *text,
                                             const FrontendOptions &frontend, const std::vector<std::string> &defines,
                                             std::string &error) {
  auto compilation = std::make_unique<Compilation>();
  compilation->diagnostics.set_warnings_enabled(false);
  CompileOptions options;
  options.include_dirs = frontend.include_dirs;
  options.defines = defines;
  bool ok = text ? compile_text(path, *text, options, *compilation) : compile_file(path, options, *compilation);
  if (ok) return compilation;
  for (const Diagnostic &diagnostic : compilation->diagnostics.all())
    if (diagnostic.severity == Severity::Error) {
      error = diagnostic.message;
      break;
    }
  return nullptr;
}

}  // namespace

int verify_optimized(ir::Program &optimized, ir::Diagram &root, size_t first_new_axis, const VerifyRequest &request) {
  SizePlan plan = plan_sizes(optimized, root, request.target, request.frontend.defines, first_new_axis);
  std::unique_ptr<Compilation> compilations[2];
  std::string error;
  auto compile_both = [&](const std::vector<std::string> &defines) {
    compilations[0] = compile_quietly(request.input, nullptr, request.frontend, defines, error);
    compilations[1] = compilations[0] ? compile_quietly(request.output, request.text, request.frontend, defines, error)
                                      : nullptr;
    return compilations[1] != nullptr;
  };
  if (!compile_both(plan.defines)) {
    // A relation the planner does not model (e.g. two axes that must stay of
    // equal size): verify at the sizes given, and say so.
    std::cerr << "ncd: note: verification cannot shrink the axes (" << error << " with" << sizes_text(plan)
              << "); it runs at the sizes given\n";
    SizePlan given;
    given.defines = request.frontend.defines;
    plan = given;
    if (!compile_both(plan.defines)) {
      std::cerr << "ncd: error: verification cannot compile the optimized '" << request.diagram << "': " << error
                << "; nothing written\n";
      return kUserError;
    }
  }
  // An axis left at full size is always named; one that shrank, but not to
  // --verify-size (its tiles or relations stop it), only with --explain.
  for (const std::string &kept : plan.kept)
    std::cerr << "ncd: note: verification keeps " << kept << " (larger than --verify-size " << request.target
              << ")\n";
  if (request.explain) {
    for (const std::string &above : plan.above) std::cerr << "verify: " << above << "\n";
    if (!plan.untiled.empty()) {
      std::cerr << "verify: tiles that do not divide at the verified sizes (the CPU backend ignores schedules):";
      for (size_t i = 0; i < plan.untiled.size(); ++i) std::cerr << (i ? ", " : " ") << plan.untiled[i];
      std::cerr << "\n";
    }
  }
  EquivSide sides[2];
  const std::string names[2] = {request.input, request.output};
  for (int s = 0; s < 2; ++s) {
    sides[s].file = names[s];
    sides[s].program = &compilations[s]->program;
    sides[s].diagram = select_diagram(*compilations[s], request.diagram, true);
    if (!sides[s].diagram) return kUserError;
  }
  EquivRequest equiv;
  if (request.inexact) equiv.max_rel_l2 = request.tolerance;
  equiv.diagram = request.diagram;
  equiv.seed = request.seed;
  equiv.measured = request.measured;
  equiv.conversions = request.conversions;
  equiv.frontend.plugins = request.frontend.plugins;
  std::ostringstream figures;
  EquivVerdict verdict = compare_diagrams(sides, equiv, figures, "verification");
  const std::string sizes = sizes_text(plan);
  if (request.sizes) *request.sizes = sizes;
  if (request.verdict) *request.verdict = verdict;
  if (request.inexact && (verdict == EquivVerdict::Equivalent || verdict == EquivVerdict::Differs)) {
    // The change is the point: say how large it is, whether or not it is accepted.
    std::cerr << "ncd: note: the pipeline (" << request.pipeline << ") changes what '" << request.diagram
              << "' computes; the optimized diagram against the input on the CPU backend (sizes:" << sizes << "):\n"
              << figures.str();
    if (verdict == EquivVerdict::Equivalent) return kSuccess;
    std::cerr << "ncd: error: the optimized '" << request.diagram << "' is further from the input than --tolerance "
              << request.tolerance << "; nothing written\n";
    return kUserError;
  }
  switch (verdict) {
    case EquivVerdict::Equivalent:
      if (request.explain)
        std::cerr << "verify: output matches the input on the CPU backend (seed " << request.seed << ", sizes:" << sizes
                  << ")\n";
      return kSuccess;
    case EquivVerdict::Differs:
      std::cerr << "ncd: error: the optimized '" << request.diagram
                << "' differs from the input on the CPU backend (sizes:" << sizes << "); nothing written\n"
                << figures.str();
      return kUserError;
    case EquivVerdict::OutOfMemory:
      std::cerr << "ncd: error: verification of the optimized '" << request.diagram
                << "' ran out of memory (sizes:" << sizes
                << "); nothing written (a smaller --verify-size, or --no-verify)\n";
      return kUserError;
    case EquivVerdict::Failed:
      std::cerr << "ncd: error: verification of the optimized '" << request.diagram << "' failed (sizes:" << sizes
                << "); nothing written\n";
      return kUserError;
  }
  return kUserError;
}

}  // namespace ncd::cli
