// Sema's lints: warnings about statements that are valid but probably not
// what was meant. They run on a statement's typed right-hand side before its
// sums are placed, so every read still has the axes it was written with.
//
// Axis reads: a declared input or param read at some position with another
// plain axis, one the statement keeps, while the declared axis is itself an
// axis of the statement, as in `O[q, e] = softmax[k](S[q, k]) * V[q, e]` for
// V[k, e]: the read lays V along q and broadcasts it over k instead of
// contracting with it. The rule is in docs/LANGUAGE.md (Warnings).
#include "ncd/format.h"
#include "sema_impl.h"

namespace ncd::sema_detail {

namespace {

void walk(const TypedExpr &node, const std::function<void(const TypedExpr &)> &visit) {
  visit(node);
  for (const auto &child : node.children) walk(*child, visit);
}

// The axis an index names when it is a plain axis (not `x + k`, `2 * x`, a
// constant, a split or a gather), or -1.
int plain_axis(const ir::AccessIndex &index) {
  bool plain = index.kind == ir::AccessIndex::Kind::Affine && index.offset == 0 && index.terms.size() == 1 &&
               index.terms[0].second == 1;
  return plain ? index.terms[0].first : -1;
}

}  // namespace

void Sema::lint_axis_reads(const TypedExpr &root, const std::vector<Target> &targets) {
  std::vector<int> kept;  // the left side's axes
  for (const Target &target : targets) append_unique(kept, target.expanded);
  std::vector<int> statement_axes = kept;
  std::vector<const TypedExpr *> reads;
  walk(root, [&](const TypedExpr &node) {
    append_unique(statement_axes, node.axes);
    if ((node.kind == TypedExpr::Kind::Value || node.kind == TypedExpr::Kind::Access) && node.ref)
      reads.push_back(&node);
  });
  // A tensor read twice, once as declared and once renamed at that position
  // (`X[s, d] * X[t, d]`: self-attention, Gram matrices), renames on purpose.
  auto read_as_declared = [&](int value, size_t position) {
    int declared = current_->value(value).axes[position];
    for (const TypedExpr *read : reads)
      if (read->value == value &&
          (read->kind == TypedExpr::Kind::Value || plain_axis(read->access[position]) == declared))
        return true;
    return false;
  };
  for (const TypedExpr *read : reads) {
    if (read->kind != TypedExpr::Kind::Access) continue;
    const ir::Value &value = current_->value(read->value);
    if (value.role != ir::Value::Role::Input && value.role != ir::Value::Role::Param) continue;
    for (size_t position = 0; position < read->access.size(); ++position) {
      int used = plain_axis(read->access[position]);
      int declared = value.axes[position];
      // An axis of the tensor's own at another position is a transposition or a
      // diagonal; a renaming into an axis the statement sums is a contraction
      // over a copy of the axis (`X[m2] * W[m2, m]` applies a square weight).
      if (used < 0 || contains(value.axes, used) || !contains(kept, used)) continue;
      if (!contains(statement_axes, declared) || read_as_declared(read->value, position)) continue;
      const ast::TensorRef &ref = *read->ref;
      std::string suggestion = ref.name.text + "[";
      for (size_t i = 0; i < ref.indices.size(); ++i)
        suggestion += (i ? ", " : "") + (i == position ? p_.axis(declared).name : format_index(*ref.indices[i]));
      suggestion += "]";
      const std::string &declared_name = p_.axis(declared).name;
      auto &warning =
          d_.warning(ref.indices[position]->location,
                     "axis '" + p_.axis(used).name + "' indexes axis '" + declared_name + "' (position " +
                         std::to_string(position + 1) + ") of " +
                         (value.role == ir::Value::Role::Input ? "input" : "param") + " '" + value.name + "', and '" +
                         declared_name + "' is also an axis of this statement; did you mean `" + suggestion + "`?");
      warning.notes.push_back(
          {value.location, "'" + value.name + "' is declared here with axes " + axes_text(value.axes)});
    }
  }
}

}  // namespace ncd::sema_detail
