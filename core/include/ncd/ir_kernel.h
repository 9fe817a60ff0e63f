// Kernels as diagrams: which ops every kernel recomputes rather than reads,
// the diagram of a group of ops (its inputs, outputs and the recomputed ops
// it needs), and the call that replaces the group. `fuse` and `grid` form
// kernels with these (docs/OPTIMIZE.md).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd::ir {

// Ops a kernel recomputes where it needs them instead of reading their
// values: data-free ops (constants, sizes, axis positions), elementwise
// functions of inputs read at positions whose result has axes no input read
// has (a grid: `qdoc[q] == kdoc[k]`, `slope * (q - k)`), gathers from an
// input at indices computed that way (`table[bucket(k - q)]`), and what is
// computed from those alone; none whose value leaves the diagram.
std::set<int> recomputed_ops(const Diagram &diagram);

// The diagram of a kernel made of `ops` (in program order) of `diagram`:
// named `<diagram>_<stem><number>` (fresh), with the recomputed ops it needs
// cloned in, its inputs (what it reads from outside, params included) and
// outputs (what is used outside or leaves `diagram`), and no schedule.
struct KernelDraft {
  std::unique_ptr<Diagram> kernel;
  std::vector<int> inputs, outputs;
};
KernelDraft draft_kernel(const Program &program, Diagram &diagram, const std::vector<Op *> &ops,
                         const std::set<int> &recomputed, const std::string &stem, int number);

// Adds the drafted kernel to the program and replaces its ops in `diagram`
// by one call (every axis bound to itself, so that the kernel runs at the
// caller's sizes), placed where the first op was. Returns the kernel.
Diagram &install_kernel(Program &program, Diagram &diagram, KernelDraft draft, const std::vector<Op *> &ops);

// Restores dependency order after kernels replaced groups of ops (stable:
// program order where possible).
void topological_sort(Diagram &diagram);

}  // namespace ncd::ir
