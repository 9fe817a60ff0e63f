// Score grids (the pass `grid`, docs/OPTIMIZE.md): a [a, b] grid of values computed from
// two contractions of inputs (`S = Q·K`, `dP = dO·V`) through elementwise
// functions, whose values are only summed away by contractions over a or
// over b (`dV = Σ_q P·dO`, `dK = Σ_q dS·Q`, `dQ = Σ_k dS·K`). Such a grid
// never needs to exist whole: each group of consumers that sums one axis is
// a kernel that recomputes the grid tile by tile, streaming that axis and
// grouping the other: FlashAttention-2's backward (dK and dV over a key
// block streaming queries, dQ over a query block streaming keys).
#pragma once

#include <set>
#include <vector>

#include "ncd/ir.h"

namespace ncd::ir {

// One kernel of a grid: the ops it computes (its share of the grid, the
// contractions that sum it, and copies of their results), the axis it
// streams (the one they sum) and the axis it groups.
struct GridKernel {
  std::set<int> ops;         // op ids of the diagram's top-level region
  std::set<int> recomputes;  // those of them that are grid ops (the rest: its sums and their copies)
  int stream = -1, group = -1;
};

// A grid: its kernels (two kernels share the grid ops both need), and whether
// other ops read its values too (softmax[k] or logsumexp[k] of the scores in a
// gradient that recomputes its forward pass): then the grid's ops stay for
// them and every kernel computes its own copy.
struct Grid {
  std::vector<GridKernel> kernels;
  bool shared = false;
};

// The grids of a diagram. `recomputed` are the ops every kernel recomputes
// anyway (ir::recomputed_ops): they belong to no grid.
std::vector<Grid> find_grids(const Diagram &diagram, const std::set<int> &recomputed);

// Gives each kernel its own copy of the grid ops it shares with an earlier
// one, or of every grid op when the grid is shared (new values, each copy
// right after its original), so that the kernels are disjoint. Updates the
// kernels' op ids.
void separate(Diagram &diagram, Grid &grid);

// Whether `diagram` already is one kernel of a grid, as the pass `grid`
// writes it: a schedule streaming the axis its sums sum, and nothing else to do.
bool is_grid_kernel(const Diagram &diagram, const std::set<int> &recomputed);

}  // namespace ncd::ir
