// `ncd import MODEL -o MODEL.ncd [--weights W.safetensors] [--axis NAME=NEW]... [--diagram NAME] [--dtype D]`:
// a model of another framework (ONNX: what torch.onnx.export writes) as an ncd
// program, through an importer plugin chosen by the file's ending
// (docs/IMPORT.md). The program is parsed, checked and put in `ncd fmt` form
// before anything is written; on any error nothing is written.
#include <iostream>

#include "common.h"
#include "ncd/format.h"
#include "ncd/frontend.h"
#include "ncd/parser.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

// Replaces the `default dtype` line of an importer's program (or adds one after its leading comments).
void set_default_dtype(std::string &source, const std::string &dtype) {
  const std::string line = "default dtype " + dtype;
  size_t at = 0, insert = std::string::npos;
  while (at < source.size()) {
    const size_t end = source.find('\n', at) == std::string::npos ? source.size() : source.find('\n', at);
    const std::string text = source.substr(at, end - at);
    if (text.rfind("default dtype ", 0) == 0) {
      source.replace(at, end - at, line);
      return;
    }
    if (insert == std::string::npos && !text.empty() && text[0] != '#') insert = at;
    at = end + 1;
  }
  source.insert(insert == std::string::npos ? source.size() : insert, line + "\n\n");
}

}  // namespace

Handler setup_import(CLI::App &command) {
  struct Options {
    std::string model;
    std::string output = "-";
    std::string weights;
    std::vector<std::string> axes;
    std::string diagram;
    std::string importer;
    std::string dtype;
    std::vector<std::string> plugins;
  };
  auto options = std::make_shared<Options>();
  command.add_option("model", options->model, "The model file (.onnx)")->required()->type_name("MODEL");
  command.add_option("-o,--output", options->output, "Write the .ncd program here (default: standard output)")
      ->type_name("FILE");
  command.add_option("--weights", options->weights,
                     "Write the weights here as safetensors, by the program's param names (ncd run --params)")
      ->type_name("FILE");
  command.add_option("--axis", options->axes, "Rename an axis the importer named NAME (repeatable)")
      ->type_name("NAME=NEW")
      ->allow_extra_args(false);
  command.add_option("--diagram", options->diagram, "The diagram's name (default: from the file's name)")
      ->type_name("NAME");
  command.add_option("--dtype", options->dtype,
                     "The program's default dtype: f32 (the model's float32), bf16 or f16 (weights stay float32)")
      ->type_name("DTYPE");
  command.add_option("--importer", options->importer, "Use this importer plugin (default: by the file's ending)")
      ->type_name("NAME");
  command.add_option("--plugin", options->plugins, "Load this plugin (a shared library) too")->type_name("FILE");
  return [options]() -> int {
    ImportRequest request;
    request.path = options->model;
    request.diagram = options->diagram;
    for (const std::string &pair : options->axes) {
      size_t eq = pair.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == pair.size()) {
        std::cerr << "ncd import: error: --axis " << pair << ": expected NAME=NEW\n";
        return kUsageError;
      }
      if (!request.axis_names.emplace(pair.substr(0, eq), pair.substr(eq + 1)).second) {
        std::cerr << "ncd import: error: --axis " << pair.substr(0, eq) << " is renamed twice\n";
        return kUsageError;
      }
    }
    if (!options->dtype.empty()) {
      auto dtype = ir::parse_dtype(options->dtype);
      if (!dtype || (*dtype != ir::DType::F32 && *dtype != ir::DType::BF16 && *dtype != ir::DType::F16)) {
        std::cerr << "ncd import: error: --dtype " << options->dtype << ": expected f32, bf16 or f16\n";
        return kUsageError;
      }
    }
    Registry *registry = load_registry(options->plugins);
    if (!registry) return kUserError;
    const Importer *importer = nullptr;
    if (!options->importer.empty()) {
      importer = registry->importer(options->importer);
      if (!importer) {
        std::cerr << "ncd: error: " << registry->describe_miss("importer", options->importer) << "\n";
        return kUserError;
      }
    } else {
      importer = registry->importer_for(options->model);
      if (!importer) {
        std::string endings;
        for (const std::string &name : registry->importer_names())
          for (const std::string &ending : registry->importer(name)->extensions())
            endings += (endings.empty() ? "" : ", ") + ending + " (" + name + ")";
        std::cerr << "ncd import: error: " << options->model << ": no importer reads this kind of file; they read "
                  << (endings.empty() ? std::string("nothing (no importer plugin is loaded)") : endings) << "\n";
        return kUserError;
      }
    }
    std::string error;
    // Models are weights and all: bounded by the memory available (the reader's default limit).
    if (!read_file_bytes(options->model, request.bytes, error)) {
      std::cerr << "ncd: error: " << error << "\n";
      return kUserError;
    }
    ImportResult result;
    if (!importer->import_model(request, result, error)) {
      std::cerr << "ncd import: error: " << options->model << ": " << error << "\n";
      return kUserError;
    }
    for (const std::string &note : result.notes) std::cerr << "ncd import: note: " << note << "\n";
    // --dtype: the file's default, which every float32 tensor of the model follows.
    if (!options->dtype.empty()) set_default_dtype(result.source, options->dtype);
    // The program must be one ncd reads: parsed, checked, then written as `ncd fmt` would.
    const std::string shown = options->output == "-" ? "<imported>" : options->output;
    Compilation compilation;
    if (!compile_text(shown, result.source, CompileOptions{}, compilation) || compilation.diagnostics.error_count()) {
      print_diagnostics(compilation);
      std::cerr << "ncd import: error: the program imported from " << options->model
                << " does not check (an importer bug):\n"
                << result.source;
      return kInternalError;
    }
    const ParsedModule &root = compilation.modules.at(0);
    std::string formatted = format_file(*root.ast, compilation.sources.file(root.file_id));
    SafetensorsFile weights;
    for (const auto &[name, tensor] : result.weights) weights.tensors[name] = array_from_tensor(tensor, false);
    if (!options->weights.empty() && !write_or_report(options->weights, safetensors_bytes(weights))) return kUserError;
    if (!write_or_report(options->output, formatted)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
