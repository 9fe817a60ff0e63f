// `ncd merge FILE --diagram NAME A.safetensors B.safetensors [...]
//            --method linear|slerp|task-arithmetic|ties|dare [--base BASE.safetensors]
//            [--weights W,...] [--density P] [--seed N] -o OUT.safetensors`:
// merges checkpoints of a diagram's params into one (docs/MERGE.md). The
// diagram's param list is the contract every file is checked against, so a
// checkpoint of another model or size is refused by name instead of merged.
//
// This file validates the flags (a flag the chosen method would ignore is an
// error: silently ignoring --base or --density hides a mistaken command);
// core/src/data/merge.cpp does the arithmetic and the streaming.
#include <cmath>
#include <iostream>
#include <sstream>

#include "common.h"
#include "ncd/diagnostics.h"
#include "ncd/instantiate.h"
#include "ncd/merge.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

bool parse_weights(const std::string &text, std::vector<double> &out, std::string &error) {
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(item, &used);
    } catch (const std::exception &) {
      used = 0;
    }
    if (item.empty() || used != item.size() || !std::isfinite(value)) {
      error = "--weights: '" + item + "' is not a number (expected W,W,... e.g. 0.5,0.5)";
      return false;
    }
    out.push_back(value);
  }
  if (!text.empty() && text.back() == ',') {
    error = "--weights: a trailing comma leaves an empty weight";
    return false;
  }
  return true;
}

}  // namespace

Handler setup_merge(CLI::App &command) {
  struct Options {
    std::string file, diagram, method, base, weights, output;
    std::vector<std::string> inputs;
    double density = 0;
    uint64_t seed = 0;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_option("checkpoints", options->inputs, "The safetensors checkpoints to merge")
      ->required()
      ->type_name("CHECKPOINT");
  command.add_option("--diagram", options->diagram, "The diagram whose params the checkpoints hold")->type_name("NAME");
  auto *method =
      command.add_option("--method", options->method, "linear, slerp, task-arithmetic, ties or dare (docs/MERGE.md)")
          ->required()
          ->type_name("METHOD");
  (void)method;
  auto *base = command.add_option("--base", options->base, "The base checkpoint (task-arithmetic, ties, dare)")
                   ->type_name("FILE");
  auto *weights =
      command.add_option("--weights", options->weights, "One weight per checkpoint (slerp: the factor t, default 0.5)")
          ->type_name("W,...");
  (void)weights;
  auto *density = command
                      .add_option("--density", options->density,
                                  "Fraction of each task vector kept, in (0, 1] (ties: 0.2, dare: 0.1)")
                      ->type_name("P");
  auto *seed = command.add_option("--seed", options->seed, "Seed of DARE's drop mask (default 0)")->type_name("N");
  command.add_option("-o,--output", options->output, "The merged safetensors file")->required()->type_name("FILE");
  add_frontend_options(command, options->frontend);
  return [options, base, density, seed]() -> int {
    auto method = parse_merge_method(options->method);
    if (!method) {
      std::string known;
      for (const auto &name : merge_method_names()) known += (known.empty() ? "" : ", ") + name;
      std::cerr << "ncd: error: unknown merge method '" << options->method << "'"
                << did_you_mean(options->method, merge_method_names()) << " (methods: " << known << ")\n";
      return kUsageError;
    }
    const std::string name = merge_method_name(*method);
    const size_t n = options->inputs.size();
    if (*method == MergeMethod::Slerp && n != 2) {
      std::cerr << "ncd: error: slerp interpolates exactly two checkpoints, got " << n << "\n";
      return kUsageError;
    }
    if (merge_method_uses_base(*method) && base->count() == 0) {
      std::cerr << "ncd: error: " << name
                << " merges task vectors θ_i − θ_base: give the base checkpoint with --base\n";
      return kUsageError;
    }
    if (!merge_method_uses_base(*method) && base->count() > 0) {
      std::cerr << "ncd: error: " << name << " does not use a base checkpoint; --base is for task-arithmetic, ties "
                << "and dare\n";
      return kUsageError;
    }
    MergeRequest request;
    request.method = *method;
    request.inputs = options->inputs;
    request.base = options->base;
    request.output = options->output;
    request.seed = options->seed;
    request.density = merge_default_density(*method);
    if (density->count() > 0) {
      if (!merge_method_uses_density(*method)) {
        std::cerr << "ncd: error: " << name << " keeps every element; --density is for ties and dare\n";
        return kUsageError;
      }
      if (!(options->density > 0 && options->density <= 1)) {
        std::cerr << "ncd: error: --density " << options->density << " is outside (0, 1]\n";
        return kUsageError;
      }
      request.density = options->density;
    }
    if (seed->count() > 0 && *method != MergeMethod::Dare) {
      std::cerr << "ncd: error: " << name << " is deterministic; --seed is for dare\n";
      return kUsageError;
    }
    std::string error;
    if (!parse_weights(options->weights, request.weights, error)) {
      std::cerr << "ncd: error: " << error << "\n";
      return kUsageError;
    }
    if (*method == MergeMethod::Slerp) {
      if (request.weights.empty()) request.weights = {0.5};
      if (request.weights.size() != 1 || request.weights[0] < 0 || request.weights[0] > 1) {
        std::cerr << "ncd: error: slerp takes one weight, the factor t in [0, 1] (0: the first checkpoint, 1: the "
                     "second), got --weights "
                  << options->weights << "\n";
        return kUsageError;
      }
    } else {
      if (request.weights.empty()) request.weights.assign(n, 1.0);
      if (request.weights.size() != n) {
        std::cerr << "ncd: error: --weights has " << request.weights.size() << " weight"
                  << (request.weights.size() == 1 ? "" : "s") << " for " << n << " checkpoint" << (n == 1 ? "" : "s")
                  << "\n";
        return kUsageError;
      }
      double total = 0;
      for (double w : request.weights) total += w;
      if (*method == MergeMethod::Linear && total == 0) {
        std::cerr << "ncd: error: linear divides by the sum of the weights, which is 0\n";
        return kUsageError;
      }
    }
    if (options->output == "-") {
      std::cerr << "ncd: error: -o: merge writes a safetensors file, not standard output\n";
      return kUsageError;
    }

    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    ir::Diagram *diagram = select_diagram(*compilation, options->diagram, true);
    if (!diagram) return kUserError;
    std::vector<ParamInstance> instances;
    if (!list_param_instances(compilation->program, *diagram, instances, error)) {
      std::cerr << "ncd: error: " << error << "\n";
      return kUserError;
    }
    std::vector<MergeParam> params;
    for (const ParamInstance &instance : instances) params.push_back({instance.path, instance.shape, instance.dtype});
    request.diagram = diagram->name;
    if (!merge_checkpoints(params, request, error)) {
      std::cerr << "ncd: error: " << error << "\n";
      return kUserError;
    }
    return write_dependency_file(options->frontend, *compilation, options->file, options->output) ? kSuccess
                                                                                                  : kUserError;
  };
}

}  // namespace ncd::cli
