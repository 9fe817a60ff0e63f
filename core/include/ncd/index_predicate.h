// Masks given as predicates of axis indices (`q >= k`, `q - k < 512`, `and`
// and `or` of such): the affine forms and their comparisons, read from the IR
// as an `or` of `and`s (disjunctive normal form).
// The cost model uses them to skip tiles a mask keeps nothing of, and the
// CUDA attention planner to skip them at run time; both read masks here.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <vector>

#include "ncd/ir.h"
#include "ncd/ops.h"

namespace ncd {

// Σ coefficient × index(axis) + constant.
struct AffineForm {
  std::map<int, double> axes;  // IR axis → coefficient (zero coefficients dropped)
  double constant = 0;
};

// form REL 0, REL one of Lt, Le, Gt, Ge.
struct IndexConjunct {
  AffineForm form;
  ops::Fn relation = ops::Fn::Ge;
};

// The predicate is the `or` of its clauses, each the `and` of its conjuncts:
// `k < #prefix || q >= k` is two clauses of one conjunct each. A part that is
// not a comparison of affine forms is left out of its clause (which then
// holds more often: still an upper bound of what the mask keeps), and pure
// is false. No clause means nothing was understood; an empty clause, always.
struct IndexPredicate {
  std::vector<std::vector<IndexConjunct>> clauses;
  bool pure = true;  // the predicate is exactly the clauses (no part was left out)
};

// `size_of` gives `#axis` where a form uses it (nullopt: not affine).
using SizeOf = std::function<std::optional<double>(int axis)>;

// The affine form `value` computes, or nullopt when it is not one of axis
// indices, constants and sizes under + - neg, casts, and products by constants.
std::optional<AffineForm> affine_form(const ir::Diagram &diagram, const ir::ProducerIndex &index, int value,
                                      const SizeOf &size_of);

// `value` as an `or` of `and`s of comparisons of affine forms (at most 16
// clauses; beyond, one empty clause and pure = false).
IndexPredicate index_predicate(const ir::Diagram &diagram, const ir::ProducerIndex &index, int value,
                               const SizeOf &size_of);

// Whether the conjunct can hold somewhere in the box lo[axis] <= index <= hi[axis]
// (its best corner); axes the box lacks count as unbounded (always possible).
bool may_hold(const IndexConjunct &conjunct, const std::map<int, std::pair<double, double>> &box);
// Whether the predicate can hold somewhere in the box: some clause all of whose conjuncts may.
bool may_hold(const IndexPredicate &predicate, const std::map<int, std::pair<double, double>> &box);

}  // namespace ncd
