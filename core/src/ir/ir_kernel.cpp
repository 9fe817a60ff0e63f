// Kernels as diagrams (ncd/ir_kernel.h), shared by the passes that form them.
#include "ncd/ir_kernel.h"

#include <algorithm>
#include <functional>
#include <map>

#include "ncd/ir_edit.h"

namespace ncd::ir {

std::set<int> recomputed_ops(const Diagram &diagram) {
  std::set<int> out;
  auto escaping = escaping_values(diagram);
  for (const auto &op : diagram.body.ops) {
    if (op->kind == OpKind::Access && !escaping.count(op->results.at(0)) && op->operands.size() > 1 &&
        !diagram.producer(op->operands[0])) {
      bool computed = true;  // every gather index is computed from positions
      for (size_t i = 1; i < op->operands.size(); ++i) {
        const Op *producer = diagram.producer(op->operands[i]);
        computed = computed && producer && (is_data_free(diagram, *producer) || out.count(producer->id));
      }
      if (computed) out.insert(op->id);
      continue;
    }
    if (op->kind != OpKind::Elementwise || escaping.count(op->results.at(0))) continue;
    bool leaves = true, from_grid = false, reads = false;
    for (int operand : op->operands) {
      const Op *producer = diagram.producer(operand);
      if (!producer) {
        reads = true;  // an input or param
      } else if (out.count(producer->id)) {
        from_grid = reads = true;
      } else if (!is_data_free(diagram, *producer)) {
        leaves = false;
      }
    }
    auto result = axis_set(diagram.value(op->results.at(0)));
    bool broadcast = true;  // no input read has every axis of the result
    for (int operand : op->operands) {
      if (diagram.producer(operand)) continue;
      auto axes = axis_set(diagram.value(operand));
      broadcast = broadcast && !std::includes(axes.begin(), axes.end(), result.begin(), result.end());
    }
    if (leaves && reads && (broadcast || from_grid)) out.insert(op->id);
  }
  for (const auto &op : diagram.body.ops)
    if (is_data_free(diagram, *op)) out.insert(op->id);
  return out;
}


KernelDraft draft_kernel(const Program &program, Diagram &diagram, const std::vector<Op *> &ops,
                         const std::set<int> &recomputed, const std::string &stem, int number) {
  KernelDraft built;
  std::vector<int> &inputs = built.inputs, &outputs = built.outputs;
  std::set<int> members;
  for (Op *op : ops) members.insert(op->id);
  std::set<int> produced;
  for (Op *op : ops) produced.insert(op->results.begin(), op->results.end());
  // Inputs: values the group reads that it does not produce; data-free producers are cloned in.
  std::vector<const Op *> cloned_free;
  std::set<int> seen_inputs, seen_free;
  std::function<void(int)> need = [&](int value) {
    if (produced.count(value) || seen_inputs.count(value)) return;
    const Op *producer = diagram.producer(value);
    if (producer && recomputed.count(producer->id)) {
      if (!seen_free.insert(producer->id).second) return;
      for (int operand : producer->operands) need(operand);
      cloned_free.push_back(producer);
      return;
    }
    seen_inputs.insert(value);
    inputs.push_back(value);
  };
  for (Op *op : ops)
    for (int operand : op->operands) need(operand);
  // Outputs: values used outside the group or leaving the diagram.
  auto used = users(diagram);
  auto escaping = escaping_values(diagram);
  for (Op *op : ops)
    for (int value : op->results) {
      bool outside = escaping.count(value) > 0;
      for (Op *user : used[value]) outside = outside || !members.count(user->id);
      if (outside) outputs.push_back(value);
    }
  auto kernel = std::make_unique<Diagram>();
  kernel->name = fresh_diagram_name(program, diagram.name + "_" + stem + std::to_string(number));
  kernel->module = diagram.module;
  kernel->location = ops.front()->location;
  kernel->values = diagram.values;
  for (auto &value : kernel->values) {
    value.role = Value::Role::Intermediate;
    value.instances = 1;
  }
  for (int value : inputs) {
    kernel->value(value).role = Value::Role::Input;
    kernel->value(value).producer = -1;
    kernel->inputs.push_back(value);
  }
  for (int value : outputs) {
    kernel->value(value).role = Value::Role::Output;
    kernel->outputs.push_back(value);
    // Kernel outputs carry names the caller can bind; temporaries get one.
    if (kernel->value(value).name.empty() || kernel->value(value).name[0] == '%')
      kernel->value(value).name = "t" + std::to_string(value);
  }
  for (int value : inputs)
    if (kernel->value(value).name.empty() || kernel->value(value).name[0] == '%')
      kernel->value(value).name = "t" + std::to_string(value);
  for (const Op *op : cloned_free) kernel->body.ops.push_back(clone_op(*op));
  for (Op *op : ops) kernel->body.ops.push_back(clone_op(*op));
  kernel->max_op_id = diagram.max_op_id;
  built.kernel = std::move(kernel);
  return built;
}

Diagram &install_kernel(Program &program, Diagram &diagram, KernelDraft draft, const std::vector<Op *> &ops) {
  std::set<int> members;
  for (Op *op : ops) members.insert(op->id);
  std::unique_ptr<Diagram> &kernel = draft.kernel;
  int callee = static_cast<int>(program.diagrams.size());
  auto call = make_op(diagram, OpKind::Call, ops.front()->location);
  call->callee_name = kernel->name;
  call->callee = callee;
  call->operands = draft.inputs;
  // Every axis of the kernel is bound to itself: without a binding, a callee
  // axis keeps its file's size, but the kernel must take whatever size the
  // enclosing diagram runs with (a call binding it, or -D).
  std::set<int> kernel_axes;
  for (const auto &op : kernel->body.ops) collect_axes(*kernel, *op, kernel_axes);
  for (int axis : kernel_axes) call->bindings.emplace_back(axis, axis);
  set_results(diagram, *call, draft.outputs);
  for (const std::vector<int> *list : {&draft.outputs, &draft.inputs})
    for (int value : *list)
      if (diagram.value(value).name.empty() || diagram.value(value).name[0] == '%')
        diagram.value(value).name = "t" + std::to_string(value);
  Diagram &made = *kernel;
  program.diagrams.push_back(std::move(kernel));
  size_t position = 0;
  while (position < diagram.body.ops.size() && !members.count(diagram.body.ops[position]->id)) ++position;
  erase_ops(diagram.body, [&](const Op &op) { return members.count(op.id) > 0; });
  diagram.body.ops.insert(diagram.body.ops.begin() + static_cast<std::ptrdiff_t>(position), std::move(call));
  return made;
}

// Restores dependency order after kernels replaced groups (stable: program order where possible).
void topological_sort(Diagram &diagram) {
  std::map<int, size_t> producer_position;
  auto &ops = diagram.body.ops;
  for (size_t i = 0; i < ops.size(); ++i)
    for (int value : ops[i]->results) producer_position[value] = i;
  std::vector<std::vector<size_t>> dependents(ops.size());
  std::vector<int> pending(ops.size(), 0);
  for (size_t i = 0; i < ops.size(); ++i) {
    std::set<size_t> from;
    std::function<void(const Region &)> operands_of = [&](const Region &region) {
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
  std::vector<std::unique_ptr<Op>> sorted;
  while (!ready.empty()) {
    size_t i = *ready.begin();
    ready.erase(ready.begin());
    sorted.push_back(std::move(ops[i]));
    for (size_t d : dependents[i])
      if (--pending[d] == 0) ready.insert(d);
  }
  ops = std::move(sorted);
}

}  // namespace ncd::ir
