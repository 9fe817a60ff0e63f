// Pass `inline`: replaces calls by the bodies of their callees.
//
// Preconditions: a verified diagram. A call is inlined when its callee (and
// what that reaches) holds no params — a param's path names its call site
// (docs/RUN.md), so inlining would change which weights it reads — and no
// repeat, access or merge, when its bindings map distinct callee axes to
// distinct caller axes (self-attention binds q and k both to seq: its body
// needs two axes where the caller has one), and when no internal axis of the
// callee is also an axis the call is lifted over. The callee's values get the
// caller's axes through the bindings plus the lifted axes their operands
// carry; each inlined op keeps its own source location (its origin, for the
// explain log and the renderer). Every other call is kept, with the reason in
// the explain log.
#include <algorithm>
#include <map>
#include <set>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

std::string refusal(const ir::Program &program, const ir::Diagram &callee, const ir::Op &call) {
  if (!callee.params.empty()) return "it holds params (their paths name the call site)";
  std::string found;
  ir::for_each_op(callee.body, [&](const ir::Op &op) {
    if (!found.empty()) return;
    if (op.kind == ir::OpKind::Repeat || op.kind == ir::OpKind::Access || op.kind == ir::OpKind::Merge ||
        op.kind == ir::OpKind::Call)
      found = "its body has a " + std::string(ir::op_kind_name(op.kind));
  });
  if (!found.empty()) return found;
  std::set<int> targets;
  for (auto [from, to] : call.bindings)
    if (!targets.insert(to).second)
      return "two of its axes are bound to '" + program.axis(to).name + "' (its body needs both)";
  std::set<int> bound;
  for (auto [from, to] : call.bindings) bound.insert(from);
  std::set<int> lifted(call.lifted.begin(), call.lifted.end());
  for (const auto &value : callee.values)
    for (int axis : value.axes)
      if (!bound.count(axis) && (lifted.count(axis) || targets.count(axis)))
        return "its axis '" + program.axis(axis).name + "' is also an axis of the caller's at this call";
  return "";
}

class Inline : public Pass {
 public:
  std::string name() const override { return "inline"; }
  std::string description() const override { return "Inline calls of diagrams without params"; }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::vector<std::unique_ptr<ir::Op>> out;
    for (auto &entry : diagram.body.ops) {
      if (entry->kind != ir::OpKind::Call) {
        out.push_back(std::move(entry));
        continue;
      }
      const ir::Op &call = *entry;
      const ir::Diagram &callee = *program.diagrams[static_cast<size_t>(call.callee)];
      std::string why = refusal(program, callee, call);
      if (!why.empty()) {
        context.note(call.location, "call of '" + callee.name + "' not inlined: " + why);
        out.push_back(std::move(entry));
        continue;
      }
      inline_call(diagram, callee, call, out);
      context.note(call.location, "inlined the call of '" + callee.name + "' (" +
                                      std::to_string(callee.body.ops.size()) + " operations)");
      result.changed = true;
    }
    diagram.body.ops = std::move(out);
    return result;
  }

 private:
  static void inline_call(ir::Diagram &diagram, const ir::Diagram &callee, const ir::Op &call,
                          std::vector<std::unique_ptr<ir::Op>> &out) {
    std::map<int, int> axis_map;
    for (auto [from, to] : call.bindings) axis_map[from] = to;
    std::set<int> lifted(call.lifted.begin(), call.lifted.end());
    auto map_axis = [&](int axis) {
      auto it = axis_map.find(axis);
      return it == axis_map.end() ? axis : it->second;
    };
    std::map<int, int> value_map;  // callee value → caller value
    for (size_t i = 0; i < callee.inputs.size(); ++i) value_map[callee.inputs[i]] = call.operands[i];
    std::map<int, int> output_slot;  // callee output value → index of the call's result
    for (size_t i = 0; i < callee.outputs.size(); ++i)
      if (!output_slot.count(callee.outputs[i])) output_slot[callee.outputs[i]] = static_cast<int>(i);
    std::set<std::string> names;
    for (const auto &value : diagram.values) names.insert(value.name);
    auto lifted_of = [&](int caller_value) {
      std::vector<int> axes;
      for (int axis : diagram.value(caller_value).axes)
        if (lifted.count(axis)) axes.push_back(axis);
      return axes;
    };
    for (const auto &source : callee.body.ops) {
      auto op = ir::clone_op(*source);
      op->id = ++diagram.max_op_id;
      for (int &operand : op->operands) operand = value_map.at(operand);
      for (int &axis : op->axes) axis = map_axis(axis);
      std::vector<int> extra;
      for (int operand : op->operands)
        for (int axis : lifted_of(operand))
          if (std::find(extra.begin(), extra.end(), axis) == extra.end()) extra.push_back(axis);
      std::vector<int> results;
      for (int result : source->results) {
        const ir::Value &original = callee.value(result);
        std::vector<int> axes;
        for (int axis : original.axes) axes.push_back(map_axis(axis));
        axes.insert(axes.end(), extra.begin(), extra.end());
        auto slot = output_slot.find(result);
        int id;
        if (slot != output_slot.end() && !call.results.empty()) {
          id = call.results[static_cast<size_t>(slot->second)];
          output_slot.erase(slot);
        } else {
          std::string name = original.name;
          if (name.empty() || name[0] == '%' || names.count(name)) name = "";
          id = ir::add_value(diagram, name, axes, original.dtype, original.location);
          if (name.empty()) diagram.value(id).name = "%" + std::to_string(id);
          names.insert(diagram.value(id).name);
        }
        value_map[result] = id;
        results.push_back(id);
      }
      ir::set_results(diagram, *op, results);
      out.push_back(std::move(op));
    }
    // Outputs that are inputs or repeated values of the callee: copies.
    for (const auto &[value, slot] : output_slot) {
      auto copy = ir::make_op(diagram, ir::OpKind::Elementwise, call.location);
      copy->function = ops::Fn::Copy;
      copy->operands = {value_map.at(value)};
      ir::set_results(diagram, *copy, {call.results[static_cast<size_t>(slot)]});
      out.push_back(std::move(copy));
    }
  }
};

int register_inline(Registry *registry) { return registry->add_pass(std::make_unique<Inline>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_inline, "pass-inline", "1.0.0", "Pass inline: call inlining", register_inline)
