// `ncd equiv A.ncd B.ncd --diagram NAME [-D ...] [--seed N] [--rtol R] [--atol A]`:
// runs the diagram NAME of both files on the same random inputs and params
// and compares every output. Exit 0 when all are within tolerance, 1 when any
// differs (or the two diagrams do not have the same interface).
//
// The tolerance test is NumPy's allclose with A as the reference:
// |a - b| <= atol + rtol * |a| for every element (NaN matches NaN, infinities
// match themselves). Defaults follow the output's dtype (docs/RUN.md).
#include <iostream>
#include <memory>

#include "common.h"
#include "run_support.h"
#include "verbs.h"

namespace ncd::cli {

int run_equiv(const EquivRequest &request, std::ostream &out) {
  std::unique_ptr<Compilation> compilations[2];
  EquivSide sides[2];
  const std::string files[2] = {request.a, request.b};
  for (int s = 0; s < 2; ++s) {
    compilations[s] = load_program(files[s], request.frontend);
    if (!compilations[s]) return kUserError;
    sides[s].file = files[s];
    sides[s].program = &compilations[s]->program;
    sides[s].diagram = select_diagram(*compilations[s], request.diagram, true);
    if (!sides[s].diagram) return kUserError;
  }
  return compare_diagrams(sides, request, out) == EquivVerdict::Equivalent ? kSuccess : kUserError;
}

Handler setup_equiv(CLI::App &command) {
  auto options = std::make_shared<EquivRequest>();
  command.add_option("a", options->a, "The reference .ncd file")->required()->type_name("A.ncd");
  command.add_option("b", options->b, "The .ncd file compared with it")->required()->type_name("B.ncd");
  command.add_option("--diagram", options->diagram, "The diagram to compare (required when a file has several)")
      ->type_name("NAME");
  command.add_option("--seed", options->seed, "Seed of the random inputs and params (default 1)")->type_name("N");
  command.add_option("--rtol", options->rtol, "Relative tolerance (default by dtype: f32 1e-4, bf16 2e-2, ...)")
      ->type_name("R");
  command.add_option("--atol", options->atol, "Absolute tolerance (default by dtype: f32 1e-5, bf16 1e-2, ...)")
      ->type_name("A");
  command.add_option("--backend", options->backend, "The backend that runs both")->type_name("NAME");
  command.add_option("--threads", options->threads, "Worker threads (default: one per core)")->type_name("N");
  add_frontend_options(command, options->frontend);
  return [options]() -> int { return run_equiv(*options, std::cout); };
}

}  // namespace ncd::cli
