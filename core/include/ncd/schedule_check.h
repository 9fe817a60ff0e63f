// Schedule legality: the pass that decides whether a `schedule` block can run.
//
// One entry point, check_schedule. Preconditions: `program` came out of sema
// and the verifier without errors; `schedule` is one of `diagram.schedules`;
// `size` returns the concrete size of every axis the diagram uses (the
// program's sizes, or the sizes a call instantiates the diagram with).
//
// Rules (docs/COST.md, "Schedules"):
//   group AXIS by N   — AXIS is one the diagram is lifted or mapped over: no
//                       operation sums, reduces or normalises over it, and every
//                       output carries it; N divides its size.
//   stream AXIS by N  — some operation consumes AXIS, and every one that does is
//                       an accumulator: a contraction, a reduction with a
//                       running form (sum, max, min, mean, prod, logsumexp), or
//                       softmax whose result feeds only contractions over AXIS
//                       (online-softmax rescaling). Nothing may combine a
//                       finished reduction over AXIS with values that still carry
//                       it (that needs two passes). N divides its size.
//   level LEVEL: V, … — LEVEL is a level of the hardware profile; each value is
//                       placed once.
// Capacity (whether the tiles fit their level) is priced by the cost model,
// which reports it the same way (core/src/analysis/napkin.cpp).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/diagnostics.h"
#include "ncd/hardware.h"
#include "ncd/ir.h"

namespace ncd {

struct ScheduleFacts {
  std::map<int, int64_t> groups;         // axis id → tile size
  std::map<int, int64_t> streams;        // axis id → chunk size
  std::map<int, int> residency;          // value id → level index (from `level` directives)
  int tile_level = -1;                   // level index where tiles live by default
  std::map<int, SourceLocation> directive;  // axis id → its group/stream directive
  struct Accumulator {
    int axis = -1;
    std::string kind;   // "sum", "max", ..., "online softmax"
    SourceLocation location;  // the operation that accumulates
  };
  std::vector<Accumulator> accumulators;
  // Softmax ops (ids) over a streamed axis, priced with the online rescaling.
  std::map<int, int> online_softmax;     // op id → streamed axis
};

std::optional<ScheduleFacts> check_schedule(const ir::Program &program, const ir::Diagram &diagram,
                                            const ir::Schedule &schedule, const HardwareProfile &hardware,
                                            const std::function<std::optional<int64_t>(int)> &size,
                                            DiagnosticEngine &diagnostics);

}  // namespace ncd
