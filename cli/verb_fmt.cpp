// `ncd fmt FILE...`: canonical formatting. Prints by default; -i rewrites each
// file atomically; --check names the files that are not canonical (exit 1).
// Formatting needs only the parse of each file, not its imports.
#include <iostream>

#include "common.h"
#include "ncd/format.h"
#include "ncd/parser.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_fmt(CLI::App &command) {
  struct Options {
    std::vector<std::string> files;
    bool in_place = false;
    bool check = false;
    std::string output;
    std::vector<std::string> plugins;
    std::vector<std::string> ignored;
  };
  auto options = std::make_shared<Options>();
  command.add_option("files", options->files, "The .ncd files to format")->required()->type_name("FILE");
  auto *in_place = command.add_flag("-i,--in-place", options->in_place, "Rewrite the files in place");
  auto *check = command.add_flag("--check", options->check, "Exit 1 and list the files that are not canonical");
  auto *output = command.add_option("-o,--output", options->output, "Write the result here (one input only)")->type_name("FILE");
  // Every verb takes --plugin (formatting uses none, but a bad plugin is still an error).
  command.add_option("--plugin", options->plugins, "Load this plugin (a shared library) too")
      ->type_name("FILE")
      ->allow_extra_args(false);
  // Accepted and ignored (formatting reads no imports and no sizes), so that one
  // set of flags serves every verb in a Makefile.
  command.add_option("-I", options->ignored, "Accepted for uniformity with the other verbs; ignored")
      ->type_name("DIR")
      ->allow_extra_args(false);
  command.add_option("-D", options->ignored, "Accepted for uniformity with the other verbs; ignored")
      ->type_name("AXIS=N")
      ->allow_extra_args(false);
  in_place->excludes(check)->excludes(output);
  check->excludes(output);
  return [options]() -> int {
    if (!options->plugins.empty() && !load_registry(options->plugins)) return kUserError;
    if (!options->output.empty() && options->files.size() != 1) {
      std::cerr << "ncd fmt: error: -o takes exactly one input file\n";
      return kUsageError;
    }
    int status = kSuccess;
    std::string printed;
    for (const std::string &path : options->files) {
      Compilation compilation;
      std::string text, error;
      if (!read_text_file(path, text, error)) {
        std::cerr << "ncd: error: " << error << "\n";
        status = kUserError;
        continue;
      }
      int file_id = compilation.sources.add(path, path, std::move(text));
      auto ast = parse_file(compilation.sources, file_id, compilation.diagnostics);
      print_diagnostics(compilation);
      if (!ast) {
        status = kUserError;
        continue;
      }
      const SourceFile &source = compilation.sources.file(file_id);
      std::string formatted = format_file(*ast, source);
      if (options->check) {
        if (formatted != source.text) {
          std::cout << path << "\n";
          status = kUserError;
        }
      } else if (options->in_place) {
        if (formatted != source.text && !write_or_report(path, formatted)) status = kUserError;
      } else {
        printed += formatted;
      }
    }
    if (!options->check && !options->in_place && status == kSuccess)
      if (!write_or_report(options->output.empty() ? "-" : options->output, printed)) status = kUserError;
    return status;
  };
}

}  // namespace ncd::cli
