// Affine index predicates read from the IR (ncd/index_predicate.h).
#include "ncd/index_predicate.h"

#include <set>

namespace ncd {

std::optional<AffineForm> affine_form(const ir::Diagram &diagram, const ir::ProducerIndex &index, int value,
                                      const SizeOf &size_of) {
  const ir::Op *op = index.producer(value);
  if (!op) return std::nullopt;
  AffineForm out;
  switch (op->kind) {
    case ir::OpKind::Constant: out.constant = op->constant; return out;
    case ir::OpKind::SizeOf: {
      auto size = size_of ? size_of(op->axes.at(0)) : std::nullopt;
      if (!size) return std::nullopt;
      out.constant = *size;
      return out;
    }
    case ir::OpKind::AxisIndex: out.axes[op->axes.at(0)] = 1; return out;
    case ir::OpKind::Elementwise: break;
    default: return std::nullopt;
  }
  const ops::Fn f = op->function;
  auto operand = [&](size_t i) { return affine_form(diagram, index, op->operands.at(i), size_of); };
  auto scaled = [](AffineForm a, double k) {
    for (auto &[axis, c] : a.axes) c *= k;
    a.constant *= k;
    return a;
  };
  auto sum = [](AffineForm a, const AffineForm &b, double k) {
    for (const auto &[axis, c] : b.axes) a.axes[axis] += k * c;
    a.constant += k * b.constant;
    std::erase_if(a.axes, [](const auto &entry) { return entry.second == 0; });
    return a;
  };
  if (ops::info(f).kind == ops::Kind::Cast) return operand(0);
  if (f == ops::Fn::Neg) {
    auto a = operand(0);
    if (!a) return std::nullopt;
    return scaled(*a, -1);
  }
  if (f == ops::Fn::Add || f == ops::Fn::Sub) {
    auto a = operand(0), b = operand(1);
    if (!a || !b) return std::nullopt;
    return sum(*a, *b, f == ops::Fn::Add ? 1 : -1);
  }
  if (f == ops::Fn::Mul) {
    auto a = operand(0), b = operand(1);
    if (!a || !b) return std::nullopt;
    if (a->axes.empty()) return scaled(*b, a->constant);
    if (b->axes.empty()) return scaled(*a, b->constant);
  }
  return std::nullopt;
}

IndexPredicate index_predicate(const ir::Diagram &diagram, const ir::ProducerIndex &index, int value,
                               const SizeOf &size_of) {
  IndexPredicate out;
  static const std::set<ops::Fn> relations = {ops::Fn::Lt, ops::Fn::Le, ops::Fn::Gt, ops::Fn::Ge};
  constexpr size_t kMaxClauses = 16;
  using Clauses = std::vector<std::vector<IndexConjunct>>;
  // The clauses of `v`: and distributes over or; a part not understood is
  // true (the empty clause), which only widens what may hold.
  std::function<Clauses(int)> split = [&](int v) -> Clauses {
    const ir::Op *op = index.producer(v);
    if (op && op->kind == ir::OpKind::Elementwise && op->function == ops::Fn::And) {
      Clauses a = split(op->operands.at(0)), b = split(op->operands.at(1)), both;
      if (a.size() * b.size() > kMaxClauses) {
        out.pure = false;
        return {{}};
      }
      for (const auto &x : a)
        for (const auto &y : b) {
          both.push_back(x);
          both.back().insert(both.back().end(), y.begin(), y.end());
        }
      return both;
    }
    if (op && op->kind == ir::OpKind::Elementwise && op->function == ops::Fn::Or) {
      Clauses a = split(op->operands.at(0)), b = split(op->operands.at(1));
      if (a.size() + b.size() > kMaxClauses) {
        out.pure = false;
        return {{}};
      }
      a.insert(a.end(), b.begin(), b.end());
      return a;
    }
    if (op && op->kind == ir::OpKind::Elementwise && relations.count(op->function)) {
      auto a = affine_form(diagram, index, op->operands.at(0), size_of);
      auto b = affine_form(diagram, index, op->operands.at(1), size_of);
      if (a && b) {
        IndexConjunct conjunct;
        conjunct.form = *a;
        for (const auto &[axis, c] : b->axes) conjunct.form.axes[axis] -= c;
        std::erase_if(conjunct.form.axes, [](const auto &entry) { return entry.second == 0; });
        conjunct.form.constant -= b->constant;
        conjunct.relation = op->function;
        return {{conjunct}};
      }
    }
    out.pure = false;
    return {{}};
  };
  out.clauses = split(value);
  // Nothing understood at all: no clause, so no user mistakes it for a bound.
  bool any = false;
  for (const auto &clause : out.clauses) any = any || !clause.empty();
  if (!any) out.clauses.clear();
  return out;
}

bool may_hold(const IndexConjunct &conjunct, const std::map<int, std::pair<double, double>> &box) {
  // form > 0 (or >=): its maximum over the box must pass; form < 0: its minimum.
  const bool upper = conjunct.relation == ops::Fn::Gt || conjunct.relation == ops::Fn::Ge;
  double best = conjunct.form.constant;
  for (const auto &[axis, c] : conjunct.form.axes) {
    auto it = box.find(axis);
    if (it == box.end()) return true;
    const bool high = (c > 0) == upper;
    best += c * (high ? it->second.second : it->second.first);
  }
  switch (conjunct.relation) {
    case ops::Fn::Gt: return best > 0;
    case ops::Fn::Ge: return best >= 0;
    case ops::Fn::Lt: return best < 0;
    case ops::Fn::Le: return best <= 0;
    default: return true;
  }
}

bool may_hold(const IndexPredicate &predicate, const std::map<int, std::pair<double, double>> &box) {
  if (predicate.clauses.empty()) return true;
  for (const auto &clause : predicate.clauses) {
    bool holds = true;
    for (const IndexConjunct &conjunct : clause) holds = holds && may_hold(conjunct, box);
    if (holds) return true;
  }
  return false;
}

}  // namespace ncd
