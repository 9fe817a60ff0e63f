// Sema on diagram bodies: statements in order (params, assignments, repeats),
// the left-hand side of an assignment (axes, merges, dtype, declared outputs and
// carried values), naming a statement's result, and contraction placement:
// an axis absent from the left is summed at the lowest subexpression holding all
// its occurrences, widened to the enclosing product, which becomes a contraction.
#include "sema_impl.h"

namespace ncd::sema_detail {

void Sema::lower_bodies(int module) {
  for (auto &[index, origin] : ast_of_) {
    if (origin.second != module) continue;
    current_ = p_.diagrams[static_cast<size_t>(index)].get();
    current_module_ = module;
    current_scope_ = &diagram_scopes_[origin.first];
    current_index_ = index;
    lower_body(*origin.first);
    if (d_.too_many_errors()) return;
  }
}

void Sema::lower_body(const ast::Diagram &decl) {
  const int errors_before = d_.error_count();
  frames_.clear();
  frames_.push_back({});
  frames_.back().region = &current_->body;
  reads_.clear();
  for (int id : current_->inputs) frames_.back().names[current_->value(id).name] = id;
  assigned_outputs_.clear();
  call_labels_.clear();
  lower_block(decl.body);
  // An unnamed call site's path segment is its callee's name: a call site named so would share it.
  ir::for_each_op(current_->body, [&](const ir::Op &op) {
    if (op.kind != ir::OpKind::Call || !op.label.empty()) return;
    auto named = call_labels_.find(op.callee_name);
    if (named == call_labels_.end()) return;
    d_.error(named->second.location, "call site '" + named->first + "' has the name of an unnamed call of '" + op.callee_name +
                                "' in this diagram, whose params' paths start with it too; name that call")
        .notes.push_back({op.location, "the unnamed call"});
    call_labels_.erase(named);
  });
  for (int id : current_->outputs) {
    const ir::Value &output = current_->value(id);
    if (!assigned_outputs_.count(id))
      d_.error(output.location, "output '" + output.name + "' of diagram '" + current_->name + "' is never assigned");
  }
  // Unused inputs, params and values (not after errors: a failed statement reads nothing).
  for (const ir::Value &value : current_->values) {
    if (d_.error_count() > errors_before) break;
    if (value.role == ir::Value::Role::Output || value.role == ir::Value::Role::BlockArgument) continue;
    if (value.name.empty() || value.name[0] == '%' || reads_.count(value.id)) continue;
    if (poisoned_values_.count({current_, value.id})) continue;
    const char *what = value.role == ir::Value::Role::Input   ? "input"
                       : value.role == ir::Value::Role::Param ? "param"
                                                              : "value";
    d_.warning(value.location, std::string(what) + " '" + value.name + "' is never used");
  }
  current_->max_op_id = next_op_id_;
  if (d_.error_count() > errors_before) failed_bodies_.insert(current_);
}

void Sema::lower_block(const std::vector<std::unique_ptr<ast::Stmt>> &body) {
  for (const auto &stmt : body) {
    if (d_.too_many_errors()) return;
    switch (stmt->kind) {
      case ast::Stmt::Kind::Axis: break;  // declared up front
      case ast::Stmt::Kind::Param: lower_params(*stmt); break;
      case ast::Stmt::Kind::Assign: lower_assign(*stmt); break;
      case ast::Stmt::Kind::Repeat: lower_repeat(*stmt); break;
    }
  }
}

int Sema::lookup_value_quiet(const std::string &name) const {
  for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
    auto it = frame->names.find(name);
    if (it != frame->names.end()) return it->second;
  }
  return -1;
}

std::vector<std::string> Sema::visible_value_names() const {
  std::vector<std::string> names;
  for (const auto &frame : frames_)
    for (auto &[name, id] : frame.names) names.push_back(name);
  return names;
}

void Sema::lower_params(const ast::Stmt &stmt) {
  for (const auto &tensor : stmt.params) {
    if (lookup_value_quiet(tensor.name.text) >= 0 || is_output_name(tensor.name.text)) {
      report_duplicate(tensor.name);
      continue;
    }
    int id = declare_tensor(tensor, ir::Value::Role::Param);
    current_->value(id).instances = frames_.back().instances;
    current_->params.push_back(id);
    frames_.back().names[tensor.name.text] = id;
  }
}

int Sema::output_named(const std::string &name) const {
  for (int id : current_->outputs)
    if (current_->value(id).name == name) return id;
  return -1;
}

void Sema::report_duplicate(const ast::Name &name) {
  int existing = lookup_value_quiet(name.text);
  if (existing < 0) existing = output_named(name.text);
  auto &error = d_.error(name.location, "'" + name.text + "' is already defined");
  if (existing >= 0) error.notes.push_back({current_->value(existing).location, "previous definition is here"});
}

void Sema::lower_repeat(const ast::Stmt &stmt) {
  int64_t count = stmt.count;
  if (stmt.count_axis) {
    // `repeat #layers`: the axis's size, fixed when the program is compiled (after -D).
    int axis = lookup_axis(*stmt.count_axis);
    if (axis < 0) return;
    const ir::Axis &a = p_.axis(axis);
    if (!a.size) {
      d_.error(stmt.count_axis->location, "repeat #" + a.name + ": axis '" + a.name + "' has no size; set it with -D " +
                                              a.name + "=N");
      return;
    }
    count = *a.size;
  }
  if (count < 1) {
    d_.error(stmt.count_location, "repeat count must be at least 1");
    return;
  }
  auto op = new_op(ir::OpKind::Repeat, stmt.location);
  op->count = count;
  op->body = std::make_unique<ir::Region>();
  // Names assigned in the body that exist outside are carried from one iteration to the next.
  std::vector<std::string> carried;
  std::function<void(const std::vector<std::unique_ptr<ast::Stmt>> &)> scan =
      [&](const std::vector<std::unique_ptr<ast::Stmt>> &body) {
        for (const auto &inner : body) {
          if (inner->kind == ast::Stmt::Kind::Repeat) scan(inner->body);
          if (inner->kind != ast::Stmt::Kind::Assign) continue;
          for (const auto &target : inner->targets) {
            const std::string &name = target.name.text;
            if (lookup_value_quiet(name) >= 0 &&
                std::find(carried.begin(), carried.end(), name) == carried.end())
              carried.push_back(name);
          }
        }
      };
  scan(stmt.body);
  Frame frame;
  frame.repeat = true;
  frame.region = op->body.get();
  frame.instances = frames_.back().instances * count;
  for (const std::string &name : carried) {
    int outer = lookup_value_quiet(name);
    const ir::Value &outer_value = current_->value(outer);
    if (outer_value.role == ir::Value::Role::Input || outer_value.role == ir::Value::Role::Param) continue;
    if (outer_value.role == ir::Value::Role::Output) {
      d_.error(stmt.location, "output '" + name + "' is updated inside this repeat; compute a carried value and assign the output after the repeat");
      continue;
    }
    int argument = new_value(outer_value.axes, outer_value.dtype, stmt.location, name, ir::Value::Role::BlockArgument);
    frame.names[name] = argument;
    frame.carried[name] = argument;
    op->operands.push_back(outer);
    reads_.insert(outer);
    op->body_arguments.push_back(argument);
  }
  // `repeat N as i`: an i32 scalar carried from 0, one more each iteration (plain IR: a constant,
  // a block argument, an add), so every backend runs it as it runs any carried value.
  int index_init = -1, index_argument = -1;
  if (stmt.index) {
    const ast::Name &index = *stmt.index;
    const char *taken = lookup_value_quiet(index.text) >= 0 ? "a tensor"
                        : find_axis(index.text) >= 0        ? "an axis"
                        : builtins().count(index.text)      ? "a builtin function"
                                                            : nullptr;
    if (taken) {
      d_.error(index.location, "the iteration index '" + index.text + "' has the name of " + taken +
                                   " in scope; choose another name");
    } else {
      auto zero = new_op(ir::OpKind::Constant, index.location);
      zero->constant = 0;
      index_init = finish(std::move(zero), {}, DType::I32, index.location);
      index_argument = new_value({}, DType::I32, index.location, index.text, ir::Value::Role::BlockArgument);
      frame.names[index.text] = index_argument;
      frame.index = index.text;
      op->operands.push_back(index_init);
      op->body_arguments.push_back(index_argument);
    }
  }
  frames_.push_back(std::move(frame));
  lower_block(stmt.body);
  if (index_argument >= 0) {
    auto one = new_op(ir::OpKind::Constant, stmt.index->location);
    one->constant = 1;
    int step = finish(std::move(one), {}, DType::I32, stmt.index->location);
    frames_.back().yields[stmt.index->text] = emit_elementwise(ops::Fn::Add, {index_argument, step}, DType::I32,
                                                               stmt.index->location);
    reads_.insert(index_argument);
  }
  Frame done = std::move(frames_.back());
  frames_.pop_back();
  // Results, in the order of the operands.
  for (size_t i = 0; i < op->body_arguments.size(); ++i) {
    const std::string name = current_->value(op->body_arguments[i]).name;
    int yield = done.yields.count(name) ? done.yields[name] : op->body_arguments[i];
    op->body_yields.push_back(yield);
    reads_.insert(yield);
    const ir::Value &outer_value = current_->value(op->operands[i]);
    // The index's last value is nobody's: a temporary name, not visible after the repeat.
    const bool index = op->body_arguments[i] == index_argument;
    int result = new_value(outer_value.axes, outer_value.dtype, stmt.location, index ? "" : name);
    if (index) reads_.insert(result);
    current_->value(result).producer = op->id;
    op->results.push_back(result);
    // State the body reads is used by the next iteration, even when nothing
    // reads it after the last one: not an unused value.
    if (reads_.count(op->body_arguments[i])) reads_.insert(result);
  }
  std::vector<int> results = op->results;
  frames_.back().region->ops.push_back(std::move(op));
  // The repeat's results update their names, which an enclosing repeat may carry in turn.
  for (int result : results)
    if (current_->value(result).name[0] != '%') record_update(current_->value(result).name, result);
}

// A new value for a name in the innermost frame; a repeat frame that carries
// the name hands it to the next iteration.
void Sema::record_update(const std::string &name, int value) {
  Frame &frame = frames_.back();
  frame.names[name] = value;
  if (frame.carried.count(name)) {
    frame.yields[name] = value;
    reads_.insert(value);
  }
}

std::unique_ptr<ir::Op> Sema::new_op(ir::OpKind kind, SourceLocation location) {
  auto op = std::make_unique<ir::Op>();
  op->id = next_op_id_++;
  op->kind = kind;
  op->location = location;
  return op;
}

int Sema::new_value(const std::vector<int> &axes, DType dtype, SourceLocation location, const std::string &name,
                    ir::Value::Role role) {
  ir::Value value;
  value.id = static_cast<int>(current_->values.size());
  value.name = name.empty() ? "%" + std::to_string(value.id) : name;
  value.axes = axes;
  value.dtype = dtype;
  value.role = role;
  value.location = location;
  current_->values.push_back(value);
  return value.id;
}

std::optional<Sema::Target> Sema::resolve_target(const ast::Lhs &lhs) {
  Target target;
  target.lhs = &lhs;
  const std::string &name = lhs.name.text;
  if (builtins().count(name)) {
    d_.error(lhs.name.location, "'" + name + "' is a builtin function and cannot name a tensor");
    return std::nullopt;
  }
  int existing = lookup_value_quiet(name);
  target.output = output_named(name);
  if (existing >= 0) {
    const ir::Value &value = current_->value(existing);
    for (const Frame &frame : frames_)
      if (frame.index == name) {
        auto &error = d_.error(lhs.name.location, "cannot assign to the iteration index '" + name + "'");
        error.notes.push_back({value.location, "declared here"});
        return std::nullopt;
      }
    Frame *carrier = nullptr;
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
      if (frame->carried.count(name)) {
        carrier = &*frame;
        break;
      }
    if (value.role == ir::Value::Role::Input) {
      auto &error = d_.error(lhs.name.location, "cannot assign to input '" + name + "'");
      error.notes.push_back({value.location, "declared here"});
      return std::nullopt;
    }
    if (value.role == ir::Value::Role::Param) {
      auto &error = d_.error(lhs.name.location, "cannot assign to param '" + name + "'");
      error.notes.push_back({value.location, "declared here"});
      return std::nullopt;
    }
    if (!carrier) {
      report_duplicate(lhs.name);
      return std::nullopt;
    }
    target.carried = carrier->carried[name];
    target.output = -1;
  } else if (target.output >= 0 && assigned_outputs_.count(target.output)) {
    report_duplicate(lhs.name);
    return std::nullopt;
  } else if (target.output >= 0 && frames_.back().repeat) {
    d_.error(lhs.name.location, "output '" + name + "' cannot be assigned inside a repeat; carry a value through the repeat and assign the output after it");
    return std::nullopt;
  }
  // The axes: written, or taken from the declaration when the brackets are left out.
  if (!lhs.has_brackets) {
    if (target.output >= 0) {
      target.axes = current_->value(target.output).axes;
    } else if (target.carried >= 0) {
      target.axes = current_->value(target.carried).axes;
    } else {
      d_.error(lhs.name.location, "'" + name + "' needs its axes on the left: " + name + "[...] = ...");
      return std::nullopt;
    }
    target.expanded = target.axes;
    for (int axis : target.axes) target.merges.push_back({axis});
  } else {
    bool ok = true;
    for (const ast::LhsIndex &index : lhs.indices) {
      std::vector<int> group;
      for (const ast::Name &axis_name : index.names) {
        int axis = lookup_axis(axis_name);
        if (axis < 0) {
          ok = false;
          continue;
        }
        if (contains(target.expanded, axis)) {
          d_.error(axis_name.location, "axis '" + axis_name.text + "' appears twice on the left of '" + name + "'");
          ok = false;
          continue;
        }
        group.push_back(axis);
        target.expanded.push_back(axis);
      }
      if (!ok) continue;
      if (!index.group) {
        target.axes.push_back(group[0]);
        target.merges.push_back(group);
        continue;
      }
      std::vector<int> candidates = merged_axis_candidates(group);
      int merged = candidates.size() == 1 ? candidates[0] : -1;
      // A declared output or carried value says which axis it stores.
      int declared_value = target.output >= 0 ? target.output : existing >= 0 ? existing : -1;
      if (declared_value >= 0)
        for (int candidate : candidates)
          if (contains(current_->value(declared_value).axes, candidate)) merged = candidate;
      // A declared axis that no product names but whose size is the product's: `head_dim` for
      // (two, half), with half = head_dim / 2 and two = 2. Only where the declaration names it.
      if (merged < 0 && candidates.empty() && declared_value >= 0) {
        std::vector<int> sized;
        for (int axis : current_->value(declared_value).axes)
          if (!contains(target.expanded, axis) && same_size_as_product(axis, group)) sized.push_back(axis);
        if (sized.size() == 1) merged = sized[0];
      }
      if (merged < 0 && candidates.size() > 1) {
        std::string names;
        for (size_t i = 0; i < candidates.size(); ++i)
          names += std::string(i == 0 ? "'" : i + 1 == candidates.size() ? " and '" : ", '") +
                   p_.axis(candidates[i]).name + "'";
        d_.error(index.location, "the merged axis is ambiguous: " + names +
                                     (candidates.size() == 2 ? " are both" : " are all") +
                                     " declared as this product; declare only one");
        ok = false;
        continue;
      }
      if (merged < 0) {
        std::string product;
        for (int axis : group) product += (product.empty() ? "" : " * ") + p_.axis(axis).name;
        d_.error(index.location, "no axis is declared as " + product + " to hold the merged axes; declare one, e.g. `axis merged = " + product + "`");
        ok = false;
        continue;
      }
      if (contains(target.axes, merged) || contains(target.expanded, merged)) {
        d_.error(index.location, "axis '" + p_.axis(merged).name + "' appears twice on the left of '" + name + "'");
        ok = false;
        continue;
      }
      used_axes_.insert(merged);
      target.axes.push_back(merged);
      target.merges.push_back(group);
      target.has_merge = true;
    }
    if (!ok) return std::nullopt;
  }
  // The dtype: written, or the declaration's, or the file's default.
  DType module_default = modules_[static_cast<size_t>(current_module_)].default_dtype;
  target.dtype = module_default;
  if (target.output >= 0) target.dtype = current_->value(target.output).dtype;
  if (target.carried >= 0) target.dtype = current_->value(target.carried).dtype;
  if (lhs.dtype) {
    auto dtype = dtype_of(*lhs.dtype);
    if (!dtype) return std::nullopt;
    if ((target.output >= 0 || target.carried >= 0) && *dtype != target.dtype) {
      d_.error(lhs.dtype->location, "'" + name + "' is declared " + std::string(ir::dtype_name(target.dtype)) +
                                        ", not " + std::string(ir::dtype_name(*dtype)));
      return std::nullopt;
    }
    target.dtype = *dtype;
  }
  // An output or carried value must keep its declared axes.
  int declared = target.output >= 0 ? target.output : target.carried;
  if (declared >= 0) {
    std::vector<int> want = current_->value(declared).axes;
    std::vector<int> have = target.axes;
    std::sort(want.begin(), want.end());
    std::sort(have.begin(), have.end());
    if (want != have) {
      auto &error = d_.error(lhs.location, std::string(target.output >= 0 ? "output" : "carried value") + " '" + name +
                                               "' is declared with axes " + axes_text(current_->value(declared).axes) +
                                               " but assigned with axes " + axes_text(target.axes));
      error.notes.push_back({current_->value(declared).location, "declared here"});
      return std::nullopt;
    }
    target.axes = current_->value(declared).axes;
    // Keep the merge groups aligned with the declaration's order.
    std::vector<std::vector<int>> merges;
    for (int axis : target.axes)
      for (size_t i = 0; i < target.axes.size(); ++i)
        if (target.merges[i].size() == 1 && target.merges[i][0] == axis) merges.push_back({axis});
    if (!target.has_merge) target.merges = merges;
  }
  return target;
}

// Whether `axis` has the product of the sizes of `group` as its size (numbers, after -D).
bool Sema::same_size_as_product(int axis, const std::vector<int> &group) const {
  auto size = p_.axis(axis).size;
  if (!size) return false;
  int64_t product = 1;
  for (int part : group) {
    auto part_size = p_.axis(part).size;
    if (!part_size) return false;
    product *= *part_size;
  }
  return *size == product;
}

// The axes declared as the product of `group` (e.g. model = heads * d).
std::vector<int> Sema::merged_axis_candidates(const std::vector<int> &group) {
  Poly product = Poly::constant(1);
  for (int axis : group) product = product * p_.size_poly(axis);
  std::vector<int> scope_axes;
  if (current_scope_)
    for (auto &[name, id] : current_scope_->axes) scope_axes.push_back(id);
  for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].axes) scope_axes.push_back(id);
  std::vector<int> out;
  for (int id : scope_axes)
    if (p_.axis(id).derived && p_.size_poly(id) == product) out.push_back(id);
  // An alias (`axis b = a`) of another candidate is not one: the merge is read as the original.
  std::vector<int> originals;
  for (int id : out)
    if (std::find(out.begin(), out.end(), p_.axis(id).alias_of) == out.end()) originals.push_back(id);
  return originals;
}

std::string Sema::axes_text(const std::vector<int> &axes) const {
  std::string out = "[";
  for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + p_.axis(axes[i]).name;
  return out + "]";
}

std::string Sema::did_you_mean_axis(const std::string &name, const std::vector<int> &axes) const {
  std::vector<std::string> names;
  for (int axis : axes) names.push_back(p_.axis(axis).name);
  return did_you_mean(name, names);
}

void Sema::lower_assign(const ast::Stmt &stmt) {
  std::vector<Target> targets;
  bool ok = true;
  std::set<std::string> seen;
  for (const auto &lhs : stmt.targets) {
    if (!seen.insert(lhs.name.text).second) {
      d_.error(lhs.name.location, "'" + lhs.name.text + "' appears twice on the left");
      ok = false;
      continue;
    }
    auto target = resolve_target(lhs);
    if (!target) {
      ok = false;
      continue;
    }
    targets.push_back(std::move(*target));
  }
  statement_dtype_ = targets.empty() ? DType::F32 : targets[0].dtype;
  if (ok && is_split(*stmt.value)) {
    lower_split(stmt, targets);
    return;
  }
  if (const ops::Info *row = ok ? selection(*stmt.value) : nullptr) {
    lower_select(stmt, targets, *row);
    return;
  }
  std::unique_ptr<TypedExpr> value = ok ? typed(*stmt.value) : nullptr;
  if (!value) {
    // Declare the names anyway so that later statements do not cascade errors.
    for (const auto &lhs : stmt.targets) poison(lhs);
    return;
  }
  lint_axis_reads(*value, targets);
  if (targets.size() > 1) {
    lower_multi_assign(stmt, targets, std::move(value));
    return;
  }
  if (!check_single_outputs(*value)) {
    for (const auto &lhs : stmt.targets) poison(lhs);
    return;
  }
  Target &target = targets[0];
  // Axes on the right but not on the left are summed (contracted).
  std::vector<int> sums;
  for (int axis : value->axes)
    if (!contains(target.expanded, axis)) sums.push_back(axis);
  for (int axis : sums) place_sum(*value, axis);
  int result = emit(*value);
  if (result < 0) {
    for (const auto &lhs : stmt.targets) poison(lhs);
    return;
  }
  // An integer statement whose value is a contraction or sum holds it in the
  // statement's dtype: computed exactly, then truncated and saturated once
  // (an f32 intermediate would round sums beyond 2^24).
  if (ir::is_integer(statement_dtype_) && value->kind != TypedExpr::Kind::Value) {
    ir::Value &computed = current_->value(result);
    const auto &ops = frames_.back().region->ops;
    const ir::Op *producer = !ops.empty() && ops.back()->id == computed.producer ? ops.back().get() : nullptr;
    // quantize's integer result is the op's own, so that it reads back as one statement.
    if (producer && (producer->kind == ir::OpKind::Contract ||
                     (producer->kind == ir::OpKind::Reduce && producer->function == ops::Fn::Sum) ||
                     (producer->kind == ir::OpKind::Elementwise && producer->function == ops::Fn::Quantize)))
      computed.dtype = statement_dtype_;
  }
  bind_target(target, result, stmt.location, /*fresh=*/value->kind != TypedExpr::Kind::Value);
}

void Sema::poison(const ast::Lhs &lhs) {
  if (lookup_value_quiet(lhs.name.text) >= 0) return;
  int output = output_named(lhs.name.text);
  if (output >= 0) {
    assigned_outputs_.insert(output);
    frames_.back().names[lhs.name.text] = output;
    return;
  }
  int id = new_value({}, DType::F32, lhs.name.location, lhs.name.text);
  poisoned_values_.insert({current_, id});
  frames_.back().names[lhs.name.text] = id;
}

// Gives the statement's result its name, axes order and dtype, merging axes
// or broadcasting where the left-hand side asks for it.
void Sema::bind_target(const Target &target, int result, SourceLocation location, bool fresh) {
  ir::Value &value = current_->value(result);
  // Axes the right-hand side does not produce are broadcast.
  std::vector<int> missing;
  for (int axis : target.expanded)
    if (!contains(value.axes, axis)) missing.push_back(axis);
  int final_value = result;
  bool need_copy = !fresh || !missing.empty() || value.dtype != target.dtype || value.role != ir::Value::Role::Intermediate ||
                   value.name[0] != '%';
  if (target.has_merge) {
    int source = result;
    if (!missing.empty()) source = emit_copy(result, target.expanded, target.dtype, location);
    auto op = new_op(ir::OpKind::Merge, location);
    op->operands = {source};
    reads_.insert(source);
    op->merges = target.merges;
    final_value = new_value(target.axes, target.dtype, location, "");
    current_->value(final_value).producer = op->id;
    op->results = {final_value};
    frames_.back().region->ops.push_back(std::move(op));
  } else if (need_copy) {
    final_value = emit_copy(result, target.axes, target.dtype, location);
  } else {
    value.axes = target.axes;
    value.dtype = target.dtype;
  }
  ir::Value &named = current_->value(final_value);
  named.name = target.lhs->name.text;
  named.location = target.lhs->name.location;
  if (target.output >= 0) {
    // The declared output value is replaced by the computed one.
    named.role = ir::Value::Role::Output;
    for (int &id : current_->outputs)
      if (id == target.output) id = final_value;
    current_->value(target.output).role = ir::Value::Role::Intermediate;
    current_->value(target.output).name = "%" + std::to_string(target.output);
    assigned_outputs_.insert(target.output);
    assigned_outputs_.insert(final_value);
    named.location = current_->value(target.output).location;
    reads_.insert(target.output);
  }
  frames_.back().names[named.name] = final_value;
  if (target.carried >= 0) {
    record_update(named.name, final_value);
    reads_.insert(final_value);
  }
}

int Sema::emit_copy(int source, const std::vector<int> &axes, DType dtype, SourceLocation location) {
  auto op = new_op(ir::OpKind::Elementwise, location);
  op->function = ops::Fn::Copy;
  op->operands = {source};
  reads_.insert(source);
  int result = new_value(axes, dtype, location, "");
  current_->value(result).producer = op->id;
  op->results = {result};
  frames_.back().region->ops.push_back(std::move(op));
  return result;
}

void Sema::lower_multi_assign(const ast::Stmt &stmt, std::vector<Target> &targets, std::unique_ptr<TypedExpr> value) {
  TypedExpr *call = value.get();
  if (call->kind != TypedExpr::Kind::Call) {
    d_.error(stmt.value->location, "only a diagram call can assign several tensors at once");
    for (const auto &lhs : stmt.targets) poison(lhs);
    return;
  }
  if (call->output_axes.size() != targets.size()) {
    d_.error(stmt.value->location, "'" + call->callee_name + "' has " + std::to_string(call->output_axes.size()) +
                                       " outputs, but " + std::to_string(targets.size()) + " names are assigned");
    for (const auto &lhs : stmt.targets) poison(lhs);
    return;
  }
  std::vector<int> results = emit_call(*call);
  if (results.empty()) return;
  for (size_t i = 0; i < targets.size(); ++i) {
    std::vector<int> have = current_->value(results[i]).axes, want = targets[i].expanded;
    std::sort(have.begin(), have.end());
    std::sort(want.begin(), want.end());
    if (have != want) {
      d_.error(targets[i].lhs->location, "output " + std::to_string(i + 1) + " of '" + call->callee_name + "' has axes " +
                                             axes_text(current_->value(results[i]).axes) + ", but the left side names " +
                                             axes_text(targets[i].expanded));
      poison(*targets[i].lhs);
      continue;
    }
    bind_target(targets[i], results[i], stmt.location, true);
  }
}

// A diagram with several outputs can only be called where each output gets a name.
bool Sema::check_single_outputs(const TypedExpr &node) {
  bool ok = true;
  if (node.kind == TypedExpr::Kind::Call && node.output_axes.size() > 1) {
    d_.error(node.location, "'" + node.callee_name + "' has " + std::to_string(node.output_axes.size()) +
                                " outputs; assign each of them: A[...], B[...] = " + node.callee_name + "(...)");
    ok = false;
  }
  for (const auto &child : node.children) ok = check_single_outputs(*child) && ok;
  return ok;
}

// Sums `axis` at the lowest node holding all its free occurrences; when that
// node is a factor of a product, the product is summed (a contraction).
void Sema::place_sum(TypedExpr &root, int axis) {
  TypedExpr *node = &root;
  TypedExpr *parent = nullptr;
  while (true) {
    // A scan is a barrier for every axis: a sum commutes with cumsum, but not
    // with cumprod, cummax, cummin or with `scan`'s coefficient, so the sum is
    // taken of the scan's result.
    bool barrier = node->kind == TypedExpr::Kind::Call || node->kind == TypedExpr::Kind::Scan ||
                   node->kind == TypedExpr::Kind::Concat ||
                   (node->kind == TypedExpr::Kind::Normalize && contains(node->op_axes, axis));
    if (barrier) break;
    TypedExpr *only = nullptr;
    int count = 0;
    for (auto &child : node->children)
      if (has_axis(*child, axis)) {
        ++count;
        only = child.get();
      }
    if (count != 1) break;
    parent = node;
    node = only;
  }
  TypedExpr *place = parent && parent->kind == TypedExpr::Kind::Product && node->kind != TypedExpr::Kind::Product
                         ? parent
                         : node;
  if (place->sum_axes.empty()) place->produced_axes = place->axes;
  place->sum_axes.push_back(axis);
  // The axis is no longer free above the placement.
  remove_free_axis(root, place, axis);
}

bool Sema::remove_free_axis(TypedExpr &node, TypedExpr *place, int axis) {
  if (&node == place) {
    node.axes.erase(std::remove(node.axes.begin(), node.axes.end(), axis), node.axes.end());
    return true;
  }
  for (auto &child : node.children)
    if (remove_free_axis(*child, place, axis)) {
      bool still = false;
      for (auto &other : node.children) still = still || has_axis(*other, axis);
      if (!still) node.axes.erase(std::remove(node.axes.begin(), node.axes.end(), axis), node.axes.end());
      return true;
    }
  return false;
}

}  // namespace ncd::sema_detail
