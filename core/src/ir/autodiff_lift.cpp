// A called diagram with its call's lifted axes made its own (autodiff_impl.h,
// lift_callee): what `ncd grad` differentiates for a lifted call of a diagram
// with params, so that a param's gradient is one contraction over the lifted
// axes (Σ_seq d_Y ⊗ X) rather than a gradient per lifted position summed
// afterwards (seq times the param's memory).
//
// Preconditions: a verified callee. Each input gains the lifted axes its
// argument carries (outermost, as a lifted call lays them out); every op's
// results gain the lifted axes its operands have, a nested call is lifted over
// them in turn, and each output gains all of them (an output that does not
// depend on some is copied along it, as the lifted call broadcasts it).
#include <set>

#include "autodiff_impl.h"
#include "ncd/ir_edit.h"

namespace ncd::autodiff {

std::unique_ptr<ir::Diagram> lift_callee(const ir::Diagram &callee, const std::vector<int> &lifted,
                                         const std::vector<std::vector<int>> &carried) {
  std::set<int> own;
  for (const ir::Value &v : callee.values) own.insert(v.axes.begin(), v.axes.end());
  bool plain = true;
  ir::for_each_op(callee.body, [&](const ir::Op &op) {
    std::set<int> axes;
    ir::collect_axes(callee, op, axes);
    own.insert(axes.begin(), axes.end());
    plain &= op.kind != ir::OpKind::Repeat;
  });
  for (int axis : lifted)
    if (own.count(axis)) return nullptr;  // the callee has that axis already: lifting would merge the two
  if (!plain) return nullptr;

  auto out = ir::clone_diagram(callee, callee.name);
  ir::Diagram &l = *out;
  l.outputs.clear();
  std::map<int, std::vector<int>> gained;  // value → the lifted axes it has, in `lifted` order
  auto gain = [&](int value, const std::set<int> &axes) {
    std::vector<int> ordered;
    for (int axis : lifted)
      if (axes.count(axis)) ordered.push_back(axis);
    gained[value] = ordered;
    std::vector<int> &own_axes = l.value(value).axes;
    own_axes.insert(own_axes.begin(), ordered.begin(), ordered.end());
  };
  for (size_t i = 0; i < l.inputs.size() && i < carried.size(); ++i)
    gain(l.inputs[i], std::set<int>(carried[i].begin(), carried[i].end()));
  for (auto &op : l.body.ops) {
    std::set<int> axes;
    for (int operand : op->operands)
      if (auto it = gained.find(operand); it != gained.end()) axes.insert(it->second.begin(), it->second.end());
    if (axes.empty()) continue;
    if (op->kind == ir::OpKind::Access || op->kind == ir::OpKind::Merge) {
      // The source's new positions are read where they are (an access) or pass through (a merge).
      for (int axis : gained[op->operands[0]]) {
        if (op->kind == ir::OpKind::Access) {
          ir::AccessIndex index;
          index.terms = {{axis, 1}};
          op->access.insert(op->access.begin(), index);
        } else {
          op->merges.insert(op->merges.begin(), std::vector<int>{axis});
        }
      }
    }
    if (op->kind == ir::OpKind::Call)
      for (int axis : lifted)
        if (axes.count(axis)) op->lifted.push_back(axis);
    for (int result : op->results) gain(result, axes);
  }
  // Every output has every lifted axis, as the lifted call's results do.
  std::set<int> all(lifted.begin(), lifted.end());
  for (int id : callee.outputs) {
    if (gained[id].size() == lifted.size()) {
      l.outputs.push_back(id);
      continue;
    }
    const ir::Value old = l.value(id);
    std::vector<int> axes = old.axes;
    for (int axis : lifted)
      if (std::find(axes.begin(), axes.end(), axis) == axes.end()) axes.insert(axes.begin(), axis);
    const int copy = ir::add_value(l, old.name, axes, old.dtype, old.location);
    l.value(copy).role = ir::Value::Role::Output;
    l.value(id).role = ir::Value::Role::Intermediate;
    l.value(id).name = "";
    auto op = ir::make_op(l, ir::OpKind::Elementwise, old.location);
    op->function = ops::Fn::Copy;
    op->operands = {id};
    ir::set_results(l, *op, {copy});
    l.body.ops.push_back(std::move(op));
    l.outputs.push_back(copy);
  }
  return out;
}

}  // namespace ncd::autodiff
