// Pass `fuse`: groups operations into kernels.
//
// Preconditions: a verified diagram; `stream`, when wanted, has run (a
// contraction joins the kernel of the softmax it consumes only when that
// softmax's axis is streamed). Greedy, in program order, each operation joins
// the kernel of one of its operands' producers when
//   - elementwise: its axes are within the axes of that operand (an epilogue:
//     bias, activation, residual add, scaling, masks);
//   - reduction or normalisation: it reads that kernel's value (row-wise
//     statistics after an elementwise chain or a matmul: fused normalisations);
//   - contraction: the kernel holds only elementwise work (a prologue such as
//     Q·rsqrt(#d)), or it consumes a softmax over an axis it sums and the
//     diagram streams that axis (attention);
// and joining keeps the kernel convex (no path leaves it and comes back).
// Calls, repeats, accesses and merges join no kernel; calls, repeats and
// merges take no epilogue either (an access may: a shifted or gathered read
// followed by elementwise work is one pass over the data). Operations that read
// no data (constants, sizes, axis positions) are recomputed where needed, and
// so are elementwise functions of inputs read at positions that broadcast them
// to a grid (`qdoc[q] == kdoc[k]`: a mask from document ids), gathers from an
// input at positions computed that way (`table[bucket(k - q)]`: T5's relative
// bias) and what is computed from those alone: a kernel computes them where it
// needs them instead of reading a mask or bias tensor.
// A kernel the pass `grid` formed (a score grid recomputed per tile) stays
// one kernel.
// A kernel of two or more operations becomes a diagram `<Diagram>_kernel<N>`
// with an empty schedule (its tiles come from the `tile` pass) called with
// every axis bound to itself (so it runs at the caller's sizes); when one kernel covers the whole diagram, the diagram
// itself is the kernel and gets the schedule. Params used by a kernel are
// passed to it as inputs, so their paths (docs/RUN.md) do not change.
#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "ncd/hardware.h"
#include "ncd/ir_edit.h"
#include "ncd/ir_grid.h"
#include "ncd/ir_kernel.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

struct Group {
  std::vector<ir::Op *> ops;
  bool has_contraction = false;
  bool has_reduction = false;  // reduce or normalize
  bool closed = false;         // a call, repeat or merge: nothing joins it
  std::set<int> upstream;      // groups this one depends on
};

class Fuse : public Pass {
 public:
  std::string name() const override { return "fuse"; }
  std::string description() const override {
    return "Group operations into kernels (epilogues, normalisations, attention)";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::vector<Group> groups;
    std::map<int, int> group_of_op;     // op id → group
    std::map<int, int> group_of_value;  // value id → group of its producer (non-free ops)
    std::set<int> free_ops;
    recomputed_ = ir::recomputed_ops(diagram);
    if (ir::is_grid_kernel(diagram, recomputed_)) return result;
    for (auto &entry : diagram.body.ops) {
      ir::Op &op = *entry;
      if (recomputed_.count(op.id)) {
        free_ops.insert(op.id);
        continue;
      }
      std::set<int> upstream;
      for (int operand : op.operands) {
        auto it = group_of_value.find(operand);
        if (it == group_of_value.end()) continue;
        upstream.insert(it->second);
        upstream.insert(groups[static_cast<size_t>(it->second)].upstream.begin(),
                        groups[static_cast<size_t>(it->second)].upstream.end());
      }
      int joined = -1;
      // Positions (argmax, argmin, topk, sort) are kernels of their own: the fused row kernels carry none.
      const bool alone =
          op.kind == ir::OpKind::Select || (op.kind == ir::OpKind::Reduce && ops::info(op.function).position);
      if (op.kind != ir::OpKind::Call && op.kind != ir::OpKind::Repeat && op.kind != ir::OpKind::Access &&
          op.kind != ir::OpKind::Merge && !alone) {
        for (int operand : op.operands) {
          auto it = group_of_value.find(operand);
          if (it == group_of_value.end()) continue;
          int candidate = it->second;
          if (groups[static_cast<size_t>(candidate)].closed) continue;
          if (!convex(groups, group_of_value, op, candidate)) continue;
          if (can_join(diagram, groups[static_cast<size_t>(candidate)], op, operand)) {
            joined = candidate;
            break;
          }
        }
      }
      if (joined < 0) {
        joined = static_cast<int>(groups.size());
        groups.push_back(Group{});
      }
      upstream.erase(joined);
      Group &group = groups[static_cast<size_t>(joined)];
      group.ops.push_back(&op);
      group.upstream.insert(upstream.begin(), upstream.end());
      // A scan is a kernel of its own (no fused kernel carries a scan's state):
      // it joins no group (can_join) and nothing joins its.
      group.closed = group.closed || op.kind == ir::OpKind::Call || op.kind == ir::OpKind::Repeat ||
                     op.kind == ir::OpKind::Merge || op.kind == ir::OpKind::Scan || alone;
      group.has_contraction = group.has_contraction || op.kind == ir::OpKind::Contract;
      group.has_reduction = group.has_reduction || op.kind == ir::OpKind::Reduce || op.kind == ir::OpKind::Normalize;
      group_of_op[op.id] = joined;
      for (int value : op.results) group_of_value[value] = joined;
    }
    std::vector<int> kernels;
    for (size_t g = 0; g < groups.size(); ++g)
      if (groups[g].ops.size() >= 2) kernels.push_back(static_cast<int>(g));
    if (kernels.empty()) return result;
    size_t non_free = diagram.body.ops.size() - free_ops.size();
    bool has_nested = false;
    for (const auto &op : diagram.body.ops)
      has_nested = has_nested || op->kind == ir::OpKind::Call || op->kind == ir::OpKind::Repeat;
    if (kernels.size() == 1 && groups[static_cast<size_t>(kernels[0])].ops.size() == non_free && !has_nested) {
      // The whole diagram is one kernel: schedule it in place.
      if (diagram.schedules.empty()) {
        ir::Schedule schedule;
        schedule.target = context.hardware ? context.hardware->name : "";
        schedule.location = diagram.location;
        diagram.schedules.push_back(schedule);
      }
      context.note(diagram.location, "'" + diagram.name + "' is one kernel: " +
                                         describe(diagram, groups[static_cast<size_t>(kernels[0])]));
      result.changed = true;
      return result;
    }
    int number = 0;
    for (int g : kernels) extract(program, diagram, groups[static_cast<size_t>(g)], ++number, context);
    // Data-free ops the kernels now recompute are left unused here.
    for (bool removed = true; removed;) {
      auto used = ir::users(diagram);
      auto escaping = ir::escaping_values(diagram);
      std::set<int> unused;
      for (const auto &op : diagram.body.ops) {
        if (!recomputed_.count(op->id)) continue;
        bool live = false;
        for (int value : op->results) live = live || used.count(value) || escaping.count(value);
        if (!live) unused.insert(op->id);
      }
      removed = ir::erase_ops(diagram.body, [&](const ir::Op &op) { return unused.count(op.id) > 0; }) > 0;
    }
    ir::topological_sort(diagram);
    // Stream directives move with the kernels that hold their accumulators; the
    // caller keeps none.
    diagram.schedules.clear();
    result.changed = true;
    return result;
  }

 private:
  static std::string describe(const ir::Diagram &diagram, const Group &group) {
    std::string out;
    for (const ir::Op *op : group.ops) {
      std::string what = op->kind == ir::OpKind::Elementwise || op->kind == ir::OpKind::Reduce ||
                                 op->kind == ir::OpKind::Normalize || op->kind == ir::OpKind::Scan
                             ? std::string(ops::name(op->function))
                             : std::string(ir::op_kind_name(op->kind));
      out += (out.empty() ? "" : ", ") + what + " " + ir::value_label(diagram, op->results[0]);
    }
    return out;
  }

  std::set<int> recomputed_;  // ir::recomputed_ops: every kernel recomputes them

  // Joining `op` to `candidate` keeps it convex: no other operand of `op`
  // comes from a group downstream of the candidate.
  static bool convex(const std::vector<Group> &groups, const std::map<int, int> &group_of_value, const ir::Op &op,
                     int candidate) {
    for (int operand : op.operands) {
      auto it = group_of_value.find(operand);
      if (it == group_of_value.end() || it->second == candidate) continue;
      if (groups[static_cast<size_t>(it->second)].upstream.count(candidate)) return false;
    }
    return true;
  }

  static bool can_join(const ir::Diagram &diagram, const Group &group, const ir::Op &op, int operand) {
    const ir::Value &input = diagram.value(operand);
    const ir::Value &output = diagram.value(op.results[0]);
    switch (op.kind) {
      case ir::OpKind::Elementwise: {
        auto in = ir::axis_set(input);
        for (int axis : output.axes)
          if (!in.count(axis)) return false;  // would broadcast the kernel's value: not an epilogue
        return true;
      }
      case ir::OpKind::Reduce:
      case ir::OpKind::Normalize: return true;
      case ir::OpKind::Contract: {
        if (!group.has_contraction && !group.has_reduction) return true;  // a prologue
        const ir::Op *producer = diagram.producer(operand);
        return producer && producer->kind == ir::OpKind::Normalize && ops::info(producer->function).stream == ops::Stream::Online &&
               producer->axes.size() == 1 &&
               std::find(op.axes.begin(), op.axes.end(), producer->axes[0]) != op.axes.end() &&
               ir::streams_axis(diagram, producer->axes[0]);
      }
      default: return false;
    }
  }

  void extract(ir::Program &program, ir::Diagram &diagram, Group &group, int number, PassContext &context) {
    ir::KernelDraft draft = ir::draft_kernel(program, diagram, group.ops, recomputed_, "kernel", number);
    // Stream directives whose axis this kernel sums or reduces move here.
    ir::Schedule schedule;
    schedule.target = context.hardware ? context.hardware->name : "";
    schedule.location = draft.kernel->location;
    for (const auto &parent : diagram.schedules)
      for (const auto &directive : parent.directives) {
        if (directive.kind != ir::ScheduleDirective::Kind::Stream) continue;
        bool consumes = false;
        for (ir::Op *op : group.ops)
          consumes = consumes || std::find(op->axes.begin(), op->axes.end(), directive.axis) != op->axes.end();
        if (consumes) schedule.directives.push_back(directive);
      }
    draft.kernel->schedules.push_back(schedule);
    context.note(draft.kernel->location, "kernel " + draft.kernel->name + ": " + describe(diagram, group));
    ir::install_kernel(program, diagram, std::move(draft), group.ops);
  }

};

int register_fuse(Registry *registry) { return registry->add_pass(std::make_unique<Fuse>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_fuse, "pass-fuse", "1.0.0", "Pass fuse: kernel fusion", register_fuse)
