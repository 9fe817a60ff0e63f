// Streamed attention in the CUDA generator: recognising a scheduled diagram as
// attention (softmax or explicit online-softmax form, masks as affine
// conjuncts of the positions) and emitting the FlashAttention-2-style kernel.
#include "generator.h"

namespace ncd::cuda::detail {

namespace {

// A scalar computed from literals alone (constants, sizes, pointwise functions
// of them, in float64 by the op table's fold), if it is one.
std::optional<double> scalar_value(const ir::Diagram &d, int id, const std::function<int64_t(int)> &axis_size) {
  const ir::Op *op = d.producer(id);
  if (!op) return std::nullopt;
  if (op->kind == OpKind::Constant) return op->constant;
  if (op->kind == OpKind::SizeOf) return static_cast<double>(axis_size(op->axes.at(0)));
  if (op->kind != OpKind::Elementwise) return std::nullopt;
  const ops::Fold &fold = ops::info(op->function).fold;
  if (!fold.f64 || op->operands.size() > 3) return std::nullopt;
  double v[3] = {0, 0, 0};
  for (size_t i = 0; i < op->operands.size(); ++i) {
    auto s = scalar_value(d, op->operands[i], axis_size);
    if (!s) return std::nullopt;
    v[i] = *s;
  }
  return fold.f64(v[0], v[1], v[2]);
}

int uses(const ir::Diagram &d, int value) {
  int n = 0;
  ir::for_each_op(d.body, [&](const ir::Op &op) {
    for (int operand : op.operands) n += operand == value;
  });
  for (int out : d.outputs) n += out == value;
  return n;
}

}  // namespace

bool Generator::match_attention(const ir::Diagram &d, AttentionMatch &m, std::string &why) const {
  const ir::ProducerIndex index(d);
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat) {
      why = "it calls or repeats";
      return false;
    }
  int group = -1, stream = -1;
  for (const ir::ScheduleDirective &dir : d.schedules.front().directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Group) {
      if (group >= 0) {
        why = "it groups more than one axis";
        return false;
      }
      group = dir.axis;
      m.bq = dir.amount;
    } else if (dir.kind == ir::ScheduleDirective::Kind::Stream) {
      if (stream >= 0) {
        why = "it streams more than one axis";
        return false;
      }
      stream = dir.axis;
      m.bk = dir.amount;
    }
  }
  if (group < 0 || stream < 0) {
    why = "attention needs `group` of the queries and `stream` of the keys";
    return false;
  }
  if (d.outputs.size() != 1) {
    why = "it has " + str(static_cast<int64_t>(d.outputs.size())) + " outputs";
    return false;
  }
  m.q_axis = group;
  m.k_axis = stream;
  m.output = d.outputs[0];
  auto is_input = [&](int v) { return std::find(d.inputs.begin(), d.inputs.end(), v) == d.inputs.end() ? false : true; };
  auto has = [&](int v, int axis) {
    const auto &axes = d.value(v).axes;
    return std::find(axes.begin(), axes.end(), axis) != axes.end();
  };
  std::set<const ir::Op *> matched;
  // The scores: contract(Q, K, scalars...) over one axis d, optionally masked.
  auto scores = [&](int s_value, std::string &reason) -> bool {
    const ir::Op *op = index.producer(s_value);
    if (op && op->kind == OpKind::Elementwise && op->function == ops::Fn::Where) {
      auto other = scalar_value(d, op->operands.at(2), [&](int) -> int64_t { return 0; });
      if (!other || !std::isinf(*other) || *other > 0) {
        reason = "the mask's other value is not -inf";
        return false;
      }
      m.mask = op->operands[0];
      matched.insert(op);
      s_value = op->operands[1];
      op = index.producer(s_value);
    }
    if (!op || op->kind != OpKind::Contract || op->axes.size() != 1) {
      reason = "the scores are not a contraction over one axis";
      return false;
    }
    matched.insert(op);
    m.d_axis = op->axes[0];
    for (int operand : op->operands) {
      if (d.value(operand).axes.empty()) {
        m.scale_values.push_back(operand);
      } else if (has(operand, m.q_axis) && is_input(operand) && m.q_input < 0) {
        m.q_input = operand;
      } else if (has(operand, m.k_axis) && is_input(operand) && m.k_input < 0) {
        m.k_input = operand;
      } else {
        reason = "the scores are not Q * K of two inputs";
        return false;
      }
    }
    if (m.q_input < 0 || m.k_input < 0) {
      reason = "the scores are not Q * K of two inputs";
      return false;
    }
    return true;
  };
  const ir::Op *out_op = index.producer(m.output);
  if (!out_op) {
    why = "its output is an input";
    return false;
  }
  int p_value = -1;
  const ir::Op *pv = nullptr;
  const ir::Op *denominator = nullptr;
  if (out_op->kind == OpKind::Contract) {
    pv = out_op;  // form (a): O = softmax[k](S) * V
  } else if (out_op->kind == OpKind::Elementwise && out_op->function == ops::Fn::Div) {
    pv = index.producer(out_op->operands.at(0));  // form (b): O = A / L
    denominator = index.producer(out_op->operands.at(1));
    matched.insert(out_op);
  }
  if (!pv || pv->kind != OpKind::Contract || pv->axes.size() != 1 || pv->axes[0] != m.k_axis) {
    why = "its output is not a contraction over the streamed axis";
    return false;
  }
  matched.insert(pv);
  for (int operand : pv->operands) {
    if (d.value(operand).axes.empty())
      m.out_scale_values.push_back(operand);
    else if (is_input(operand) && m.v_input < 0 && has(operand, m.k_axis))
      m.v_input = operand;
    else if (p_value < 0)
      p_value = operand;
    else {
      why = "the output contraction is not P * V";
      return false;
    }
  }
  if (m.v_input < 0 || p_value < 0) {
    why = "the output contraction is not P * V";
    return false;
  }
  const ir::Op *p_op = index.producer(p_value);
  if (!denominator) {
    if (!p_op || p_op->kind != OpKind::Normalize || p_op->function != ops::Fn::Softmax || p_op->axes != std::vector<int>{m.k_axis}) {
      why = "P is not softmax over the streamed axis";
      return false;
    }
    matched.insert(p_op);
    if (!scores(p_op->operands.at(0), why)) return false;
  } else {
    // E = exp(S - M), M = max[k](S), L = sum[k](E)
    if (!p_op || p_op->kind != OpKind::Elementwise || p_op->function != ops::Fn::Exp) {
      why = "the numerator is not exp(S - M)";
      return false;
    }
    const ir::Op *sub = index.producer(p_op->operands.at(0));
    if (!sub || sub->kind != OpKind::Elementwise || sub->function != ops::Fn::Sub) {
      why = "the numerator is not exp(S - M)";
      return false;
    }
    const ir::Op *mx = index.producer(sub->operands.at(1));
    if (!mx || mx->kind != OpKind::Reduce || mx->function != ops::Fn::Max || mx->axes != std::vector<int>{m.k_axis} ||
        mx->operands.at(0) != sub->operands.at(0)) {
      why = "M is not max over the streamed axis of the scores";
      return false;
    }
    if (!denominator || denominator->kind != OpKind::Reduce || denominator->function != ops::Fn::Sum ||
        denominator->axes != std::vector<int>{m.k_axis} || denominator->operands.at(0) != p_value) {
      why = "L is not sum over the streamed axis of the numerator";
      return false;
    }
    matched.insert(p_op);
    matched.insert(sub);
    matched.insert(mx);
    matched.insert(denominator);
    if (!scores(sub->operands.at(0), why)) return false;
  }
  // The V axis e: V's axis that is neither k nor on Q.
  for (int axis : d.value(m.v_input).axes)
    if (axis != m.k_axis && !has(m.q_input, axis) && has(m.output, axis)) m.e_axis = axis;
  if (m.e_axis < 0 && has(m.output, m.d_axis) && has(m.v_input, m.d_axis)) m.e_axis = m.d_axis;
  if (m.e_axis < 0) {
    why = "V has no value axis";
    return false;
  }
  // Everything else must be scalar or mask arithmetic that only feeds the pattern.
  for (const auto &op : d.body.ops) {
    if (matched.count(op.get())) continue;
    bool scalar_or_mask = op->kind == OpKind::Constant || op->kind == OpKind::SizeOf || op->kind == OpKind::AxisIndex ||
                          op->kind == OpKind::Elementwise;
    for (int r : op->results)
      scalar_or_mask = scalar_or_mask && std::find(d.outputs.begin(), d.outputs.end(), r) == d.outputs.end();
    if (!scalar_or_mask) {
      why = "it computes more than attention ('" + d.value(op->results.at(0)).name + "')";
      return false;
    }
  }
  // Intermediates of the pattern must not be read outside it.
  for (const ir::Op *op : matched)
    for (int r : op->results) {
      if (r == m.output) continue;
      int inside = 0;
      for (const ir::Op *user : matched)
        for (int operand : user->operands) inside += operand == r;
      if (uses(d, r) != inside) {
        why = "the intermediate '" + d.value(r).name + "' is used elsewhere";
        return false;
      }
    }
  DType t = d.value(m.q_input).dtype;
  if (!is_16bit_float(t) || d.value(m.k_input).dtype != t || d.value(m.v_input).dtype != t) {
    why = "Q, K and V must all be bf16 or all f16 for tensor cores";
    return false;
  }
  return true;
}

// An affine form cq*q + ck*k + c of the query and key positions.
struct Affine {
  double q = 0, k = 0, c = 0;
};

void Generator::attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const ir::Op *site) {
  const ir::ProducerIndex index(d);
  int rq = rt_axis(frame, m.q_axis), rk = rt_axis(frame, m.k_axis), rd = rt_axis(frame, m.d_axis),
      re = rt_axis(frame, m.e_axis);
  Ten Q = get(frame, m.q_input), K = get(frame, m.k_input), V = get(frame, m.v_input);
  // Scalar factors (rsqrt(#d), ...) are computed first: folded, or tiny kernels.
  for (const auto &op : d.body.ops)
    if (op->kind != OpKind::Call && op->kind != OpKind::Repeat && d.value(op->results.at(0)).axes.empty())
      this->op(frame, *op);
  const ir::Value &result = d.value(m.output);
  std::vector<int> batch;
  for (const Ten *t : {&Q, &K, &V})
    for (int a : t->axes)
      if (a != rq && a != rk && a != rd && a != re && std::find(batch.begin(), batch.end(), a) == batch.end())
        batch.push_back(a);
  std::vector<int> own, axes;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  for (int a : batch)
    if (std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  axes.insert(axes.end(), own.begin(), own.end());
  Ten O = output(frame, m.output, result.dtype, axes);
  int64_t NQ = size(rq), NK = size(rk), D = size(rd), E = size(re), batches = numel(batch);
  std::vector<std::string> notes;
  bool stored = Q.kind == Ten::Kind::Buffer && K.kind == Ten::Kind::Buffer && V.kind == Ten::Kind::Buffer;
  bool ok = D % 16 == 0 && E % 16 == 0 && D <= 256 && E <= 256 && batches <= 65535 && stored;
  if (!ok) {
    note(site, "'" + d.name + "': " +
                   (stored ? "head widths " + str(D) + " and " + str(E) + " must be multiples of 16 up to 256"
                           : std::string("Q, K and V must be stored tensors")) +
                   " for the attention kernel; its operations run as separate kernels");
    region(frame, d.body);
    return;
  }
  // Tiles: the schedule's, rounded to what the kernel supports and fitted to shared memory.
  int64_t bq = std::clamp<int64_t>(m.bq / 16 * 16, 16, 128), bk = std::clamp<int64_t>(m.bk / 16 * 16, 16, 128);
  if (limits_.block_smem <= 0) throw GenError(limits_.unknown);
  const int64_t smem_limit = limits_.block_smem;
  auto smem = [&](int64_t q, int64_t k) { return (q * (D + 8) + 2 * k * (D + 8) + 2 * k * (E + 8)) * 2; };
  while (smem(bq, bk) > smem_limit && bk > 16) bk /= 2;
  while (smem(bq, bk) > smem_limit && bq > 16) bq /= 2;
  std::string tiles = "group " + axis_names_[static_cast<size_t>(rq)] + " by " + str(bq) + ", stream " +
                      axis_names_[static_cast<size_t>(rk)] + " by " + str(bk);
  if (bq != m.bq || bk != m.bk)
    tiles += " (the schedule says " + str(m.bq) + " and " + str(m.bk) + "; rounded to multiples of 16 that fit)";
  // The mask: a float expression of the positions q and k, and its linear conjuncts for skipping tiles.
  std::string keep = "true";
  std::vector<std::pair<Affine, ops::Fn>> conjuncts;  // f(q, k) REL 0
  bool pure = true;                                       // the mask is exactly the conjunction
  std::function<std::optional<std::string>(int)> expr = [&](int v) -> std::optional<std::string> {
    const ir::Op *op = index.producer(v);
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return flit(op->constant);
    if (op->kind == OpKind::SizeOf) return flit(static_cast<double>(size(rt_axis(frame, op->axes.at(0)))));
    if (op->kind == OpKind::AxisIndex) {
      if (op->axes.at(0) == m.q_axis) return std::string("static_cast<float>(q)");
      if (op->axes.at(0) == m.k_axis) return std::string("static_cast<float>(k)");
      return std::nullopt;
    }
    if (op->kind != OpKind::Elementwise) return std::nullopt;
    std::vector<std::string> args;
    for (int operand : op->operands) {
      auto e = expr(operand);
      if (!e) return std::nullopt;
      args.push_back(*e);
    }
    try {
      return function_expr(op->function, args);
    } catch (const GenError &) {
      return std::nullopt;
    }
  };
  std::function<std::optional<Affine>(int)> affine = [&](int v) -> std::optional<Affine> {
    const ir::Op *op = index.producer(v);
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return Affine{0, 0, op->constant};
    if (op->kind == OpKind::SizeOf) return Affine{0, 0, static_cast<double>(size(rt_axis(frame, op->axes.at(0))))};
    if (op->kind == OpKind::AxisIndex) {
      if (op->axes.at(0) == m.q_axis) return Affine{1, 0, 0};
      if (op->axes.at(0) == m.k_axis) return Affine{0, 1, 0};
      return std::nullopt;
    }
    if (op->kind != OpKind::Elementwise) return std::nullopt;
    const ops::Fn f = op->function;
    if (ops::info(f).kind == ops::Kind::Cast) return affine(op->operands.at(0));
    if (f == ops::Fn::Neg) {
      auto a = affine(op->operands.at(0));
      if (!a) return std::nullopt;
      return Affine{-a->q, -a->k, -a->c};
    }
    if (f == ops::Fn::Add || f == ops::Fn::Sub) {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (!a || !b) return std::nullopt;
      double s = f == ops::Fn::Add ? 1 : -1;
      return Affine{a->q + s * b->q, a->k + s * b->k, a->c + s * b->c};
    }
    if (f == ops::Fn::Mul) {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (!a || !b) return std::nullopt;
      if (a->q == 0 && a->k == 0) return Affine{a->c * b->q, a->c * b->k, a->c * b->c};
      if (b->q == 0 && b->k == 0) return Affine{b->c * a->q, b->c * a->k, b->c * a->c};
    }
    return std::nullopt;
  };
  std::function<void(int)> split = [&](int v) {
    const ir::Op *op = index.producer(v);
    if (op && op->kind == OpKind::Elementwise && op->function == ops::Fn::And) {
      split(op->operands.at(0));
      split(op->operands.at(1));
      return;
    }
    static const std::set<ops::Fn> rel = {ops::Fn::Lt, ops::Fn::Le, ops::Fn::Gt, ops::Fn::Ge};
    if (op && op->kind == OpKind::Elementwise && rel.count(op->function)) {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (a && b) {
        conjuncts.push_back({Affine{a->q - b->q, a->k - b->k, a->c - b->c}, op->function});
        return;
      }
    }
    pure = false;
  };
  if (m.mask >= 0) {
    auto e = expr(m.mask);
    if (!e) {
      note(site, "'" + d.name + "': the attention mask is not a function of the query and key positions; its operations run as separate kernels");
      region(frame, d.body);
      return;
    }
    keep = "(" + *e + ") != 0.f";
    split(m.mask);
  }
  // live: some element of the tile may be kept (every conjunct can hold at its best corner);
  // full: every element is kept (the mask is the conjunction and each holds at its worst corner).
  auto corner = [](const Affine &a, bool best_high) {
    auto pick = [&](double coefficient, const char *lo, const char *hi) {
      if (coefficient == 0) return std::string();
      bool high = (coefficient > 0) == best_high;
      return " + " + flit(coefficient) + " * static_cast<float>(" + (high ? hi : lo) + ")";
    };
    return "(" + flit(a.c) + pick(a.q, "q0", "q1") + pick(a.k, "k0", "k1") + ")";
  };
  std::string live = "true", full = pure ? "true" : "false";
  for (auto &[a, rel] : conjuncts) {
    bool upper = rel == ops::Fn::Gt || rel == ops::Fn::Ge;  // f > 0: best is the maximum
    std::string op = " " + std::string(ops::info(rel).symbol) + " 0.f";
    live += " && " + corner(a, upper) + op;
    if (pure) full += " && " + corner(a, !upper) + op;
  }
  KernelArgs args;
  std::string pq = args.in(Q), pk = args.in(K), pv = args.in(V);
  std::string scale = "1.f", out_scale = "1.f";
  for (int s : m.scale_values) scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  for (int s : m.out_scale_values) out_scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  std::string r = args.out(O);
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax)) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  bool async = Q.stride(rd) == 1 && K.stride(rd) == 1 && V.stride(re) == 1;
  for (const Ten *t : {&Q, &K, &V}) {
    async = async && (t == &Q ? Q.stride(rq) : t == &K ? K.stride(rk) : V.stride(rk)) % 8 == 0;
    for (int ax : batch) async = async && t->stride(ax) % 8 == 0;
  }
  bool f16 = Q.dtype == DType::F16;
  int64_t threads = bq / 16 * 32;
  std::string k;
  k += "// streamed attention (FlashAttention-2 style): " + tiles + "; " + str(threads) + " threads, " +
       str(smem(bq, bk)) + " bytes of shared memory; K and V staged " +
       (async ? "by cp.async (double-buffered)" : "by element loads") + "\n";
  k += "// mask: " + (m.mask < 0 ? std::string("none") : keep) + "\n";
  k += "struct @NAME@_mask {\n";
  k += "  __device__ bool live(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + live + "; }\n";
  k += "  __device__ bool full(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + full + "; }\n";
  k += "  __device__ bool keep(int64_t q, int64_t k) const { return " + keep + "; }\n";
  k += "};\n";
  k += "__global__ void __launch_bounds__(" + str(threads) + ") @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.y;\n" + decompose(batch, "b", "  ");
  k += "  const float scale_log2 = " + scale + " * 1.4426950408889634f;\n";
  k += "  const float out_scale = " + out_scale + ";\n";
  k += "  auto store = [&](int64_t q, int64_t e, float v) { " + r + "[q * " + str(O.stride(rq)) + " + e * " +
       str(O.stride(re)) + batch_offset(O) + "] = ncd_to<" + element_type(O.dtype) + ">(v * out_scale); };\n";
  k += "  ncd_attention_block<" + std::string(f16 ? "true" : "false") + ", " + str(D) + ", " + str(E) + ", " + str(bq) +
       ", " + str(bk) + ", " + str(NQ) + ", " + str(NK) + ", " + str(Q.stride(rq)) + ", " + str(Q.stride(rd)) + ", " +
       str(K.stride(rk)) + ", " + str(K.stride(rd)) + ", " + str(V.stride(rk)) + ", " + str(V.stride(re)) + ", " +
       (async ? "true" : "false") + ">(\n";
  k += "      reinterpret_cast<const uint16_t *>(" + pq + batch_offset(Q) + "), reinterpret_cast<const uint16_t *>(" + pk +
       batch_offset(K) + "),\n      reinterpret_cast<const uint16_t *>(" + pv + batch_offset(V) +
       "), static_cast<int64_t>(blockIdx.x) * " + str(bq) + ", scale_log2, @NAME@_mask{}, store);\n";
  k += "}\n";
  std::string name = add_kernel("attention_" + d.name, k);
  line("// " + result.name + axis_list(axes) + " = streamed attention '" + d.name + "'");
  line("NCD_TRY(cudaFuncSetAttribute(" + name + ", cudaFuncAttributeMaxDynamicSharedMemorySize, " + str(smem(bq, bk)) +
       "));");
  line(name + "<<<dim3(" + str((NQ + bq - 1) / bq) + ", " + str(batches) + "), " + str(threads) + ", " +
       str(smem(bq, bk)) + ", stream>>>(" + args.arg_list() + ");");
  line("NCD_LAUNCHED();");
  frame.values[m.output] = O;
}

// ---------------------------------------------------------------- fused kernels (GEMM + epilogue, rows, pointwise)


}  // namespace ncd::cuda::detail
