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
// Before that, score grids (grid.h: values on a [a, b] grid computed from
// contractions of inputs and only summed away by contractions over a or b,
// as in attention's backward) become one kernel per summed axis that
// recomputes the grid tile by tile, streaming that axis, when the backend that
// builds kernels for the hardware accepts each (`PassContext::planner`; none:
// no grid kernels); only elementwise epilogues join them.
// A kernel of two or more operations becomes a diagram `<Diagram>_kernel<N>`
// with an empty schedule (its tiles come from the `tile` pass) called with
// every axis bound to itself (so it runs at the caller's sizes); when one kernel covers the whole diagram, the diagram
// itself is the kernel and gets the schedule. Params used by a kernel are
// passed to it as inputs, so their paths (docs/RUN.md) do not change.
#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "grid.h"
#include "ncd/hardware.h"
#include "ncd/ir_edit.h"
#include "ncd/kernel_plan.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

struct Group {
  std::vector<ir::Op *> ops;
  bool has_contraction = false;
  bool has_reduction = false;  // reduce or normalize
  bool closed = false;         // a call, repeat or merge: nothing joins it
  int grid = -1;               // a grid kernel (grid_streams_): only elementwise epilogues join it
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
    positional_ = positional(diagram);
    std::map<int, int> grid_of_op = grid_kernels(program, diagram, context);
    std::map<int, int> group_of_grid;
    for (auto &entry : diagram.body.ops) {
      ir::Op &op = *entry;
      if (ir::is_data_free(diagram, op) || positional_.count(op.id)) {
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
      if (auto grid = grid_of_op.find(op.id); grid != grid_of_op.end()) {
        auto [it, fresh] = group_of_grid.emplace(grid->second, static_cast<int>(groups.size()));
        if (fresh) {
          groups.push_back(Group{});
          groups.back().grid = grid->second;
        }
        joined = it->second;
      }
      // Positions (argmax, argmin, topk, sort) are kernels of their own: the fused row kernels carry none.
      const bool alone =
          op.kind == ir::OpKind::Select || (op.kind == ir::OpKind::Reduce && ops::info(op.function).position);
      if (joined < 0 && op.kind != ir::OpKind::Call && op.kind != ir::OpKind::Repeat && op.kind != ir::OpKind::Access &&
          op.kind != ir::OpKind::Merge && !alone) {
        for (int operand : op.operands) {
          auto it = group_of_value.find(operand);
          if (it == group_of_value.end()) continue;
          int candidate = it->second;
          if (groups[static_cast<size_t>(candidate)].closed) continue;
          if (groups[static_cast<size_t>(candidate)].grid >= 0 && op.kind != ir::OpKind::Elementwise) continue;
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
      if (int grid = groups[static_cast<size_t>(kernels[0])].grid; grid >= 0)
        diagram.schedules.front().directives.push_back(grid_stream(grid, diagram.location));
      context.note(diagram.location, "'" + diagram.name + "' is one kernel: " +
                                         describe(diagram, groups[static_cast<size_t>(kernels[0])]));
      result.changed = true;
      return result;
    }
    int number = 0;
    for (int g : kernels) {
      ir::Diagram &kernel = extract(program, diagram, groups[static_cast<size_t>(g)], ++number, context);
      if (int grid = groups[static_cast<size_t>(g)].grid; grid >= 0)
        kernel.schedules.front().directives.push_back(grid_stream(grid, kernel.location));
    }
    // Data-free ops the kernels now recompute are left unused here.
    for (bool removed = true; removed;) {
      auto used = ir::users(diagram);
      auto escaping = ir::escaping_values(diagram);
      std::set<int> unused;
      for (const auto &op : diagram.body.ops) {
        if (!ir::is_data_free(diagram, *op) && !positional_.count(op->id)) continue;
        bool live = false;
        for (int value : op->results) live = live || used.count(value) || escaping.count(value);
        if (!live) unused.insert(op->id);
      }
      removed = ir::erase_ops(diagram.body, [&](const ir::Op &op) { return unused.count(op.id) > 0; }) > 0;
    }
    topological_sort(diagram);
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

  // Elementwise ops of inputs read at positions and of data-free values whose
  // result has axes no input read has (a grid: `qdoc[q] == kdoc[k]`,
  // `slope * (q - k)`), gathers from an input whose indices are computed
  // from positions alone (`table[bucket[q, k]]`), and the elementwise ops of
  // those alone; none whose value leaves the diagram. Kernels recompute them.
  static std::set<int> positional(const ir::Diagram &diagram) {
    std::set<int> out;
    auto escaping = ir::escaping_values(diagram);
    for (const auto &op : diagram.body.ops) {
      if (op->kind == ir::OpKind::Access && !escaping.count(op->results.at(0)) && op->operands.size() > 1 &&
          !diagram.producer(op->operands[0])) {
        bool computed = true;  // every gather index is computed from positions
        for (size_t i = 1; i < op->operands.size(); ++i) {
          const ir::Op *producer = diagram.producer(op->operands[i]);
          computed = computed && producer && (ir::is_data_free(diagram, *producer) || out.count(producer->id));
        }
        if (computed) out.insert(op->id);
        continue;
      }
      if (op->kind != ir::OpKind::Elementwise || escaping.count(op->results.at(0))) continue;
      bool leaves = true, from_grid = false, reads = false;
      for (int operand : op->operands) {
        const ir::Op *producer = diagram.producer(operand);
        if (!producer) {
          reads = true;  // an input or param
        } else if (out.count(producer->id)) {
          from_grid = reads = true;
        } else if (!ir::is_data_free(diagram, *producer)) {
          leaves = false;
        }
      }
      auto result = ir::axis_set(diagram.value(op->results.at(0)));
      bool broadcast = true;  // no input read has every axis of the result
      for (int operand : op->operands) {
        if (diagram.producer(operand)) continue;
        auto axes = ir::axis_set(diagram.value(operand));
        broadcast = broadcast && !std::includes(axes.begin(), axes.end(), result.begin(), result.end());
      }
      if (leaves && reads && (broadcast || from_grid)) out.insert(op->id);
    }
    return out;
  }

  std::set<int> positional_;
  std::vector<int> grid_streams_;  // per grid kernel, the axis it streams

  ir::ScheduleDirective grid_stream(int grid, const SourceLocation &location) const {
    // The chunk is a placeholder: `tile` chooses it.
    return {ir::ScheduleDirective::Kind::Stream, grid_streams_.at(static_cast<size_t>(grid)), 64, {}, {}, location};
  }

  // The score grids (grid.h) whose kernels the backend builds, each kernel
  // given its own copy of the grid ops it recomputes: op id → grid kernel.
  std::map<int, int> grid_kernels(ir::Program &program, ir::Diagram &diagram, PassContext &context) {
    grid_streams_.clear();
    std::map<int, int> out;
    std::set<int> recomputed;
    for (const auto &op : diagram.body.ops)
      if (ir::is_data_free(diagram, *op) || positional_.count(op->id)) recomputed.insert(op->id);
    for (std::vector<fuse::GridKernel> &kernels : fuse::find_grids(diagram, recomputed)) {
      const ir::Op *seed = nullptr;  // the grid's first op, where the note points
      for (const auto &op : diagram.body.ops)
        if (!seed && kernels.front().ops.count(op->id)) seed = op.get();
      std::string grid = "the [";
      for (int axis : diagram.value(seed->results.at(0)).axes)
        grid += (grid.back() == '[' ? "" : ", ") + program.axis(axis).name;
      grid += "] grid of " + ir::value_label(diagram, seed->results.at(0));
      std::string why;
      if (!accepted(program, diagram, kernels, context, why)) {
        context.note(seed->location, grid + " is not recomputed per tile: " + why);
        continue;
      }
      std::string summary;
      for (const fuse::GridKernel &kernel : kernels)
        summary += std::string(summary.empty() ? "" : "; ") + "one grouping " + program.axis(kernel.group).name +
                   " and streaming " + program.axis(kernel.stream).name;
      context.note(seed->location, grid + " is recomputed per tile by " + std::to_string(kernels.size()) +
                                       (kernels.size() == 1 ? " kernel (" : " kernels (") + summary +
                                       ") instead of written whole");
      fuse::separate(diagram, kernels);
      for (const fuse::GridKernel &kernel : kernels) {
        for (int id : kernel.ops) out[id] = static_cast<int>(grid_streams_.size());
        grid_streams_.push_back(kernel.stream);
      }
    }
    return out;
  }

  // Whether the backend builds every kernel of a grid (asked on a copy of the
  // diagram with the kernels separated).
  bool accepted(const ir::Program &program, const ir::Diagram &diagram, std::vector<fuse::GridKernel> kernels,
                const PassContext &context, std::string &why) const {
    if (!context.planner || !context.hardware) {
      why = "no backend builds kernels for the hardware profile";
      return false;
    }
    auto trial = ir::clone_diagram(diagram, diagram.name);
    fuse::separate(*trial, kernels);
    for (const fuse::GridKernel &kernel : kernels) {
      Group group;
      for (const auto &op : trial->body.ops)
        if (kernel.ops.count(op->id)) group.ops.push_back(op.get());
      Built built = build_kernel(program, *trial, group, 0);
      ir::Schedule schedule;
      schedule.target = context.hardware->name;
      schedule.location = built.kernel->location;
      schedule.directives.push_back({ir::ScheduleDirective::Kind::Group, kernel.group, 64, {}, {}, schedule.location});
      schedule.directives.push_back({ir::ScheduleDirective::Kind::Stream, kernel.stream, 64, {}, {}, schedule.location});
      KernelQuery query;
      query.program = &program;
      query.kernel = built.kernel.get();
      query.schedule = &schedule;
      query.size = [&](int axis) { return program.size(axis); };
      query.hardware = context.hardware;
      if (!context.planner->plan_kernel(query, why)) return false;
    }
    return true;
  }

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

  // The diagram of a kernel: the group's ops, the data-free ops and
  // positions it reads (recomputed), its inputs and outputs.
  struct Built {
    std::unique_ptr<ir::Diagram> kernel;
    std::vector<int> inputs, outputs;
  };
  Built build_kernel(const ir::Program &program, ir::Diagram &diagram, const Group &group, int number) const {
    Built built;
    std::vector<int> &inputs = built.inputs, &outputs = built.outputs;
    std::set<int> members;
    for (ir::Op *op : group.ops) members.insert(op->id);
    std::set<int> produced;
    for (ir::Op *op : group.ops) produced.insert(op->results.begin(), op->results.end());
    // Inputs: values the group reads that it does not produce; data-free producers are cloned in.
    std::vector<const ir::Op *> cloned_free;
    std::set<int> seen_inputs, seen_free;
    std::function<void(int)> need = [&](int value) {
      if (produced.count(value) || seen_inputs.count(value)) return;
      const ir::Op *producer = diagram.producer(value);
      if (producer && (ir::is_data_free(diagram, *producer) || positional_.count(producer->id))) {
        if (!seen_free.insert(producer->id).second) return;
        for (int operand : producer->operands) need(operand);
        cloned_free.push_back(producer);
        return;
      }
      seen_inputs.insert(value);
      inputs.push_back(value);
    };
    for (ir::Op *op : group.ops)
      for (int operand : op->operands) need(operand);
    // Outputs: values used outside the group or leaving the diagram.
    auto used = ir::users(diagram);
    auto escaping = ir::escaping_values(diagram);
    for (ir::Op *op : group.ops)
      for (int value : op->results) {
        bool outside = escaping.count(value) > 0;
        for (ir::Op *user : used[value]) outside = outside || !members.count(user->id);
        if (outside) outputs.push_back(value);
      }
    auto kernel = std::make_unique<ir::Diagram>();
    kernel->name = ir::fresh_diagram_name(program, diagram.name + "_kernel" + std::to_string(number));
    kernel->module = diagram.module;
    kernel->location = group.ops.front()->location;
    kernel->values = diagram.values;
    for (auto &value : kernel->values) {
      value.role = ir::Value::Role::Intermediate;
      value.instances = 1;
    }
    for (int value : inputs) {
      kernel->value(value).role = ir::Value::Role::Input;
      kernel->value(value).producer = -1;
      kernel->inputs.push_back(value);
    }
    for (int value : outputs) {
      kernel->value(value).role = ir::Value::Role::Output;
      kernel->outputs.push_back(value);
      // Kernel outputs carry names the caller can bind; temporaries get one.
      if (kernel->value(value).name.empty() || kernel->value(value).name[0] == '%')
        kernel->value(value).name = "t" + std::to_string(value);
    }
    for (int value : inputs)
      if (kernel->value(value).name.empty() || kernel->value(value).name[0] == '%')
        kernel->value(value).name = "t" + std::to_string(value);
    for (const ir::Op *op : cloned_free) kernel->body.ops.push_back(ir::clone_op(*op));
    for (ir::Op *op : group.ops) kernel->body.ops.push_back(ir::clone_op(*op));
    kernel->max_op_id = diagram.max_op_id;
    built.kernel = std::move(kernel);
    return built;
  }

  ir::Diagram &extract(ir::Program &program, ir::Diagram &diagram, Group &group, int number, PassContext &context) {
    std::set<int> members;
    for (ir::Op *op : group.ops) members.insert(op->id);
    Built built = build_kernel(program, diagram, group, number);
    std::unique_ptr<ir::Diagram> &kernel = built.kernel;
    const std::vector<int> &inputs = built.inputs, &outputs = built.outputs;
    // Stream directives whose axis this kernel sums or reduces move here.
    ir::Schedule schedule;
    schedule.target = context.hardware ? context.hardware->name : "";
    schedule.location = kernel->location;
    for (const auto &parent : diagram.schedules)
      for (const auto &directive : parent.directives) {
        if (directive.kind != ir::ScheduleDirective::Kind::Stream) continue;
        bool consumes = false;
        for (ir::Op *op : group.ops)
          consumes = consumes || std::find(op->axes.begin(), op->axes.end(), directive.axis) != op->axes.end();
        if (consumes) schedule.directives.push_back(directive);
      }
    kernel->schedules.push_back(schedule);
    context.note(kernel->location, "kernel " + kernel->name + ": " + describe(diagram, group));
    // The caller: one call in place of the group.
    int callee = static_cast<int>(program.diagrams.size());
    auto call = ir::make_op(diagram, ir::OpKind::Call, group.ops.front()->location);
    call->callee_name = kernel->name;
    call->callee = callee;
    call->operands = inputs;
    // Every axis of the kernel is bound to itself: without a binding, a callee
    // axis keeps its file's size, but the kernel must take whatever size the
    // enclosing diagram runs with (a call binding it, or -D).
    std::set<int> kernel_axes;
    for (const auto &op : kernel->body.ops) ir::collect_axes(*kernel, *op, kernel_axes);
    for (int axis : kernel_axes) call->bindings.emplace_back(axis, axis);
    ir::set_results(diagram, *call, outputs);
    for (int value : outputs)
      if (diagram.value(value).name.empty() || diagram.value(value).name[0] == '%')
        diagram.value(value).name = "t" + std::to_string(value);
    for (int value : inputs)
      if (diagram.value(value).name.empty() || diagram.value(value).name[0] == '%')
        diagram.value(value).name = "t" + std::to_string(value);
    ir::Diagram &made = *kernel;
    program.diagrams.push_back(std::move(kernel));
    size_t position = 0;
    while (position < diagram.body.ops.size() && !members.count(diagram.body.ops[position]->id)) ++position;
    ir::erase_ops(diagram.body, [&](const ir::Op &op) { return members.count(op.id) > 0; });
    diagram.body.ops.insert(diagram.body.ops.begin() + static_cast<std::ptrdiff_t>(position), std::move(call));
    return made;
  }

  // Restores dependency order after kernels replaced groups (stable: program order where possible).
  static void topological_sort(ir::Diagram &diagram) {
    std::map<int, size_t> producer_position;
    auto &ops = diagram.body.ops;
    for (size_t i = 0; i < ops.size(); ++i)
      for (int value : ops[i]->results) producer_position[value] = i;
    std::vector<std::vector<size_t>> dependents(ops.size());
    std::vector<int> pending(ops.size(), 0);
    for (size_t i = 0; i < ops.size(); ++i) {
      std::set<size_t> from;
      std::function<void(const ir::Region &)> operands_of = [&](const ir::Region &region) {
        for (const auto &inner : region.ops) {
          for (int operand : inner->operands)
            if (auto it = producer_position.find(operand); it != producer_position.end() && it->second != i)
              from.insert(it->second);
          if (inner->body) operands_of(*inner->body);
        }
      };
      for (int operand : ops[i]->operands)
        if (auto it = producer_position.find(operand); it != producer_position.end()) from.insert(it->second);
      if (ops[i]->body) operands_of(*ops[i]->body);
      for (size_t f : from) {
        dependents[f].push_back(i);
        ++pending[i];
      }
    }
    std::set<size_t> ready;
    for (size_t i = 0; i < ops.size(); ++i)
      if (!pending[i]) ready.insert(i);
    std::vector<std::unique_ptr<ir::Op>> sorted;
    while (!ready.empty()) {
      size_t i = *ready.begin();
      ready.erase(ready.begin());
      sorted.push_back(std::move(ops[i]));
      for (size_t d : dependents[i])
        if (--pending[d] == 0) ready.insert(d);
    }
    ops = std::move(sorted);
  }
};

int register_fuse(Registry *registry) { return registry->add_pass(std::make_unique<Fuse>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_fuse, "pass-fuse", "1.0.0", "Pass fuse: kernel fusion", register_fuse)
