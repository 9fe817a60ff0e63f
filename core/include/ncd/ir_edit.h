// Editing the core IR: the small vocabulary every optimization pass shares.
//
// Passes create values and ops, find a value's users, redirect uses and
// delete ops through these helpers so that the invariants the verifier checks
// (ids, producers, dependency order) hold after every edit without each pass
// re-deriving them.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd::ir {

// Adds an intermediate value and returns its id.
int add_value(Diagram &diagram, const std::string &name, std::vector<int> axes, DType dtype,
              const SourceLocation &location);

// A new op (id assigned, results' producers set) to be placed by the caller.
std::unique_ptr<Op> make_op(Diagram &diagram, OpKind kind, const SourceLocation &location);
void set_results(Diagram &diagram, Op &op, std::vector<int> results);

// Ops of the diagram's top-level region that use each value (an op appears
// once per value even when it uses it twice), and the values the diagram
// outputs or a repeat yields.
std::map<int, std::vector<Op *>> users(Diagram &diagram);
std::set<int> escaping_values(const Diagram &diagram);

// Replaces every use of `from` (operands, outputs, yields, in nested regions too) by `to`.
void replace_uses(Diagram &diagram, int from, int to);

// Removes the ops of the top-level region for which `dead` returns true.
template <typename Predicate>
int erase_ops(Region &region, Predicate dead) {
  int erased = 0;
  std::vector<std::unique_ptr<Op>> kept;
  for (auto &op : region.ops) {
    if (dead(*op))
      ++erased;
    else
      kept.push_back(std::move(op));
  }
  region.ops = std::move(kept);
  return erased;
}

// Whether an op reads no tensor data: constants, sizes, axis positions and
// elementwise functions of those only. Such ops are free to recompute.
bool is_data_free(const Diagram &diagram, const Op &op);

// Whether `diagram`, or a diagram it calls (transitively), declares params.
// Such a call site owns its param instances (their paths name it, docs/RUN.md),
// so passes must neither merge, remove nor inline it.
bool reaches_params(const Program &program, const Diagram &diagram);

// Whether a schedule of the diagram streams `axis`.
bool streams_axis(const Diagram &diagram, int axis);

// The value's axes as a set (their order is only a storage layout).
std::set<int> axis_set(const Value &value);

// Every axis an op's operands, results and own axis list mention.
void collect_axes(const Diagram &diagram, const Op &op, std::set<int> &axes);

// The value's display name: its user name, or "%id".
std::string value_label(const Diagram &diagram, int value);

// A fresh diagram name based on `base` that no diagram of the program has.
std::string fresh_diagram_name(const Program &program, const std::string &base);

// A copy of a diagram under another name: values, ops (ids kept), signature and schedules.
std::unique_ptr<Diagram> clone_diagram(const Diagram &diagram, const std::string &name);

// Deep copy of a region (op ids and value ids kept).
std::unique_ptr<Region> clone_region(const Region &region);
std::unique_ptr<Op> clone_op(const Op &op);

}  // namespace ncd::ir
