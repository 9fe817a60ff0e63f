// The CUDA code generator: the IR of one or more diagrams to one .cu file
// (docs/CUDA.md states the file's contract: host functions, layouts, dtypes),
// the backend's interface to its plugin (cuda_backend.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ncd/rank_program.h"
#include "ncd/registry.h"
#include "ncd/sharding.h"
#include "size_expr.h"

namespace ncd::cuda {

// Returns false, after setting `error`, when an option (arch, harness) is not
// one the backend knows.
bool check_options(const std::map<std::string, std::string> &options, std::string &error);

struct HarnessDiagram;

// Returns false, after setting `error`, when an option is wrong or a diagram
// cannot be generated (e.g. a param axis without a size). With `infos`, also
// what each host function takes (the harness's and the torch package's view).
bool generate(const EmitRequest &request, std::string &output, std::string &error,
              std::vector<HarnessDiagram> *infos = nullptr);

// `ncd emit --torch DIR`: the Python package `name` around the generated .cu
// (torch_package.cpp; docs/TORCH.md).
bool torch_package(const EmitRequest &request, const std::string &name, std::vector<EmittedFile> &files,
                   std::string &error);

// What the harness needs to know of one generated host function.
struct HarnessTensor {
  std::string name;  // input or output name, or param path
  ir::DType dtype = ir::DType::F32;
  std::vector<detail::Sz> shape;  // a runtime size is an expression in the size struct `ncd_n`
};
struct HarnessDiagram {
  std::string name;      // the diagram's name
  std::string function;  // its extern "C" host function
  std::vector<HarnessTensor> inputs, params, outputs;
  // Runtime sizes, in the host function's order: the axis, its member of ncd_n, and the first input
  // dimension that is that size alone (tensor -1: none; the caller gives it).
  struct Size {
    std::string axis, member;
    int tensor = -1, dim = -1;
    std::string parameter;  // the host function's parameter (n_seq)
  };
  std::vector<Size> sizes;
  double flops = 0;  // ncd's FLOP count (the unfused baseline of `ncd cost`)
  // The host function's tensor parameters, declared (`const float *in_X`) and by name, in order:
  // inputs, params, outputs.
  std::vector<std::string> arguments, pointers;
};

// The rank function of a sharded diagram (rank_host.cpp; `ncd emit --nccl`): what each rank runs.
struct RankPlan {
  std::string diagram;                   // its name (the rank function is ncd_<diagram>_rank)
  int64_t devices = 1;                   // the schedule's
  std::vector<bool> split_outputs;       // per output: assembled by an all-gather (else whole on every rank)
  // Data parallelism: the diagram's own host function at the local sizes, each sharded axis (by
  // name, at its whole size) a runtime size; the rank function takes any count dividing them.
  std::map<std::string, int64_t> whole;
  // Otherwise the rank program (ncd/rank_program.h), printed with its reductions, for exactly
  // `devices` ranks.
  std::shared_ptr<RankProgram> program;
};
// The plan, or nullopt after setting `why` when the diagram's sharding needs what neither way
// states (a gather between operations, expert routing, a mesh of two dimensions, ...).
std::optional<RankPlan> plan_rank(const ir::Program &program, const ir::Diagram &diagram, std::string &why);
// The rank function and its workspace query, printed after the host function it calls (`info`:
// the diagram's, at runtime sharded sizes, or its rank program's, which takes the communicator).
std::string rank_code(const HarnessDiagram &info, const RankPlan &plan);

// The main() of --harness (harness.cpp), appended after the host functions.
std::string harness_code(const std::vector<HarnessDiagram> &diagrams);

// A double-quoted string literal of `text` (C++ and Python read it alike: names and paths).
std::string quoted(const std::string &text);

// The C++ type of a dtype's elements in generated code.
std::string element_type(ir::DType dtype);

}  // namespace ncd::cuda
