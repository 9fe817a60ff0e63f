// `ncd grad FILE --diagram D [--wrt params|inputs|NAME,...] [--no-train] -o OUT.ncd`:
// reverse-mode differentiation (ncd/autodiff.h, docs/AUTODIFF.md). Writes a
// self-contained .ncd file holding D_grad (D's inputs, params and output
// cotangents to the gradients), D_train (D's outputs and the same gradients)
// and the gradient of every diagram they call. The text is compiled again
// before it is written: a gradient that does not check is never written.
#include <filesystem>
#include <iostream>

#include "common.h"
#include "ncd/autodiff.h"
#include "ncd/frontend.h"
#include "ncd/ir_source.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_grad(CLI::App &command) {
  struct Options {
    std::string file, diagram, output;
    std::vector<std::string> wrt;
    bool train = true;
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
