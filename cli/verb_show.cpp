// `ncd show --ast|--ir|--json FILE [--diagram NAME]`: the program as the
// compiler sees it. --json is the versioned interface for external tools.
#include <iostream>

#include "common.h"
#include "ncd/format.h"
#include "ncd/ir_print.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_show(CLI::App &command) {
  struct Options {
    std::string file;
    bool ast = false, ir = false, json = false, locations = false;
    std::string diagram;
    std::string output = "-";
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  auto *group = command.add_option_group("form", "What to show (exactly one)");
  group->add_flag("--ast", options->ast, "The syntax tree of the file");
  group->add_flag("--ir", options->ir, "The core IR as text");
  group->add_flag("--json", options->json, "The core IR as JSON (schema: docs/IR_JSON.md)");
  group->require_option(1);
  command.add_flag("--locations", options->locations, "With --ast: print source locations");
  command.add_option("--diagram", options->diagram, "Show only this diagram")->type_name("NAME");
  command.add_option("-o,--output", options->output, "Write here instead of standard output")->type_name("FILE");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
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
      text = options->json ? ir_to_json(compilation->program, compilation->sources, only)
                           : print_ir(compilation->program, compilation->sources, only);
    }
    if (!write_or_report(options->output, text)) return kUserError;
    if (!write_dependency_file(options->frontend, *compilation, options->file, options->output)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
