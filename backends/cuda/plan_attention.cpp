// The planner of streamed attention: given the pattern (plan_match.cpp) and
// the runtime layouts of Q, K, V and O, it checks what the kernel template
// supports, fits the schedule's tiles to the target's shared memory, chooses
// how K and V are staged and turns the mask into device expressions with
// tile-skipping bounds (an AttentionPlan), or declines with the reason.
#include "generator.h"
#include "ncd/index_predicate.h"

namespace ncd::cuda::detail {

namespace {

// An affine form cq*q + ck*k + c of the query and key positions.
struct Affine {
  double q = 0, k = 0, c = 0;
};

}  // namespace

AttentionTiles fit_attention_tiles(int64_t asked_q, int64_t asked_k, int64_t d, int64_t e, int64_t smem_limit) {
  int64_t bq = std::clamp<int64_t>(asked_q / 16 * 16, 16, 128), bk = std::clamp<int64_t>(asked_k / 16 * 16, 16, 128);
  // Halved, and kept multiples of 16: the block multiplies whole 16-key and
  // 16-query fragments (a chunk of 24 keys would drop 8 of them from P.V).
  auto halve = [](int64_t tile) { return std::max<int64_t>(16, tile / 2 / 16 * 16); };
  while (attention_smem(bq, bk, d, e) > smem_limit && bk > 16) bk = halve(bk);
  while (attention_smem(bq, bk, d, e) > smem_limit && bq > 16) bq = halve(bq);
  return {bq, bk, attention_smem(bq, bk, d, e), bq / 16 * 32};
}

// The mask `where(mask, ., -inf)` as device code over the positions q and k
// (the axes q_axis and k_axis): `keep` (empty when the mask reads tensors),
// and whether a tile [q0, q1] x [k0, k1] may keep something (`live`) or keeps
// everything (`full`), from its linear conjuncts (ncd/index_predicate.h).
void Generator::mask_code(Frame &frame, const ir::Diagram &d, int mask, int q_axis, int k_axis, MaskCode &out) {
  const ir::ProducerIndex index(d);
  // The mask: a float expression of the positions q and k, and its linear
  // comparisons for skipping tiles, as an `or` of `and`s.
  std::vector<std::vector<std::pair<Affine, ops::Fn>>> clauses;  // f(q, k) REL 0
  bool pure = true;                                              // the mask is exactly the clauses
  std::function<std::optional<PositionCode>(int)> expr = [&](int v) -> std::optional<PositionCode> {
    const ir::Op *op = index.producer(v);
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return position_constant(op->constant);
    if (op->kind == OpKind::SizeOf) {
      // A runtime size is not visible to the mask's struct: such a mask is applied in the score lambda.
      auto n = size(rt_axis(frame, op->axes.at(0))).constant();
      if (!n) return std::nullopt;
      return position_constant(static_cast<double>(*n));
    }
    if (op->kind == OpKind::AxisIndex) {
      if (op->axes.at(0) == q_axis) return PositionCode{"q", true};
      if (op->axes.at(0) == k_axis) return PositionCode{"k", true};
      return std::nullopt;
    }
    if (op->kind != OpKind::Elementwise) return std::nullopt;
    std::vector<PositionCode> args;
    for (int operand : op->operands) {
      auto e = expr(operand);
      if (!e) return std::nullopt;
      args.push_back(*e);
    }
    try {
      return position_function(op->function, args);
    } catch (const GenError &) {
      return std::nullopt;
    }
  };
  // The mask's clauses over q and k (ncd/index_predicate.h); a comparison
  // over any other axis cannot bound a tile: left out, the mask is impure.
  auto split = [&](int v) {
    auto size_of = [&](int axis) -> std::optional<double> {
      auto n = size(rt_axis(frame, axis)).constant();
      return n ? std::optional<double>(static_cast<double>(*n)) : std::nullopt;
    };
    IndexPredicate predicate = index_predicate(d, index, v, size_of);
    pure = predicate.pure && !predicate.clauses.empty();
    for (const auto &clause : predicate.clauses) {
      clauses.emplace_back();
      for (const IndexConjunct &conjunct : clause) {
        Affine a{0, 0, conjunct.form.constant};
        bool usable = true;
        for (const auto &[axis, c] : conjunct.form.axes) {
          if (axis == q_axis) a.q = c;
          else if (axis == k_axis) a.k = c;
          else usable = false;
        }
        if (usable) clauses.back().push_back({a, conjunct.relation});
        else pure = false;
      }
    }
  };
  if (mask >= 0) {
    split(mask);
    if (auto e = expr(mask)) {
      out.keep = "(" + e->code + ") != " + (e->integer ? "0" : "0.f");
    } else {
      pure = false;
    }
  }
  // live: some element of the tile may be kept (every conjunct can hold at its best corner);
  // full: every element is kept (the mask is the conjunction and each holds at its worst corner).
  // Integer coefficients (the usual case) compare in int64, others in double: exact either way.
  auto integral = [](const Affine &a) {
    for (double c : {a.c, a.q, a.k})
      if (!position_constant(c).integer) return false;
    return true;
  };
  auto corner = [&](const Affine &a, bool best_high) {
    const bool exact = integral(a);
    auto number = [&](double c) { return exact ? position_constant(c).code : dlit(c); };
    auto pick = [&](double coefficient, const char *lo, const char *hi) {
      if (coefficient == 0) return std::string();
      const std::string at = (coefficient > 0) == best_high ? hi : lo;
      return " + " + number(coefficient) + " * " + (exact ? at : "static_cast<double>(" + at + ")");
    };
    return "(" + number(a.c) + pick(a.q, "q0", "q1") + pick(a.k, "k0", "k1") + ")";
  };
  // Over clauses: live when some clause may hold, full when some clause holds everywhere.
  std::string live, full;
  bool always = clauses.empty();
  for (const auto &clause : clauses) {
    std::string clause_live = "true", clause_full = "true";
    for (const auto &[a, rel] : clause) {
      bool upper = rel == ops::Fn::Gt || rel == ops::Fn::Ge;  // f > 0: best is the maximum
      std::string op = " " + std::string(ops::info(rel).symbol) + (integral(a) ? " 0" : " 0.0");
      clause_live += " && " + corner(a, upper) + op;
      clause_full += " && " + corner(a, !upper) + op;
    }
    always = always || clause.empty();
    live += (live.empty() ? "" : " || ") + (clauses.size() > 1 ? "(" + clause_live + ")" : clause_live);
    full += (full.empty() ? "" : " || ") + (clauses.size() > 1 ? "(" + clause_full + ")" : clause_full);
  }
  out.live = always ? "true" : live;
  out.skipped = !always;
  out.full = mask < 0 ? "true" : pure && !clauses.empty() ? full : "false";
}

bool Generator::plan_attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const Ten &Q, const Ten &K,
                               const Ten &V, const Ten &O, AttentionPlan &p, std::string &why) {
  const int rq = p.rq, rk = p.rk, rd = p.rd, re = p.re;
  p.nq = size(rq);
  p.nk = size(rk);
  p.batches = numel(p.batch);
  if (!size(rd).known() || !size(re).known()) {
    why = "the head widths '" + axis_names_[static_cast<size_t>(rd)] + "' and '" + axis_names_[static_cast<size_t>(re)] +
          "' must have sizes (-D) for the attention kernel: its fragments are compile-time";
    return false;
  }
  p.d = *size(rd).constant();
  p.e = *size(re).constant();
  const int64_t D = p.d, E = p.e;
  bool stored = Q.kind == Ten::Kind::Buffer && K.kind == Ten::Kind::Buffer && V.kind == Ten::Kind::Buffer;
  bool ok = D % 16 == 0 && E % 16 == 0 && D <= 256 && E <= 256 && stored;
  if (!ok) {
    why = stored ? "head widths " + str(D) + " and " + str(E) +
                       " must be multiples of 16 up to 256 for the attention kernel"
                 : std::string("Q, K and V must be stored tensors for the attention kernel");
    return false;
  }
  // Tiles: the schedule's, rounded to what the kernel supports and fitted to shared memory.
  if (limits_.block_smem <= 0) throw GenError(limits_.unknown);
  const AttentionTiles fitted = fit_attention_tiles(m.bq, m.bk, D, E, limits_.block_smem);
  const int64_t bq = fitted.bq, bk = fitted.bk;
  // The grid: batches on x (up to 2^31 - 1), query tiles on y (up to 65,535); runtime
  // extents are checked by the host code before the launch.
  const int64_t q_tiles = p.nq.known() ? (*p.nq.constant() + bq - 1) / bq : 0;
  if (q_tiles > 65535 || (p.batches.known() && *p.batches.constant() > 2147483647)) {
    why = "the attention kernel's grid would be too large (" + str(p.batches) + " batches of " + str(q_tiles) +
          " query tiles; at most 2^31 - 1 and 65,535)";
    return false;
  }
  p.bq = bq;
  p.bk = bk;
  p.smem = fitted.smem;
  p.threads = fitted.threads;
  p.tiles = "group " + axis_names_[static_cast<size_t>(rq)] + " by " + str(bq) + ", stream " +
            axis_names_[static_cast<size_t>(rk)] + " by " + str(bk);
  if (bq != m.bq || bk != m.bk)
    p.tiles += " (the schedule says " + str(m.bq) + " and " + str(m.bk) + "; rounded to multiples of 16 that fit)";
  p.score = !m.score_ops.empty();
  MaskCode mask;
  mask_code(frame, d, m.mask, m.q_axis, m.k_axis, mask);
  p.keep = mask.keep.empty() ? p.keep : mask.keep;
  if (m.mask >= 0 && mask.keep.empty()) {
    // A mask that reads tensors (document ids, ...) is applied per element by
    // the score modification; its conjuncts of the positions still skip tiles.
    p.mask_in_score = true;
    p.score = true;
  }
  p.live = mask.live;
  p.full = mask.full;
  p.tiles_skipped = mask.skipped;
  if (p.score) {
    KernelArgs scratch;
    if (!score_expression(frame, d, m, p, scratch, why)) return false;
  }
  bool async = Q.stride(rd) == 1 && K.stride(rd) == 1 && V.stride(re) == 1;
  for (const Ten *t : {&Q, &K, &V}) {
    async = async && (t == &Q ? Q.stride(rq) : t == &K ? K.stride(rk) : V.stride(rk)).multiple_of(8);
    for (int ax : p.batch) async = async && t->stride(ax).multiple_of(8);
  }
  p.async = async;
  p.f16 = Q.dtype == DType::F16;
  (void)O;
  return true;
}

std::optional<std::string> Generator::score_expression(Frame &frame, const ir::Diagram &d, const AttentionMatch &m,
                                                       const AttentionPlan &p, KernelArgs &args, std::string &why) {
  // A runtime axis as the kernel sees it: the query and key positions, or a batch position.
  auto position = [&](int axis) -> std::optional<std::string> {
    if (axis == p.rq) return std::string("q");
    if (axis == p.rk) return std::string("k");
    if (std::find(p.batch.begin(), p.batch.end(), axis) != p.batch.end()) return x(axis);
    return std::nullopt;
  };
  // With the mask inside it, the expression ends at the where that feeds the softmax.
  const int top = p.mask_in_score && m.mask_op ? m.mask_op->results.at(0) : m.score_value;
  return element_expression(frame, d, args, top, position, {{m.raw_scores, "s"}}, "the score modification", why);
}

std::optional<std::string> Generator::element_expression(Frame &frame, const ir::Diagram &d, KernelArgs &args, int top,
                                                         const std::function<std::optional<std::string>(int)> &position,
                                                         const std::map<int, std::string> &leaves, const std::string &what,
                                                         std::string &why) {
  const ir::ProducerIndex index(d);
  std::function<std::optional<std::string>(int)> expr;
  // An input read at computed positions (T5's bias table at the bucket of q - k):
  // each index a gather (its value), an affine form of the kernel's positions;
  // outside the axis it reads 0, as the reference does.
  auto gathered = [&](int v, const ir::Op &op) -> std::optional<std::string> {
    const ir::Value &source_value = d.value(op.operands.at(0));
    Ten source = get(frame, op.operands[0]);
    if (source.kind != Ten::Kind::Buffer) {
      why = what + " reads '" + source_value.name + "', which is not stored";
      return std::nullopt;
    }
    std::map<int, std::string> at;  // runtime axis of the source -> its position
    std::string valid, params, args_of_call;
    for (size_t i = 0; i < op.access.size(); ++i) {
      const ir::AccessIndex &ix = op.access[i];
      const int r = rt_axis(frame, source_value.axes.at(i));
      std::string e;
      if (ix.kind == ir::AccessIndex::Kind::Gather) {
        auto g = expr(op.operands.at(static_cast<size_t>(ix.gather_operand)));
        if (!g) return std::nullopt;
        // Computed once: the argument of the lambda below.
        const std::string name = "ncd_i" + str(static_cast<int64_t>(i));
        params += (params.empty() ? "" : ", ") + ("int64_t " + name);
        args_of_call += (args_of_call.empty() ? "" : ", ") + ("static_cast<int64_t>(" + *g + ")");
        e = name;
      } else if (ix.kind == ir::AccessIndex::Kind::Affine) {
        for (auto [axis, coefficient] : ix.terms) {
          auto p = position(rt_axis(frame, axis));
          if (!p) {
            why = what + " reads '" + source_value.name + "' along '" + program_.axis(axis).name + "'";
            return std::nullopt;
          }
          e += (e.empty() ? "" : " + ") + (coefficient == 1 ? "" : str(coefficient) + " * ") + *p;
        }
        if (ix.offset != 0 || e.empty()) e += (e.empty() ? "" : " + ") + ("(" + str(ix.offset) + ")");
      } else {
        why = what + " reads '" + source_value.name + "' through a split index";
        return std::nullopt;
      }
      at[r] = e;
      valid += (valid.empty() ? "" : " && ") + ("(" + e + ") >= 0 && (" + e + ") < " + str(size(r)));
    }
    for (int axis : source.axes)
      if (!at.count(axis) && !position(axis)) {
        why = what + " reads '" + source_value.name + "' along '" +
              axis_names_[static_cast<size_t>(axis)] + "', which is neither a query, a key nor a batch position";
        return std::nullopt;
      }
    std::string value = load(args, source, [&](int axis) { return at.count(axis) ? at[axis] : *position(axis); });
    std::string read = "(" + valid + " ? " + value + " : 0.f)";
    if (!params.empty()) read = "[&](" + params + ") -> float { return " + read + "; }(" + args_of_call + ")";
    return rounded(d.value(v).dtype, read);
  };
  // Positions, integral constants, sizes and integer tensors stay int64 while the arithmetic is exact.
  std::function<std::optional<PositionCode>(int)> code = [&](int v) -> std::optional<PositionCode> {
    if (auto leaf = leaves.find(v); leaf != leaves.end()) return PositionCode{rounded(d.value(v).dtype, leaf->second)};
    const ir::Op *op = index.producer(v);
    const bool input = std::find(d.inputs.begin(), d.inputs.end(), v) != d.inputs.end();
    if (input || (!op && frame.values.count(v)) || (op && d.value(v).axes.empty() && frame.values.count(v))) {
      Ten t = get(frame, v);
      for (int axis : t.axes)
        if (!position(axis)) {
          why = what + " reads '" + d.value(v).name + "' along '" + axis_names_[static_cast<size_t>(axis)] +
                "', which is neither a query, a key nor a batch position of the kernel";
          return std::nullopt;
        }
      auto at = [&](int axis) { return *position(axis); };
      const bool integer = t.kind == Ten::Kind::Index || (t.kind == Ten::Kind::Buffer && (ir::is_integer(t.dtype) ||
                                                                                          t.dtype == DType::Bool));
      if (t.kind == Ten::Kind::Literal && t.literal_code.empty()) return position_constant(t.literal);
      if (integer) return PositionCode{load_int(args, t, at), true};
      return PositionCode{load(args, t, at)};
    }
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return position_constant(op->constant);
    if (op->kind == OpKind::SizeOf) {
      const Sz n = size(rt_axis(frame, op->axes.at(0)));
      if (auto known = n.constant()) return position_constant(static_cast<double>(*known));
      return PositionCode{"(" + n.code() + ")", true};
    }
    if (op->kind == OpKind::AxisIndex) {
      auto at = position(rt_axis(frame, op->axes.at(0)));
      if (!at) {
        why = what + " uses the position along '" + program_.axis(op->axes.at(0)).name + "'";
        return std::nullopt;
      }
      return PositionCode{*at, true};
    }
    if (op->kind == OpKind::Access) {
      auto read = gathered(v, *op);
      if (!read) return std::nullopt;
      return PositionCode{*read};
    }
    if (op->kind != OpKind::Elementwise) {
      why = what + " needs '" + d.value(v).name + "', which is not elementwise";
      return std::nullopt;
    }
    std::vector<PositionCode> operands;
    for (int operand : op->operands) {
      auto e = code(operand);
      if (!e) return std::nullopt;
      operands.push_back(*e);
    }
    try {
      PositionCode result = position_function(op->function, operands);
      const DType dtype = d.value(v).dtype;
      // An exact integer stays one in f32 and i32 values (only the position past 2^24 would differ).
      if (result.integer && (dtype == DType::F32 || dtype == DType::I32)) return result;
      return PositionCode{rounded(dtype, as_float(result))};
    } catch (const GenError &error) {
      why = error.what();
      return std::nullopt;
    }
  };
  expr = [&](int v) -> std::optional<std::string> {
    auto e = code(v);
    if (!e) return std::nullopt;
    return e->integer ? e->code : as_float(*e);
  };
  auto top_code = code(top);
  if (!top_code) return std::nullopt;
  return as_float(*top_code);
}

}  // namespace ncd::cuda::detail
