// Sema, the driver and the program-wide parts: axes and their sizes (defaults,
// -D, derived relations), diagram signatures, name lookup of axes and diagrams,
// schedules, call cycles and unused axes. The lowering of diagram bodies lives
// in sema_statements.cpp, sema_expr.cpp, sema_call.cpp and sema_emit.cpp; the
// class they share is declared in sema_impl.h.
#include "ncd/sema.h"

#include "sema_impl.h"

namespace ncd::sema_detail {

void Sema::run(const std::vector<std::string> &defines) {
  p_.modules.clear();
  for (const auto &module : c_.modules) {
    ir::Module m;
    m.path = module.path;
    m.resolved = module.resolved;
    for (int import : module.imports) m.imports.push_back(c_.modules[static_cast<size_t>(import)].resolved);
    p_.modules.push_back(m);
  }
  modules_.resize(c_.modules.size());
  for (size_t i = 0; i < c_.modules.size(); ++i) declare_module_axes(static_cast<int>(i));
  apply_defines(defines);
  compute_sizes();
  if (d_.too_many_errors()) return;
  for (size_t i = 0; i < c_.modules.size(); ++i) declare_diagrams(static_cast<int>(i));
  for (size_t i = 0; i < c_.modules.size(); ++i) lower_bodies(static_cast<int>(i));
  for (size_t i = 0; i < c_.modules.size(); ++i) lower_schedules(static_cast<int>(i));
  report_call_cycles();
  warn_unused_axes();
}

int Sema::new_axis(const ast::Name &name, int module) {
  ir::Axis axis;
  axis.id = static_cast<int>(p_.axes.size());
  axis.name = name.text;
  axis.module = c_.modules[static_cast<size_t>(module)].path;
  axis.location = name.location;
  axis.definition = Poly::axis(axis.id);
  p_.axes.push_back(axis);
  return axis.id;
}

// Declares the axes of one `axis` declaration into `scope` (falling back to
// `outer` for lookups in size expressions).
void Sema::declare_axes(const ast::AxisDecl &decl, int module, std::map<std::string, int> &scope,
                        const std::map<std::string, int> *outer) {
  for (const ast::AxisItem &item : decl.items) {
    auto existing = scope.find(item.name.text);
    if (existing != scope.end()) {
      auto &error = d_.error(item.name.location, "axis '" + item.name.text + "' is already declared");
      error.notes.push_back({p_.axis(existing->second).location, "first declared here"});
      continue;
    }
    if (builtins().count(item.name.text)) {
      d_.error(item.name.location, "'" + item.name.text + "' is a builtin function and cannot name an axis");
      continue;
    }
    int id = new_axis(item.name, module);
    scope[item.name.text] = id;
    if (!item.size) continue;
    auto lookup = [&](const ast::Name &name) -> int {
      auto it = scope.find(name.text);
      if (it != scope.end() && it->second != id) return it->second;
      if (outer) {
        auto found = outer->find(name.text);
        if (found != outer->end()) return found->second;
      }
      return -1;
    };
    auto value = size_expr(*item.size, lookup, scope, outer, id);
    if (!value) {
      p_.axes[static_cast<size_t>(id)].definition = Poly::axis(id);
      continue;
    }
    if (value->formula && !value->formula->axes().empty()) {  // its own symbol; compute_sizes sizes it
      p_.axes[static_cast<size_t>(id)].formula = value->formula;
      continue;
    }
    if (value->formula) {  // `7 // 2`: a number
      auto number = value->formula->evaluate([](int) { return std::nullopt; });
      value->poly = Poly::constant(number ? *number : 0);
    }
    const Poly *size = &value->poly;
    if (auto constant = size->constant_value()) {
      if (*constant != std::floor(*constant) || *constant < 1) {
        d_.error(item.size->location, "axis '" + item.name.text + "' must have a positive integer size");
        continue;
      }
      p_.axes[static_cast<size_t>(id)].default_size = static_cast<int64_t>(*constant);
    } else {
      p_.axes[static_cast<size_t>(id)].derived = true;
      p_.axes[static_cast<size_t>(id)].definition = *size;
      if (item.size->kind == ast::SizeExpr::Kind::Axis) p_.axes[static_cast<size_t>(id)].alias_of = lookup(item.size->axis);
    }
  }
}

std::optional<Sema::SizeValue> Sema::size_expr(const ast::SizeExpr &expr,
                                               const std::function<int(const ast::Name &)> &lookup,
                                               const std::map<std::string, int> &scope,
                                               const std::map<std::string, int> *outer, int declaring) {
  auto sub = [&](const ast::SizeExpr &e) { return size_expr(e, lookup, scope, outer, declaring); };
  auto formula = [](SizeFormula::Kind kind, const SizeValue &a, const SizeValue &b) {
    return SizeValue{Poly(), SizeFormula::node(kind, a.as_formula(), b.as_formula())};
  };
  switch (expr.kind) {
    case ast::SizeExpr::Kind::Integer: return SizeValue{Poly::constant(static_cast<double>(expr.value)), nullptr};
    case ast::SizeExpr::Kind::Paren: return sub(*expr.lhs);
    case ast::SizeExpr::Kind::Axis: {
      int id = lookup(expr.axis);
      if (id < 0) {
        if (expr.axis.text == p_.axis(declaring).name) {
          d_.error(expr.axis.location, "axis '" + expr.axis.text + "' is defined in terms of itself");
          return std::nullopt;
        }
        std::vector<std::string> names;
        for (auto &[name, axis] : scope) names.push_back(name);
        if (outer)
          for (auto &[name, axis] : *outer) names.push_back(name);
        d_.error(expr.axis.location, "unknown axis '" + expr.axis.text + "'" + did_you_mean(expr.axis.text, names));
        return std::nullopt;
      }
      used_axes_.insert(id);
      return SizeValue{p_.size_poly(id), nullptr};
    }
    case ast::SizeExpr::Kind::Call: {
      // ceil(a / b) and floor(a / b): the quotient rounded up or down.
      const std::string &fn = expr.axis.text;
      const ast::SizeExpr *inner = expr.lhs.get();
      while (inner && inner->kind == ast::SizeExpr::Kind::Paren) inner = inner->lhs.get();
      if ((fn != "ceil" && fn != "floor") || !inner || inner->kind != ast::SizeExpr::Kind::Binary || inner->op != "/")
        sub(*expr.lhs);  // its axes count as used; the error below is about the call
      if (fn != "ceil" && fn != "floor") {
        d_.error(expr.axis.location, "a size can call only ceil(a / b) and floor(a / b), not '" + fn + "'" +
                                         did_you_mean(fn, {"ceil", "floor"}));
        return std::nullopt;
      }
      if (!inner || inner->kind != ast::SizeExpr::Kind::Binary || inner->op != "/") {
        d_.error(expr.lhs->location, fn + "() of a size takes a quotient: " + fn + "(a / b)");
        return std::nullopt;
      }
      auto a = sub(*inner->lhs), b = sub(*inner->rhs);
      if (!a || !b) return std::nullopt;
      return formula(fn == "ceil" ? SizeFormula::Kind::CeilDiv : SizeFormula::Kind::FloorDiv, *a, *b);
    }
    case ast::SizeExpr::Kind::Binary: {
      auto lhs = sub(*expr.lhs);
      auto rhs = sub(*expr.rhs);
      if (!lhs || !rhs) return std::nullopt;
      if (expr.op == "//") return formula(SizeFormula::Kind::FloorDiv, *lhs, *rhs);
      if (lhs->formula || rhs->formula) {
        if (expr.op == "+") return formula(SizeFormula::Kind::Add, *lhs, *rhs);
        if (expr.op == "-") return formula(SizeFormula::Kind::Sub, *lhs, *rhs);
        if (expr.op == "*") return formula(SizeFormula::Kind::Mul, *lhs, *rhs);
        d_.error(expr.location, "a rounded size cannot be divided exactly: round the quotient with // or ceil(a / b)");
        return std::nullopt;
      }
      if (expr.op == "+") return SizeValue{lhs->poly + rhs->poly, nullptr};
      if (expr.op == "-") return SizeValue{lhs->poly - rhs->poly, nullptr};
      if (expr.op == "*") return SizeValue{lhs->poly * rhs->poly, nullptr};
      auto quotient = lhs->poly.divide(rhs->poly);
      if (!quotient) {
        d_.error(expr.location, "size division must be exact: divide by an integer or by a single product of axes, "
                                "or round the quotient with // or ceil(a / b)");
        return std::nullopt;
      }
      return SizeValue{*quotient, nullptr};
    }
  }
  return std::nullopt;
}

void Sema::declare_module_axes(int module) {
  if (!c_.modules[static_cast<size_t>(module)].ast) return;
  ModuleScope &scope = modules_[static_cast<size_t>(module)];
  bool dtype_seen = false;
  for (const ast::Item &item : file_of(module).items) {
    if (item.kind == ast::Item::Kind::Axis) {
      declare_axes(item.axes, module, scope.axes, nullptr);
    } else if (item.kind == ast::Item::Kind::DefaultDtype) {
      if (dtype_seen) d_.error(item.location, "the default dtype is already set in this file");
      dtype_seen = true;
      if (auto dtype = dtype_of(item.dtype)) scope.default_dtype = *dtype;
    } else if (item.kind == ast::Item::Kind::Diagram) {
      // Diagram-local axes are declared now so that -D reaches them too.
      DiagramScope &local = diagram_scopes_[item.diagram.get()];
      std::function<void(const std::vector<std::unique_ptr<ast::Stmt>> &)> walk =
          [&](const std::vector<std::unique_ptr<ast::Stmt>> &body) {
            for (const auto &stmt : body) {
              if (stmt->kind == ast::Stmt::Kind::Axis) {
                for (const auto &axis_item : stmt->axes.items)
                  if (scope.axes.count(axis_item.name.text)) {
                    auto &error = d_.error(axis_item.name.location, "axis '" + axis_item.name.text +
                                                                        "' is already declared in this file");
                    error.notes.push_back({p_.axis(scope.axes[axis_item.name.text]).location, "declared here"});
                  }
                declare_axes(stmt->axes, module, local.axes, &scope.axes);
              }
              if (stmt->kind == ast::Stmt::Kind::Repeat) walk(stmt->body);
            }
          };
      walk(item.diagram->body);
    }
  }
}

std::optional<DType> Sema::dtype_of(const ast::Name &name) {
  if (auto dtype = ir::parse_dtype(name.text)) return dtype;
  d_.error(name.location, "unknown dtype '" + name.text + "'" + did_you_mean(name.text, ir::dtype_names()));
  return std::nullopt;
}

void Sema::apply_defines(const std::vector<std::string> &defines) {
  std::map<std::string, std::pair<std::string, int64_t>> seen;  // name -> (first -D, its size)
  for (const std::string &define : defines) {
    size_t eq = define.find('=');
    std::string name = define.substr(0, eq);
    std::string value = eq == std::string::npos ? "" : define.substr(eq + 1);
    auto bad = [&](const std::string &why) { d_.error({}, "-D " + define + ": " + why); };
    if (eq == std::string::npos || name.empty()) {
      bad("expected NAME=SIZE");
      continue;
    }
    // `-D dtype=f32` replaces every file's default dtype (a library written for bf16 runs at f32).
    if (name == "dtype" && !value.empty() && !(value[0] >= '0' && value[0] <= '9')) {
      auto dtype = ir::parse_dtype(value);
      if (!dtype) {
        std::string names;
        for (const std::string &n : ir::dtype_names()) names += (names.empty() ? "" : ", ") + n;
        bad("unknown dtype '" + value + "'" + did_you_mean(value, ir::dtype_names()) + " (dtypes: " + names + ")");
        continue;
      }
      if (auto [it, fresh] = seen.insert({name, {define, 0}}); !fresh) {
        if (it->second.first != define) bad("the default dtype is already set by -D " + it->second.first);
        continue;
      }
      for (ModuleScope &scope : modules_) scope.default_dtype = *dtype;
      continue;
    }
    bool digits = !value.empty() && std::all_of(value.begin(), value.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
    if (!digits || value.size() > 15) {
      bad("the size must be a positive integer");
      continue;
    }
    int64_t size = std::stoll(value);
    if (size < 1) {
      bad("the size must be a positive integer");
      continue;
    }
    if (auto [it, fresh] = seen.insert({name, {define, size}}); !fresh) {
      if (it->second.second != size) bad("axis '" + name + "' is already set by -D " + it->second.first);
      continue;
    }
    // Every base axis of that name, in every loaded file, takes the size;
    // a derived axis of that name elsewhere keeps its relation.
    bool found = false;
    const ir::Axis *derived = nullptr;
    for (ir::Axis &axis : p_.axes) {
      if (axis.name != name) continue;
      if (axis.derived || axis.formula) {
        if (!derived) derived = &axis;
        continue;
      }
      found = true;
      axis.size = size;
      axis.overridden = true;
    }
    if (!found && derived) {
      bad("axis '" + name + "' is derived (" + name + " = " + p_.definition_text(derived->id) +
          "); set the axes it is derived from instead");
      continue;
    }
    if (!found) {
      std::vector<std::string> names;
      for (const auto &axis : p_.axes) names.push_back(axis.name);
      bad("no axis named '" + name + "'" + did_you_mean(name, names));
    }
  }
}

std::function<std::string(int)> Sema::axis_name_fn() const {
  return [this](int id) { return p_.axis(id).name; };
}

void Sema::compute_sizes() {
  for (ir::Axis &axis : p_.axes) {
    if (axis.derived || axis.overridden) continue;
    axis.size = axis.default_size;
  }
  // Computed axes read base axes and computed axes declared before them; derived axes may read them.
  for (ir::Axis &axis : p_.axes) {
    if (!axis.formula) continue;
    bool known = true;
    for (int id : axis.formula->axes()) known = known && p_.axis(id).size.has_value();
    if (!known) continue;  // symbolic until -D sizes what it reads
    auto value = axis.formula->evaluate([&](int id) { return std::optional<double>(static_cast<double>(*p_.axis(id).size)); });
    if (!value || *value < 1 || *value > 4.0e18) {
      std::string inputs;
      for (int id : axis.formula->axes())
        inputs += (inputs.empty() ? "" : ", ") + p_.axis(id).name + " = " + std::to_string(*p_.axis(id).size);
      d_.error(axis.location, "axis '" + axis.name + "' = " + p_.definition_text(axis.id) +
                                  (value ? " evaluates to " + format_size(*value) : std::string(" has a divisor below 1")) +
                                  " with " + inputs + "; sizes must be positive integers");
      continue;
    }
    axis.size = static_cast<int64_t>(*value);
  }
  for (ir::Axis &axis : p_.axes) {
    if (!axis.derived) continue;
    auto value = axis.definition.evaluate([&](int id) -> std::optional<double> {
      auto size = p_.axis(id).size;
      return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
    });
    if (!value) continue;
    if (*value > 4.0e18) {
      d_.error(axis.location, "axis '" + axis.name + "' = " + axis.definition.to_string(axis_name_fn()) +
                                  " is too large (" + format_size(*value) + ")");
      continue;
    }
    if (*value != std::floor(*value) || *value < 1) {
      std::string inputs;
      for (int id : axis.definition.axes())
        inputs += (inputs.empty() ? "" : ", ") + p_.axis(id).name + " = " + std::to_string(*p_.axis(id).size);
      d_.error(axis.location, "axis '" + axis.name + "' = " + axis.definition.to_string(axis_name_fn()) +
                                  " evaluates to " + format_size(*value) + " with " + inputs +
                                  "; sizes must be positive integers");
      continue;
    }
    axis.size = static_cast<int64_t>(*value);
  }
}

std::string Sema::format_size(double value) {
  if (value == std::floor(value) && std::fabs(value) < 9.0e18) return std::to_string(static_cast<long long>(value));
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

std::string Sema::size_text(int axis) const {
  const ir::Axis &a = p_.axis(axis);
  if (a.size) return std::to_string(*a.size);
  return p_.size_poly(axis).to_string(axis_name_fn());
}

void Sema::declare_diagrams(int module) {
  if (!c_.modules[static_cast<size_t>(module)].ast) return;
  ModuleScope &scope = modules_[static_cast<size_t>(module)];
  for (const ast::Item &item : file_of(module).items) {
    if (item.kind != ast::Item::Kind::Diagram) continue;
    const ast::Diagram &decl = *item.diagram;
    if (scope.diagrams.count(decl.name.text)) {
      auto &error = d_.error(decl.name.location, "diagram '" + decl.name.text + "' is already defined");
      error.notes.push_back({p_.diagrams[static_cast<size_t>(scope.diagrams[decl.name.text])]->location, "first defined here"});
      continue;
    }
    if (builtins().count(decl.name.text)) {
      d_.error(decl.name.location, "'" + decl.name.text + "' is a builtin function and cannot name a diagram");
      continue;
    }
    auto diagram = std::make_unique<ir::Diagram>();
    diagram->name = decl.name.text;
    diagram->module = c_.modules[static_cast<size_t>(module)].path;
    diagram->location = decl.name.location;
    int index = static_cast<int>(p_.diagrams.size());
    scope.diagrams[decl.name.text] = index;
    ast_of_[index] = {&decl, module};
    current_ = diagram.get();
    current_module_ = module;
    current_scope_ = &diagram_scopes_[&decl];
    std::set<std::string> names;
    auto declare = [&](const ast::TensorDecl &tensor, ir::Value::Role role) -> int {
      if (!names.insert(tensor.name.text).second) {
        d_.error(tensor.name.location, "'" + tensor.name.text + "' is already declared in this signature");
        return -1;
      }
      return declare_tensor(tensor, role);
    };
    for (const auto &input : decl.inputs) {
      int id = declare(input, ir::Value::Role::Input);
      if (id >= 0) diagram->inputs.push_back(id);
    }
    for (const auto &output : decl.outputs) {
      int id = declare(output, ir::Value::Role::Output);
      if (id >= 0) diagram->outputs.push_back(id);
    }
    p_.diagrams.push_back(std::move(diagram));
  }
}

// Adds a value for a declared tensor (input, output or param).
int Sema::declare_tensor(const ast::TensorDecl &tensor, ir::Value::Role role) {
  ir::Value value;
  value.id = static_cast<int>(current_->values.size());
  value.name = tensor.name.text;
  value.role = role;
  value.location = tensor.name.location;
  value.dtype = tensor.dtype ? dtype_of(*tensor.dtype).value_or(DType::F32)
                             : modules_[static_cast<size_t>(current_module_)].default_dtype;
  bool ok = true;
  for (const ast::Name &axis_name : tensor.axes) {
    int axis = lookup_axis(axis_name);
    if (axis < 0) {
      ok = false;
      continue;
    }
    if (contains(value.axes, axis)) {
      d_.error(axis_name.location, "axis '" + axis_name.text + "' appears twice in '" + tensor.name.text + "'");
      ok = false;
      continue;
    }
    value.axes.push_back(axis);
  }
  if (!ok) poisoned_values_.insert({current_, value.id});
  current_->values.push_back(value);
  return value.id;
}

std::vector<std::string> Sema::visible_axis_names() const {
  std::vector<std::string> names;
  if (current_scope_)
    for (auto &[name, id] : current_scope_->axes) names.push_back(name);
  for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].axes) names.push_back(name);
  return names;
}

int Sema::find_axis(const std::string &name) const {
  if (current_scope_) {
    auto it = current_scope_->axes.find(name);
    if (it != current_scope_->axes.end()) return it->second;
  }
  const auto &module_axes = modules_[static_cast<size_t>(current_module_)].axes;
  auto it = module_axes.find(name);
  return it == module_axes.end() ? -1 : it->second;
}

int Sema::lookup_axis(const ast::Name &name) {
  int id = find_axis(name.text);
  if (id >= 0) {
    used_axes_.insert(id);
    return id;
  }
  std::string hint = did_you_mean(name.text, visible_axis_names());
  if (hint.empty() && lookup_value_quiet(name.text) >= 0)
    hint = "; '" + name.text + "' is a tensor, not an axis";
  d_.error(name.location, "unknown axis '" + name.text + "'" + hint);
  return -1;
}

// Diagrams visible from the current module: its own, then its imports'.
int Sema::find_diagram(const std::string &name, SourceLocation location, bool report_ambiguity) {
  const ModuleScope &own = modules_[static_cast<size_t>(current_module_)];
  auto it = own.diagrams.find(name);
  if (it != own.diagrams.end()) return it->second;
  int found = -1;
  for (int import : c_.modules[static_cast<size_t>(current_module_)].imports) {
    const ModuleScope &scope = modules_[static_cast<size_t>(import)];
    auto hit = scope.diagrams.find(name);
    if (hit == scope.diagrams.end()) continue;
    if (found >= 0 && found != hit->second) {
      if (report_ambiguity) {
        auto &error = d_.error(location, "diagram '" + name + "' is ambiguous: it is defined in more than one import");
        error.notes.push_back({p_.diagrams[static_cast<size_t>(found)]->location, "one is here"});
        error.notes.push_back({p_.diagrams[static_cast<size_t>(hit->second)]->location, "another is here"});
      }
      return -2;
    }
    found = hit->second;
  }
  return found;
}

std::vector<std::string> Sema::visible_diagram_names() const {
  std::vector<std::string> names;
  for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].diagrams) names.push_back(name);
  for (int import : c_.modules[static_cast<size_t>(current_module_)].imports)
    for (auto &[name, id] : modules_[static_cast<size_t>(import)].diagrams) names.push_back(name);
  return names;
}

void Sema::lower_schedules(int module) {
  if (!c_.modules[static_cast<size_t>(module)].ast) return;
  current_module_ = module;
  for (const ast::Item &item : file_of(module).items) {
    if (item.kind != ast::Item::Kind::Schedule) continue;
    const ast::Schedule &schedule = *item.schedule;
    current_scope_ = nullptr;
    int index = find_diagram(schedule.diagram.text, schedule.diagram.location, true);
    if (index == -2) continue;
    if (index < 0) {
      d_.error(schedule.diagram.location, "schedule for unknown diagram '" + schedule.diagram.text + "'" +
                                              did_you_mean(schedule.diagram.text, visible_diagram_names()));
      continue;
    }
    ir::Diagram &diagram = *p_.diagrams[static_cast<size_t>(index)];
    current_ = &diagram;
    current_scope_ = &diagram_scopes_[ast_of_[index].first];
    // Axis names in the schedule are the diagram's, which may live in an imported file.
    current_module_ = ast_of_[index].second;
    ir::Schedule out;
    out.target = schedule.target.value_or("");
    out.location = schedule.location;
    std::set<int> diagram_axes;
    std::map<std::string, int> value_names;
    for (const ir::Value &value : diagram.values) {
      diagram_axes.insert(value.axes.begin(), value.axes.end());
      if (!value.name.empty() && value.name[0] != '%') value_names[value.name] = value.id;
    }
    std::map<int, SourceLocation> partitioned;
    bool only_shards = !schedule.items.empty();
    for (const ast::ScheduleItem &entry : schedule.items) {
      if (entry.kind == ast::ScheduleItem::Kind::Shard) {
        lower_shard(diagram, entry, out.target);
        continue;
      }
      only_shards = false;
      ir::ScheduleDirective directive;
      directive.location = entry.location;
      if (entry.kind == ast::ScheduleItem::Kind::Level) {
        directive.kind = ir::ScheduleDirective::Kind::Level;
        directive.level = entry.subject.text;
        for (const ast::Name &resident : entry.values) {
          auto it = value_names.find(resident.text);
          if (it == value_names.end()) {
            std::vector<std::string> names;
            for (auto &[name, id] : value_names) names.push_back(name);
            d_.error(resident.location, "diagram '" + diagram.name + "' has no tensor '" + resident.text + "'" +
                                            did_you_mean(resident.text, names));
            continue;
          }
          directive.values.push_back(it->second);
        }
      } else {
        directive.kind = entry.kind == ast::ScheduleItem::Kind::Group ? ir::ScheduleDirective::Kind::Group
                                                                      : ir::ScheduleDirective::Kind::Stream;
        int axis = find_axis(entry.subject.text);
        if (axis < 0 || !diagram_axes.count(axis)) {
          d_.error(entry.subject.location, "diagram '" + diagram.name + "' has no axis '" + entry.subject.text + "'" +
                                               did_you_mean_axis(entry.subject.text, {diagram_axes.begin(), diagram_axes.end()}));
          continue;
        }
        if (partitioned.count(axis)) {
          auto &error = d_.error(entry.subject.location, "axis '" + entry.subject.text + "' is already partitioned");
          error.notes.push_back({partitioned[axis], "first partitioned here"});
          continue;
        }
        partitioned[axis] = entry.subject.location;
        used_axes_.insert(axis);
        if (entry.amount < 1) {
          d_.error(entry.amount_location, "a tile size must be at least 1");
          continue;
        }
        directive.axis = axis;
        directive.amount = entry.amount;
      }
      out.directives.push_back(directive);
    }
    // A block of shards alone plans no kernel: it adds to the mesh only.
    if (!only_shards) diagram.schedules.push_back(std::move(out));
    current_module_ = module;
  }
}

// The axes a diagram or anything it calls uses: what a `shard` may split.
static void collect_reachable_axes(const ir::Program &program, const ir::Diagram &diagram, std::set<int> &axes,
                                   std::set<const ir::Diagram *> &seen) {
  if (!seen.insert(&diagram).second) return;
  for (const ir::Value &value : diagram.values) axes.insert(value.axes.begin(), value.axes.end());
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind != ir::OpKind::Call || op.callee < 0) return;
    for (auto [from, to] : op.bindings) axes.insert(to);
    collect_reachable_axes(program, *program.diagrams[static_cast<size_t>(op.callee)], axes, seen);
  });
}

// `shard AXES over N`: each axis is one the diagram or a diagram it calls
// uses, sharded once across all of the diagram's shard lines; N ≥ 1 divides
// every sharded axis's size where the size is known.
void Sema::lower_shard(ir::Diagram &diagram, const ast::ScheduleItem &entry, const std::string &target) {
  std::set<int> reachable;
  std::set<const ir::Diagram *> seen;
  collect_reachable_axes(p_, diagram, reachable, seen);
  ir::ShardDirective shard;
  shard.location = entry.location;
  shard.devices = entry.amount;
  shard.target = target;
  bool ok = true;
  if (entry.amount < 1) {
    d_.error(entry.amount_location, "a shard needs at least 1 device, not " + std::to_string(entry.amount));
    ok = false;
  }
  for (const ast::Name &name : entry.values) {
    // Axes are never imported, so a shard names an axis by its name: the
    // axis of that name in scope, and those of the diagrams called (each
    // file's own `heads`), all split alike.
    std::vector<int> named;
    int own = find_axis(name.text);
    if (own >= 0 && reachable.count(own)) named.push_back(own);
    for (int axis : reachable)
      if (axis != own && p_.axis(axis).name == name.text) named.push_back(axis);
    if (named.empty()) {
      // A body that failed may lack the calls that reach the axis: its errors say what is wrong.
      bool failed =
          std::any_of(seen.begin(), seen.end(), [&](const ir::Diagram *d) { return failed_bodies_.count(d); });
      if (!failed)
        d_.error(name.location, "diagram '" + diagram.name + "' (and the diagrams it calls) has no axis '" + name.text +
                                    "'" + did_you_mean_axis(name.text, {reachable.begin(), reachable.end()}));
      ok = false;
      continue;
    }
    if (own >= 0) used_axes_.insert(own);
    bool named_ok = true;
    for (int axis : named)
      if (!shard_axis(diagram, shard, axis, name, entry)) {
        named_ok = false;  // one message per name written
        break;
      }
    ok = ok && named_ok;
  }
  if (ok) diagram.shards.push_back(std::move(shard));
}

bool Sema::shard_axis(ir::Diagram &diagram, ir::ShardDirective &shard, int axis, const ast::Name &name,
                      const ast::ScheduleItem &entry) {
  for (const ir::ShardDirective &earlier : diagram.shards)
    if (std::find(earlier.axes.begin(), earlier.axes.end(), axis) != earlier.axes.end()) {
      auto &error = d_.error(name.location, "axis '" + name.text + "' is already sharded");
      error.notes.push_back({earlier.location, "first sharded here"});
      return false;
    }
  if (std::find(shard.axes.begin(), shard.axes.end(), axis) != shard.axes.end()) {
    d_.error(name.location, "axis '" + name.text + "' is named twice in this shard");
    return false;
  }
  if (auto size = p_.axis(axis).size; size && entry.amount >= 1 && *size % entry.amount != 0) {
    d_.error(entry.amount_location, "shard " + name.text + " over " + std::to_string(entry.amount) + ": " +
                                        std::to_string(entry.amount) + " does not divide the size of '" + name.text +
                                        "' (" + std::to_string(*size) + "); each device needs an equal slice");
    return false;
  }
  shard.axes.push_back(axis);
  return true;
}

// Diagrams that call themselves through others (direct self-calls are refused earlier).
void Sema::report_call_cycles() {
  const size_t n = p_.diagrams.size();
  std::vector<std::vector<std::pair<int, SourceLocation>>> calls(n);
  for (size_t i = 0; i < n; ++i)
    ir::for_each_op(p_.diagrams[i]->body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Call) calls[i].push_back({op.callee, op.location});
    });
  std::vector<int> state(n, 0);  // 0 unvisited, 1 on the stack, 2 done
  std::vector<int> stack;
  std::function<void(int)> visit = [&](int diagram) {
    state[static_cast<size_t>(diagram)] = 1;
    stack.push_back(diagram);
    for (auto &[callee, location] : calls[static_cast<size_t>(diagram)]) {
      if (state[static_cast<size_t>(callee)] == 1) {
        std::string path;
        auto start = std::find(stack.begin(), stack.end(), callee);
        for (auto it = start; it != stack.end(); ++it) path += "'" + p_.diagrams[static_cast<size_t>(*it)]->name + "' -> ";
        path += "'" + p_.diagrams[static_cast<size_t>(callee)]->name + "'";
        d_.error(location, "recursive calls are not allowed: " + path);
      } else if (state[static_cast<size_t>(callee)] == 0) {
        visit(callee);
      }
    }
    stack.pop_back();
    state[static_cast<size_t>(diagram)] = 2;
  };
  for (size_t i = 0; i < n; ++i)
    if (state[i] == 0) visit(static_cast<int>(i));
}

void Sema::warn_unused_axes() {
  for (const ir::Axis &axis : p_.axes) {
    if (used_axes_.count(axis.id)) continue;
    if (axis.module != c_.modules[0].path) continue;
    d_.warning(axis.location, "axis '" + axis.name + "' is declared but never used");
  }
}

}  // namespace ncd::sema_detail

namespace ncd {

void lower_to_ir(Compilation &compilation, const std::vector<std::string> &defines) {
  sema_detail::Sema sema(compilation);
  sema.run(defines);
}

}  // namespace ncd
