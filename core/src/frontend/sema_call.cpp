// Sema's typing of a diagram call: arguments by position or by input name
// (`F(Q, K = Kx, V = Vx)`), explicit and implicit axis bindings, the
// agreement of bound sizes with the callee's derived axes, and lifting: an
// argument's axes beyond its input's are carried over the call.
#include "ncd/instantiate.h"
#include "sema_impl.h"

namespace ncd::sema_detail {

bool Sema::params_can_tie(const ir::Diagram &a, const ir::Diagram &b) const {
  std::vector<ParamInstance> first, second;
  std::string error;
  if (!list_param_instances(p_, a, first, error) || !list_param_instances(p_, b, second, error)) return false;
  // One's params must be among the other's, with the same shapes and dtypes (a gradient reads
  // only some of its diagram's params).
  auto among = [](const std::vector<ParamInstance> &some, const std::vector<ParamInstance> &all) {
    std::map<std::string, std::pair<std::vector<int64_t>, ir::DType>> known;
    for (const auto &param : all) known[param.path] = {param.shape, param.dtype};
    for (const auto &param : some) {
      auto it = known.find(param.path);
      if (it == known.end() || it->second != std::make_pair(param.shape, param.dtype)) return false;
    }
    return true;
  };
  return among(first, second) || among(second, first);
}

std::unique_ptr<TypedExpr> Sema::typed_diagram_call(const ast::Expr &expr, int callee_index) {
  const ir::Diagram &callee = *p_.diagrams[static_cast<size_t>(callee_index)];
  const std::string &name = callee.name;
  int callee_module = ast_of_[callee_index].second;
  const ModuleScope &callee_scope = modules_[static_cast<size_t>(callee_module)];
  const DiagramScope &callee_locals = diagram_scopes_[ast_of_[callee_index].first];
  auto callee_axis = [&](const std::string &axis_name) -> int {
    auto local = callee_locals.axes.find(axis_name);
    if (local != callee_locals.axes.end()) return local->second;
    auto it = callee_scope.axes.find(axis_name);
    return it == callee_scope.axes.end() ? -1 : it->second;
  };
  // Arguments in the callee's input order: positional ones first, then
  // keywords naming inputs. `ordered[i]` is the argument of input i.
  std::vector<const ast::Argument *> ordered(callee.inputs.size(), nullptr);
  std::vector<std::string> input_names;
  for (int id : callee.inputs) input_names.push_back(callee.value(id).name);
  bool keywords = false;
  for (size_t i = 0; i < expr.arguments.size(); ++i) {
    const ast::Argument &argument = expr.arguments[i];
    if (!argument.keyword) {
      if (keywords) {
        d_.error(argument.value->location, "a positional argument follows a keyword argument in the call of '" + name +
                                               "'; give the positional ones first");
        return nullptr;
      }
      if (i < ordered.size()) ordered[i] = &argument;
      continue;
    }
    keywords = true;
    const std::string &keyword = argument.keyword->text;
    auto at = std::find(input_names.begin(), input_names.end(), keyword);
    if (at == input_names.end()) {
      auto error_text = "'" + name + "' has no input '" + keyword + "'";
      if (callee_axis(keyword) >= 0)
        error_text += "; '" + keyword + "' is an axis: bind it in brackets, " + name + "[" + keyword + " = ...]";
      else
        error_text += did_you_mean(keyword, input_names);
      auto &error = d_.error(argument.keyword->location, error_text);
      error.notes.push_back({callee.location, "'" + name + "' is defined here"});
      return nullptr;
    }
    size_t k = static_cast<size_t>(at - input_names.begin());
    if (ordered[k]) {
      d_.error(argument.keyword->location, "input '" + keyword + "' of '" + name + "' is given twice");
      return nullptr;
    }
    ordered[k] = &argument;
  }
  if (keywords)
    for (size_t k = 0; k < ordered.size(); ++k)
      if (!ordered[k]) {
        auto &error = d_.error(expr.name.location, "the call of '" + name + "' gives no argument for input '" +
                                                       input_names[k] + "'");
        error.notes.push_back({callee.value(callee.inputs[k]).location, "input declared here"});
        return nullptr;
      }
  if (!keywords && expr.arguments.size() != callee.inputs.size()) {
    auto &error = d_.error(expr.name.location, "'" + name + "' takes " + std::to_string(callee.inputs.size()) +
                                                   " input" + (callee.inputs.size() == 1 ? "" : "s") + ", not " +
                                                   std::to_string(expr.arguments.size()));
    error.notes.push_back({callee.location, "'" + name + "' is defined here"});
    return nullptr;
  }
  // Explicit bindings: callee axis = caller axis.
  std::map<int, int> binding;
  std::map<int, SourceLocation> binding_location;
  for (const ast::BracketItem &item : expr.brackets) {
    if (!item.value) {
      d_.error(item.name.location, "bindings are written callee_axis = axis, e.g. " + name + "[" + item.name.text +
                                       " = " + item.name.text + "]");
      return nullptr;
    }
    int from = callee_axis(item.name.text);
    if (from < 0) {
      std::vector<std::string> names;
      for (auto &[axis_name, id] : callee_scope.axes) names.push_back(axis_name);
      for (auto &[axis_name, id] : callee_locals.axes) names.push_back(axis_name);
      d_.error(item.name.location, "'" + name + "' has no axis '" + item.name.text + "'" +
                                       did_you_mean(item.name.text, names));
      return nullptr;
    }
    if (binding.count(from)) {
      d_.error(item.name.location, "axis '" + item.name.text + "' is bound twice");
      return nullptr;
    }
    int to = lookup_axis(*item.value);
    if (to < 0) return nullptr;
    binding[from] = to;
    binding_location[from] = item.value->location;
  }
  // Implicit bindings: the same axis (same file), or the caller's axis of the same name.
  std::vector<int> interface_axes;
  for (int id : callee.inputs) append_unique(interface_axes, callee.value(id).axes);
  for (int id : callee.outputs) append_unique(interface_axes, callee.value(id).axes);
  for (int axis : interface_axes) {
    if (binding.count(axis)) continue;
    // The same axis when the caller sees it (same file, not local to the callee);
    // otherwise the caller's axis of the same name.
    int same = find_axis(p_.axis(axis).name);
    if (same == axis || (same < 0 && callee_module == current_module_ && !callee_locals.axes.count(p_.axis(axis).name))) {
      binding[axis] = axis;
      continue;
    }
    if (same < 0) {
      d_.error(expr.name.location, "axis '" + p_.axis(axis).name + "' of '" + name +
                                       "' is not bound and no axis of that name is visible here; bind it: " + name + "[" +
                                       p_.axis(axis).name + " = ...]");
      return nullptr;
    }
    used_axes_.insert(same);
    binding[axis] = same;
  }
  // Bound sizes must agree with derived relations inside the callee.
  for (auto [from, to] : binding) {
    const ir::Axis &axis = p_.axis(from);
    if (axis.formula) {
      // A rounded quotient: evaluated at the sizes this call binds (the callee's own elsewhere).
      std::function<std::optional<double>(int)> sized = [&](int id) -> std::optional<double> {
        if (auto it = binding.find(id); it != binding.end() && id != from) {
          auto size = p_.axis(it->second).size;
          return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
        }
        const ir::Axis &inner = p_.axis(id);
        if (inner.formula && id != from) return inner.formula->evaluate(sized);
        return inner.size ? std::optional<double>(static_cast<double>(*inner.size)) : std::nullopt;
      };
      auto expected_size = axis.formula->evaluate(sized);
      auto actual = p_.axis(to).size;
      if (expected_size && actual && *expected_size != static_cast<double>(*actual)) {
        SourceLocation location = binding_location.count(from) ? binding_location[from] : expr.name.location;
        d_.error(location, "axis sizes disagree at this call: '" + axis.name + "' of '" + name + "' is " +
                               p_.definition_text(from) +
                               " = " + format_size(*expected_size) + ", but it is bound to '" + p_.axis(to).name +
                               "' of size " + std::to_string(*actual));
        return nullptr;
      }
      continue;
    }
    if (!axis.derived) continue;
    Poly expected = axis.definition.substitute([&](int base) {
      auto it = binding.find(base);
      return it != binding.end() ? p_.size_poly(it->second) : Poly::axis(base);
    });
    auto expected_size = expected.evaluate([&](int id) -> std::optional<double> {
      auto it = binding.find(id);
      auto size = it != binding.end() ? p_.axis(it->second).size : p_.axis(id).size;
      return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
    });
    auto actual = p_.axis(to).size;
    if (expected_size && actual && *expected_size != static_cast<double>(*actual)) {
      SourceLocation location = binding_location.count(from) ? binding_location[from] : expr.name.location;
      d_.error(location, "axis sizes disagree at this call: '" + axis.name + "' of '" + name + "' is " +
                             axis.definition.to_string(axis_name_fn()) + " = " + format_size(*expected_size) +
                             ", but it is bound to '" + p_.axis(to).name + "' of size " + std::to_string(*actual));
      return nullptr;
    }
  }
  auto node = make(TypedExpr::Kind::Call, expr.location);
  node->callee_name = name;
  if (expr.label) {
    const ast::Name &label = *expr.label;
    if (!is_call_label(label.text)) {
      d_.error(label.location, "call site name \"" + label.text +
                                   "\" is not a param path: names, iteration numbers and N@M joined by dots "
                                   "(\"h.3\", \"0.Block@1\")");
      return nullptr;
    }
    if (auto [at, fresh] = call_labels_.emplace(label.text, CallLabel{label.location, callee_index}); !fresh) {
      // A second call site of that name is tied to the first: it shares their params, so one
      // callee's params must be among the other's (a diagram and its gradient, docs/LANGUAGE.md).
      const int first = at->second.callee;
      if (!params_can_tie(*p_.diagrams[static_cast<size_t>(first)], callee)) {
        d_.error(label.location, "call site '" + label.text + "' is named twice in diagram '" + current_->name +
                                     "'; its params' paths start with this name, and the params of '" + name +
                                     "' are not among those of '" + p_.diagrams[static_cast<size_t>(first)]->name + "'")
            .notes.push_back({at->second.location, "first named here"});
        return nullptr;
      }
    }
    node->label = label.text;
  }
  node->callee = callee_index;
  for (auto [from, to] : binding) node->bindings.push_back({from, to});
  // Arguments: each must carry the mapped axes of its input; the rest are lifted.
  std::vector<int> mapped_all;
  for (int axis : interface_axes) mapped_all.push_back(binding[axis]);
  std::vector<std::pair<int, std::string>> lifted_from;  // axis, argument name
  swapped_argument_warnings(ordered, input_names, name);
  for (size_t i = 0; i < ordered.size(); ++i) {
    const ast::Expr &argument_expr = *ordered[i]->value;
    // "argument 2" by position, "argument 'K'" by keyword.
    const std::string which = ordered[i]->keyword ? "'" + ordered[i]->keyword->text + "'" : std::to_string(i + 1);
    auto argument = typed(argument_expr);
    if (!argument) return nullptr;
    const ir::Value &input = callee.value(callee.inputs[i]);
    std::vector<int> wanted;
    for (int axis : input.axes) {
      int to = binding[axis];
      if (contains(wanted, to)) {
        d_.error(argument_expr.location, "two axes of input '" + input.name + "' of '" + name +
                                                        "' are bound to the same axis '" + p_.axis(to).name + "'");
        return nullptr;
      }
      wanted.push_back(to);
    }
    for (size_t k = 0; k < wanted.size(); ++k)
      if (!contains(argument->axes, wanted[k])) {
        int from = input.axes[k];
        std::string via = from == wanted[k] ? "" : " (its axis '" + p_.axis(from).name + "' is bound to '" + p_.axis(wanted[k]).name + "')";
        auto &error = d_.error(argument_expr.location,
                               "argument " + which + " of '" + name + "' has axes " + axes_text(argument->axes) +
                                   " but input '" + input.name + "' needs axis '" + p_.axis(wanted[k]).name + "'" + via);
        error.notes.push_back({input.location, "input declared here"});
        return nullptr;
      }
    for (int axis : argument->axes) {
      if (contains(wanted, axis)) continue;
      if (contains(mapped_all, axis)) {
        std::string bound_from;
        for (auto [from, to] : binding)
          if (to == axis && contains(interface_axes, from)) bound_from = p_.axis(from).name;
        d_.error(argument_expr.location,
                 "lifting conflict: axis '" + p_.axis(axis).name + "' of argument " + which +
                     " is not an axis of input '" + input.name + "', so the call is lifted over it, but it is also bound to axis '" +
                     bound_from + "' of '" + name + "'");
        return nullptr;
      }
      if (!contains(node->lifted, axis)) node->lifted.push_back(axis);
    }
    node->children.push_back(std::move(argument));
  }
  for (int id : callee.outputs) {
    std::vector<int> axes;
    for (int axis : callee.value(id).axes) {
      if (contains(axes, binding[axis])) {
        d_.error(expr.name.location, "two axes of output '" + callee.value(id).name + "' of '" + name +
                                         "' are bound to the same axis '" + p_.axis(binding[axis]).name + "'");
        return nullptr;
      }
      axes.push_back(binding[axis]);
    }
    // Lifted axes outermost: each instance of the call writes its outputs
    // contiguously (a row kernel's stores coalesce, a GEMM reads rows), as
    // batch axes lead in PyTorch. A statement that names the result with
    // its own axis order still gets that order.
    std::vector<int> laid_out = node->lifted;
    append_unique(laid_out, axes);
    node->output_axes.push_back(laid_out);
    node->output_dtypes.push_back(callee.value(id).dtype);
  }
  node->axes = node->output_axes.empty() ? std::vector<int>{} : node->output_axes[0];
  node->dtype = node->output_dtypes.empty() ? DType::F32 : node->output_dtypes[0];
  node->dtype_fixed = true;
  return node;
}

void Sema::swapped_argument_warnings(const std::vector<const ast::Argument *> &ordered,
                                     const std::vector<std::string> &inputs, const std::string &callee) {
  // A positional argument that is a plain reference named like another input
  // of the callee, while that input gets something else (`F(K, Q, V)` for
  // F(Q, K, V)), is most likely swapped: when the axes bind either way
  // (self-attention), nothing else would tell. `G(X, X)` passing X to both
  // of G(X, A) is deliberate.
  auto given = [&](size_t k) -> std::string {
    const ast::Argument *argument = ordered[k];
    return argument && argument->value->kind == ast::Expr::Kind::Ref ? argument->value->ref.name.text : "";
  };
  for (size_t i = 0; i < ordered.size(); ++i) {
    if (!ordered[i] || ordered[i]->keyword) continue;
    const std::string name = given(i);
    if (name.empty() || name == inputs[i]) continue;
    auto other = std::find(inputs.begin(), inputs.end(), name);
    if (other == inputs.end() || given(static_cast<size_t>(other - inputs.begin())) == name) continue;
    d_.warning(ordered[i]->value->location,
               "argument " + std::to_string(i + 1) + " of '" + callee + "' is '" + name + "', the name of its input " +
                   std::to_string(other - inputs.begin() + 1) + ", but it binds input '" + inputs[i] +
                   "'; swapped? (name the inputs: " + callee + "(" + inputs[i] + " = " + name + ", ...))");
  }
}

}  // namespace ncd::sema_detail
