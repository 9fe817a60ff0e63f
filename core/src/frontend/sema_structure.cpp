// Sema's statements of structure. `topk` and `sort` are statements with one
// or two targets (values, then positions), lowered to one select op whose
// result axis is the left side's axis in place of the one selected along:
// `V[b, top], I[b, top] = topk[e](X[b, e])` takes #top of e's positions.
//
// `concat` and `split` are not in the IR: both
// are affine reads, zero outside the range read (docs/LANGUAGE.md, "Concat
// and split"). `concat[c](A[n, c1], B[n, c2])` is `A[n, c + 0] + B[n, c - #c1]`,
// one read per part shifted to where it starts along c, summed; each part of
// `A[n, c1], B[n, c2] = split[c](X[n, c])` is the read `X[n, c1 + offset]`.
// So every backend, the cost model, the passes and the renderers see only
// reads and additions, and `ncd optimize` writes them back that way.
#include "sema_impl.h"

namespace ncd::sema_detail {

namespace {

std::vector<int> minus(const std::vector<int> &a, const std::vector<int> &b) {
  std::vector<int> out;
  for (int axis : a)
    if (!contains(b, axis)) out.push_back(axis);
  return out;
}

}  // namespace

// The read of `source` with its axis `from` renamed `to` and shifted: the
// result at position p of `to` is the source at p + offset of `from`, zero
// where that lies outside `from`.
int Sema::emit_shifted(int source, int from, int to, int64_t offset, SourceLocation location) {
  auto op = new_op(ir::OpKind::Access, location);
  op->operands = {source};
  std::vector<int> axes;
  for (int axis : current_->value(source).axes) {
    ir::AccessIndex index;
    index.kind = ir::AccessIndex::Kind::Affine;
    index.terms = {{axis == from ? to : axis, 1}};
    index.offset = axis == from ? offset : 0;
    op->access.push_back(index);
    axes.push_back(axis == from ? to : axis);
  }
  DType dtype = current_->value(source).dtype;
  return finish(std::move(op), axes, dtype, location);
}

std::unique_ptr<TypedExpr> Sema::typed_concat(const ast::Expr &expr) {
  for (const ast::Argument &argument : expr.arguments)
    if (argument.keyword) {
      d_.error(argument.keyword->location, "'concat' has no option '" + argument.keyword->text + "'");
      return nullptr;
    }
  if (expr.brackets.size() != 1 || expr.brackets[0].value) {
    d_.error(expr.name.location, "'concat' takes the one axis it lays its parts along: concat[axis](A, B, ...)");
    return nullptr;
  }
  const ast::Name &along = expr.brackets[0].name;
  int axis = lookup_axis(along);
  if (axis < 0) return nullptr;
  std::vector<std::unique_ptr<TypedExpr>> parts;
  bool ok = true;
  for (const ast::Argument &argument : expr.arguments) {
    auto part = typed(*argument.value);
    ok = ok && part;
    parts.push_back(std::move(part));
  }
  if (!ok) return nullptr;
  if (parts.size() < 2) {
    d_.error(expr.name.location, "'concat' takes at least 2 parts, not " + std::to_string(parts.size()));
    return nullptr;
  }
  // Each part has the axes of the first but for one of its own, which the
  // first part has in its place.
  const std::vector<int> &first = parts[0]->axes;
  int first_piece = -1;
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<int> own = minus(parts[i]->axes, first), lacks = minus(first, parts[i]->axes);
    const SourceLocation where = expr.arguments[i].value->location;
    if (own.empty() && lacks.empty()) {
      d_.error(where, "part " + std::to_string(i + 1) + " of 'concat' has the axes of part 1, " + axes_text(first) +
                          ": each part needs an axis of its own to lay along '" + along.text + "'");
      return nullptr;
    }
    if (own.size() != 1 || lacks.size() != 1 || (first_piece >= 0 && lacks[0] != first_piece)) {
      std::string hint;
      for (int a : own)
        if (hint.empty()) hint = did_you_mean_axis(p_.axis(a).name, lacks);
      d_.error(where, "part " + std::to_string(i + 1) + " of 'concat' has axes " + axes_text(parts[i]->axes) +
                          ", but part 1 has " + axes_text(first) +
                          ": the parts must agree on every axis but the one laid along '" + along.text + "'" + hint);
      return nullptr;
    }
    first_piece = lacks[0];
  }
  std::vector<int> pieces = {first_piece};
  for (size_t i = 1; i < parts.size(); ++i) pieces.push_back(minus(parts[i]->axes, first)[0]);
  for (size_t i = 0; i < parts.size(); ++i)
    if (contains(parts[i]->axes, axis) && pieces[i] != axis) {
      d_.error(along.location, "'concat' along '" + along.text + "', but part " + std::to_string(i + 1) +
                                   " already has that axis beside the one laid along it");
      return nullptr;
    }
  // The parts' places are numbers: an affine read shifts by a constant.
  std::vector<int64_t> offsets;
  int64_t total = 0;
  std::string sum_text;
  for (size_t i = 0; i < parts.size(); ++i) {
    auto size = p_.size(pieces[i]);
    if (!size) {
      d_.error(expr.arguments[i].value->location,
               "'concat' places its parts by their sizes, but '" + p_.axis(pieces[i]).name + "' has none: give it one");
      return nullptr;
    }
    offsets.push_back(total);
    total += *size;
    sum_text += (i ? " + '" : "'") + p_.axis(pieces[i]).name + "' (" + std::to_string(*size) + ")";
  }
  if (p_.size(axis) != total) {
    d_.error(along.location, "'concat' along '" + along.text + "' (" + size_text(axis) +
                                 ") takes parts adding up to it, not " + sum_text + " = " + std::to_string(total));
    return nullptr;
  }
  auto node = make(TypedExpr::Kind::Concat, expr.location);
  for (int a : first) node->axes.push_back(a == first_piece ? axis : a);
  node->axis = axis;
  node->pieces = pieces;
  node->offsets = offsets;
  node->children = std::move(parts);
  return node;
}

int Sema::emit_concat(TypedExpr &node) {
  int result = -1;
  for (size_t i = 0; i < node.children.size(); ++i) {
    int part = emit(*node.children[i]);
    if (part < 0) return -1;
    int placed = emit_shifted(part, node.pieces[i], node.axis, -node.offsets[i], node.location);
    result = result < 0 ? placed : emit_elementwise(ops::Fn::Add, {result, placed}, node_dtype(node), node.location);
  }
  return result;
}

bool Sema::is_split(const ast::Expr &expr) const {
  return expr.kind == ast::Expr::Kind::Call && expr.name.text == "split";
}

void Sema::lower_split(const ast::Stmt &stmt, std::vector<Target> &targets) {
  const ast::Expr &expr = *stmt.value;
  auto fail = [&] {
    for (const auto &lhs : stmt.targets) poison(lhs);
  };
  for (const ast::Argument &argument : expr.arguments)
    if (argument.keyword) {
      d_.error(argument.keyword->location, "'split' has no option '" + argument.keyword->text + "'");
      return fail();
    }
  if (expr.brackets.size() != 1 || expr.brackets[0].value) {
    d_.error(expr.name.location, "'split' takes the one axis it splits: A[...], B[...] = split[axis](X)");
    return fail();
  }
  if (expr.arguments.size() != 1) {
    d_.error(expr.name.location, "'split' takes 1 argument, not " + std::to_string(expr.arguments.size()));
    return fail();
  }
  const ast::Name &along = expr.brackets[0].name;
  int axis = lookup_axis(along);
  if (axis < 0) return fail();
  auto whole = typed(*expr.arguments[0].value);
  if (!whole) return fail();
  if (!contains(whole->axes, axis)) {
    d_.error(along.location, "'split' along axis '" + along.text + "', but its argument has axes " +
                                 axes_text(whole->axes) + did_you_mean_axis(along.text, whole->axes));
    return fail();
  }
  if (targets.size() < 2) {
    d_.error(expr.name.location,
             "'split' gives one tensor per part; assign at least 2: A[...], B[...] = split[" + along.text + "](...)");
    return fail();
  }
  // Each part has the argument's other axes and one of its own, its share of `axis`.
  const std::vector<int> rest = minus(whole->axes, {axis});
  std::vector<int> pieces;
  std::vector<int64_t> offsets;
  int64_t total = 0;
  std::string sum_text;
  for (Target &target : targets) {
    std::vector<int> own = minus(target.expanded, rest), lacks = minus(rest, target.expanded);
    if (own.size() != 1 || !lacks.empty()) {
      std::string hint;
      for (int a : own)
        if (hint.empty()) hint = did_you_mean_axis(p_.axis(a).name, lacks.empty() ? std::vector<int>{axis} : lacks);
      d_.error(target.lhs->location, "'" + target.lhs->name.text + "' has axes " + axes_text(target.expanded) +
                                         ", but a part of 'split' along '" + along.text +
                                         "' has the argument's other axes " + axes_text(rest) + " and one of its own" +
                                         hint);
      return fail();
    }
    auto size = p_.size(own[0]);
    if (!size) {
      d_.error(target.lhs->location, "'split' takes the sizes of its parts from the left, but '" +
                                         p_.axis(own[0]).name + "' has none: give it one");
      return fail();
    }
    sum_text += (pieces.empty() ? "'" : " + '") + p_.axis(own[0]).name + "' (" + std::to_string(*size) + ")";
    pieces.push_back(own[0]);
    offsets.push_back(total);
    total += *size;
  }
  if (p_.size(axis) != total) {
    d_.error(along.location, "'split' along '" + along.text + "' (" + size_text(axis) +
                                 ") needs parts adding up to it, not " + sum_text + " = " + std::to_string(total));
    return fail();
  }
  int source = emit(*whole);
  if (source < 0) return fail();
  reads_.insert(source);
  for (size_t i = 0; i < targets.size(); ++i) {
    int part = emit_shifted(source, axis, pieces[i], offsets[i], stmt.location);
    bind_target(targets[i], part, stmt.location, /*fresh=*/true);
  }
}

const ops::Info *Sema::selection(const ast::Expr &expr) const {
  if (expr.kind != ast::Expr::Kind::Call) return nullptr;
  auto builtin = builtins().find(expr.name.text);
  if (builtin == builtins().end() || ops::info(builtin->second).kind != ops::Kind::Select) return nullptr;
  return &ops::info(builtin->second);
}

void Sema::lower_select(const ast::Stmt &stmt, std::vector<Target> &targets, const ops::Info &row) {
  const ast::Expr &expr = *stmt.value;
  const std::string name(row.name);
  auto fail = [&] {
    for (const auto &lhs : stmt.targets) poison(lhs);
  };
  for (const ast::Argument &argument : expr.arguments)
    if (argument.keyword) {
      d_.error(argument.keyword->location, "'" + name + "' has no option '" + argument.keyword->text + "'");
      return fail();
    }
  if (expr.brackets.size() != 1 || expr.brackets[0].value) {
    d_.error(expr.name.location,
             "'" + name + "' takes the one axis it orders along: V[...], I[...] = " + name + "[axis](X)");
    return fail();
  }
  if (expr.arguments.size() != 1) {
    d_.error(expr.name.location, "'" + name + "' takes 1 argument, not " + std::to_string(expr.arguments.size()));
    return fail();
  }
  if (targets.size() > 2) {
    d_.error(expr.name.location, "'" + name + "' gives 2 tensors, the values and their positions, but " +
                                     std::to_string(targets.size()) + " names are assigned");
    return fail();
  }
  const ast::Name &along_name = expr.brackets[0].name;
  int along = lookup_axis(along_name);
  if (along < 0) return fail();
  auto whole = typed(*expr.arguments[0].value);
  if (!whole) return fail();
  if (!contains(whole->axes, along)) {
    d_.error(along_name.location, "'" + name + "' over axis '" + along_name.text + "', but its argument has axes " +
                                      axes_text(whole->axes) + did_you_mean_axis(along_name.text, whole->axes));
    return fail();
  }
  // The values have the argument's other axes and one of their own, where the selection lies.
  const std::vector<int> rest = minus(whole->axes, {along});
  const Target &values = targets[0];
  std::vector<int> own = minus(values.expanded, rest), lacks = minus(rest, values.expanded);
  if (own.size() != 1 || !lacks.empty()) {
    d_.error(values.lhs->location, "'" + values.lhs->name.text + "' has axes " + axes_text(values.expanded) +
                                       ", but '" + name + "' along '" + along_name.text +
                                       "' gives the argument's other axes " + axes_text(rest) +
                                       " and one of its own, where the selection lies");
    return fail();
  }
  const int kept = own[0];
  if (targets.size() == 2) {
    std::vector<int> a = values.expanded, b = targets[1].expanded;
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    if (a != b) {
      d_.error(targets[1].lhs->location,
               "'" + targets[1].lhs->name.text + "' has axes " + axes_text(targets[1].expanded) +
                   ", but the positions have the axes of the values, " + axes_text(values.expanded));
      return fail();
    }
  }
  SourceLocation kept_location = values.lhs->location;
  for (const ast::LhsIndex &index : values.lhs->indices)
    for (const ast::Name &n : index.names)
      if (n.text == p_.axis(kept).name) kept_location = n.location;
  auto n = p_.size(along), k = p_.size(kept);
  if (kept != along && n && k && (row.whole ? *k != *n : *k > *n)) {
    const std::string &kn = p_.axis(kept).name;
    d_.error(kept_location, row.whole ? "'" + name + "' keeps every position of '" + along_name.text + "' (" +
                                            std::to_string(*n) + "), but '" + kn + "' has " + std::to_string(*k)
                                      : "'" + name + "' takes #" + kn + " = " + std::to_string(*k) + " of the " +
                                            std::to_string(*n) + " positions of '" + along_name.text + "': '" + kn +
                                            "' is longer than '" + along_name.text + "'");
    return fail();
  }
  // Sizes known only where a caller binds them are checked when the program runs.
  int source = emit(*whole);
  if (source < 0) return fail();
  reads_.insert(source);
  auto op = new_op(ir::OpKind::Select, expr.location);
  op->function = row.fn;
  op->operands = {source};
  op->axes = {along, kept};
  std::vector<int> axes;
  for (int a : current_->value(source).axes) axes.push_back(a == along ? kept : a);
  int v = new_value(axes, current_->value(source).dtype, expr.location, "");
  int i = new_value(axes, DType::I32, expr.location, "");
  current_->value(v).producer = op->id;
  current_->value(i).producer = op->id;
  op->results = {v, i};
  frames_.back().region->ops.push_back(std::move(op));
  bind_target(targets[0], v, stmt.location, /*fresh=*/true);
  if (targets.size() == 2) {
    // Positions are integers: a local named without a dtype keeps i32 rather
    // than taking the file's default (which would make it unusable as an index).
    Target &positions = targets[1];
    if (!positions.lhs->dtype && positions.output < 0 && positions.carried < 0) positions.dtype = DType::I32;
    bind_target(positions, i, stmt.location, /*fresh=*/true);
  }
}

}  // namespace ncd::sema_detail
