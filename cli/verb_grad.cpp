// `ncd grad FILE --diagram D [--wrt params|inputs|NAME,...] [--no-train] [--save POLICY] -o OUT.ncd`:
// reverse-mode differentiation (ncd/autodiff.h, docs/AUTODIFF.md). Writes a
// self-contained .ncd file holding D_grad (D's inputs, params and output
// cotangents to the gradients), D_train (D's outputs and the same gradients)
// and the gradient of every diagram they call; with --save, also D_forward
// and D_backward, the step split at what it saves. The text is compiled again
// before it is written: a gradient that does not check is never written.
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "common.h"
#include "ncd/autodiff.h"
#include "ncd/frontend.h"
#include "ncd/ir_source.h"
#include "verbs.h"

namespace ncd::cli {

namespace {

std::string bytes_text(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 4) {
    bytes /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, unit ? "%.1f %s" : "%.0f %s", bytes, units[unit]);
  return text;
}

// What each policy saves and what the backward pass then computes (stderr: the file is the result).
void print_choices(const GradientResult &result, const ir::Diagram &d, SavePolicy chosen) {
  std::cerr << "saving for the backward pass of '" << d.name << "' (" << result.forward->name << " -> "
            << result.backward->name << "):\n";
  char line[160];
  std::snprintf(line, sizeof line, "  %-7s %12s %14s %16s\n", "policy", "saved values", "saved bytes", "backward FLOPs");
  std::cerr << line;
  for (const SaveChoice &choice : result.choices) {
    std::snprintf(line, sizeof line, "  %-7s %12zu %14s %16.4g%s\n", save_policy_name(choice.policy).c_str(),
                  choice.saved.size(), bytes_text(choice.saved_bytes).c_str(), choice.backward_flops,
                  choice.policy == chosen ? "  (written)" : "");
    std::cerr << line;
  }
}

}  // namespace

Handler setup_grad(CLI::App &command) {
  struct Options {
    std::string file, diagram, output;
    std::vector<std::string> wrt;
    bool train = true;
    std::string save;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_option("--diagram", options->diagram, "The diagram to differentiate (default: the file's only diagram)")
      ->type_name("NAME");
  command
      .add_option("--wrt", options->wrt,
                  "What to differentiate with respect to: params, inputs, input names, param paths (default: "
                  "every float input and param)")
      ->delimiter(',')
      ->type_name("WHAT,...");
  command.add_flag("--train,!--no-train", options->train, "Also write D_train: D's outputs and the gradients (default on)");
  command
      .add_option("--save", options->save,
                  "Also split the step into D_forward and D_backward, saving for the backward: none, flash "
                  "(all but attention's scores, recomputed from their logsumexp) or all; prints every policy's price")
      ->type_name("POLICY")
      ->check(CLI::IsMember({"none", "flash", "all"}));
  command.add_option("-o,--output", options->output, "The .ncd file of the gradient diagrams ('-': stdout)")
      ->required()
      ->type_name("FILE");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    ir::Diagram *selected = select_diagram(*compilation, options->diagram, true);
    if (!selected) return kUserError;
    GradientRequest request;
    request.wrt = options->wrt;
    request.train = options->train;
    request.split = !options->save.empty();
    request.save = options->save == "none" ? SavePolicy::None : options->save == "all" ? SavePolicy::All : SavePolicy::Flash;
    GradientResult result;
    GradientError error;
    if (!derive_gradient(compilation->program, *selected, request, result, error)) {
      compilation->diagnostics.error(error.location, error.message);
      print_diagnostics(*compilation);
      return error.message.rfind("internal:", 0) == 0 ? kInternalError : kUserError;
    }
    SourceWriteOptions write;
    write.header_comment = "Gradients of '" + selected->name + "' of " +
                           std::filesystem::path(options->file).filename().string() + ", derived by ncd grad.\n";
    for (const auto &[name, of] : result.gradients) write.header_comment += "  " + name + ": the gradient of " + of + "\n";
    write.header_comment.pop_back();
    std::vector<const ir::Diagram *> roots{result.grad};
    if (result.train) roots.push_back(result.train);
    if (result.forward) {
      roots.push_back(result.forward);
      roots.push_back(result.backward);
      print_choices(result, *selected, request.save);
    }
    std::string text, problem;
    if (!write_ncd_source(compilation->program, roots, write, text, problem)) {
      std::cerr << "ncd: internal error: cannot write the gradient as .ncd: " << problem << "\n";
      return kInternalError;
    }
    Compilation check;
    CompileOptions compile;
    compile.include_dirs = options->frontend.include_dirs;
    if (!compile_text(options->output == "-" ? "<grad>" : options->output, text, compile, check)) {
      check.diagnostics.flush(std::cerr, false);
      std::cerr << "ncd: internal error: the derived gradient does not check; nothing written\n";
      return kInternalError;
    }
    if (!write_or_report(options->output, text)) return kUserError;
    return write_dependency_file(options->frontend, *compilation, options->file, options->output, {}) ? kSuccess
                                                                                                      : kUserError;
  };
}

}  // namespace ncd::cli
