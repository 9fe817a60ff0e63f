// The pass manager: runs a pipeline of passes from the plugin registry.
//
// A pipeline is text (`inline,cse,dce`) or a level (-O0, -O1, -O2). Each pass
// runs on every diagram the target reaches through calls, then the target
// (recomputed before each pass, since `fuse` adds kernel diagrams); the IR
// verifier runs after every pass (`verify_each`, on by default; `ncd
// optimize` always leaves it on, a failure is exit 3 naming the pass). Observability
// follows LLVM: --print-after-all ("unchanged" when a pass changed nothing),
// --time-passes, and the explain log the passes write through PassContext.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "ncd/ir.h"
#include "ncd/registry.h"

namespace ncd {

// The passes of an optimization level; false for an unknown level.
bool pipeline_for_level(int level, std::vector<std::string> &names);

// Splits "a, b,c" into names; false (with `error`) for an empty name. A name
// may carry an argument: `quantize=w8a8`.
bool parse_pipeline(const std::string &text, std::vector<std::string> &names, std::string &error);

// Whether every pass of the pipeline is exact (Pass::exact); unknown names count as exact.
bool pipeline_is_exact(const Registry &registry, const std::vector<std::string> &names);

struct PipelineOptions {
  bool print_after_all = false;
  bool time_passes = false;
  bool verify_each = true;
  std::ostream *log = nullptr;  // where --print-after-all and --time-passes write
};

// Diagrams reachable from `root` through calls (nested repeats included),
// callees before their callers, root last: a pass sees a diagram after
// everything it calls (inlining flattens bottom-up; tiling can check a
// caller with its kernels' tiles already chosen).
std::vector<ir::Diagram *> reachable_diagrams(ir::Program &program, ir::Diagram &root);
std::vector<const ir::Diagram *> reachable_diagrams(const ir::Program &program, const ir::Diagram &root);

// Runs `names` on `root` and what it reaches. Returns 0, 1 (a pass reported an
// error, or a name is unknown: `error` says which) or 3 (the IR verifier failed
// after a pass: `error` lists the problems).
int run_pipeline(const Registry &registry, ir::Program &program, ir::Diagram &root,
                 const std::vector<std::string> &names, PassContext &context, const PipelineOptions &options,
                 std::string &error);

}  // namespace ncd
