// `ncd run FILE --diagram NAME [--in NAME=X.npy]... [--params DIR|FILE.safetensors]
//  [--random SEED] [-D axis=N]... [--devices N [--ranks]] --out-dir DIR`: runs a diagram
// on a backend (the CPU reference by default) and writes each output to
// DIR/NAME.npy. With --random, what it generated is written to DIR/inputs/
// and DIR/params/ so that another tool can repeat the run (docs/RUN.md). With
// --devices, the CPU reference simulates the diagram's sharding; with --ranks
// too, it runs each device's rank program (ncd/rank_program.h) instead.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>

#include "common.h"
#include "ncd/sharding.h"
#include "run_support.h"
#include "verbs.h"

namespace ncd::cli {
namespace fs = std::filesystem;

Handler setup_run(CLI::App &command) {
  struct Options {
    std::string file, diagram, params, out_dir, backend = "cpu";
    std::vector<std::string> in;
    uint64_t seed = 0;
    int threads = 0, bench = 0;
    int64_t devices = 0;
    bool profile = false, ranks = false;
    CLI::Option *random = nullptr;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->required()->type_name("FILE");
  command.add_option("--diagram", options->diagram, "The diagram to run (required when the file has several)")
      ->type_name("NAME");
  command.add_option("--in", options->in, "An input from a .npy file (repeatable)")->type_name("NAME=FILE.npy");
  command.add_option("--params", options->params,
                     "Params: a folder of PATH.npy files or a .safetensors file (names: docs/RUN.md)")
      ->type_name("DIR|FILE");
  options->random = command.add_option("--random", options->seed,
                                       "Fill inputs and params not given with seeded random data, and write them to "
                                       "DIR/inputs and DIR/params")
                        ->type_name("SEED");
  command.add_option("--out-dir", options->out_dir, "Write each output to DIR/NAME.npy")->required()->type_name("DIR");
  command.add_option("--backend", options->backend, "The backend that runs the diagram")->type_name("NAME");
  command.add_option("--threads", options->threads, "Worker threads (default: one per core)")->type_name("N");
  command.add_flag("--profile", options->profile, "Print the time spent per kind of op");
  command.add_option("--bench", options->bench, "Run N more times and print the median and minimum time")
      ->type_name("N");
  command
      .add_option("--devices", options->devices,
                  "Simulate the diagram's sharding (its `shard` lines, docs/SHARDING.md) on N devices: each runs "
                  "with the data it holds, collectives between them; the outputs assembled whole")
      ->type_name("N");
  command.add_flag("--ranks", options->ranks,
                   "With --devices: run each device's own program instead (the rank program `ncd emit --cuda "
                   "--nccl` prints), one thread per rank, the reductions between them in memory");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    const ir::Diagram *diagram = select_diagram(*compilation, options->diagram, true);
    if (!diagram) return kUserError;
    // Axes without a size take theirs from the inputs given (docs/RUN.md, "Sizes from the inputs").
    std::vector<std::string> inferred;
    if (!sizes_from_inputs(compilation->program, *diagram, options->in, inferred)) return kUserError;
    if (!inferred.empty()) {
      FrontendOptions sized = options->frontend;
      sized.defines.insert(sized.defines.end(), inferred.begin(), inferred.end());
      compilation = load_program(options->file, sized);
      if (!compilation) return kUserError;
      diagram = select_diagram(*compilation, options->diagram, true);
      if (!diagram) return kUserError;
    }
    const Backend *backend = find_executor(options->backend, options->frontend.plugins);
    if (!backend) return kUserError;
    std::optional<ShardingPlan> sharding;
    if (options->ranks && options->devices == 0) {
      std::cerr << "ncd run: error: --ranks runs a sharded diagram's ranks: give --devices N\n";
      return kUsageError;
    }
    if (options->devices != 0) {
      if (!apply_devices("run", *const_cast<ir::Diagram *>(diagram), compilation->program, options->devices)) return kUsageError;
      if (!backend->runs_sharded()) {
        std::cerr << "ncd run: error: --devices: backend '" << backend->name()
                  << "' does not simulate a sharded run; the CPU reference does ('--backend cpu')\n";
        return kUsageError;
      }
      if (!diagram->shards.empty()) sharding = plan_sharding(compilation->program, *diagram);
    }
    std::vector<Slot> inputs, params;
    if (!list_slots(compilation->program, *diagram, inputs, params)) return kUserError;
    RunData data;
    bool usage_error = false;
    std::optional<uint64_t> seed;
    if (options->random->count()) seed = options->seed;
    if (!gather_data(inputs, params, options->in, options->params, seed, data, usage_error))
      return usage_error ? kUsageError : kUserError;

    ExecuteRequest request;
    request.program = &compilation->program;
    request.diagram = diagram;
    request.inputs = &data.inputs;
    request.params = &data.params;
    request.options.threads = options->threads;
    request.sharding = sharding ? &*sharding : nullptr;
    request.ranks = options->ranks;
    // With --bench, the profile is of the last timed run: the first run pays
    // for page faults and cold caches that the others do not.
    request.options.profile = options->profile && options->bench <= 0;
    request.options.log = &std::cerr;
    std::map<std::string, Tensor> outputs;
    std::string error;
    if (!backend->execute(request, outputs, error)) {
      std::cerr << "ncd: error: running '" << diagram->name << "': " << error << "\n";
      return kUserError;
    }
    if (options->bench > 0) {
      std::vector<double> times;
      for (int i = 0; i < options->bench; ++i) {
        std::map<std::string, Tensor> again;
        request.options.profile = options->profile && i + 1 == options->bench;
        auto start = std::chrono::steady_clock::now();
        if (!backend->execute(request, again, error)) {
          std::cerr << "ncd: error: running '" << diagram->name << "': " << error << "\n";
          return kUserError;
        }
        times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() * 1e3);
      }
      std::vector<double> sorted = times;
      std::sort(sorted.begin(), sorted.end());
      double median = sorted.size() % 2 ? sorted[sorted.size() / 2]
                                        : 0.5 * (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]);
      char line[200];
      std::snprintf(line, sizeof line, "bench: %s, %d runs: median %.3f ms, min %.3f ms, max %.3f ms\n",
                    diagram->name.c_str(), options->bench, median, sorted.front(), sorted.back());
      std::cerr << line;
      std::cerr << "bench: times_ms";
      for (double t : times) std::cerr << " " << t;
      std::cerr << "\n";
    }

    std::error_code code;
    fs::create_directories(options->out_dir, code);
    if (!fs::is_directory(options->out_dir, code)) {
      std::cerr << "ncd: error: " << options->out_dir << ": cannot create the output folder\n";
      return kUserError;
    }
    bool ok = true;
    for (int id : diagram->outputs) {
      const std::string &name = diagram->value(id).name;
      ok = write_npy((fs::path(options->out_dir) / (name + ".npy")).string(), outputs.at(name)) && ok;
    }
    if (!data.generated_inputs.empty()) {
      fs::path folder = fs::path(options->out_dir) / "inputs";
      fs::create_directories(folder, code);
      for (const auto &name : data.generated_inputs)
        ok = write_npy((folder / (name + ".npy")).string(), data.inputs.at(name)) && ok;
    }
    if (!data.generated_params.empty()) {
      fs::path folder = fs::path(options->out_dir) / "params";
      fs::create_directories(folder, code);
      for (const auto &name : data.generated_params)
        ok = write_npy((folder / (name + ".npy")).string(), data.params.at(name)) && ok;
    }
    if (!ok) return kUserError;
    if (!write_dependency_file(options->frontend, *compilation, options->file, "")) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
