// Score grids for `fuse` (fuse.cpp): a [a, b] grid of values computed from
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

namespace ncd::fuse {

// One kernel of a grid: the ops it computes (its share of the grid and the
// contractions that sum it), the axis it streams (the one they sum) and the
// axis it groups.
struct GridKernel {
  std::set<int> ops;  // op ids of the diagram's top-level region
  int stream = -1, group = -1;
};

// The grids of a diagram and their kernels (two kernels share the grid ops
// both need). `recomputed` are the ops every kernel recomputes anyway (data-free
// ops, positions, masks of positions): they belong to no grid.
std::vector<std::vector<GridKernel>> find_grids(const ir::Diagram &diagram, const std::set<int> &recomputed);

// Gives each kernel its own copy of the grid ops it shares with an earlier
// one (new values, the copy placed before the kernel's first use), so that
// the kernels are disjoint. Updates the kernels' op ids.
void separate(ir::Diagram &diagram, std::vector<GridKernel> &kernels);

}  // namespace ncd::fuse
