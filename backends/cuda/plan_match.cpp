// The planner's pattern matching: which kernel family a scheduled diagram is
// (streamed attention in softmax or explicit online-softmax form, masks as
// affine conjuncts of the positions; or a GEMM with its epilogue, a row kernel
// or a pointwise chain), from the IR alone, before any runtime layout or text.
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

const char *kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Contract: return "contraction";
    case OpKind::Reduce: return "reduction";
    case OpKind::Normalize: return "normalisation";
    case OpKind::Scan: return "scan";
    case OpKind::Access: return "access";
    case OpKind::Merge: return "merge";
    case OpKind::Call: return "call";
    case OpKind::Repeat: return "repeat";
    case OpKind::Select: return "selection";
    default: return "operation";
  }
}

}  // namespace

namespace {

bool match_attention_on(const ir::Diagram &d, int group, int stream, AttentionMatch &m, std::string &why);

}  // namespace

bool match_attention(const ir::Diagram &d, const ir::Schedule &schedule, AttentionMatch &m, std::string &why) {
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat) {
      why = "it calls or repeats";
      return false;
    }
  std::vector<std::pair<int, int64_t>> groups;
  int stream = -1;
  int64_t chunk = 0;
  for (const ir::ScheduleDirective &dir : schedule.directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Group) {
      groups.push_back({dir.axis, dir.amount});
    } else if (dir.kind == ir::ScheduleDirective::Kind::Stream) {
      if (stream >= 0) {
        why = "it streams more than one axis";
        return false;
      }
      stream = dir.axis;
      chunk = dir.amount;
    }
  }
  if (groups.empty() || stream < 0) {
    why = "attention needs `group` of the queries and `stream` of the keys";
    return false;
  }
  // The queries are the grouped axis the scores' Q has and K lacks; other
  // grouped axes (heads, batch) go on the grid, one position per block.
  for (const auto &[axis, amount] : groups) {
    AttentionMatch trial;
    trial.bq = amount;
    trial.bk = chunk;
    std::string reason;
    if (match_attention_on(d, axis, stream, trial, reason)) {
      m = trial;
      return true;
    }
    if (why.empty() || reason != "the scores are not Q * K of two inputs") why = reason;
  }
  return false;
}

namespace {

bool match_attention_on(const ir::Diagram &d, int group, int stream, AttentionMatch &m, std::string &why) {
  const ir::ProducerIndex index(d);
  m.q_axis = group;
  m.k_axis = stream;
  // One output, or two: O and the rows' logsumexp of the softmax's operand,
  // maybe through elementwise work on it and scalars (its ops, lse_chain).
  std::set<const ir::Op *> lse_chain;
  std::function<int(int)> logsumexp = [&](int v) -> int {  // the logsumexp value, or -1
    const ir::Op *op = index.producer(v);
    if (!op) return -1;
    if (op->kind == OpKind::Reduce && op->function == ops::Fn::LogSumExp && op->axes == std::vector<int>{stream})
      return v;
    if (op->kind != OpKind::Elementwise) return -1;
    int found = -1;
    for (int operand : op->operands) {
      if (d.value(operand).axes.empty()) continue;
      int r = logsumexp(operand);
      if (r < 0 || (found >= 0 && found != r)) return -1;
      found = r;
    }
    if (found >= 0) lse_chain.insert(op);
    return found;
  };
  const int lse0 = d.outputs.size() == 2 ? logsumexp(d.outputs[0]) : -1;
  const int lse1 = d.outputs.size() == 2 ? logsumexp(d.outputs[1]) : -1;
  if (d.outputs.size() == 2 && (lse0 >= 0) != (lse1 >= 0)) {
    m.lse = d.outputs[lse0 >= 0 ? 0 : 1];
    m.output = d.outputs[lse0 >= 0 ? 1 : 0];
    m.lse_raw = lse0 >= 0 ? lse0 : lse1;
  } else if (d.outputs.size() == 1) {
    m.output = d.outputs[0];
  } else {
    why = "it has " + str(static_cast<int64_t>(d.outputs.size())) + " outputs";
    return false;
  }
  auto is_input = [&](int v) {
    return std::find(d.inputs.begin(), d.inputs.end(), v) == d.inputs.end() ? false : true;
  };
  auto has = [&](int v, int axis) {
    const auto &axes = d.value(v).axes;
    return std::find(axes.begin(), axes.end(), axis) != axes.end();
  };
  std::set<const ir::Op *> matched;
  // Whether `v` is computed from the raw scores: a contraction over one axis
  // that gives [.., q, k], through elementwise functions.
  std::function<bool(int)> from_scores = [&](int v) -> bool {
    const ir::Op *op = index.producer(v);
    if (!op) return false;
    if (op->kind == OpKind::Contract) return op->axes.size() == 1 && has(v, m.q_axis) && has(v, m.k_axis);
    if (op->kind != OpKind::Elementwise) return false;
    for (int operand : op->operands)
      if (from_scores(operand)) return true;
    return false;
  };
  // The scores: contract(Q, K, scalars...) over one axis d, then any chain of
  // elementwise functions of them (a score modification: softcap, biases of
  // the positions or of tensors indexed by them, masks read from tensors),
  // optionally masked last by a predicate of the positions.
  auto scores = [&](int s_value, std::string &reason) -> bool {
    m.score_value = s_value;
    const ir::Op *op = index.producer(s_value);
    if (op && op->kind == OpKind::Elementwise && op->function == ops::Fn::Where) {
      auto other = scalar_value(d, op->operands.at(2), [&](int) -> int64_t { return 0; });
      if (other && std::isinf(*other) && *other < 0) {
        m.mask = op->operands[0];
        m.mask_op = op;
        matched.insert(op);
        s_value = op->operands[1];
        m.score_value = s_value;
        op = index.producer(s_value);
      }
    }
    while (op && op->kind == OpKind::Elementwise) {
      int path = -1;
      for (int operand : op->operands)
        if (from_scores(operand)) {
          if (path >= 0) {
            reason = "the score modification uses the scores twice ('" + d.value(op->results.at(0)).name + "')";
            return false;
          }
          path = operand;
        }
      if (path < 0) break;
      m.score_ops.push_back(op);
      matched.insert(op);
      s_value = path;
      op = index.producer(s_value);
    }
    if (!op || op->kind != OpKind::Contract || op->axes.size() != 1) {
      reason = "the scores are not a contraction over one axis";
      return false;
    }
    m.raw_scores = s_value;
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
    // The query axis is Q's alone and the key axis K's alone (heads, on both, are batch).
    if (has(m.k_input, m.q_axis) || has(m.q_input, m.k_axis)) {
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
    if (!p_op || p_op->kind != OpKind::Normalize || p_op->function != ops::Fn::Softmax ||
        p_op->axes != std::vector<int>{m.k_axis}) {
      why = "P is not softmax over the streamed axis";
      return false;
    }
    matched.insert(p_op);
    if (m.lse >= 0) {
      const ir::Op *lse = index.producer(m.lse_raw);
      if (lse->operands.at(0) != p_op->operands.at(0)) {
        why = "the logsumexp output is not of the softmax's operand";
        return false;
      }
      matched.insert(lse);
      matched.insert(lse_chain.begin(), lse_chain.end());
    }
    if (!scores(p_op->operands.at(0), why)) return false;
  } else {
    if (m.lse >= 0) {
      why = "a logsumexp output needs the softmax form";
      return false;
    }
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
  // Everything else must be scalar or mask arithmetic that only feeds the
  // pattern, or a read of an input at computed positions (a bias table
  // indexed by a bucket of q - k: the score modification loads it).
  for (const auto &op : d.body.ops) {
    if (matched.count(op.get())) continue;
    bool scalar_or_mask = op->kind == OpKind::Constant || op->kind == OpKind::SizeOf || op->kind == OpKind::AxisIndex ||
                          op->kind == OpKind::Elementwise || (op->kind == OpKind::Access && is_input(op->operands.at(0)));
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
      if (r == m.output || r == m.lse) continue;
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

}  // namespace

bool match_fused(const ir::Diagram &d, FusedMatch &m, std::string &why) {
  const ir::ProducerIndex index(d);
  auto name = [&](const ir::Op &op) { return d.value(op.results.at(0)).name; };
  auto data_free = [](const ir::Op &op) {
    return op.kind == OpKind::Constant || op.kind == OpKind::SizeOf || op.kind == OpKind::AxisIndex;
  };
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat || op->kind == OpKind::Merge ||
        op->kind == OpKind::Scan || op->kind == OpKind::Select) {
      why = std::string("it has a ") + kind_name(op->kind) +
            (op->kind == OpKind::Merge || op->kind == OpKind::Scan ? " ('" + name(*op) + "')" : "");
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
      why = "it has more than one contraction, reduction or normalisation ('" + name(*m.main) + "' and '" + name(*op) +
            "')";
      return false;
    }
    m.main = op.get();
  }
  // A quantization prologue: an operand of the contraction that is 8-bit, or
  // dequantized, computed by elementwise ops alone from the kernel's inputs
  // and read by nothing else. The GEMM computes it as it stages the operand
  // (docs/CUDA.md, "Quantized contractions"); any other prologue is declined.
  if (m.main && m.main->kind == OpKind::Contract)
    for (int operand : m.main->operands) {
      if (!index.producer(operand) || early.count(operand) || d.value(operand).axes.empty()) continue;
      std::set<int> chain;
      bool ok = true, dequantized = false;
      std::function<void(int)> walk = [&](int v) {
        const ir::Op *p = index.producer(v);
        if (!p || early.count(v) || !chain.insert(v).second) return;
        ok =
            ok && p->kind == OpKind::Elementwise && std::find(d.outputs.begin(), d.outputs.end(), v) == d.outputs.end();
        dequantized = dequantized || (p->kind == OpKind::Elementwise && p->function == ops::Fn::Dequantize);
        for (int o : p->operands) walk(o);
      };
      walk(operand);
      if (!ok || !(is_8bit(d.value(operand).dtype) || dequantized)) continue;
      for (int v : chain) {
        int inside = 0;
        for (const auto &op : d.body.ops)
          if (op.get() == m.main || chain.count(op->results.at(0)))
            for (int o : op->operands) inside += o == v;
        ok = ok && uses(d, v) == inside;
      }
      if (ok) m.prologue.insert(chain.begin(), chain.end());
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
    } else if (m.prologue.count(r)) {
      continue;
    } else if (m.main->kind == OpKind::Contract) {
      // (Quantization prologues were taken above; the words stay those of ncd cost's reports.)
      why = "the contraction '" + name(*m.main) + "' has a prologue ('" + name(*op) + "'); only epilogues are fused";
      return false;
    } else if (!upstream.count(r)) {
      why =
          "'" + name(*op) + "' is neither before nor after the " + kind_name(m.main->kind) + " '" + name(*m.main) + "'";
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
      if (index.producer(operand) && !m.prologue.count(operand)) {
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
    if ((!is_16bit_float(a) || a != b) && !(is_8bit(a) && is_8bit(b) && (a == DType::I8) == (b == DType::I8))) {
      why = std::string("the contraction's operands are ") + std::string(ir::dtype_name(a)) + " and " +
            std::string(ir::dtype_name(b)) + "; tensor cores take two bf16, two f16, two i8 or two fp8";
      return false;
    }
    m.kind = FusedMatch::Kind::Gemm;
    return true;
  }
  // The row kernels below are written for these.
  static const std::set<ops::Fn> written = {
      ops::Fn::Sum,       ops::Fn::Mean,    ops::Fn::Max,        ops::Fn::Min,       ops::Fn::Prod,
      ops::Fn::LogSumExp, ops::Fn::Softmax, ops::Fn::LogSoftmax, ops::Fn::LayerNorm, ops::Fn::RMSNorm};
  if (!written.count(op.function)) {
    why =
        "the cuda backend has no " + std::string(kind_name(op.kind)) + " '" + std::string(ops::name(op.function)) + "'";
    return false;
  }
  m.kind = FusedMatch::Kind::Row;
  return true;
}

bool match_grid(const ir::Diagram &d, const ir::Schedule &schedule, GridMatch &m, std::string &why) {
  const ir::ProducerIndex index(d);
  auto is_input = [&](int v) { return std::find(d.inputs.begin(), d.inputs.end(), v) != d.inputs.end(); };
  auto has = [&](int v, int axis) {
    const auto &axes = d.value(v).axes;
    return std::find(axes.begin(), axes.end(), axis) != axes.end();
  };
  auto name = [&](int v) { return "'" + d.value(v).name + "'"; };
  std::map<int, int64_t> groups;
  for (const ir::ScheduleDirective &dir : schedule.directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Group) groups[dir.axis] = dir.amount;
    if (dir.kind != ir::ScheduleDirective::Kind::Stream) continue;
    if (m.s_axis >= 0) {
      why = "it streams more than one axis";
      return false;
    }
    m.s_axis = dir.axis;
    m.bs = dir.amount;
  }
  if (m.s_axis < 0) {
    why = "a grid kernel streams one axis";
    return false;
  }
  const int s = m.s_axis;
  std::vector<const ir::Op *> contractions;
  for (const auto &op : d.body.ops) {
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat) {
      why = "it calls or repeats";
      return false;
    }
    if (op->kind == OpKind::Contract) contractions.push_back(op.get());
  }
  auto tensors = [&](const ir::Op &op, std::vector<int> &scales) {
    std::vector<int> out;
    for (int operand : op.operands) {
      if (d.value(operand).axes.empty()) scales.push_back(operand);
      else out.push_back(operand);
    }
    return out;
  };
  // Producers: x[g, c] * y[s, c] over c, of two inputs.
  for (const ir::Op *op : contractions) {
    const int r = op->results.at(0);
    if (!has(r, s)) continue;
    GridMatch::Producer p;
    p.value = r;
    std::vector<int> t = tensors(*op, p.scales);
    if (op->axes.size() != 1 || t.size() != 2 || !is_input(t[0]) || !is_input(t[1])) {
      why = "the grid value " + name(r) + " is not a contraction of two inputs over one axis";
      return false;
    }
    p.c_axis = op->axes[0];
    p.x = has(t[0], s) ? t[1] : t[0];
    p.y = has(t[0], s) ? t[0] : t[1];
    if (has(p.x, s) || !has(p.y, s)) {
      why = "the grid value " + name(r) + " is not x[g, c] * y[s, c]";
      return false;
    }
    int g = -1;
    for (int axis : d.value(p.x).axes)
      if (!has(p.y, axis) && axis != p.c_axis) g = g < 0 ? axis : -2;
    if (g < 0 || !groups.count(g) || (m.g_axis >= 0 && m.g_axis != g)) {
      why = "the grid value " + name(r) + " is not x[g, c] * y[s, c] over a grouped axis g";
      return false;
    }
    m.g_axis = g;
    m.producers.push_back(p);
  }
  if (m.producers.empty() || m.producers.size() > 2) {
    why = "a grid kernel computes its grid from one or two contractions (" + std::to_string(m.producers.size()) + ")";
    return false;
  }
  const int g = m.g_axis;
  m.bg = groups.at(g);
  auto on_grid = [&](int v) { return has(v, g) && has(v, s); };
  // Consumers: grid[g, s] * z[s, e] over s.
  for (const ir::Op *op : contractions) {
    const int r = op->results.at(0);
    if (has(r, s)) continue;
    GridMatch::Consumer c;
    c.value = r;
    std::vector<int> t = tensors(*op, c.scales);
    if (op->axes != std::vector<int>{s} || t.size() != 2) {
      why = "the contraction " + name(r) + " does not sum the streamed axis of a grid value and an input";
      return false;
    }
    c.grid = on_grid(t[0]) ? t[0] : t[1];
    c.z = on_grid(t[0]) ? t[1] : t[0];
    if (!on_grid(c.grid) || is_input(c.grid) || !is_input(c.z) || has(c.z, g)) {
      why = "the contraction " + name(r) + " does not sum the streamed axis of a grid value and an input";
      return false;
    }
    for (int axis : d.value(c.z).axes)
      if (axis != s && has(r, axis) && !has(c.grid, axis)) c.e_axis = c.e_axis < 0 ? axis : -2;
    if (c.e_axis < 0 || !has(r, g)) {
      why = "the contraction " + name(r) + " is not grid[g, s] * z[s, e] with one axis e";
      return false;
    }
    m.consumers.push_back(c);
  }
  if (m.consumers.empty() || m.consumers.size() > 2) {
    why = "a grid kernel sums its grid into one or two outputs (" + std::to_string(m.consumers.size()) + ")";
    return false;
  }
  // Every output is a consumer's result or a copy of one; no grid value leaves.
  for (int out : d.outputs) {
    int source = out;
    const ir::Op *op = index.producer(out);
    if (op && op->kind == OpKind::Elementwise && (op->function == ops::Fn::Copy || op->function == ops::Fn::Cast) &&
        op->operands.size() == 1)
      source = op->operands[0];
    bool found = false;
    for (GridMatch::Consumer &c : m.consumers)
      if (c.value == source && c.output < 0) {
        c.output = out;
        found = true;
        break;
      }
    if (!found) {
      why = "its output " + name(out) + " is not a sum over the streamed axis";
      return false;
    }
  }
  for (const GridMatch::Consumer &c : m.consumers)
    if (c.output < 0 || uses(d, c.value) != 1) {
      why = "the sum " + name(c.value) + " is read inside the kernel or not written";
      return false;
    }
  // The rest is elementwise work (per grid element, or on scalars and the
  // positions), data-free ops and reads of inputs at computed positions.
  for (const auto &op : d.body.ops) {
    if (op->kind == OpKind::Contract || op->kind == OpKind::Constant || op->kind == OpKind::SizeOf ||
        op->kind == OpKind::AxisIndex || op->kind == OpKind::Elementwise ||
        (op->kind == OpKind::Access && is_input(op->operands.at(0))))
      continue;
    why = "it computes more than a grid ('" + d.value(op->results.at(0)).name + "' is a " + kind_name(op->kind) + ")";
    return false;
  }
  // Tensor cores: every operand of the contractions bf16, or every one f16.
  DType t = d.value(m.producers[0].x).dtype;
  bool same = is_16bit_float(t);
  for (const auto &p : m.producers) same = same && d.value(p.x).dtype == t && d.value(p.y).dtype == t;
  for (const auto &c : m.consumers) same = same && d.value(c.z).dtype == t;
  if (!same) {
    why = "the inputs of the grid's contractions must all be bf16 or all f16 for tensor cores";
    return false;
  }
  // The summed grid values are tensor-core operands too: the kernel rounds
  // them to 16 bits, which is what the diagram says only when they are.
  for (const auto &c : m.consumers)
    if (d.value(c.grid).dtype != t) {
      why = "the summed grid value " + name(c.grid) + " is " + std::string(ir::dtype_name(d.value(c.grid).dtype)) +
            ", not " + std::string(ir::dtype_name(t)) + " as the tensor cores take it";
      return false;
    }
  // A mask where(mask, ., -inf) on the grid: the kernel skips the tiles it
  // rules out, which is right only when every summed grid value is 0 there.
  auto neg_inf = [&](int v) {
    auto c = scalar_value(d, v, [](int) -> int64_t { return 1; });
    return c && std::isinf(*c) && *c < 0;
  };
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Elementwise && op->function == ops::Fn::Where && on_grid(op->results.at(0)) &&
        neg_inf(op->operands.at(2))) {
      if (m.mask >= 0 && m.mask != op->operands[0]) {
        why = "the grid has two masks";
        return false;
      }
      m.mask = op->operands[0];
    }
  if (m.mask >= 0) {
    std::function<bool(int)> minus_inf = [&](int v) -> bool {  // -inf wherever the mask is false
      const ir::Op *op = index.producer(v);
      if (!op || op->kind != OpKind::Elementwise) return false;
      const auto &a = op->operands;
      switch (op->function) {
        case ops::Fn::Where: return a.at(0) == m.mask && neg_inf(a.at(2));
        case ops::Fn::Sub: return minus_inf(a.at(0)) && !on_grid(a.at(1));
        case ops::Fn::Add: return (minus_inf(a.at(0)) && !on_grid(a.at(1))) || (minus_inf(a.at(1)) && !on_grid(a.at(0)));
        case ops::Fn::Copy:
        case ops::Fn::Cast: return minus_inf(a.at(0));
        default: return false;
      }
    };
    std::function<bool(int)> zero = [&](int v) -> bool {  // 0 wherever the mask is false
      const ir::Op *op = index.producer(v);
      if (!op || op->kind != OpKind::Elementwise) return false;
      const auto &a = op->operands;
      switch (op->function) {
        case ops::Fn::Where: {
          auto other = scalar_value(d, a.at(2), [](int) -> int64_t { return 1; });
          return a.at(0) == m.mask && other && *other == 0;
        }
        case ops::Fn::Exp: return minus_inf(a.at(0));
        case ops::Fn::Mul: return zero(a.at(0)) || zero(a.at(1));
        case ops::Fn::Div: {
          auto divisor = scalar_value(d, a.at(1), [](int) -> int64_t { return 1; });
          return zero(a.at(0)) && divisor && *divisor != 0;
        }
        case ops::Fn::Copy:
        case ops::Fn::Cast: return zero(a.at(0));
        default: return false;
      }
    };
    for (const auto &c : m.consumers)
      if (!zero(c.grid)) {
        why = "the summed grid value " + name(c.grid) + " is not 0 where the mask is false, so masked tiles cannot be skipped";
        return false;
      }
  }
  return true;
}

ScheduledPlan plan_scheduled(const ir::Diagram &diagram, const ir::Schedule &schedule) {
  ScheduledPlan plan;
  std::string why;
  if (match_attention(diagram, schedule, plan.attention, why)) {
    plan.kind = ScheduledPlan::Kind::Attention;
    return plan;
  }
  // A grid: several contractions over a streamed axis, none a softmax's.
  bool softmax = false;
  for (const auto &op : diagram.body.ops)
    softmax = softmax || (op->kind == OpKind::Normalize && op->function == ops::Fn::Softmax);
  std::string grid_why;
  if (!softmax && match_grid(diagram, schedule, plan.grid, grid_why)) {
    plan.kind = ScheduledPlan::Kind::Grid;
    return plan;
  }
  std::string fused_why;
  if (match_fused(diagram, plan.fused, fused_why)) {
    plan.kind = ScheduledPlan::Kind::Fused;
    return plan;
  }
  // The reason of the matcher that got further: attention when the diagram streams an axis.
  bool streams = false;
  for (const ir::ScheduleDirective &dir : schedule.directives)
    streams = streams || dir.kind == ir::ScheduleDirective::Kind::Stream;
  bool has_softmax = false;
  for (const auto &op : diagram.body.ops)
    has_softmax = has_softmax || (op->kind == OpKind::Normalize && op->function == ops::Fn::Softmax);
  size_t contractions = 0;
  for (const auto &op : diagram.body.ops) contractions += op->kind == OpKind::Contract;
  if (!(streams && has_softmax)) why = streams && contractions >= 2 ? grid_why : fused_why;
  plan.reason = why;
  return plan;
}

}  // namespace ncd::cuda::detail
