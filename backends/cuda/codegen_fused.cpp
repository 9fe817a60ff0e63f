// The fused kernels `ncd optimize` writes, in the CUDA generator: matching a
// scheduled diagram to a GEMM with an epilogue, a row kernel (normalisation or
// reduction with work before and after) or a pointwise chain, and emitting it.
#include "generator.h"

namespace ncd::cuda::detail {

namespace {

std::string rounded(DType dtype, const std::string &e) {
  return dtype == DType::F32 ? e : "ncd_f(ncd_to<" + element_type(dtype) + ">(" + e + "))";
}

bool same_axes(const std::vector<int> &a, const std::vector<int> &b) {
  return std::set<int>(a.begin(), a.end()) == std::set<int>(b.begin(), b.end());
}

bool sub_axes(const std::vector<int> &a, const std::vector<int> &b) {
  for (int x : a)
    if (std::find(b.begin(), b.end(), x) == b.end()) return false;
  return true;
}

const char *kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Contract: return "contraction";
    case OpKind::Reduce: return "reduction";
    case OpKind::Normalize: return "normalisation";
    case OpKind::Access: return "access";
    case OpKind::Merge: return "merge";
    case OpKind::Call: return "call";
    case OpKind::Repeat: return "repeat";
    default: return "operation";
  }
}

}  // namespace

// How fexpr generates a value: the index of each runtime axis, the locals
// already declared in this scope, and the statements it adds.
struct Generator::ExprCtx {
  std::function<std::string(int)> index;
  std::map<int, std::string> memo;     // value -> local name or literal
  std::map<int, std::string> special;  // values the kernel computed itself (the accumulator, the normalised value)
  std::string code, pad;
  int *counter = nullptr;
};

bool Generator::match_fused(const ir::Diagram &d, FusedMatch &m, std::string &why) const {
  const ir::ProducerIndex index(d);
  auto name = [&](const ir::Op &op) { return d.value(op.results.at(0)).name; };
  auto data_free = [](const ir::Op &op) {
    return op.kind == OpKind::Constant || op.kind == OpKind::SizeOf || op.kind == OpKind::AxisIndex;
  };
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat || op->kind == OpKind::Merge) {
      why = std::string("it has a ") + kind_name(op->kind) + (op->kind == OpKind::Merge ? " ('" + name(*op) + "')" : "");
      return false;
    }
  // Data-free ops and scalar arithmetic on them come first (literals, or tiny kernels).
  std::set<int> early;
  for (const auto &op : d.body.ops) {
    bool ok = data_free(*op);
    if (!ok && op->kind == OpKind::Elementwise && d.value(op->results.at(0)).axes.empty()) {
      ok = true;
      for (int operand : op->operands) {
        const ir::Op *p = index.producer(operand);
        ok = ok && d.value(operand).axes.empty() && (!p || early.count(operand));
      }
    }
    if (ok) {
      early.insert(op->results.at(0));
      m.before.push_back(op.get());
    }
  }
  for (const auto &op : d.body.ops) {
    if (op->kind != OpKind::Contract && op->kind != OpKind::Reduce && op->kind != OpKind::Normalize) continue;
    if (m.main) {
      why = "it has more than one contraction, reduction or normalisation ('" + name(*m.main) + "' and '" + name(*op) + "')";
      return false;
    }
    m.main = op.get();
  }
  std::set<int> upstream;
  if (m.main) {
    m.after.insert(m.main->results.at(0));
    for (const auto &op : d.body.ops)
      for (int operand : op->operands)
        if (m.after.count(operand)) m.after.insert(op->results.begin(), op->results.end());
    std::function<void(int)> up = [&](int v) {
      if (!upstream.insert(v).second) return;
      if (const ir::Op *p = index.producer(v))
        for (int operand : p->operands) up(operand);
    };
    for (int operand : m.main->operands) up(operand);
  }
  int work = 0;
  for (const auto &op : d.body.ops) {
    if (op.get() == m.main || early.count(op->results.at(0))) continue;
    if (op->kind != OpKind::Elementwise && op->kind != OpKind::Access) {
      why = std::string("it has a ") + kind_name(op->kind) + " ('" + name(*op) + "')";
      return false;
    }
    ++work;
    int r = op->results.at(0);
    if (!m.main) continue;
    if (m.after.count(r)) {
      if (op->kind == OpKind::Access) {
        why = "the access '" + name(*op) + "' reads the result of '" + name(*m.main) + "' at other positions";
        return false;
      }
      const auto &main_axes = d.value(m.main->results.at(0)).axes;
      if (!sub_axes(d.value(r).axes, main_axes)) {
        why = "'" + name(*op) + "' is broadcast beyond the result of '" + name(*m.main) + "'";
        return false;
      }
    } else if (m.main->kind == OpKind::Contract) {
      why = "the contraction '" + name(*m.main) + "' has a prologue ('" + name(*op) + "'); only epilogues are fused";
      return false;
    } else if (!upstream.count(r)) {
      why = "'" + name(*op) + "' is neither before nor after the " + kind_name(m.main->kind) + " '" + name(*m.main) + "'";
      return false;
    }
  }
  for (int out : d.outputs) {
    if (!index.producer(out)) {
      why = "its output '" + d.value(out).name + "' is an input";
      return false;
    }
    if (m.main && m.main->kind != OpKind::Normalize && !m.after.count(out)) {
      why = "its output '" + d.value(out).name + "' is not computed from the " + kind_name(m.main->kind);
      return false;
    }
  }
  if (!m.main) {
    if (work == 0) {
      why = "it has no tensor operations";
      return false;
    }
    m.kind = FusedMatch::Kind::Pointwise;
    return true;
  }
  const ir::Op &op = *m.main;
  if (d.value(op.results.at(0)).axes.empty()) {
    why = "the " + std::string(kind_name(op.kind)) + " '" + name(op) + "' has no axes left";
    return false;
  }
  if (op.kind == OpKind::Contract) {
    std::vector<int> tensors;
    for (int operand : op.operands) {
      if (d.value(operand).axes.empty()) continue;
      if (index.producer(operand)) {
        why = "an operand of the contraction '" + name(op) + "' is computed in the kernel";
        return false;
      }
      tensors.push_back(operand);
    }
    if (tensors.size() != 2 || op.axes.empty()) {
      why = "the contraction '" + name(op) + "' is not a product of two tensors over summed axes";
      return false;
    }
    DType a = d.value(tensors[0]).dtype, b = d.value(tensors[1]).dtype;
    if (!is_16bit_float(a) || a != b) {
      why = std::string("the contraction's operands are ") + std::string(ir::dtype_name(a)) + " and " +
            std::string(ir::dtype_name(b)) + "; tensor cores take two bf16 or two f16";
      return false;
    }
    m.kind = FusedMatch::Kind::Gemm;
    return true;
  }
  // The row kernels below are written for these.
  static const std::set<ops::Fn> written = {ops::Fn::Sum,     ops::Fn::Mean,       ops::Fn::Max,       ops::Fn::Min,
                                            ops::Fn::Prod,    ops::Fn::LogSumExp,  ops::Fn::Softmax,   ops::Fn::LogSoftmax,
                                            ops::Fn::LayerNorm, ops::Fn::RMSNorm};
  if (!written.count(op.function)) {
    why = "the cuda backend has no " + std::string(kind_name(op.kind)) + " '" + std::string(ops::name(op.function)) + "'";
    return false;
  }
  m.kind = FusedMatch::Kind::Row;
  return true;
}

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
        if (ix.kind == ir::AccessIndex::Kind::Gather) add(fused_axes(frame, op->operands.at(static_cast<size_t>(ix.gather_operand))));
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
      if (std::find(extra.begin(), extra.end(), rt_axis(frame, axis)) == extra.end()) extra.push_back(rt_axis(frame, axis));
  return extra;
}

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
      int64_t weight = 1;
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

void Generator::fused(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const ir::Op *site) {
  const ir::Op *where = site ? site : d.body.ops.front().get();
  auto decline = [&](const std::string &why) {
    note(where, "'" + d.name + "' has a schedule but is not a fused kernel the cuda backend knows (" + why +
                    "); its operations run as separate kernels");
    run_rest(frame, d);
  };
  for (const ir::Op *o : m.before) op(frame, *o);
  std::map<int, int64_t> groups;
  std::string schedule;
  for (const ir::ScheduleDirective &dir : d.schedules.front().directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Level) continue;
    bool group = dir.kind == ir::ScheduleDirective::Kind::Group;
    if (group) groups[rt_axis(frame, dir.axis)] = dir.amount;
    schedule += (schedule.empty() ? "" : ", ") + std::string(group ? "group " : "stream ") + program_.axis(dir.axis).name +
                " by " + str(dir.amount);
  }
  // What the kernel does, in program order, for its comment.
  std::string what;
  for (const auto &o : d.body.ops) {
    if (o->kind == OpKind::Constant || o->kind == OpKind::SizeOf || o->kind == OpKind::AxisIndex) continue;
    if (std::find(m.before.begin(), m.before.end(), o.get()) != m.before.end()) continue;
    std::string fn = o->kind == OpKind::Contract ? "contract"
                     : o->kind == OpKind::Access ? "access"
                     : o->kind == OpKind::Call   ? o->callee_name
                                                 : std::string(ops::name(o->function));
    what += (what.empty() ? "" : ", ") + fn + " " + d.value(o->results.at(0)).name;
  }
  std::vector<int> space = fused_axes(frame, m.main ? m.main->results.at(0) : d.outputs.at(0));
  std::vector<int> row_axes, loop_axes;  // Row: the rows, and the axes a warp walks
  int64_t missing = 1;
  if (m.kind == FusedMatch::Kind::Row) {
    std::vector<int> in_axes = fused_axes(frame, m.main->operands.at(0));
    std::vector<int> along;
    for (int axis : m.main->axes) along.push_back(rt_axis(frame, axis));
    if (m.main->kind == OpKind::Normalize) {
      loop_axes = along;
      for (int a : space)
        if (std::find(along.begin(), along.end(), a) == along.end()) row_axes.push_back(a);
    } else {
      row_axes = space;
      for (int a : along)
        if (std::find(in_axes.begin(), in_axes.end(), a) != in_axes.end())
          loop_axes.push_back(a);
        else
          missing *= size(a);
    }
  }
  std::vector<Ten> outs;
  for (int id : d.outputs) {
    std::vector<int> axes = fused_axes(frame, id);
    if (!same_axes(axes, space))
      return decline("its output '" + d.value(id).name + "' has axes " + axis_list(axes) + ", not those of the kernel " +
                     axis_list(space));
  }
  for (int id : m.after)
    if (!sub_axes(fused_axes(frame, id), space))
      return decline("'" + d.value(id).name + "' is broadcast beyond the kernel's axes " + axis_list(space));
  for (int id : d.outputs) outs.push_back(output(frame, id, d.value(id).dtype, fused_axes(frame, id)));
  auto identity = [](int a) { return x(a); };
  int counter = 0;
  // Stores every output at the positions of `c` (the main value, if any, is c.special).
  auto stores = [&](KernelArgs &args, ExprCtx &c) {
    for (size_t k = 0; k < outs.size(); ++k) {
      std::string v = fexpr(frame, args, c, d.outputs[k]);
      std::string r = args.out(outs[k]);
      c.code += c.pad + r + "[" + offset(outs[k], identity) + "] = ncd_to<" + element_type(outs[k].dtype) + ">(" + v + ");\n";
    }
  };
  std::string outputs;
  for (int id : d.outputs) outputs += (outputs.empty() ? "" : ", ") + d.value(id).name;
  std::string header = "// fused kernel for '" + d.name + "' (" + (schedule.empty() ? "no tiles" : schedule) + "): " + what +
                       "; stores " + outputs + "\n";
  if (m.kind == FusedMatch::Kind::Gemm) {
    const ir::Op &c = *m.main;
    std::vector<Ten> tensors, scalars;
    for (int id : c.operands) {
      Ten t = get(frame, id);
      (d.value(id).axes.empty() ? scalars : tensors).push_back(t);
    }
    const ir::Value &cv = d.value(c.results.at(0));
    Ten cten;
    cten.dtype = cv.dtype;
    cten.axes = space;
    cten.strides.assign(space.size(), 1);
    for (size_t i = space.size(), stride = 1; i-- > 0;) {
      cten.strides[i] = static_cast<int64_t>(stride);
      stride *= static_cast<size_t>(size(space[i]));
    }
    GemmEpilogue epilogue;
    epilogue.groups = groups;
    epilogue.body = [&](KernelArgs &args, const std::string &acc, const std::string &pad) {
      ExprCtx ctx;
      ctx.pad = pad;
      ctx.counter = &counter;
      ctx.index = identity;
      ctx.code += pad + "const float e_acc = " + rounded(cv.dtype, acc) + ";  // " + cv.name + "\n";
      ctx.special[c.results[0]] = "e_acc";
      stores(args, ctx);
      return ctx.code;
    };
    std::string why;
    size_t mark = kernel_order_.size();
    if (!gemm(frame, c, tensors, scalars, cten, why, &epilogue)) return decline(why);
    if (kernel_order_.size() > mark && kernel_order_.back().find("_gemm_fused_") != std::string::npos)
      kernel_order_.back() = header + kernel_order_.back();
    for (size_t k = 0; k < outs.size(); ++k) frame.values[d.outputs[k]] = outs[k];
    return;
  }
  KernelArgs args;
  std::string k = header + "__global__ void @NAME@(" + "@PARAMS@" + ") {\n";
  std::string launch_what;
  int64_t work = 0;
  if (m.kind == FusedMatch::Kind::Pointwise) {
    ExprCtx c;
    c.pad = "    ";
    c.counter = &counter;
    c.index = identity;
    stores(args, c);
    int64_t n = numel(space);
    k += grid_stride_loop(n, space) + c.code + "  }\n}\n";
    work = n;
    launch_what = "pointwise";
  } else {
    const ir::Op &o = *m.main;
    const ir::Value &result = d.value(o.results.at(0));
    int64_t rows = numel(row_axes), extent = numel(loop_axes);
    auto pass = [&](const std::function<std::string(ExprCtx &, const std::string &)> &f) {
      ExprCtx c;
      c.pad = "      ";
      c.counter = &counter;
      c.index = identity;
      std::string in = fexpr(frame, args, c, o.operands.at(0));
      std::string stmt = f(c, in);
      return "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(loop_axes, "j", "      ") + c.code +
             stmt + "    }\n";
    };
    k += "  const int lane = threadIdx.x % 32;\n";
    k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
         "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
    k += decompose(row_axes, "row", "    ");
    const ops::Fn f = o.function;
    const std::string fn(ops::name(f));
    std::string n = flit(static_cast<double>(extent));
    // The final value of the main op, from the statistics; per element for a normalisation.
    std::string value;
    if (o.kind == OpKind::Normalize) {
      double eps = o.options.count("eps") ? o.options.at("eps") : ops::info(f).default_eps;
      if (f == ops::Fn::Softmax || f == ops::Fn::LogSoftmax) {
        k += "    float m = -INFINITY;\n" + pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
             "    m = ncd_warp_max(m);\n";
        k += "    float s = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      s += expf(" + v + " - m);\n"; }) +
             "    s = ncd_warp_sum(s);\n";
      } else if (f == ops::Fn::LayerNorm) {
        k += "    float s = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      s += " + v + ";\n"; }) +
             "    const float mean = ncd_warp_sum(s) / " + n + ";\n";
        k += "    float q = 0.f;\n" +
             pass([](ExprCtx &, const std::string &v) { return "      const float e_c = " + v + " - mean;\n      q += e_c * e_c;\n"; }) +
             "    const float var = ncd_warp_sum(q) / " + n + ";\n";
        k += "    const float denom = sqrtf(var + " + flit(eps) + ");\n";
      } else {  // rmsnorm
        k += "    float q = 0.f;\n" +
             pass([](ExprCtx &, const std::string &v) { return "      const float e_c = " + v + ";\n      q += e_c * e_c;\n"; }) +
             "    const float denom = sqrtf(ncd_warp_sum(q) / " + n + " + " + flit(eps) + ");\n";
      }
      k += pass([&](ExprCtx &c, const std::string &v) {
        std::string e = f == ops::Fn::Softmax      ? "expf(" + v + " - m) / s"
                        : f == ops::Fn::LogSoftmax ? v + " - m - logf(s)"
                        : f == ops::Fn::LayerNorm  ? "(" + v + " - mean) / denom"
                                             : v + " / denom";
        c.code += c.pad + "const float e_n = " + rounded(result.dtype, e) + ";  // " + result.name + "\n";
        c.special[o.results[0]] = "e_n";
        stores(args, c);
        return std::string();
      });
    } else {
      if (f == ops::Fn::Sum || f == ops::Fn::Mean) {
        k += "    float acc = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc += " + v + ";\n"; }) +
             "    acc = ncd_warp_sum(acc);\n";
        value = f == ops::Fn::Sum ? (missing == 1 ? "acc" : "acc * " + flit(static_cast<double>(missing))) : "acc / " + flit(static_cast<double>(extent));
      } else if (f == ops::Fn::Prod) {
        k += "    float acc = 1.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc *= " + v + ";\n"; }) +
             "    acc = ncd_warp_prod(acc);\n";
        value = missing == 1 ? "acc" : "powf(acc, " + flit(static_cast<double>(missing)) + ")";
      } else if (f == ops::Fn::Max || f == ops::Fn::Min) {
        k += "    float acc = " + std::string(f == ops::Fn::Max ? "-INFINITY" : "INFINITY") + ";\n" +
             pass([&](ExprCtx &, const std::string &v) { return "      acc = ncd_" + fn + "(acc, " + v + ");\n"; }) +
             "    acc = ncd_warp_" + fn + "(acc);\n";
        value = "acc";
      } else {  // logsumexp
        k += "    float m = -INFINITY;\n" + pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
             "    m = ncd_warp_max(m);\n    const float mu = m == -INFINITY ? 0.f : m;\n";
        k += "    float acc = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc += expf(" + v + " - mu);\n"; }) +
             "    acc = ncd_warp_sum(acc);\n";
        value = "mu + logf(acc)" + (missing == 1 ? std::string() : " + " + flit(std::log(static_cast<double>(missing))));
      }
      ExprCtx c;
      c.pad = "      ";
      c.counter = &counter;
      c.index = identity;
      c.code += c.pad + "const float e_n = " + rounded(result.dtype, value) + ";  // " + result.name + "\n";
      c.special[o.results[0]] = "e_n";
      stores(args, c);
      k += "    if (lane == 0) {\n" + c.code + "    }\n";
    }
    k += "  }\n}\n";
    work = rows * 32;
    launch_what = fn + " rows";
  }
  k.replace(k.find("@PARAMS@"), 8, args.param_list());
  std::string name = add_kernel("fused_" + d.name, k);
  launch(name, grid_for(work, 256), 256, args, outputs + " = fused '" + d.name + "' (" + launch_what + "): " + what);
  for (size_t i = 0; i < outs.size(); ++i) frame.values[d.outputs[i]] = outs[i];
}

// ---------------------------------------------------------------- diagrams


}  // namespace ncd::cuda::detail
