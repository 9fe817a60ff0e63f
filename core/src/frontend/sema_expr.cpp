// Sema's typing of right-hand sides: each expression becomes a TypedExpr node
// that knows its free axes; tensor reads with their indices (renaming, affine,
// split, gather) and calls of builtin functions (pointwise, reductions,
// normalisations, casts). Calls of diagrams are typed in sema_call.cpp.
#include "sema_impl.h"

namespace ncd::sema_detail {

const std::map<std::string, ops::Fn> &builtins() {
  static const std::map<std::string, ops::Fn> table = [] {
    std::map<std::string, ops::Fn> t;
    for (const ops::Info &row : ops::all())
      if (row.syntax == ops::Syntax::Call) t[std::string(row.name)] = row.fn;
    for (const std::string &name : ir::dtype_names()) t[name] = ops::Fn::Cast;
    t["concat"] = t["split"] = ops::Fn::None;
    return t;
  }();
  return table;
}

std::unique_ptr<TypedExpr> Sema::make(TypedExpr::Kind kind, SourceLocation location) {
  auto node = std::make_unique<TypedExpr>();
  node->kind = kind;
  node->location = location;
  node->dtype = statement_dtype_;
  return node;
}

std::unique_ptr<TypedExpr> Sema::typed(const ast::Expr &expr) {
  switch (expr.kind) {
    case ast::Expr::Kind::Number: {
      auto node = make(TypedExpr::Kind::Constant, expr.location);
      node->constant = expr.number;
      node->dtype = DType::F32;
      return node;
    }
    case ast::Expr::Kind::Infinity: {
      auto node = make(TypedExpr::Kind::Constant, expr.location);
      node->constant = std::numeric_limits<double>::infinity();
      node->dtype = DType::F32;
      return node;
    }
    case ast::Expr::Kind::SizeOf: {
      int axis = lookup_axis(expr.name);
      if (axis < 0) return nullptr;
      auto node = make(TypedExpr::Kind::SizeOf, expr.location);
      node->axis = axis;
      node->dtype = DType::F32;
      return node;
    }
    case ast::Expr::Kind::Paren: return typed(*expr.lhs);
    case ast::Expr::Kind::Ref: return typed_ref(expr.ref, expr.location);
    case ast::Expr::Kind::Call: return typed_call(expr);
    case ast::Expr::Kind::Unary: {
      auto operand = typed(*expr.lhs);
      if (!operand) return nullptr;
      auto node = make(TypedExpr::Kind::Elementwise, expr.location);
      const ops::Info *row = ops::find_operator(expr.op, 1);
      node->function = row->fn;
      if (row->boolean) {
        node->dtype = DType::Bool;
        node->dtype_fixed = true;
      }
      node->axes = operand->axes;
      node->children.push_back(std::move(operand));
      return node;
    }
    case ast::Expr::Kind::Binary: {
      if (expr.op == "*" || expr.op == "/") return typed_product(expr);
      auto lhs = typed(*expr.lhs);
      auto rhs = typed(*expr.rhs);
      if (!lhs || !rhs) return nullptr;
      const ops::Info *row = ops::find_operator(expr.op, 2);
      auto node = make(TypedExpr::Kind::Elementwise, expr.location);
      node->function = row->fn;
      if (row->boolean) {
        node->dtype = DType::Bool;
        node->dtype_fixed = true;
      }
      node->axes = lhs->axes;
      append_unique(node->axes, rhs->axes);
      node->children.push_back(std::move(lhs));
      node->children.push_back(std::move(rhs));
      return node;
    }
  }
  return nullptr;
}

std::unique_ptr<TypedExpr> Sema::typed_product(const ast::Expr &expr) {
  auto node = make(TypedExpr::Kind::Product, expr.location);
  bool ok = true;
  std::function<void(const ast::Expr &, bool)> collect = [&](const ast::Expr &e, bool inverse) {
    const ast::Expr *inner = &e;
    while (inner->kind == ast::Expr::Kind::Paren && inner->lhs->kind == ast::Expr::Kind::Binary &&
           (inner->lhs->op == "*" || inner->lhs->op == "/") && !inverse)
      inner = inner->lhs.get();
    if (!inverse && inner->kind == ast::Expr::Kind::Binary && (inner->op == "*" || inner->op == "/")) {
      collect(*inner->lhs, false);
      collect(*inner->rhs, inner->op == "/");
      return;
    }
    auto factor = typed(e);
    if (!factor) {
      ok = false;
      return;
    }
    append_unique(node->axes, factor->axes);
    node->children.push_back(std::move(factor));
    node->inverse.push_back(inverse);
  };
  collect(*expr.lhs, false);
  collect(*expr.rhs, expr.op == "/");
  if (!ok) return nullptr;
  return node;
}

// Tensor references: values, axes as index tensors, and accesses.
std::unique_ptr<TypedExpr> Sema::typed_ref(const ast::TensorRef &ref, SourceLocation location) {
  const std::string &name = ref.name.text;
  int value_id = lookup_value_quiet(name);
  if (value_id < 0) {
    int axis = find_axis(name);
    if (axis >= 0 && !ref.has_brackets) {
      used_axes_.insert(axis);
      auto node = make(TypedExpr::Kind::AxisIndex, location);
      node->axis = axis;
      node->axes = {axis};
      node->dtype = DType::I32;
      node->dtype_fixed = true;
      return node;
    }
    if (int output = output_named(name); output >= 0) {
      d_.error(ref.name.location, "output '" + name + "' is read before it is assigned");
      return nullptr;
    }
    if (find_diagram(name, ref.name.location, false) >= 0) {
      d_.error(ref.name.location, "'" + name + "' is a diagram; call it with arguments: " + name + "(...)");
      return nullptr;
    }
    if (builtins().count(name)) {
      d_.error(ref.name.location, "'" + name + "' is a function; call it with arguments: " + name + "(...)");
      return nullptr;
    }
    std::vector<std::string> names = visible_value_names();
    if (!ref.has_brackets)
      for (const auto &axis_name : visible_axis_names()) names.push_back(axis_name);
    d_.error(ref.name.location, "unknown tensor '" + name + "'" + did_you_mean(name, names));
    return nullptr;
  }
  if (poisoned_values_.count({current_, value_id})) return nullptr;
  reads_.insert(value_id);
  const ir::Value &value = current_->value(value_id);
  if (ref.has_brackets && ref.indices.size() != value.axes.size()) {
    d_.error(ref.location, "'" + name + "' has " + std::to_string(value.axes.size()) +
                               (value.axes.size() == 1 ? " axis " : " axes ") +
                               axes_text(value.axes) + " but is indexed with " + std::to_string(ref.indices.size()));
    return nullptr;
  }
  return typed_access(value_id, ref, location, name, {});
}

// Reads value `value_id` through `ref`'s indices: index i reads position `positions[i]` of the
// value's axes (every position in order when `positions` is empty); other positions pass through.
std::unique_ptr<TypedExpr> Sema::typed_access(int value_id, const ast::TensorRef &ref, SourceLocation location,
                                              const std::string &name, const std::vector<size_t> &positions) {
  const ir::Value &value = current_->value(value_id);
  if (!ref.has_brackets) {
    auto node = make(TypedExpr::Kind::Value, location);
    node->value = value_id;
    node->ref = &ref;
    node->axes = value.axes;
    node->dtype = value.dtype;
    node->dtype_fixed = true;
    return node;
  }
  auto node = make(TypedExpr::Kind::Access, location);
  node->value = value_id;
  node->ref = &ref;
  node->dtype = value.dtype;
  node->dtype_fixed = true;
  bool identity = true;
  bool ok = true;
  for (size_t position = 0; position < value.axes.size(); ++position) {
    int stored = value.axes[position];
    ir::AccessIndex access;
    size_t which = position;
    if (!positions.empty()) {
      auto at = std::find(positions.begin(), positions.end(), position);
      if (at == positions.end()) {  // a position no index names: read as it is
        access.terms = {{stored, 1}};
        node->access.push_back(access);
        continue;
      }
      which = static_cast<size_t>(at - positions.begin());
    }
    const ast::Index &index = *ref.indices[which];
    if (!typed_index(index, stored, name, access, *node)) {
      ok = false;
      continue;
    }
    bool plain = access.kind == ir::AccessIndex::Kind::Affine && access.offset == 0 && access.terms.size() == 1 &&
                 access.terms[0].second == 1 && access.terms[0].first == stored;
    identity = identity && plain;
    node->access.push_back(access);
  }
  if (!ok) return nullptr;
  // The free axes, in order of first appearance.
  for (const ir::AccessIndex &access : node->access) {
    if (access.kind == ir::AccessIndex::Kind::Affine)
      for (auto [axis, coefficient] : access.terms) append_unique(node->axes, {axis});
    else if (access.kind == ir::AccessIndex::Kind::Split)
      append_unique(node->axes, access.split);
    else
      append_unique(node->axes, node->children[static_cast<size_t>(access.gather_operand - 1)]->axes);
  }
  if (identity) {
    node->kind = TypedExpr::Kind::Value;
    node->access.clear();
    node->axes = value.axes;
  }
  return node;
}

// One index of an access; `stored` is the axis at that position of the tensor.
bool Sema::typed_index(const ast::Index &index, int stored, const std::string &tensor, ir::AccessIndex &out,
                       TypedExpr &node) {
  if (index.kind == ast::Index::Kind::Group) {
    out.kind = ir::AccessIndex::Kind::Split;
    Poly product = Poly::constant(1);
    std::vector<int> axes;
    for (const ast::Name &name : index.group) {
      int axis = lookup_axis(name);
      if (axis < 0) return false;
      if (contains(axes, axis)) {
        d_.error(name.location, "axis '" + name.text + "' appears twice in a split");
        return false;
      }
      axes.push_back(axis);
      product = product * p_.size_poly(axis);
    }
    out.split = axes;
    auto product_size = product.evaluate([&](int id) -> std::optional<double> {
      auto size = p_.axis(id).size;
      return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
    });
    bool equal = product == p_.size_poly(stored) ||
                 (product_size && p_.axis(stored).size && *product_size == static_cast<double>(*p_.axis(stored).size));
    if (!equal) {
      std::string product_text;
      for (int axis : axes) product_text += (product_text.empty() ? "" : " * ") + p_.axis(axis).name;
      d_.error(index.location, "cannot split axis '" + p_.axis(stored).name + "' of '" + tensor + "' (size " +
                                   size_text(stored) + ") into " + product_text + " (size " +
                                   (product_size ? format_size(*product_size) : product.to_string(axis_name_fn())) + ")");
      return false;
    }
    return true;
  }
  // A lone reference to a tensor is a gather through that tensor.
  if (index.kind == ast::Index::Kind::Ref && (index.ref.has_brackets || lookup_value_quiet(index.ref.name.text) >= 0) &&
      find_axis(index.ref.name.text) < 0) {
    auto gather = typed_ref(index.ref, index.location);
    if (!gather) return false;
    if (!ir::is_integer(gather->dtype)) {
      d_.error(index.location, "'" + index.ref.name.text + "' indexes '" + tensor + "' and must have an integer dtype (i32 or i8), but it is " +
                                   std::string(ir::dtype_name(gather->dtype)));
      return false;
    }
    out.kind = ir::AccessIndex::Kind::Gather;
    node.children.push_back(std::move(gather));
    out.gather_operand = static_cast<int>(node.children.size());
    return true;
  }
  out.kind = ir::AccessIndex::Kind::Affine;
  std::map<int, int64_t> terms;
  if (!affine(index, 1, terms, out.offset)) return false;
  for (auto [axis, coefficient] : terms)
    if (coefficient != 0) out.terms.push_back({axis, coefficient});
  if (out.terms.empty()) return true;  // a constant index
  // A plain rename (`X[q, d]` of X[s, d]) requires equal sizes; written with arithmetic (`X[q + 0, d]`)
  // it is an affine position like any other: a shorter axis reads a prefix, a longer one zeros past the end.
  if (index.kind == ast::Index::Kind::Ref && out.terms.size() == 1 && out.terms[0].second == 1 && out.offset == 0) {
    int axis = out.terms[0].first;
    if (!p_.same_size(axis, stored)) {
      d_.error(index.location, "axis '" + p_.axis(axis).name + "' (size " + size_text(axis) +
                                   ") indexes axis '" + p_.axis(stored).name + "' of '" + tensor + "' (size " +
                                   size_text(stored) + "); the sizes differ");
      return false;
    }
  }
  return true;
}

bool Sema::affine(const ast::Index &index, int64_t scale, std::map<int, int64_t> &terms, int64_t &offset) {
  auto overflow = [&] {
    d_.error(index.location, "index arithmetic overflows");
    return false;
  };
  switch (index.kind) {
    case ast::Index::Kind::Integer: {
      int64_t product;
      if (__builtin_mul_overflow(scale, index.value, &product) || __builtin_add_overflow(offset, product, &offset))
        return overflow();
      return true;
    }
    case ast::Index::Kind::Paren: return affine(*index.lhs, scale, terms, offset);
    case ast::Index::Kind::Negate: return affine(*index.lhs, -scale, terms, offset);
    case ast::Index::Kind::Ref: {
      if (index.ref.has_brackets) {
        d_.error(index.location, "a gather index must stand alone, not inside arithmetic");
        return false;
      }
      int axis = lookup_axis(index.ref.name);
      if (axis < 0) return false;
      if (__builtin_add_overflow(terms[axis], scale, &terms[axis])) return overflow();
      return true;
    }
    case ast::Index::Kind::Group:
      d_.error(index.location, "a split group must stand alone as an index");
      return false;
    case ast::Index::Kind::Binary: {
      if (index.op == '*') {
        const ast::Index *constant = nullptr, *other = nullptr;
        if (index.lhs->kind == ast::Index::Kind::Integer) constant = index.lhs.get(), other = index.rhs.get();
        if (index.rhs->kind == ast::Index::Kind::Integer) constant = index.rhs.get(), other = index.lhs.get();
        if (!constant) {
          d_.error(index.location, "an index must be affine: multiply axes only by integers");
          return false;
        }
        int64_t scaled;
        if (__builtin_mul_overflow(scale, constant->value, &scaled)) return overflow();
        return affine(*other, scaled, terms, offset);
      }
      if (!affine(*index.lhs, scale, terms, offset)) return false;
      return affine(*index.rhs, index.op == '-' ? -scale : scale, terms, offset);
    }
  }
  return false;
}

std::unique_ptr<TypedExpr> Sema::typed_call(const ast::Expr &expr) {
  const std::string &name = expr.name.text;
  // Builtin names are reserved at declaration: no diagram shadows them.
  if (auto builtin = builtins().find(name); builtin != builtins().end()) {
    if (expr.label) {
      d_.error(expr.label->location, "'" + name + "' is a builtin function: only a call of a diagram is named (" +
                                         expr.label->text + ": Diagram(...)), to give its params their path");
      return nullptr;
    }
    if (expr.has_result_index) {
      d_.error(expr.result_index.location, "only a call of a diagram can be indexed; '" + name +
                                               "' is a builtin function: assign its result, then index that");
      return nullptr;
    }
    ops::Fn fn = builtin->second;
    if (name == "concat") return typed_concat(expr);
    if (name == "split") {
      d_.error(expr.name.location, "'split' gives one tensor per part: assign them, A[...], B[...] = split[axis](...)");
      return nullptr;
    }
    if (ops::info(fn).kind == ops::Kind::Select) {
      d_.error(expr.name.location, "'" + name + "' gives values and their positions: assign them, V[...], I[...] = " +
                                       name + "[axis](...), or the values alone, V[...] = " + name + "[axis](...)");
      return nullptr;
    }
    // `max`/`min` are reductions with brackets and pointwise with two arguments.
    if (!expr.has_brackets && ops::info(fn).pointwise != ops::Fn::None) fn = ops::info(fn).pointwise;
    return typed_builtin(expr, fn);
  }
  int callee = find_diagram(name, expr.name.location, true);
  if (callee == -2) return nullptr;
  if (callee < 0) {
    std::vector<std::string> names = visible_diagram_names();
    for (auto &[builtin_name, fn] : builtins()) names.push_back(builtin_name);
    std::string hint = did_you_mean(name, names);
    if (hint.empty() && lookup_value_quiet(name) >= 0)
      hint = "; '" + name + "' is a tensor: index it with " + name + "[...]";
    d_.error(expr.name.location, "unknown function or diagram '" + name + "'" + hint);
    return nullptr;
  }
  if (callee == current_index_) {
    d_.error(expr.name.location, "diagram '" + name + "' calls itself; recursion is not allowed");
    return nullptr;
  }
  auto node = typed_diagram_call(expr, callee);
  if (!node || !expr.has_result_index) return node;
  return typed_indexed_call(expr, std::move(node));
}

// `F(x)[...]`: the call is emitted first, into a value of its own that the indices read. One index
// per axis of the callee's output, in its declared order; the axes the call is lifted over pass through.
std::unique_ptr<TypedExpr> Sema::typed_indexed_call(const ast::Expr &expr, std::unique_ptr<TypedExpr> node) {
  const ast::TensorRef &ref = expr.result_index;
  if (node->output_axes.size() != 1) {
    d_.error(ref.location, "'" + node->callee_name + "' has " + std::to_string(node->output_axes.size()) +
                               " outputs; only the result of a call with one output can be indexed");
    return nullptr;
  }
  const ir::Diagram &callee = *p_.diagrams.at(static_cast<size_t>(node->callee));
  const ir::Value &output = callee.value(callee.outputs[0]);
  if (ref.indices.size() != output.axes.size()) {
    d_.error(ref.location, "the result of '" + node->callee_name + "' has " + std::to_string(output.axes.size()) +
                               (output.axes.size() == 1 ? " axis " : " axes ") + axes_text(output.axes) +
                               " but is indexed with " + std::to_string(ref.indices.size()));
    return nullptr;
  }
  std::map<int, int> bound(node->bindings.begin(), node->bindings.end());
  const std::string callee_name = node->callee_name;
  int result = emit(*node);
  if (result < 0) return nullptr;
  reads_.insert(result);
  const ir::Value &value = current_->value(result);
  std::vector<size_t> positions;
  for (int axis : output.axes) {
    auto at = std::find(value.axes.begin(), value.axes.end(), bound.count(axis) ? bound[axis] : axis);
    if (at == value.axes.end()) {
      d_.error(ref.location, "internal: the result of '" + callee_name + "' lacks its axis '" + p_.axis(axis).name + "'");
      return nullptr;
    }
    positions.push_back(static_cast<size_t>(at - value.axes.begin()));
  }
  return typed_access(result, ref, expr.location, callee_name, positions);
}

std::unique_ptr<TypedExpr> Sema::typed_builtin(const ast::Expr &expr, ops::Fn fn) {
  const std::string &name = expr.name.text;
  const ops::Info &builtin = ops::info(fn);
  std::vector<std::unique_ptr<TypedExpr>> arguments;
  std::map<std::string, double> options;
  bool ok = true;
  for (const ast::Argument &argument : expr.arguments) {
    if (argument.keyword) {
      bool norm = builtin.kind == ops::Kind::Normalize && builtin.eps;
      if (!norm || argument.keyword->text != "eps") {
        d_.error(argument.keyword->location, "'" + name + "' has no option '" + argument.keyword->text + "'" +
                                                 (norm ? did_you_mean(argument.keyword->text, {"eps"}) : ""));
        ok = false;
        continue;
      }
      if (argument.value->kind != ast::Expr::Kind::Number) {
        d_.error(argument.value->location, "eps must be a number");
        ok = false;
        continue;
      }
      options["eps"] = argument.value->number;
      continue;
    }
    auto value = typed(*argument.value);
    if (!value) ok = false;
    arguments.push_back(std::move(value));
  }
  if (!ok) return nullptr;
  int expected = builtin.arity;
  if (static_cast<int>(arguments.size()) != expected) {
    d_.error(expr.name.location, "'" + name + "' takes " + std::to_string(expected) + " argument" +
                                     (expected == 1 ? "" : "s") + ", not " + std::to_string(arguments.size()));
    return nullptr;
  }
  bool wants_axes =
      builtin.kind == ops::Kind::Reduce || builtin.kind == ops::Kind::Normalize || builtin.kind == ops::Kind::Scan;
  // A scan acts on the union of its operands' axes (`scan`'s broadcast as elementwise operands do).
  std::vector<int> operand_axes = arguments[0]->axes;
  if (builtin.kind == ops::Kind::Scan)
    for (auto &argument : arguments) append_unique(operand_axes, argument->axes);
  if (wants_axes && !expr.has_brackets) {
    d_.error(expr.name.location, "'" + name + "' needs the axes it acts on: " + name + "[axis](...)");
    return nullptr;
  }
  if (!wants_axes && expr.has_brackets) {
    d_.error(expr.name.location, "'" + name + "' acts pointwise and takes no axes in brackets");
    return nullptr;
  }
  std::vector<int> axes;
  for (const ast::BracketItem &item : expr.brackets) {
    if (item.value) {
      d_.error(item.name.location, "'" + name + "' takes axes, not bindings: " + name + "[" + item.name.text + "]");
      return nullptr;
    }
    int axis = lookup_axis(item.name);
    if (axis < 0) return nullptr;
    if (contains(axes, axis)) {
      d_.error(item.name.location, "axis '" + item.name.text + "' is named twice");
      return nullptr;
    }
    if (!contains(operand_axes, axis)) {
      d_.error(item.name.location, "'" + name + "' over axis '" + item.name.text + "', but its argument" +
                                       (arguments.size() > 1 ? "s have" : " has") + " axes " + axes_text(operand_axes) +
                                       did_you_mean_axis(item.name.text, operand_axes));
      return nullptr;
    }
    axes.push_back(axis);
  }
  if (builtin.kind == ops::Kind::Scan && axes.size() > 1) {
    d_.error(expr.brackets[1].name.location, "'" + name + "' scans along one axis, not " + std::to_string(axes.size()));
    return nullptr;
  }
  if (wants_axes && axes.empty()) {
    d_.error(expr.location, "'" + name + "' needs at least one axis in its brackets");
    return nullptr;
  }
  // A position is along one axis: positions over several would need an order of their pairs.
  if (builtin.position && axes.size() != 1) {
    d_.error(expr.brackets[1].name.location, "'" + name + "' gives a position along one axis, not " +
                                                 std::to_string(axes.size()) + ": " + name + "[axis](...)");
    return nullptr;
  }
  std::unique_ptr<TypedExpr> node;
  switch (builtin.kind) {
    case ops::Kind::None:
    case ops::Kind::Select: return nullptr;  // statements of their own (sema_structure.cpp)
    case ops::Kind::Elementwise:
    case ops::Kind::Cast: {
      node = make(TypedExpr::Kind::Elementwise, expr.location);
      node->function = fn;
      if (fn == ops::Fn::Cast) {
        node->dtype = *ir::parse_dtype(name);
        node->dtype_fixed = true;
      }
      for (auto &argument : arguments) append_unique(node->axes, argument->axes);
      // quantize's saturation is its statement's conversion to an integer dtype.
      if (fn == ops::Fn::Quantize && !ir::is_integer(statement_dtype_)) {
        d_.error(expr.name.location,
                 "'quantize' gives integers, saturated by its statement's dtype, but this statement is " +
                     std::string(ir::dtype_name(statement_dtype_)) +
                     ": write the left side as i8 or i32 (Q[...]: i8 = quantize(X, scale, zero)); for an 8-bit "
                     "float, divide and cast (f8e4m3(X / scale))");
        return nullptr;
      }
      if (fn == ops::Fn::Where && node->children.empty() && arguments[0]->dtype != DType::Bool) {
        d_.error(expr.arguments[0].value->location,
                 "the condition of 'where' must be a comparison or a bool tensor, not " +
                     std::string(ir::dtype_name(arguments[0]->dtype)));
        return nullptr;
      }
      break;
    }
    case ops::Kind::Reduce: {
      node = make(TypedExpr::Kind::Reduce, expr.location);
      node->function = fn;
      if (builtin.position) {
        node->dtype = DType::I32;
        node->dtype_fixed = true;
      }
      for (int axis : arguments[0]->axes)
        if (!contains(axes, axis)) node->axes.push_back(axis);
      break;
    }
    case ops::Kind::Normalize: {
      node = make(TypedExpr::Kind::Normalize, expr.location);
      node->function = fn;
      node->axes = arguments[0]->axes;
      if (builtin.eps) node->options["eps"] = options.count("eps") ? options["eps"] : builtin.default_eps;
      break;
    }
    case ops::Kind::Scan: {
      node = make(TypedExpr::Kind::Scan, expr.location);
      node->function = fn;
      node->axes = operand_axes;
      break;
    }
  }
  node->op_axes = axes;
  node->children = std::move(arguments);
  return node;
}

}  // namespace ncd::sema_detail
