// Grid-stride kernels, one thread per element: elementwise functions (folded
// at generation time when every operand is a literal), accesses (affine,
// split and gathered indices, zero outside the source), merges of axes, and
// the copies that move or convert a tensor (into a destination, packed for
// tensor cores, or split into bf16 hi + lo pairs). The fused pointwise chain
// is print_fused.cpp.
#include "generator.h"

namespace ncd::cuda::detail {

void Generator::copy(const Ten &from, const Ten &to, const std::string &what) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  for (int a : from.axes)
    if (from.kind == Ten::Kind::Buffer && from.stride(a) != 0 && !to.has(a))
      throw GenError("internal: copy of " + what + " drops axis '" + axis_names_[static_cast<size_t>(a)] + "'");
  std::string v = load(args, from, index);
  std::string r = args.out(to);
  Sz n = numel(to.axes);
  std::string k = grid_stride_kernel(args, n, to.axes);
  k += "    " + r + "[" + offset(to, index) + "] = ncd_to<" + element_type(to.dtype) + ">(" + v + ");\n  }\n}\n";
  std::string name = add_kernel("copy", k);
  launch(name, grid_for(n, 256), 256, args, "copy " + what);
}

// Writes `from` into the bf16 pairs of `to` (strides spaced by two): with
// `split`, the pair is hi = bf16(v) and lo = bf16(v - hi), so hi + lo holds
// about 16 significant bits of v (all of a product of two bf16 values);
// without, the value twice.
void Generator::split_copy(const Ten &from, const Ten &to, bool split, const std::string &what) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, from, index);
  std::string r = args.out(to);
  Sz n = numel(to.axes);
  std::string k = grid_stride_kernel(args, n, to.axes);
  k += "    const float v = " + v + ";\n";
  k += "    const __nv_bfloat16 hi = __float2bfloat16_rn(v);\n";
  k += "    const int64_t o = " + offset(to, index) + ";\n";
  k += "    " + r + "[o] = hi;\n";
  k += "    " + r + "[o + 1] = " + (split ? "__float2bfloat16_rn(v - __bfloat162float(hi))" : std::string("hi")) +
       ";\n  }\n}\n";
  std::string name = add_kernel(split ? "split" : "twice", k);
  launch(name, grid_for(n, 256), 256, args, (split ? "split " : "twice ") + what);
}

// Folds a function of literals at generation time, in float32 as the
// reference computes it (the op table's fold), or returns nullopt.
std::optional<double> fold(ops::Fn f, const std::vector<Ten> &operands) {
  const ops::Fold &fold = ops::info(f).fold;
  if (!fold.f32 || operands.size() > 3) return std::nullopt;
  float v[3] = {0.f, 0.f, 0.f};
  for (size_t i = 0; i < operands.size(); ++i) {
    if (operands[i].kind != Ten::Kind::Literal || !operands[i].literal_code.empty()) return std::nullopt;
    v[i] = static_cast<float>(operands[i].literal);
  }
  return fold.f32(v[0], v[1], v[2]);
}

Ten Generator::elementwise(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::vector<Ten> operands;
  for (int id : o.operands) operands.push_back(get(frame, id));
  if (auto folded = fold(o.function, operands); folded && result.axes.empty()) {
    Ten t;
    t.kind = Ten::Kind::Literal;
    t.dtype = result.dtype;
    t.literal = convert_float(static_cast<float>(*folded), result.dtype);
    return t;
  }
  // A scalar function of literals and runtime sizes stays an expression, computed where it is read.
  bool literals = result.axes.empty() && !o.operands.empty();
  for (const Ten &t : operands) literals = literals && t.kind == Ten::Kind::Literal;
  if (literals) {
    Ten t;
    t.kind = Ten::Kind::Literal;
    t.dtype = result.dtype;
    std::vector<std::string> codes;
    for (const Ten &operand : operands) {
      KernelArgs none;
      codes.push_back(load(none, operand, [](int) { return std::string("0"); }));
    }
    t.literal_code = rounded(result.dtype, function_expr(o.function, codes));
    return t;
  }
  std::vector<const Ten *> ptrs;
  for (const Ten &t : operands) ptrs.push_back(&t);
  std::vector<int> axes = result_axes(frame, result, ptrs, {});
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<std::string> loads;
  for (const Ten &t : operands) loads.push_back(load(args, t, index));
  std::string expr = function_expr(o.function, loads);
  std::string r = args.out(out);
  Sz n = numel(axes);
  std::string k = grid_stride_kernel(args, n, axes);
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + expr + ");\n  }\n}\n";
  const std::string fn(ops::name(o.function));
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(axes) + " = " + fn);
  return out;
}

Ten Generator::access(Frame &frame, const ir::Op &o) {
  const ir::Diagram &diagram = *frame.diagram;
  const ir::Value &result = diagram.value(o.results[0]);
  Ten source = get(frame, o.operands.at(0));
  const ir::Value &source_value = diagram.value(o.operands[0]);
  if (o.access.size() != source_value.axes.size()) throw GenError("internal: access with the wrong number of indices");
  std::vector<int> positions;
  std::vector<Ten> gathers(o.access.size());
  for (size_t i = 0; i < o.access.size(); ++i) {
    positions.push_back(rt_axis(frame, source_value.axes[i]));
    if (o.access[i].kind == ir::AccessIndex::Kind::Gather)
      gathers[i] = get(frame, o.operands.at(static_cast<size_t>(o.access[i].gather_operand)));
  }
  std::vector<int> axes;
  auto add = [&](int a) {
    if (std::find(axes.begin(), axes.end(), a) == axes.end()) axes.push_back(a);
  };
  for (int a : source.axes)
    if (std::find(positions.begin(), positions.end(), a) == positions.end()) add(a);
  for (size_t i = 0; i < o.access.size(); ++i)
    if (o.access[i].kind == ir::AccessIndex::Kind::Gather)
      for (int a : gathers[i].axes) add(a);
  for (int axis : result.axes) add(rt_axis(frame, axis));
  // Result axes last (innermost) in their declared order.
  std::vector<int> own;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  std::vector<int> ordered;
  for (int a : axes)
    if (std::find(own.begin(), own.end(), a) == own.end()) ordered.push_back(a);
  ordered.insert(ordered.end(), own.begin(), own.end());
  Ten out = output(frame, o.results[0], result.dtype, ordered);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string body, valid;
  for (size_t i = 0; i < o.access.size(); ++i) {
    const ir::AccessIndex &ix = o.access[i];
    std::string p = "p" + str(static_cast<int64_t>(i));
    std::string e;
    if (ix.kind == ir::AccessIndex::Kind::Affine) {
      for (auto [axis, coefficient] : ix.terms)
        e += (e.empty() ? "" : " + ") + (coefficient == 1 ? "" : str(coefficient) + " * ") + x(rt_axis(frame, axis));
      if (ix.offset != 0 || e.empty()) e += (e.empty() ? "" : " + ") + ("(" + str(ix.offset) + ")");
    } else if (ix.kind == ir::AccessIndex::Kind::Split) {
      Sz weight = 1;
      for (size_t j = ix.split.size(); j-- > 0;) {
        int r = rt_axis(frame, ix.split[j]);
        e = x(r) + (weight == 1 ? "" : " * " + str(weight)) + (e.empty() ? "" : " + " + e);
        weight *= size(r);
      }
    } else {
      e = load_int(args, gathers[i], index);
    }
    body += "    const int64_t " + p + " = " + e + ";\n";
    valid += (valid.empty() ? "" : " && ") + ("(" + p + " >= 0 && " + p + " < " + str(size(positions[i])) + ")");
  }
  auto source_index = [&](int a) {
    for (size_t i = 0; i < positions.size(); ++i)
      if (positions[i] == a) return "p" + str(static_cast<int64_t>(i));
    return x(a);
  };
  std::string v = load(args, source, source_index);
  std::string r = args.out(out);
  Sz n = numel(ordered);
  std::string k = grid_stride_kernel(args, n, ordered) + body;
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" +
       (valid.empty() ? v : "(" + valid + ") ? " + v + " : 0.f") + ");\n  }\n}\n";
  std::string name = add_kernel("access_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(ordered) + " = access");
  return out;
}

Ten Generator::merge(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten source = get(frame, o.operands.at(0));
  std::map<int, std::string> source_index;  // merged source axis -> expression
  std::set<int> merged;
  std::vector<int> own;
  for (size_t j = 0; j < result.axes.size(); ++j) {
    int target = rt_axis(frame, result.axes[j]);
    own.push_back(target);
    if (j >= o.merges.size()) continue;
    std::vector<int> group;
    for (int axis : o.merges[j]) group.push_back(rt_axis(frame, axis));
    if (group.size() == 1 && group[0] == target) continue;
    Sz after = 1;
    for (size_t i = group.size(); i-- > 0;) {
      std::string e = after == 1 ? x(target) : "(" + x(target) + " / " + str(after) + ")";
      if (i > 0) e += " % " + str(size(group[i]));
      source_index[group[i]] = "(" + e + ")";
      merged.insert(group[i]);
      after *= size(group[i]);
    }
  }
  std::vector<int> axes;
  for (int a : source.axes)
    if (!merged.count(a) && std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  axes.insert(axes.end(), own.begin(), own.end());
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  auto sindex = [&](int a) {
    auto it = source_index.find(a);
    return it == source_index.end() ? x(a) : it->second;
  };
  std::string v = load(args, source, sindex);
  std::string r = args.out(out);
  Sz n = numel(axes);
  std::string k = grid_stride_kernel(args, n, axes);
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + v + ");\n  }\n}\n";
  std::string name = add_kernel("merge_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(axes) + " = merge");
  return out;
}

// The body of a fused pointwise chain: every output computed at each position.
std::string Generator::fused_pointwise(Frame &frame, const ir::Diagram &d, const FusedLayout &l, FusedKernel &kernel,
                                       KernelArgs &args, Sz &work, std::string &launch_what) {
  auto identity = [](int a) { return x(a); };
  ExprCtx c;
  c.pad = "    ";
  c.counter = &kernel.counter;
  c.index = identity;
  fused_stores(frame, d, kernel, args, c);
  Sz n = numel(l.space);
  std::string k = grid_stride_loop(n, l.space) + c.code + "  }\n}\n";
  work = n;
  launch_what = "pointwise";
  return k;
}

}  // namespace ncd::cuda::detail
