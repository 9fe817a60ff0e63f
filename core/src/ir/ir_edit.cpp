// Editing helpers for passes (ncd/ir_edit.h).
#include "ncd/ir_edit.h"

#include <functional>

namespace ncd::ir {

int add_value(Diagram &diagram, const std::string &name, std::vector<int> axes, DType dtype,
              const SourceLocation &location) {
  Value value;
  value.id = static_cast<int>(diagram.values.size());
  value.name = name;
  value.axes = std::move(axes);
  value.dtype = dtype;
  value.role = Value::Role::Intermediate;
  value.location = location;
  diagram.values.push_back(value);
  return value.id;
}

std::unique_ptr<Op> make_op(Diagram &diagram, OpKind kind, const SourceLocation &location) {
  auto op = std::make_unique<Op>();
  op->id = ++diagram.max_op_id;
  op->kind = kind;
  op->location = location;
  return op;
}

void set_results(Diagram &diagram, Op &op, std::vector<int> results) {
  op.results = std::move(results);
  for (int result : op.results) diagram.value(result).producer = op.id;
}

std::map<int, std::vector<Op *>> users(Diagram &diagram) {
  std::map<int, std::vector<Op *>> out;
  std::function<void(Region &, Op *)> walk = [&](Region &region, Op *top) {
    for (auto &op : region.ops) {
      Op *owner = top ? top : op.get();
      for (int operand : op->operands) {
        auto &list = out[operand];
        if (list.empty() || list.back() != owner) list.push_back(owner);
      }
      if (op->body) {
        walk(*op->body, owner);
        for (int yield : op->body_yields) {
          auto &list = out[yield];
          if (list.empty() || list.back() != owner) list.push_back(owner);
        }
      }
    }
  };
  walk(diagram.body, nullptr);
  return out;
}

std::set<int> escaping_values(const Diagram &diagram) {
  std::set<int> out(diagram.outputs.begin(), diagram.outputs.end());
  for_each_op(diagram.body, [&](const Op &op) { out.insert(op.body_yields.begin(), op.body_yields.end()); });
  return out;
}

void replace_uses(Diagram &diagram, int from, int to) {
  std::function<void(Region &)> walk = [&](Region &region) {
    for (auto &op : region.ops) {
      for (int &operand : op->operands)
        if (operand == from) operand = to;
      for (int &yield : op->body_yields)
        if (yield == from) yield = to;
      if (op->body) walk(*op->body);
    }
  };
  walk(diagram.body);
  for (int &output : diagram.outputs)
    if (output == from) output = to;
}

bool is_data_free(const Diagram &diagram, const Op &op) {
  switch (op.kind) {
    case OpKind::Constant:
    case OpKind::SizeOf:
    case OpKind::AxisIndex: return true;
    case OpKind::Elementwise:
      for (int operand : op.operands) {
        const Value &value = diagram.value(operand);
        if (value.producer < 0) return false;
        const Op *producer = diagram.producer(operand);
        if (!producer || !is_data_free(diagram, *producer)) return false;
      }
      return true;
    default: return false;
  }
}

bool reaches_params(const Program &program, const Diagram &diagram) {
  std::set<const Diagram *> seen;
  std::function<bool(const Diagram &)> visit = [&](const Diagram &d) {
    if (!seen.insert(&d).second) return false;
    if (!d.params.empty()) return true;
    bool found = false;
    for_each_op(d.body, [&](const Op &op) {
      if (op.kind == OpKind::Call && !found) found = visit(*program.diagrams[static_cast<size_t>(op.callee)]);
    });
    return found;
  };
  return visit(diagram);
}

bool streams_axis(const Diagram &diagram, int axis) {
  for (const auto &schedule : diagram.schedules)
    for (const auto &directive : schedule.directives)
      if (directive.kind == ScheduleDirective::Kind::Stream && directive.axis == axis) return true;
  return false;
}

std::set<int> axis_set(const Value &value) { return {value.axes.begin(), value.axes.end()}; }

void collect_axes(const Diagram &diagram, const Op &op, std::set<int> &axes) {
  for (int value : op.operands) axes.insert(diagram.value(value).axes.begin(), diagram.value(value).axes.end());
  for (int value : op.results) axes.insert(diagram.value(value).axes.begin(), diagram.value(value).axes.end());
  axes.insert(op.axes.begin(), op.axes.end());
}

std::string value_label(const Diagram &diagram, int value) {
  const std::string &name = diagram.value(value).name;
  return name.empty() || name[0] == '%' ? "%" + std::to_string(value) : name;
}

std::string fresh_diagram_name(const Program &program, const std::string &base) {
  auto taken = [&](const std::string &name) {
    for (const auto &diagram : program.diagrams)
      if (diagram->name == name) return true;
    return false;
  };
  if (!taken(base)) return base;
  for (int n = 2;; ++n)
    if (!taken(base + "_" + std::to_string(n))) return base + "_" + std::to_string(n);
}

std::unique_ptr<Op> clone_op(const Op &op) {
  auto copy = std::make_unique<Op>();
  copy->id = op.id;
  copy->kind = op.kind;
  copy->function = op.function;
  copy->callee_name = op.callee_name;
  copy->label = op.label;
  copy->operands = op.operands;
  copy->results = op.results;
  copy->axes = op.axes;
  copy->constant = op.constant;
  copy->options = op.options;
  copy->access = op.access;
  copy->merges = op.merges;
  copy->callee = op.callee;
  copy->bindings = op.bindings;
  copy->lifted = op.lifted;
  copy->count = op.count;
  if (op.body) copy->body = clone_region(*op.body);
  copy->body_arguments = op.body_arguments;
  copy->body_yields = op.body_yields;
  copy->location = op.location;
  return copy;
}

std::unique_ptr<Region> clone_region(const Region &region) {
  auto copy = std::make_unique<Region>();
  for (const auto &op : region.ops) copy->ops.push_back(clone_op(*op));
  return copy;
}

std::unique_ptr<Diagram> clone_diagram(const Diagram &diagram, const std::string &name) {
  auto out = std::make_unique<Diagram>();
  out->name = name;
  out->module = diagram.module;
  out->location = diagram.location;
  out->inputs = diagram.inputs;
  out->params = diagram.params;
  out->outputs = diagram.outputs;
  out->values = diagram.values;
  for (const auto &op : diagram.body.ops) out->body.ops.push_back(clone_op(*op));
  out->schedules = diagram.schedules;
  out->max_op_id = diagram.max_op_id;
  return out;
}

}  // namespace ncd::ir
