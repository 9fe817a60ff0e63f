// `ncd emit --cuda FILE [--diagram NAME]... [--all] -o OUT.cu [--harness] [--arch ARCH] [--runtime AXIS]... [--nccl]
// [-D ...]`: generates code for diagrams through a code-generating backend plugin (docs/CUDA.md).
// `--torch DIR` writes a Python package around the CUDA code instead (docs/TORCH.md).
// --runtime makes an axis a runtime size even when it has one (its size is then the planning size).
// --nccl adds each sharded diagram's rank function, which takes an NCCL communicator (docs/SHARDING.md).
//
// Several --diagram (or --all) put several diagrams into one file, so that a
// test or a build compiles one translation unit per .ncd file. Notes about
// fallbacks the backend took go to standard error, one line each. The backend
// checks its own options (which architectures there are is its business).
#include <filesystem>
#include <iostream>

#include "common.h"
#include "verbs.h"

namespace ncd::cli {

Handler setup_emit(CLI::App &command) {
  struct Options {
    std::string file;
    std::vector<std::string> diagrams;
    bool all = false;
    bool cuda = false;
    std::string backend;
    std::string output = "-";
    std::string torch;
    bool harness = false;
    std::string arch;
    std::vector<std::string> runtime;
    bool nccl = false;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_flag("--cuda", options->cuda, "Generate CUDA (the backend `cuda`): one self-contained .cu file");
  command.add_option("--backend", options->backend, "Generate with this backend plugin instead")->type_name("NAME");
  command.add_option("--diagram", options->diagrams,
                     "A diagram to generate (repeatable; default: the file's only diagram)")
      ->type_name("NAME")
      ->allow_extra_args(false);
  command.add_flag("--all", options->all, "Generate every diagram of the file");
  command.add_option("-o,--output", options->output, "Write the code here (default: standard output)")
      ->type_name("FILE");
  command.add_option("--torch", options->torch,
                     "Write a Python package (DIR/__init__.py, kernels.cu, README.md) that calls the CUDA code on "
                     "torch tensors")
      ->type_name("DIR");
  command.add_flag("--harness", options->harness,
                   "Add a main() that reads .npy inputs and params, runs, writes .npy outputs and times the run");
  command.add_option("--arch", options->arch, "Target architecture, one the backend knows (default: the backend's)")
      ->type_name("ARCH");
  command.add_option("--runtime", options->runtime,
                     "Make this axis a runtime size, an argument of the generated code (repeatable; its size, if "
                     "any, is only the planning size)")
      ->type_name("AXIS")
      ->allow_extra_args(false);
  command.add_flag("--nccl", options->nccl,
                   "Also generate each sharded diagram's rank function, which takes an NCCL communicator "
                   "(docs/SHARDING.md, \"Emission\")");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    std::string backend_name = options->backend;
    if (!options->torch.empty()) {
      if (options->output != "-") {
        std::cerr << "ncd emit: error: --torch DIR and -o exclude each other (the package is the output)\n";
        return kUsageError;
      }
      if (options->harness) {
        std::cerr << "ncd emit: error: --torch writes no harness: leave out --harness\n";
        return kUsageError;
      }
      if (options->nccl) {
        std::cerr << "ncd emit: error: --torch packages no rank functions: leave out --nccl\n";
        return kUsageError;
      }
      if (!backend_name.empty() && backend_name != "cuda") {
        std::cerr << "ncd emit: error: --torch packages the cuda backend's code, not " << backend_name << "'s\n";
        return kUsageError;
      }
      options->cuda = true;
    }
    if (options->cuda) {
      if (!backend_name.empty() && backend_name != "cuda") {
        std::cerr << "ncd emit: error: --cuda and --backend " << backend_name << " disagree; give one\n";
        return kUsageError;
      }
      backend_name = "cuda";
    }
    if (backend_name.empty()) {
      std::cerr << "ncd emit: error: choose a target: --cuda (or --backend NAME)\n";
      return kUsageError;
    }
    if (options->all && !options->diagrams.empty()) {
      std::cerr << "ncd emit: error: --all and --diagram exclude each other\n";
      return kUsageError;
    }
    Registry *registry = load_registry(options->frontend.plugins);
    if (!registry) return kUserError;
    const Backend *backend = registry->backend(backend_name);
    if (!backend) {
      std::cerr << "ncd: error: " << registry->describe_miss("backend", backend_name) << "\n";
      return kUserError;
    }
    if (!backend->can_emit()) {
      std::cerr << "ncd: error: backend '" << backend_name << "' does not generate code\n";
      return kUserError;
    }
    std::map<std::string, std::string> backend_options;
    if (options->harness) backend_options["harness"] = "1";
    if (options->nccl) backend_options["nccl"] = "1";
    if (!options->arch.empty()) backend_options["arch"] = options->arch;
    for (const std::string &axis : options->runtime)
      backend_options["runtime"] += (backend_options["runtime"].empty() ? "" : ",") + axis;
    if (std::string error; !backend->check_options(backend_options, error)) {
      std::cerr << "ncd emit: error: " << error << "\n";
      return kUsageError;
    }
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    // --runtime names an axis of the program that is not derived (a derived one follows its axes).
    for (const std::string &name : options->runtime) {
      std::vector<std::string> names;
      const ir::Axis *found = nullptr;
      for (const ir::Axis &axis : compilation->program.axes) {
        names.push_back(axis.name);
        if (axis.name == name) found = &axis;
      }
      if (!found) {
        std::cerr << "ncd emit: error: --runtime " << name << ": no axis named '" << name << "'"
                  << did_you_mean(name, names) << "\n";
        return kUserError;
      }
      if (found->derived) {
        std::cerr << "ncd emit: error: --runtime " << name << ": axis '" << name
                  << "' is derived; make the axes it is derived from runtime sizes instead\n";
        return kUserError;
      }
    }
    EmitRequest request;
    request.program = &compilation->program;
    request.sources = &compilation->sources;
    if (options->all) {
      request.diagrams = compilation->program.root_diagrams();
      if (request.diagrams.empty()) {
        std::cerr << "ncd: error: " << compilation->modules[0].path << " defines no diagrams\n";
        return kUserError;
      }
    } else if (options->diagrams.empty()) {
      const ir::Diagram *diagram = select_diagram(*compilation, "", true);
      if (!diagram) return kUserError;
      request.diagrams.push_back(diagram);
    } else {
      for (const std::string &name : options->diagrams) {
        const ir::Diagram *diagram = select_diagram(*compilation, name, true);
        if (!diagram) return kUserError;
        bool seen = false;
        for (const ir::Diagram *other : request.diagrams) seen = seen || other == diagram;
        if (!seen) request.diagrams.push_back(diagram);
      }
    }
    request.options = backend_options;
    std::vector<std::string> notes;
    request.notes = &notes;
    std::string code, error;
    std::vector<EmittedFile> files;
    std::filesystem::path folder = std::filesystem::path(options->torch).lexically_normal();
    if (!options->torch.empty() && !folder.has_filename()) folder = folder.parent_path();
    bool ok = options->torch.empty()
                  ? backend->emit(request, code, error)
                  : backend->emit_package(request, "torch", folder.filename().string(), files, error);
    for (const std::string &note : notes) std::cerr << "ncd emit: note: " << note << "\n";
    if (!ok) {
      std::cerr << "ncd emit: error: " << error << "\n";
      return kUserError;
    }
    if (options->torch.empty()) {
      if (!write_or_report(options->output, code)) return kUserError;
      if (!write_dependency_file(options->frontend, *compilation, options->file, options->output)) return kUserError;
      return kSuccess;
    }
    // The package: its folder (created; its parent must exist), then each file, each written whole.
    std::error_code failure;
    if (!std::filesystem::is_directory(folder, failure)) {
      if (std::filesystem::exists(folder, failure)) {
        std::cerr << "ncd emit: error: --torch " << options->torch << ": exists and is not a folder\n";
        return kUserError;
      }
      if (!std::filesystem::create_directory(folder, failure)) {
        std::cerr << "ncd emit: error: --torch " << options->torch << ": cannot create the folder ("
                  << failure.message() << ")\n";
        return kUserError;
      }
    }
    for (const EmittedFile &file : files)
      if (!write_or_report((folder / file.name).string(), file.text)) return kUserError;
    const std::string target = (folder / "kernels.cu").string();
    if (!write_dependency_file(options->frontend, *compilation, options->file, target)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
