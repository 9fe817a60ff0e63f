// The vector-Jacobian product of each op kind (docs/AUTODIFF.md, "Rules").
//
// Pointwise functions, reductions, normalisations and scans read theirs from
// the op table (`ops::Info::vjp`), a formula in the language's own operators
// that build_formula turns into ops. The rules of the op kinds are here:
// a contraction's operand gets the cotangent contracted with the other
// operands (named axes make the transposes disappear); an access is a
// renaming, undone by renaming the cotangent back, or a read whose positions
// are equalities of axis positions (shifts, strides, splits, gathers), undone
// by contracting the cotangent with the 0/1 tensor of those equalities (a
// scatter-add: convolution's transposed read, an embedding's gradient); a
// merge is undone by a split; a selection scatters its values' cotangent back
// through its positions (in place, on a copy of the axis); the linear recurrence `scan` runs backwards.
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>

#include "autodiff_impl.h"
#include "ncd/ir_edit.h"

namespace ncd::autodiff {
namespace {

std::vector<int> union_axes(const ir::Diagram &diagram, const std::vector<int> &values) {
  std::vector<int> axes;
  for (int v : values)
    for (int axis : diagram.value(v).axes)
      if (std::find(axes.begin(), axes.end(), axis) == axes.end()) axes.push_back(axis);
  return axes;
}

std::vector<int> minus(const std::vector<int> &axes, const std::vector<int> &removed) {
  std::vector<int> out;
  for (int axis : axes)
    if (std::find(removed.begin(), removed.end(), axis) == removed.end()) out.push_back(axis);
  return out;
}

ir::AccessIndex affine(int axis, int64_t coefficient = 1, int64_t offset = 0) {
  ir::AccessIndex index;
  index.terms = {{axis, coefficient}};
  index.offset = offset;
  return index;
}

// ---------------------------------------------------------------- formulas

// Recursive descent over the formula text, building ops as it reads.
class FormulaReader {
 public:
  FormulaReader(Builder &b, std::string_view text, const FormulaScope &scope) : b_(b), text_(text), scope_(scope) {}

  int read() {
    int v = comparison();
    skip();
    if (pos_ != text_.size()) fail("unexpected text");
    return v;
  }

 private:
  void fail(const std::string &what) {
    throw Failure{b_.location, "the op table's derivative formula '" + std::string(text_) + "' is malformed: " + what};
  }
  void skip() {
    while (pos_ < text_.size() && text_[pos_] == ' ') ++pos_;
  }
  bool take(std::string_view token) {
    skip();
    if (text_.substr(pos_, token.size()) != token) return false;
    pos_ += token.size();
    return true;
  }
  int real(ops::Fn fn, std::vector<int> operands) {
    const bool boolean = ops::info(fn).boolean;
    return b_.elementwise(fn, operands, boolean ? ir::DType::Bool : scope_.dtype);
  }
  // The binary operators by precedence, loosest first (two-character ones before their prefixes);
  // what each applies is the op table's row for the symbol.
  static constexpr std::string_view kLevels[][6] = {{"<=", ">=", "==", "!=", "<", ">"}, {"+", "-"}, {"*", "/"}};
  int comparison() { return binary(0); }
  int binary(size_t level) {
    if (level == std::size(kLevels)) return unary();
    int left = binary(level + 1);
    for (bool more = true; more;) {
      more = false;
      for (std::string_view symbol : kLevels[level])
        if (!symbol.empty() && take(symbol)) {
          left = real(ops::find_operator(symbol, 2)->fn, {left, binary(level + 1)});
          more = level > 0;  // comparisons do not chain
          break;
        }
    }
    return left;
  }
  int unary() {
    if (take("-")) return real(ops::find_operator("-", 1)->fn, {unary()});
    return primary();
  }
  int primary() {
    skip();
    if (take("(")) {
      int v = comparison();
      if (!take(")")) fail("')' expected");
      return v;
    }
    if (pos_ < text_.size() && (std::isdigit(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '.')) {
      const std::string rest(text_.substr(pos_));
      char *end = nullptr;
      const double number = std::strtod(rest.c_str(), &end);
      pos_ += static_cast<size_t>(end - rest.c_str());
      return b_.constant(number);
    }
    const size_t start = pos_;
    while (pos_ < text_.size() && (std::isalnum(static_cast<unsigned char>(text_[pos_])) || text_[pos_] == '_')) ++pos_;
    const std::string name(text_.substr(start, pos_ - start));
    if (name.empty()) fail("a name or number expected");
    if (!take("(")) return variable(name);
    std::vector<int> arguments;
    if (!take(")")) {
      do arguments.push_back(comparison());
      while (take(","));
      if (!take(")")) fail("')' expected");
    }
    return call(name, arguments);
  }
  int variable(const std::string &name) {
    int v = name == "a" ? scope_.a : name == "b" ? scope_.b : name == "c" ? scope_.c : name == "r" ? scope_.r
            : name == "g" ? scope_.g : -2;
    if (name == "n") return b_.count(scope_.axes);
    if (name == "eps") return b_.constant(scope_.eps);
    if (v < 0) fail("'" + name + "' names nothing here");
    return v;
  }
  int call(const std::string &name, const std::vector<int> &arguments) {
    if (name == "sum" || name == "mean" || name == "rsum") {
      if (arguments.size() != 1 || scope_.axes.empty()) fail("'" + name + "' takes one operand, over axes");
      const int x = arguments[0];
      if (name == "mean") return b_.reduce(ops::Fn::Mean, x, scope_.axes, scope_.dtype);
      const int total = b_.reduce(ops::Fn::Sum, x, scope_.axes, scope_.dtype);
      if (name == "sum") return total;
      // Σ_{s ≥ t} x_s = Σ x − Σ_{s ≤ t} x + x_t: the reverse of an inclusive scan without reversing the axis.
      const int before = b_.scan(ops::Fn::CumSum, {x}, scope_.axes[0], scope_.dtype);
      return real(ops::Fn::Add, {x, real(ops::Fn::Sub, {total, before})});
    }
    const ops::Info *row = ops::find(name);
    if (!row || row->kind != ops::Kind::Elementwise || row->arity != static_cast<int>(arguments.size()))
      fail("'" + name + "' is not a pointwise function of " + std::to_string(arguments.size()) + " operands");
    return real(row->fn, arguments);
  }

  Builder &b_;
  std::string_view text_;
  const FormulaScope &scope_;
  size_t pos_ = 0;
};

// ---------------------------------------------------------------- rules of the op kinds

std::vector<int> table_rule(Builder &b, const ir::Op &op, int g) {
  const ops::Info &row = ops::info(op.function);
  std::vector<int> out(op.operands.size(), -1);
  if (g < 0) return out;
  FormulaScope scope;
  int *slots[] = {&scope.a, &scope.b, &scope.c};
  for (size_t i = 0; i < op.operands.size() && i < 3; ++i) *slots[i] = op.operands[i];
  scope.r = op.results[0];
  scope.g = g;
  scope.axes = op.axes;
  scope.dtype = b.value(g).dtype;
  if (auto eps = op.options.find("eps"); eps != op.options.end()) scope.eps = eps->second;
  for (size_t i = 0; i < op.operands.size(); ++i) {
    const ir::Value operand = b.value(op.operands[i]);
    if (!is_real(operand.dtype)) continue;
    const std::string_view formula = i < row.vjp.size() ? row.vjp[i] : std::string_view();
    if (formula.empty()) {
      if (op.kind == ir::OpKind::Elementwise && row.boolean) continue;
      throw Failure{op.location, "'" + std::string(row.name) + "' has no derivative ncd can state"};
    }
    const int d = build_formula(b, formula, scope);
    if (d >= 0) out[i] = b.fit(d, operand.axes, operand.dtype);
  }
  return out;
}

std::vector<int> contract_rule(Builder &b, const ir::Op &op, int g) {
  std::vector<int> out(op.operands.size(), -1);
  for (size_t j = 0; j < op.operands.size(); ++j) {
    const ir::Value x = b.value(op.operands[j]);
    if (!is_real(x.dtype)) continue;
    std::vector<int> factors{g};
    for (size_t i = 0; i < op.operands.size(); ++i)
      if (i != j) factors.push_back(op.operands[i]);
    const std::vector<int> summed = minus(union_axes(b.diagram, factors), x.axes);
    const ir::DType dtype = b.value(g).dtype;
    int d = g;
    if (!summed.empty()) {
      d = b.contract(factors, summed, dtype, x.axes);
    } else {
      for (size_t i = 1; i < factors.size(); ++i) d = b.elementwise(ops::Fn::Mul, {d, factors[i]}, dtype);
    }
    out[j] = b.fit(d, x.axes, x.dtype);
  }
  return out;
}

// A 0/1 tensor in `dtype`: where(condition, 1, 0).
int indicator(Builder &b, int condition, ir::DType dtype) {
  return b.elementwise(ops::Fn::Where, {condition, b.constant(1), b.constant(0)}, dtype);
}

// The position an access index reads, as a tensor over the axes it mentions.
int index_position(Builder &b, const ir::Op &op, const ir::AccessIndex &index) {
  auto f32 = ir::DType::F32;
  int position = -1;
  auto add = [&](int term) { position = position < 0 ? term : b.elementwise(ops::Fn::Add, {position, term}, f32); };
  switch (index.kind) {
    case ir::AccessIndex::Kind::Affine:
      for (auto [axis, coefficient] : index.terms) {
        int term = b.axis_index(axis);
        if (coefficient != 1) term = b.elementwise(ops::Fn::Mul, {term, b.constant(static_cast<double>(coefficient))}, f32);
        add(term);
      }
      if (index.offset != 0 || position < 0) add(b.constant(static_cast<double>(index.offset)));
      return position;
    case ir::AccessIndex::Kind::Split:
      // Outermost first: Σ_i position(s_i) · Π_{j > i} #s_j.
      for (size_t i = 0; i < index.split.size(); ++i) {
        int term = b.axis_index(index.split[i]);
        std::vector<int> inner(index.split.begin() + static_cast<std::ptrdiff_t>(i) + 1, index.split.end());
        if (!inner.empty()) term = b.elementwise(ops::Fn::Mul, {term, b.count(inner)}, f32);
        add(term);
      }
      return position;
    case ir::AccessIndex::Kind::Gather: return op.operands[static_cast<size_t>(index.gather_operand)];
  }
  return position;
}

std::vector<int> access_rule(Builder &b, const ir::Op &op, int g) {
  std::vector<int> out(op.operands.size(), -1);
  const ir::Value x = b.value(op.operands[0]);
  if (!is_real(x.dtype) || g < 0) return out;
  // How many positions mention each result axis: a renaming must be the only one.
  std::map<int, int> uses;
  for (const auto &index : op.access) {
    for (auto [axis, coefficient] : index.terms) ++uses[axis];
    for (int axis : index.split) ++uses[axis];
    if (index.kind == ir::AccessIndex::Kind::Gather)
      for (int axis : b.value(op.operands[static_cast<size_t>(index.gather_operand)]).axes) ++uses[axis];
  }
  std::map<int, int> renamed;  // result axis → the source axis it reads
  std::vector<size_t> masked;
  for (size_t p = 0; p < op.access.size(); ++p) {
    const auto &index = op.access[p];
    const int source = x.axes[p];
    if (index.kind == ir::AccessIndex::Kind::Affine && index.terms.size() == 1 && index.terms[0].second == 1 &&
        index.offset == 0 && uses[index.terms[0].first] == 1 && b.program.same_size(index.terms[0].first, source))
      renamed[index.terms[0].first] = source;
    else
      masked.push_back(p);
  }
  // A renaming back onto an axis the cotangent keeps would merge two axes: state it as equalities instead.
  std::set<int> targets;
  for (auto [from, to] : renamed) targets.insert(to);
  for (int axis : b.value(g).axes)
    if (!renamed.count(axis) && targets.count(axis)) {
      renamed.clear();
      masked.clear();
      for (size_t p = 0; p < op.access.size(); ++p) masked.push_back(p);
      break;
    }
  int back = g;
  bool moves = false;
  for (auto [from, to] : renamed) moves |= from != to;
  if (moves) {
    std::vector<ir::AccessIndex> indices;
    std::vector<int> axes;
    for (int axis : b.value(g).axes) {
      const int to = renamed.count(axis) ? renamed[axis] : axis;
      indices.push_back(affine(to));
      axes.push_back(to);
    }
    back = b.access({g}, indices, axes, b.value(g).dtype);
  }
  if (masked.empty()) {
    out[0] = b.fit(back, x.axes, x.dtype);
    return out;
  }
  // Splits of whole positions into axes of their own (`P[seq, (three, heads, d)]`): the inverse is a merge.
  bool splits = true;
  for (size_t p : masked) {
    const auto &index = op.access[p];
    splits &= index.kind == ir::AccessIndex::Kind::Split;
    if (!splits) break;
    Poly product = Poly::constant(1);
    for (int axis : index.split) {
      splits &= uses[axis] == 1;
      product = product * b.program.size_poly(axis);
    }
    splits &= product == b.program.size_poly(x.axes[p]);
  }
  if (splits) {
    std::vector<std::vector<int>> groups;
    std::set<int> grouped;
    for (size_t p = 0; p < op.access.size(); ++p) {
      const auto &index = op.access[p];
      groups.push_back(index.kind == ir::AccessIndex::Kind::Split ? index.split : std::vector<int>{x.axes[p]});
      grouped.insert(groups.back().begin(), groups.back().end());
    }
    const std::vector<int> &have = b.value(back).axes;
    if (std::all_of(have.begin(), have.end(), [&](int axis) { return grouped.count(axis) > 0; })) {
      out[0] = b.fit(b.merge(back, groups, x.axes, b.value(back).dtype), x.axes, x.dtype);
      return out;
    }
  }
  // A source axis the read also indexes by (`X[t + k]` read at `t`) stands for its positions under a
  // copy of itself, renamed back once the cotangent is summed.
  std::set<int> indexing(b.value(back).axes.begin(), b.value(back).axes.end());
  for (size_t p : masked) {
    for (auto [axis, coefficient] : op.access[p].terms) indexing.insert(axis);
    indexing.insert(op.access[p].split.begin(), op.access[p].split.end());
  }
  std::vector<int> target = x.axes;
  std::vector<std::pair<int, int>> copies;  // (copy, source axis)
  int mask = -1;
  for (size_t p : masked) {
    int source = x.axes[p];
    if (indexing.count(source)) {
      copies.push_back({b.copy_axis(source), source});
      source = target[p] = copies.back().first;
    }
    const int equal =
        b.elementwise(ops::Fn::Eq, {b.axis_index(source), index_position(b, op, op.access[p])}, ir::DType::Bool);
    mask = mask < 0 ? equal : b.elementwise(ops::Fn::And, {mask, equal}, ir::DType::Bool);
  }
  const ir::DType dtype = b.value(g).dtype;
  const int weights = indicator(b, mask, dtype);
  const std::vector<int> summed = minus(union_axes(b.diagram, {back, weights}), target);
  int d = summed.empty() ? b.elementwise(ops::Fn::Mul, {back, weights}, dtype)
                         : b.contract({back, weights}, summed, dtype, target);
  d = b.fit(d, target, dtype);
  for (auto [copy, source] : copies) d = b.rename(d, copy, source);
  out[0] = b.fit(d, x.axes, x.dtype);
  return out;
}

std::vector<int> merge_rule(Builder &b, const ir::Op &op, int g) {
  const ir::Value x = b.value(op.operands[0]);
  if (!is_real(x.dtype) || g < 0) return {-1};
  std::vector<ir::AccessIndex> indices;
  const ir::Value y = b.value(op.results[0]);
  for (size_t i = 0; i < y.axes.size(); ++i) {
    const auto &group = op.merges[i];
    if (group.size() == 1) {
      indices.push_back(affine(group[0]));
    } else {
      ir::AccessIndex split;
      split.kind = ir::AccessIndex::Kind::Split;
      split.split = group;
      indices.push_back(split);
    }
  }
  // The cotangent's storage order is the result's: access indices follow it.
  const ir::Value cot = b.value(g);
  std::vector<ir::AccessIndex> ordered;
  for (int axis : cot.axes) {
    auto at = std::find(y.axes.begin(), y.axes.end(), axis);
    ordered.push_back(indices[static_cast<size_t>(at - y.axes.begin())]);
  }
  std::vector<int> axes;
  for (const auto &group : op.merges) axes.insert(axes.end(), group.begin(), group.end());
  return {b.fit(b.access({g}, ordered, axes, cot.dtype), x.axes, x.dtype)};
}

std::vector<int> select_rule(Builder &b, const ir::Op &op, int g) {
  const ir::Value x = b.value(op.operands[0]);
  if (!is_real(x.dtype) || g < 0) return {-1};
  const int along = op.axes[0];
  int kept = op.axes[1], d_values = g, positions = op.results[1];
  if (kept == along) {
    // In place (`sort[s](X)` on s): the result's positions stand on a copy of the axis while they are summed.
    kept = b.copy_axis(along);
    d_values = b.rename(g, along, kept);
    positions = b.rename(positions, along, kept);
  }
  const ir::DType dtype = b.value(g).dtype;
  const int hit = b.elementwise(ops::Fn::Eq, {positions, b.axis_index(along)}, ir::DType::Bool);
  return {b.fit(b.contract({d_values, indicator(b, hit, dtype)}, {kept}, dtype, x.axes), x.axes, x.dtype)};
}

// `v` read one step along the scan's axis (`by` = 1: the next position, zero past the end).
int shifted(Builder &b, int v, int axis, int64_t by) {
  std::vector<ir::AccessIndex> indices;
  for (int a : b.value(v).axes) indices.push_back(a == axis ? affine(axis, 1, by) : affine(a));
  return b.access({v}, indices, b.value(v).axes, b.value(v).dtype);
}

// `v` with the scan's axis (of `n` positions) reversed.
int reversed(Builder &b, int v, int axis, int64_t n) {
  std::vector<ir::AccessIndex> indices;
  for (int a : b.value(v).axes) indices.push_back(a == axis ? affine(axis, -1, n - 1) : affine(a));
  return b.access({v}, indices, b.value(v).axes, b.value(v).dtype);
}

// λ_t = g_t + next_t·λ_{t+1}: the linear recurrence run backwards along the axis.
int backward_recurrence(Builder &b, const ir::Op &op, int next, int g) {
  const int axis = op.axes[0];
  auto n = b.program.size(axis);
  if (!n)
    throw Failure{op.location, "the derivative of '" + std::string(ops::info(op.function).name) +
                                   "' reverses its axis, whose size is not known"};
  const int forward =
      b.scan(ops::Fn::Scan, {reversed(b, next, axis, *n), reversed(b, g, axis, *n)}, axis, b.value(g).dtype);
  return reversed(b, forward, axis, *n);
}

// h_t = a_t·h_{t−1} + b_t: λ_t = g_t + a_{t+1}·λ_{t+1} (the same recurrence, backwards), db = λ, da_t = λ_t·h_{t−1}.
std::vector<int> linear_scan_rule(Builder &b, const ir::Op &op, int g) {
  std::vector<int> out(2, -1);
  if (g < 0) return out;
  const ir::DType dtype = b.value(g).dtype;
  const int axis = op.axes[0];
  int a = op.operands[0];
  std::vector<int> with_axis = b.value(a).axes;
  if (std::find(with_axis.begin(), with_axis.end(), axis) == with_axis.end()) {
    with_axis.push_back(axis);
    a = b.fit(a, with_axis, b.value(a).dtype);
  }
  const int lambda = backward_recurrence(b, op, shifted(b, a, axis, 1), g);
  const ir::Value av = b.value(op.operands[0]), bv = b.value(op.operands[1]);
  if (is_real(bv.dtype)) out[1] = b.fit(lambda, bv.axes, bv.dtype);
  if (is_real(av.dtype))
    out[0] =
        b.fit(b.elementwise(ops::Fn::Mul, {lambda, shifted(b, op.results[0], axis, -1)}, dtype), av.axes, av.dtype);
  return out;
}

// cummax and cummin: r_t is the value of the position where the running extreme was last reached
// anew (the first of equal values, as the forward keeps the earlier one). That position owns the run of
// equal r after it: λ_t = g_t + [r_{t+1} = r_t]·λ_{t+1} sums each run's cotangents backwards, and
// da_t = λ_t where a run starts (t = 0, or r_{t−1} ≠ r_t) and 0 elsewhere.
std::vector<int> running_extreme_rule(Builder &b, const ir::Op &op, int g) {
  if (g < 0) return {-1};
  const ir::Value av = b.value(op.operands[0]);
  if (!is_real(av.dtype)) return {-1};
  const ir::DType dtype = b.value(g).dtype;
  const int axis = op.axes[0], r = op.results[0];
  const int same = indicator(b, b.elementwise(ops::Fn::Eq, {shifted(b, r, axis, 1), r}, ir::DType::Bool), dtype);
  const int lambda = backward_recurrence(b, op, same, g);
  const int first = b.elementwise(ops::Fn::Eq, {b.axis_index(axis), b.constant(0)}, ir::DType::Bool);
  const int changed = b.elementwise(ops::Fn::Ne, {shifted(b, r, axis, -1), r}, ir::DType::Bool);
  const int starts = b.elementwise(ops::Fn::Or, {first, changed}, ir::DType::Bool);
  return {b.fit(b.elementwise(ops::Fn::Mul, {lambda, indicator(b, starts, dtype)}, dtype), av.axes, av.dtype)};
}

}  // namespace

int recompute_softmax(Builder &b, const ir::Op &softmax, const ir::Op &consumer, int &lse) {
  if (softmax.axes.size() != 1 || consumer.kind != ir::OpKind::Contract || consumer.operands.size() != 2) return -1;
  const int p = softmax.results[0], s = softmax.operands[0], k = softmax.axes[0];
  if (std::count(consumer.operands.begin(), consumer.operands.end(), p) != 1 ||
      std::find(consumer.axes.begin(), consumer.axes.end(), k) == consumer.axes.end())
    return -1;
  lse = b.reduce(ops::Fn::LogSumExp, s, {k}, ir::DType::F32);
  const std::string &score = b.value(s).name;
  b.name(lse, !score.empty() && score[0] != '%' ? "lse_" + score : "lse");
  // A row masked throughout has L = −∞ and, as in the forward, probabilities 0 (not exp(−∞ + ∞)).
  const int finite = b.elementwise(ops::Fn::Gt, {lse, b.elementwise(ops::Fn::Neg, {b.constant(INFINITY)}, ir::DType::F32)},
                                   ir::DType::Bool);
  const int shift = b.elementwise(ops::Fn::Where, {finite, lse, b.constant(0)}, ir::DType::F32);
  return b.elementwise(ops::Fn::Exp, {b.elementwise(ops::Fn::Sub, {s, shift}, ir::DType::F32)}, b.value(p).dtype);
}

int attention_softmax(Builder &b, const ir::Op &softmax, int recomputed, int d_p, const ir::Op &consumer, int d_o) {
  b.location = softmax.location;
  const ir::DType dtype = b.value(d_p).dtype;
  const int o = consumer.results[0];
  const std::vector<int> summed = minus(b.value(o).axes, b.value(softmax.results[0]).axes);
  const int rows = summed.empty() ? b.elementwise(ops::Fn::Mul, {d_o, o}, ir::DType::F32)
                                  : b.contract({d_o, o}, summed, ir::DType::F32);
  return b.elementwise(ops::Fn::Mul, {recomputed, b.elementwise(ops::Fn::Sub, {d_p, rows}, dtype)}, dtype);
}

int build_formula(Builder &b, std::string_view formula, const FormulaScope &scope) {
  if (formula == "0") return -1;
  return FormulaReader(b, formula, scope).read();
}

std::vector<int> operand_cotangents(Builder &b, const ir::Op &op, const std::vector<int> &result_cotangents) {
  b.location = op.location;
  const int g = result_cotangents.empty() ? -1 : result_cotangents[0];
  switch (op.kind) {
    case ir::OpKind::Constant:
    case ir::OpKind::SizeOf:
    case ir::OpKind::AxisIndex: return {};
    case ir::OpKind::Elementwise:
    case ir::OpKind::Reduce:
    case ir::OpKind::Normalize: return table_rule(b, op, g);
    case ir::OpKind::Scan:
      if (op.function == ops::Fn::Scan) return linear_scan_rule(b, op, g);
      if (op.function == ops::Fn::CumMax || op.function == ops::Fn::CumMin) return running_extreme_rule(b, op, g);
      return table_rule(b, op, g);
    case ir::OpKind::Contract: return g < 0 ? std::vector<int>(op.operands.size(), -1) : contract_rule(b, op, g);
    case ir::OpKind::Access: return access_rule(b, op, g);
    case ir::OpKind::Merge: return merge_rule(b, op, g);
    case ir::OpKind::Select: return select_rule(b, op, g);
    case ir::OpKind::Call:
    case ir::OpKind::Repeat: break;
  }
  throw Failure{op.location, "internal: no rule for this op kind"};
}

// ---------------------------------------------------------------- the builder

int Builder::emit(std::unique_ptr<ir::Op> op, std::vector<int> axes, ir::DType dtype) {
  const int result = ir::add_value(diagram, "", std::move(axes), dtype, location);
  ir::set_results(diagram, *op, {result});
  diagram.body.ops.push_back(std::move(op));
  return result;
}

int Builder::constant(double number) {
  auto op = ir::make_op(diagram, ir::OpKind::Constant, location);
  op->constant = number;
  return emit(std::move(op), {}, ir::DType::F32);
}

int Builder::size_of(int axis) {
  auto op = ir::make_op(diagram, ir::OpKind::SizeOf, location);
  op->axes = {axis};
  return emit(std::move(op), {}, ir::DType::F32);
}

int Builder::axis_index(int axis) {
  auto op = ir::make_op(diagram, ir::OpKind::AxisIndex, location);
  op->axes = {axis};
  return emit(std::move(op), {axis}, ir::DType::I32);
}

int Builder::count(const std::vector<int> &axes) {
  int total = -1;
  for (int axis : axes) {
    const int size = size_of(axis);
    total = total < 0 ? size : elementwise(ops::Fn::Mul, {total, size}, ir::DType::F32);
  }
  return total < 0 ? constant(1) : total;
}

int Builder::elementwise(ops::Fn fn, const std::vector<int> &operands, ir::DType dtype, std::vector<int> extra) {
  auto op = ir::make_op(diagram, ir::OpKind::Elementwise, location);
  op->function = fn;
  op->operands = operands;
  // The widest operand's order first: the result is laid out as most of its data is.
  std::vector<int> order = operands;
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return value(x).axes.size() > value(y).axes.size(); });
  std::vector<int> axes = union_axes(diagram, order);
  for (int axis : extra)
    if (std::find(axes.begin(), axes.end(), axis) == axes.end()) axes.push_back(axis);
  return emit(std::move(op), axes, dtype);
}

int Builder::reduce(ops::Fn fn, int operand, const std::vector<int> &axes, ir::DType dtype) {
  auto op = ir::make_op(diagram, ir::OpKind::Reduce, location);
  op->function = fn;
  op->operands = {operand};
  op->axes = axes;
  return emit(std::move(op), minus(value(operand).axes, axes), dtype);
}

int Builder::contract(const std::vector<int> &operands, const std::vector<int> &summed, ir::DType dtype,
                      const std::vector<int> &prefer) {
  auto op = ir::make_op(diagram, ir::OpKind::Contract, location);
  op->operands = operands;
  op->axes = summed;
  std::vector<int> order = operands;
  std::stable_sort(order.begin(), order.end(),
                   [&](int x, int y) { return value(x).axes.size() > value(y).axes.size(); });
  std::vector<int> axes = minus(union_axes(diagram, order), summed);
  if (std::set<int>(axes.begin(), axes.end()) == std::set<int>(prefer.begin(), prefer.end())) axes = prefer;
  return emit(std::move(op), axes, dtype);
}

int Builder::scan(ops::Fn fn, const std::vector<int> &operands, int axis, ir::DType dtype) {
  auto op = ir::make_op(diagram, ir::OpKind::Scan, location);
  op->function = fn;
  op->operands = operands;
  op->axes = {axis};
  return emit(std::move(op), union_axes(diagram, operands), dtype);
}

int Builder::access(const std::vector<int> &operands, std::vector<ir::AccessIndex> indices, std::vector<int> axes,
                    ir::DType dtype) {
  auto op = ir::make_op(diagram, ir::OpKind::Access, location);
  op->operands = operands;
  op->access = std::move(indices);
  return emit(std::move(op), axes, dtype);
}

int Builder::merge(int operand, std::vector<std::vector<int>> groups, std::vector<int> axes, ir::DType dtype) {
  auto op = ir::make_op(diagram, ir::OpKind::Merge, location);
  op->operands = {operand};
  op->merges = std::move(groups);
  return emit(std::move(op), axes, dtype);
}

int Builder::fit(int v, std::vector<int> axes, ir::DType dtype) {
  const std::vector<int> extra = minus(value(v).axes, axes);
  if (!extra.empty()) v = reduce(ops::Fn::Sum, v, extra, dtype);
  const std::vector<int> have = value(v).axes;
  const bool same_order = have == axes;
  if (same_order && value(v).dtype == dtype) return v;
  // A copy converts and broadcasts; in the target's axis order, so that values accumulate without transposes.
  auto op = ir::make_op(diagram, ir::OpKind::Elementwise, location);
  op->function = ops::Fn::Copy;
  op->operands = {v};
  return emit(std::move(op), axes, dtype);
}

int Builder::copy_axis(int axis) {
  const ir::Axis &original = program.axis(axis);
  std::set<std::string> taken;
  for (const ir::Axis &a : program.axes) taken.insert(a.name);
  ir::Axis copy;
  copy.id = static_cast<int>(program.axes.size());
  copy.name = original.name + "_2";
  for (int k = 3; taken.count(copy.name); ++k) copy.name = original.name + "_" + std::to_string(k);
  copy.module = original.module;
  copy.location = original.location;
  // An alias (`axis t_2 = t`): it follows the original's size through calls, -D and shrinking.
  copy.derived = true;
  copy.definition = program.size_poly(axis);
  copy.alias_of = axis;
  copy.size = original.size;
  program.axes.push_back(copy);
  return copy.id;
}

int Builder::rename(int v, int from, int to) {
  std::vector<ir::AccessIndex> indices;
  std::vector<int> axes;
  for (int axis : value(v).axes) {
    indices.push_back(affine(axis == from ? to : axis));
    axes.push_back(axis == from ? to : axis);
  }
  return access({v}, indices, axes, value(v).dtype);
}

void Builder::name(int id, const std::string &wanted) {
  if (!names_known_) {
    for (const ir::Value &v : diagram.values) names_.insert(v.name);
    names_known_ = true;
  }
  if (names_.insert(wanted).second) diagram.value(id).name = wanted;
}

}  // namespace ncd::autodiff
