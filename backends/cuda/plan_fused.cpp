// The planner of the fused kernels `ncd optimize` writes: the runtime axes of
// each value as the per-op kernels would lay them out, and the iteration
// space of the kernel (for a row kernel, its rows and the axes a warp walks),
// or a decline when an output or an intermediate does not fit that space.
#include "generator.h"

namespace ncd::cuda::detail {

// The runtime axes of a value of a fused kernel, as the per-op kernels would lay it out.
std::vector<int> Generator::fused_axes(Frame &frame, int id) {
  if (auto it = frame.values.find(id); it != frame.values.end())
    return it->second.kind == Ten::Kind::Literal ? std::vector<int>{} : it->second.axes;
  const ir::Diagram &d = *frame.diagram;
  const ir::Op *op = d.producer(id);
  if (!op) return get(frame, id).axes;
  std::vector<int> own, from;
  for (int axis : d.value(id).axes) own.push_back(rt_axis(frame, axis));
  std::set<int> drop;
  auto add = [&](const std::vector<int> &axes) { from.insert(from.end(), axes.begin(), axes.end()); };
  switch (op->kind) {
    case OpKind::Constant:
    case OpKind::SizeOf: return {};
    case OpKind::AxisIndex: return {rt_axis(frame, op->axes.at(0))};
    case OpKind::Access: {
      const ir::Value &source = d.value(op->operands.at(0));
      std::vector<int> axes = fused_axes(frame, op->operands[0]);
      for (int axis : source.axes) drop.insert(rt_axis(frame, axis));
      add(axes);
      for (const ir::AccessIndex &ix : op->access)
        if (ix.kind == ir::AccessIndex::Kind::Gather)
          add(fused_axes(frame, op->operands.at(static_cast<size_t>(ix.gather_operand))));
      break;
    }
    default:
      for (int operand : op->operands) add(fused_axes(frame, operand));
      if (op->kind == OpKind::Contract || op->kind == OpKind::Reduce)
        for (int axis : op->axes) drop.insert(rt_axis(frame, axis));
  }
  std::vector<int> extra;
  for (int a : from)
    if (!drop.count(a) && std::find(own.begin(), own.end(), a) == own.end() &&
        std::find(extra.begin(), extra.end(), a) == extra.end())
      extra.push_back(a);
  extra.insert(extra.end(), own.begin(), own.end());
  if (op->kind == OpKind::Normalize)
    for (int axis : op->axes)
      if (std::find(extra.begin(), extra.end(), rt_axis(frame, axis)) == extra.end())
        extra.push_back(rt_axis(frame, axis));
  return extra;
}

bool Generator::plan_fused(Frame &frame, const ir::Diagram &d, const FusedMatch &m, FusedLayout &l, std::string &why) {
  l.space = fused_axes(frame, m.main ? m.main->results.at(0) : d.outputs.at(0));
  if (m.kind == FusedMatch::Kind::Row) {
    std::vector<int> in_axes = fused_axes(frame, m.main->operands.at(0));
    std::vector<int> along;
    for (int axis : m.main->axes) along.push_back(rt_axis(frame, axis));
    if (m.main->kind == OpKind::Normalize) {
      l.loop_axes = along;
      for (int a : l.space)
        if (std::find(along.begin(), along.end(), a) == along.end()) l.row_axes.push_back(a);
    } else {
      l.row_axes = l.space;
      for (int a : along)
        if (std::find(in_axes.begin(), in_axes.end(), a) != in_axes.end())
          l.loop_axes.push_back(a);
        else
          l.missing *= size(a);
    }
  }
  for (int id : d.outputs) {
    std::vector<int> axes = fused_axes(frame, id);
    if (!same_axes(axes, l.space)) {
      why = "its output '" + d.value(id).name + "' has axes " + axis_list(axes) + ", not those of the kernel " +
            axis_list(l.space);
      return false;
    }
  }
  for (int id : m.after)
    if (!sub_axes(fused_axes(frame, id), l.space)) {
      why = "'" + d.value(id).name + "' is broadcast beyond the kernel's axes " + axis_list(l.space);
      return false;
    }
  return true;
}

}  // namespace ncd::cuda::detail
