// The program each rank of a sharded diagram runs (docs/SHARDING.md, "Rank
// programs"): the diagram at the sizes one device holds, with the collectives
// its plan needs between its operations.
//
// The sharding plan (ncd/sharding.h) says, per call site and operation, which
// axes of each value are split. A rank program states that in the IR itself:
// every split axis of a value becomes a *local twin* axis, the device's share
// (size / devices, positions in the whole axis's order), and every diagram
// reached from the root is copied once per call site, so that one callee can
// be column-parallel at one site and row-parallel at the next. Between two
// operations, what the plan communicates is listed beside the program (a
// reduction across the ranks after an operation, in place), so that every
// pass, backend and verifier reads the copy as ordinary IR. The CPU reference
// runs one such program per rank with the collectives in memory (`ncd run
// --devices N --ranks`); the CUDA generator prints it with NCCL collectives
// (`ncd emit --cuda --nccl`).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ncd/instantiate.h"
#include "ncd/ir.h"
#include "ncd/sharding.h"
#include "ncd/tensor.h"

namespace ncd {

struct RankProgram {
  ir::Program program;  // the root's copy and one copy per call site beneath it, twins among its axes
  int root = -1;        // the root's copy, in program.diagrams
  int64_t devices = 1;  // ranks (the one mesh dimension's size)
  // After `op` (in `program`), its result is combined across the ranks in place: a partial
  // sum over a split axis becomes the whole sum on every rank (an all-reduce).
  struct Reduction {
    const ir::Op *op = nullptr;
    const ir::Diagram *diagram = nullptr;  // the copy holding op
    int value = -1;                        // op's result
    ops::Fn fn = ops::Fn::Sum;             // Sum (a contraction's), Mean, Max or Min
    std::string site;                      // where the plan says it ("h.attn.c_proj")
  };
  std::vector<Reduction> reductions;
  // What a rank holds of a value that crosses the program's edge (a param of any copy, an input or
  // output of the root): its split, keyed by the copy and the value; a value not listed is whole.
  std::map<std::pair<const ir::Diagram *, int>, AxisSplit> slices;
  std::map<int, int> twin_of;  // twin axis → the axis it is the local share of
  // The param instances of the rank program, each beside the original's it is a slice of (the
  // same walk, so the same order; the names differ only where a copy needed a label).
  std::vector<std::pair<ParamInstance, ParamInstance>> params;
};

// The rank program of `diagram`, or nullopt with `why` when its plan needs what a rank program does
// not state: a mesh of more than one dimension, an all-gather, reduce-scatter or all-to-all between
// operations, a value read whole beside a slice of itself, a split output that is not contiguous
// by rank (split along its first axis, plainly), or a read of a split axis's size or positions.
std::optional<RankProgram> build_rank_program(const ir::Program &program, const ir::Diagram &diagram,
                                              const ShardingPlan &plan, std::string &why);

// The rank's share of a dense row-major tensor of `shape` split along dimension `dim`: `rows`
// runs of `run` elements, the k-th at k * `row` + `offset` in the whole, packed one after another
// in the slice. (A split with stride s and extent e views the dimension as (size / (s e), e, s)
// and keeps e / devices of the middle.)
struct RankCut {
  int64_t rows = 1, row = 0, run = 0, offset = 0;
};
RankCut rank_cut(const std::vector<int64_t> &shape, int dim, const AxisSplit &split, int64_t devices, int64_t rank);
// The slice itself, and the whole from every rank's slice (in rank order).
Tensor cut_for_rank(const Tensor &whole, int dim, const AxisSplit &split, int64_t devices, int64_t rank);
Tensor assemble_ranks(const std::vector<Tensor> &slices, const std::vector<int64_t> &whole_shape, int dim,
                      const AxisSplit &split);

}  // namespace ncd
