// Kernel plans as the contract between the optimizer, the cost model and a
// code generator: a backend answers "what would you build for this scheduled
// kernel, called here, on this hardware?" with the shape of the kernel it
// will emit (the tiles as built, how many lifted positions a block covers,
// threads and shared memory per block), or declines with the reason (then
// the kernel's operations run as separate kernels). `tile` chooses among the
// shapes a backend accepts, `ncd cost` prices the shape, and the backend's
// generator builds it from the same functions (docs/COST.md, docs/CUDA.md).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/hardware.h"
#include "ncd/ir.h"

namespace ncd {

struct KernelQuery {
  const ir::Program *program = nullptr;
  const ir::Diagram *kernel = nullptr;     // the scheduled diagram
  const ir::Schedule *schedule = nullptr;  // the schedule to build (need not be in the IR yet)
  // The size of one of the kernel's axes where it is called (bindings applied).
  std::function<std::optional<int64_t>(int axis)> size;
  // The lifted axes of the call, outermost first (empty for a kernel priced
  // or emitted on its own), and which of the kernel's inputs (by position)
  // carry them.
  std::vector<int64_t> lifted;
  std::vector<bool> lifted_inputs;
  const HardwareProfile *hardware = nullptr;
};

struct KernelShape {
  std::string family;               // "attention", "gemm", "row", "pointwise"
  std::map<int, int64_t> groups;    // kernel axis → positions of it one block covers
  std::map<int, int64_t> streams;   // kernel axis → the chunk a block loops over
  std::vector<int64_t> lifted;      // per lifted axis of the query: positions one block covers
  std::vector<int> registers;       // the kernel's values a block keeps in registers (its accumulators, scores)
  int64_t threads = 0;              // per block
  int64_t smem = 0;                 // bytes of shared memory per block
  std::string adjusted;             // how the schedule's tiles were changed to what is built; "" when as asked
};

}  // namespace ncd
