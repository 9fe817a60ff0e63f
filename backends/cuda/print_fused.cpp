// The fused kernels `ncd optimize` writes, as planned by plan_match.cpp and
// plan_fused.cpp: the host step (scalars first, then the plan, the outputs,
// the kernel's comment) and the expressions of values computed inside the
// kernel (fexpr: elementwise ops and accesses inlined at the positions of the
// kernel's loop). The bodies are print_gemm.cpp (GEMM + epilogue),
// print_row.cpp (row kernels) and print_pointwise.cpp (pointwise chains).
#include "generator.h"

namespace ncd::cuda::detail {

// A float expression of value `id` of a fused kernel at the positions c.index
// gives; locals for the ops it goes through are appended to c.code.
std::string Generator::fexpr(Frame &frame, KernelArgs &args, ExprCtx &c, int id) {
  if (auto it = c.memo.find(id); it != c.memo.end()) return it->second;
  if (auto it = c.special.find(id); it != c.special.end()) return it->second;
  const ir::Diagram &d = *frame.diagram;
  const ir::Value &value = d.value(id);
  auto local = [&](const std::string &e) {
    std::string n = "e_v" + str(id) + "_" + str((*c.counter)++);
    c.code += c.pad + "const float " + n + " = " + e + ";\n";
    c.memo[id] = n;
    return n;
  };
  const ir::Op *op = d.producer(id);
  if (frame.values.count(id) || !op) {
    Ten t = get(frame, id);
    std::string e = load(args, t, c.index);
    if (t.kind != Ten::Kind::Buffer) return c.memo[id] = e;
    return local(e);
  }
  if (op->kind == OpKind::Elementwise) {
    std::vector<std::string> operands;
    for (int operand : op->operands) operands.push_back(fexpr(frame, args, c, operand));
    return local(rounded(value.dtype, function_expr(op->function, operands)));
  }
  if (op->kind != OpKind::Access) throw GenError("internal: a fused kernel computes '" + value.name + "' inline");
  const ir::Value &source = d.value(op->operands.at(0));
  if (op->access.size() != source.axes.size()) throw GenError("internal: access with the wrong number of indices");
  std::string u = str((*c.counter)++);
  std::vector<int> positions;
  std::vector<std::string> names;
  std::string valid;
  for (size_t i = 0; i < op->access.size(); ++i) positions.push_back(rt_axis(frame, source.axes[i]));
  for (size_t i = 0; i < op->access.size(); ++i) {
    const ir::AccessIndex &ix = op->access[i];
    std::string e;
    if (ix.kind == ir::AccessIndex::Kind::Affine) {
      for (auto [axis, coefficient] : ix.terms)
        e += (e.empty() ? "" : " + ") + (coefficient == 1 ? "" : str(coefficient) + " * ") + "(" +
             c.index(rt_axis(frame, axis)) + ")";
      if (ix.offset != 0 || e.empty()) e += (e.empty() ? "" : " + ") + ("(" + str(ix.offset) + ")");
    } else if (ix.kind == ir::AccessIndex::Kind::Split) {
      Sz weight = 1;
      for (size_t j = ix.split.size(); j-- > 0;) {
        int r = rt_axis(frame, ix.split[j]);
        e = "(" + c.index(r) + ")" + (weight == 1 ? "" : " * " + str(weight)) + (e.empty() ? "" : " + " + e);
        weight *= size(r);
      }
    } else {
      int g = op->operands.at(static_cast<size_t>(ix.gather_operand));
      if (frame.values.count(g) || !d.producer(g))
        e = load_int(args, get(frame, g), c.index);
      else
        e = "static_cast<int64_t>(" + fexpr(frame, args, c, g) + ")";
    }
    names.push_back("e_p" + u + "_" + str(static_cast<int64_t>(i)));
    c.code += c.pad + "const int64_t " + names.back() + " = " + e + ";\n";
    valid += (valid.empty() ? "" : " && ") +
             ("(" + names.back() + " >= 0 && " + names.back() + " < " + str(size(positions[i])) + ")");
  }
  std::string ok = "e_ok" + u;
  c.code += c.pad + "const bool " + ok + " = " + (valid.empty() ? "true" : valid) + ";\n";
  // The source at the accessed positions (clamped to 0 where out of range, then masked).
  ExprCtx inner;
  inner.pad = c.pad;
  inner.counter = c.counter;
  auto parent = c.index;
  inner.index = [&, parent](int a) {
    for (size_t i = 0; i < positions.size(); ++i)
      if (positions[i] == a) return "(" + ok + " ? " + names[i] + " : 0)";
    return parent(a);
  };
  std::string v = fexpr(frame, args, inner, op->operands[0]);
  c.code += inner.code;
  return local(rounded(value.dtype, "(" + ok + " ? " + v + " : 0.f)"));
}

void Generator::run_rest(Frame &frame, const ir::Diagram &d) {
  for (const auto &o : d.body.ops)
    if (o->results.empty() || !frame.values.count(o->results[0])) op(frame, *o);
}

// Stores every output at the positions of `c` (the main value, if any, is c.special).
void Generator::fused_stores(Frame &frame, const ir::Diagram &d, FusedKernel &kernel, KernelArgs &args, ExprCtx &c) {
  auto identity = [](int a) { return x(a); };
  for (size_t k = 0; k < kernel.outs.size(); ++k) {
    std::string v = fexpr(frame, args, c, d.outputs[k]);
    std::string r = args.out(kernel.outs[k]);
    c.code += c.pad + r + "[" + offset(kernel.outs[k], identity) + "] = ncd_to<" + element_type(kernel.outs[k].dtype) +
              ">(" + v + ");\n";
  }
}

void Generator::fused(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const ir::Op *site) {
  const ir::Op *where = site ? site : d.body.ops.front().get();
  auto decline = [&](const std::string &why) {
    note(where, "'" + d.name + "' has a schedule but is not a fused kernel the cuda backend knows (" + why +
                    "); its operations run as separate kernels");
    run_rest(frame, d);
  };
  for (const ir::Op *o : m.before) op(frame, *o);
  FusedKernel kernel;
  for (const ir::ScheduleDirective &dir : d.schedules.front().directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Level) continue;
    bool group = dir.kind == ir::ScheduleDirective::Kind::Group;
    if (group) kernel.groups[rt_axis(frame, dir.axis)] = dir.amount;
    kernel.schedule += (kernel.schedule.empty() ? "" : ", ") + std::string(group ? "group " : "stream ") +
                       program_.axis(dir.axis).name + " by " + str(dir.amount);
  }
  // What the kernel does, in program order, for its comment.
  for (const auto &o : d.body.ops) {
    if (o->kind == OpKind::Constant || o->kind == OpKind::SizeOf || o->kind == OpKind::AxisIndex) continue;
    if (std::find(m.before.begin(), m.before.end(), o.get()) != m.before.end()) continue;
    std::string fn = o->kind == OpKind::Contract ? "contract"
                     : o->kind == OpKind::Access ? "access"
                     : o->kind == OpKind::Call   ? o->callee_name
                                                 : std::string(ops::name(o->function));
    kernel.what += (kernel.what.empty() ? "" : ", ") + fn + " " + d.value(o->results.at(0)).name;
  }
  FusedLayout layout;
  if (std::string why; !plan_fused(frame, d, m, layout, why)) return decline(why);
  for (int id : d.outputs) kernel.outs.push_back(output(frame, id, d.value(id).dtype, fused_axes(frame, id)));
  for (int id : d.outputs) kernel.outputs += (kernel.outputs.empty() ? "" : ", ") + d.value(id).name;
  kernel.header = "// fused kernel for '" + d.name + "' (" + (kernel.schedule.empty() ? "no tiles" : kernel.schedule) +
                  "): " + kernel.what + "; stores " + kernel.outputs + "\n";
  if (m.kind == FusedMatch::Kind::Gemm) {
    if (std::string why; !fused_gemm(frame, d, m, layout, kernel, why)) return decline(why);
    for (size_t k = 0; k < kernel.outs.size(); ++k) frame.values[d.outputs[k]] = kernel.outs[k];
    return;
  }
  KernelArgs args;
  std::string k = kernel.header + "__global__ void @NAME@(" + "@PARAMS@" + ") {\n";
  std::string launch_what;
  Sz work;
  if (m.kind == FusedMatch::Kind::Pointwise)
    k += fused_pointwise(frame, d, layout, kernel, args, work, launch_what);
  else
    k += fused_row(frame, d, m, layout, kernel, args, work, launch_what);
  k.replace(k.find("@PARAMS@"), 8, args.param_list());
  std::string name = add_kernel("fused_" + d.name, k);
  const int threads = static_cast<int>(m.kind == FusedMatch::Kind::Pointwise ? kPointwiseThreads : kRowThreads);
  launch(name, grid_for(work, threads), threads, args,
         kernel.outputs + " = fused '" + d.name + "' (" + launch_what + "): " + kernel.what);
  for (size_t i = 0; i < kernel.outs.size(); ++i) frame.values[d.outputs[i]] = kernel.outs[i];
}

}  // namespace ncd::cuda::detail
