// Sema: name resolution, axis sizes, shape inference and lowering to the core IR.
//
// Each statement is lowered in three steps: the right-hand side is typed into
// a small tree (TypedExpr) whose nodes know their free axes; the axes that are
// absent from the left-hand side are placed as sums at the lowest subexpression
// holding all their occurrences (widened to the enclosing product, which then
// becomes a contraction); finally the tree is emitted as IR operations.
#include "ncd/sema.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

namespace ncd {
namespace {

using ir::DType;

// Builtin functions by how they are called.
struct Builtin {
  enum class Kind { Elementwise, Reduce, Normalize, Cast };
  Kind kind;
  int arity;  // Elementwise: number of arguments
};

const std::map<std::string, Builtin> &builtins() {
  static const std::map<std::string, Builtin> table = [] {
    std::map<std::string, Builtin> t;
    for (const char *name : {"exp", "log", "sqrt", "rsqrt", "tanh", "sigmoid", "relu", "gelu",
                             "silu", "abs", "sin", "cos", "erf", "recip", "square", "floor",
                             "ceil", "log1p", "expm1", "softplus"})
      t[name] = {Builtin::Kind::Elementwise, 1};
    for (const char *name : {"pow", "minimum", "maximum"}) t[name] = {Builtin::Kind::Elementwise, 2};
    t["where"] = {Builtin::Kind::Elementwise, 3};
    // `max`/`min` are reductions with brackets and elementwise with two arguments.
    for (const char *name : {"sum", "max", "min", "mean", "logsumexp", "prod"})
      t[name] = {Builtin::Kind::Reduce, 1};
    for (const char *name : {"softmax", "logsoftmax", "layernorm", "rmsnorm"})
      t[name] = {Builtin::Kind::Normalize, 1};
    for (const std::string &name : ir::dtype_names()) t[name] = {Builtin::Kind::Cast, 1};
    return t;
  }();
  return table;
}

const std::map<std::string, double> &default_eps() {
  static const std::map<std::string, double> table{{"layernorm", 1e-5}, {"rmsnorm", 1e-6}};
  return table;
}

struct TypedExpr {
  enum class Kind {
    Value, Access, Constant, SizeOf, AxisIndex, Elementwise, Reduce, Normalize, Call, Product
  };
  Kind kind = Kind::Constant;
  SourceLocation location;
  std::vector<int> axes;  // free axes, in order of first appearance
  DType dtype = DType::F32;
  bool dtype_fixed = false;  // Value/Access/Call/Bool results keep their dtype
  int value = -1;            // Value; Access: the source value
  std::string function;
  double constant = 0;
  int axis = -1;                       // SizeOf, AxisIndex
  std::vector<int> op_axes;            // Reduce/Normalize axes
  std::map<std::string, double> options;
  std::vector<ir::AccessIndex> access;  // Access (gather operands are children)
  std::vector<std::unique_ptr<TypedExpr>> children;
  std::vector<bool> inverse;  // Product: factor is a divisor
  // Call
  int callee = -1;
  std::vector<std::pair<int, int>> bindings;
  std::vector<int> lifted;
  std::vector<std::vector<int>> output_axes;
  std::vector<DType> output_dtypes;
  int output_index = 0;
  // Sums placed at this node by the contraction rule, and the node's own axes
  // before they were removed from `axes` (what the node itself produces).
  std::vector<int> sum_axes;
  std::vector<int> produced_axes;
};

bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

void append_unique(std::vector<int> &list, const std::vector<int> &items) {
  for (int item : items)
    if (!contains(list, item)) list.push_back(item);
}

struct DiagramScope {
  std::map<std::string, int> axes;  // diagram-local axes
};

struct ModuleScope {
  std::map<std::string, int> axes;
  std::map<std::string, int> diagrams;  // defined here: name -> Program::diagrams index
  std::vector<std::pair<int, SourceLocation>> axis_order;
  DType default_dtype = DType::F32;
};

class Sema {
 public:
  Sema(Compilation &compilation) : c_(compilation), p_(compilation.program), d_(compilation.diagnostics) {}

  void run(const std::vector<std::string> &defines) {
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

 private:
  // ---------------------------------------------------------------- axes

  const ast::File &file_of(int module) { return *c_.modules[static_cast<size_t>(module)].ast; }

  int new_axis(const ast::Name &name, int module) {
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
  void declare_axes(const ast::AxisDecl &decl, int module, std::map<std::string, int> &scope,
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
      auto size = size_expr(*item.size, lookup, scope, outer, id);
      if (!size) {
        p_.axes[static_cast<size_t>(id)].definition = Poly::axis(id);
        continue;
      }
      if (auto constant = size->constant_value()) {
        if (*constant != std::floor(*constant) || *constant < 1) {
          d_.error(item.size->location, "axis '" + item.name.text + "' must have a positive integer size");
          continue;
        }
        p_.axes[static_cast<size_t>(id)].default_size = static_cast<int64_t>(*constant);
      } else {
        p_.axes[static_cast<size_t>(id)].derived = true;
        p_.axes[static_cast<size_t>(id)].definition = *size;
      }
    }
  }

  std::optional<Poly> size_expr(const ast::SizeExpr &expr, const std::function<int(const ast::Name &)> &lookup,
                                const std::map<std::string, int> &scope, const std::map<std::string, int> *outer,
                                int declaring) {
    switch (expr.kind) {
      case ast::SizeExpr::Kind::Integer: return Poly::constant(static_cast<double>(expr.value));
      case ast::SizeExpr::Kind::Paren: return size_expr(*expr.lhs, lookup, scope, outer, declaring);
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
        return p_.size_poly(id);
      }
      case ast::SizeExpr::Kind::Binary: {
        auto lhs = size_expr(*expr.lhs, lookup, scope, outer, declaring);
        auto rhs = size_expr(*expr.rhs, lookup, scope, outer, declaring);
        if (!lhs || !rhs) return std::nullopt;
        switch (expr.op) {
          case '+': return *lhs + *rhs;
          case '-': return *lhs - *rhs;
          case '*': return *lhs * *rhs;
          default: {
            auto quotient = lhs->divide(*rhs);
            if (!quotient) {
              d_.error(expr.location, "size division must be exact: divide by an integer or by a single product of axes");
              return std::nullopt;
            }
            return quotient;
          }
        }
      }
    }
    return std::nullopt;
  }

  void declare_module_axes(int module) {
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

  std::optional<DType> dtype_of(const ast::Name &name) {
    if (auto dtype = ir::parse_dtype(name.text)) return dtype;
    d_.error(name.location, "unknown dtype '" + name.text + "'" + did_you_mean(name.text, ir::dtype_names()));
    return std::nullopt;
  }

  void apply_defines(const std::vector<std::string> &defines) {
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
        if (axis.derived) {
          if (!derived) derived = &axis;
          continue;
        }
        found = true;
        axis.size = size;
        axis.overridden = true;
      }
      if (!found && derived) {
        bad("axis '" + name + "' is derived (" + name + " = " + derived->definition.to_string(axis_name_fn()) +
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

  std::function<std::string(int)> axis_name_fn() const {
    return [this](int id) { return p_.axis(id).name; };
  }

  void compute_sizes() {
    for (ir::Axis &axis : p_.axes) {
      if (axis.derived || axis.overridden) continue;
      axis.size = axis.default_size;
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

  static std::string format_size(double value) {
    if (value == std::floor(value) && std::fabs(value) < 9.0e18) return std::to_string(static_cast<long long>(value));
    std::ostringstream out;
    out.precision(6);
    out << value;
    return out.str();
  }

  std::string size_text(int axis) const {
    const ir::Axis &a = p_.axis(axis);
    if (a.size) return std::to_string(*a.size);
    return p_.size_poly(axis).to_string(axis_name_fn());
  }

  // Whether two axes are known to have the same size (same axis, same
  // polynomial, or equal concrete sizes). Unknown counts as unequal.
  bool same_size(int a, int b) const {
    if (a == b) return true;
    if (p_.size_poly(a) == p_.size_poly(b)) return true;
    auto sa = p_.axis(a).size, sb = p_.axis(b).size;
    return sa && sb && *sa == *sb;
  }

  // ---------------------------------------------------------------- diagrams

  void declare_diagrams(int module) {
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
  int declare_tensor(const ast::TensorDecl &tensor, ir::Value::Role role) {
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

  std::vector<std::string> visible_axis_names() const {
    std::vector<std::string> names;
    if (current_scope_)
      for (auto &[name, id] : current_scope_->axes) names.push_back(name);
    for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].axes) names.push_back(name);
    return names;
  }

  int find_axis(const std::string &name) const {
    if (current_scope_) {
      auto it = current_scope_->axes.find(name);
      if (it != current_scope_->axes.end()) return it->second;
    }
    const auto &module_axes = modules_[static_cast<size_t>(current_module_)].axes;
    auto it = module_axes.find(name);
    return it == module_axes.end() ? -1 : it->second;
  }

  int lookup_axis(const ast::Name &name) {
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
  int find_diagram(const std::string &name, SourceLocation location, bool report_ambiguity) {
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

  std::vector<std::string> visible_diagram_names() const {
    std::vector<std::string> names;
    for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].diagrams) names.push_back(name);
    for (int import : c_.modules[static_cast<size_t>(current_module_)].imports)
      for (auto &[name, id] : modules_[static_cast<size_t>(import)].diagrams) names.push_back(name);
    return names;
  }

  // ---------------------------------------------------------------- bodies

  struct Frame {
    std::map<std::string, int> names;  // tensor name -> value id
    bool repeat = false;
    std::map<std::string, int> carried;   // name -> block argument (repeat frames)
    std::map<std::string, int> yields;    // name -> latest value (repeat frames)
    ir::Region *region = nullptr;
    int64_t instances = 1;
  };

  void lower_bodies(int module) {
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

  void lower_body(const ast::Diagram &decl) {
    const int errors_before = d_.error_count();
    frames_.clear();
    frames_.push_back({});
    frames_.back().region = &current_->body;
    reads_.clear();
    for (int id : current_->inputs) frames_.back().names[current_->value(id).name] = id;
    assigned_outputs_.clear();
    lower_block(decl.body);
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
  }

  void lower_block(const std::vector<std::unique_ptr<ast::Stmt>> &body) {
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

  int lookup_value_quiet(const std::string &name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame) {
      auto it = frame->names.find(name);
      if (it != frame->names.end()) return it->second;
    }
    return -1;
  }

  std::vector<std::string> visible_value_names() const {
    std::vector<std::string> names;
    for (const auto &frame : frames_)
      for (auto &[name, id] : frame.names) names.push_back(name);
    return names;
  }

  void lower_params(const ast::Stmt &stmt) {
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

  int output_named(const std::string &name) const {
    for (int id : current_->outputs)
      if (current_->value(id).name == name) return id;
    return -1;
  }
  bool is_output_name(const std::string &name) const { return output_named(name) >= 0; }

  void report_duplicate(const ast::Name &name) {
    int existing = lookup_value_quiet(name.text);
    if (existing < 0) existing = output_named(name.text);
    auto &error = d_.error(name.location, "'" + name.text + "' is already defined");
    if (existing >= 0) error.notes.push_back({current_->value(existing).location, "previous definition is here"});
  }

  void lower_repeat(const ast::Stmt &stmt) {
    if (stmt.count < 1) {
      d_.error(stmt.count_location, "repeat count must be at least 1");
      return;
    }
    auto op = new_op(ir::OpKind::Repeat, stmt.location);
    op->count = stmt.count;
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
    frame.instances = frames_.back().instances * stmt.count;
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
    frames_.push_back(std::move(frame));
    lower_block(stmt.body);
    Frame done = std::move(frames_.back());
    frames_.pop_back();
    // Results, in the order of the operands.
    for (size_t i = 0; i < op->body_arguments.size(); ++i) {
      const std::string name = current_->value(op->body_arguments[i]).name;
      int yield = done.yields.count(name) ? done.yields[name] : op->body_arguments[i];
      op->body_yields.push_back(yield);
      reads_.insert(yield);
      const ir::Value &outer_value = current_->value(op->operands[i]);
      int result = new_value(outer_value.axes, outer_value.dtype, stmt.location, name);
      current_->value(result).producer = op->id;
      op->results.push_back(result);
    }
    std::vector<int> results = op->results;
    frames_.back().region->ops.push_back(std::move(op));
    // The repeat's results update their names, which an enclosing repeat may carry in turn.
    for (int result : results) record_update(current_->value(result).name, result);
  }

  // A new value for a name in the innermost frame; a repeat frame that carries
  // the name hands it to the next iteration.
  void record_update(const std::string &name, int value) {
    Frame &frame = frames_.back();
    frame.names[name] = value;
    if (frame.carried.count(name)) {
      frame.yields[name] = value;
      reads_.insert(value);
    }
  }

  std::unique_ptr<ir::Op> new_op(ir::OpKind kind, SourceLocation location) {
    auto op = std::make_unique<ir::Op>();
    op->id = next_op_id_++;
    op->kind = kind;
    op->location = location;
    return op;
  }

  int new_value(const std::vector<int> &axes, DType dtype, SourceLocation location, const std::string &name,
                ir::Value::Role role = ir::Value::Role::Intermediate) {
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

  // --------------------------------------------------- statement targets

  struct Target {
    const ast::Lhs *lhs = nullptr;
    std::vector<int> axes;                // storage axes (merged axes included)
    std::vector<int> expanded;            // axes the right-hand side must produce
    std::vector<std::vector<int>> merges; // per storage axis, the axes merged into it
    bool has_merge = false;
    DType dtype = DType::F32;
    int output = -1;                      // the declared output this target defines
    int carried = -1;                     // the block argument this target updates
  };

  std::optional<Target> resolve_target(const ast::Lhs &lhs) {
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
        if (merged < 0 && candidates.size() > 1) {
          std::string names;
          for (int candidate : candidates) names += (names.empty() ? "'" : ", '") + p_.axis(candidate).name + "'";
          d_.error(index.location, "the merged axis is ambiguous: " + names + " are all declared as this product");
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

  // The axes declared as the product of `group` (e.g. model = heads * d).
  std::vector<int> merged_axis_candidates(const std::vector<int> &group) {
    Poly product = Poly::constant(1);
    for (int axis : group) product = product * p_.size_poly(axis);
    std::vector<int> scope_axes;
    if (current_scope_)
      for (auto &[name, id] : current_scope_->axes) scope_axes.push_back(id);
    for (auto &[name, id] : modules_[static_cast<size_t>(current_module_)].axes) scope_axes.push_back(id);
    std::vector<int> out;
    for (int id : scope_axes)
      if (p_.axis(id).derived && p_.size_poly(id) == product) out.push_back(id);
    return out;
  }

  std::string axes_text(const std::vector<int> &axes) const {
    std::string out = "[";
    for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + p_.axis(axes[i]).name;
    return out + "]";
  }

  // ---------------------------------------------------------- assignment

  void lower_assign(const ast::Stmt &stmt) {
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
    std::unique_ptr<TypedExpr> value = ok ? typed(*stmt.value) : nullptr;
    if (!value) {
      // Declare the names anyway so that later statements do not cascade errors.
      for (const auto &lhs : stmt.targets) poison(lhs);
      return;
    }
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
      if (producer && (producer->kind == ir::OpKind::Contract ||
                       (producer->kind == ir::OpKind::Reduce && producer->function == "sum")))
        computed.dtype = statement_dtype_;
    }
    bind_target(target, result, stmt.location, /*fresh=*/value->kind != TypedExpr::Kind::Value);
  }

  void poison(const ast::Lhs &lhs) {
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
  void bind_target(const Target &target, int result, SourceLocation location, bool fresh) {
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

  int emit_copy(int source, const std::vector<int> &axes, DType dtype, SourceLocation location) {
    auto op = new_op(ir::OpKind::Elementwise, location);
    op->function = "copy";
    op->operands = {source};
    reads_.insert(source);
    int result = new_value(axes, dtype, location, "");
    current_->value(result).producer = op->id;
    op->results = {result};
    frames_.back().region->ops.push_back(std::move(op));
    return result;
  }

  void lower_multi_assign(const ast::Stmt &stmt, std::vector<Target> &targets, std::unique_ptr<TypedExpr> value) {
    TypedExpr *call = value.get();
    if (call->kind != TypedExpr::Kind::Call) {
      d_.error(stmt.value->location, "only a diagram call can assign several tensors at once");
      for (const auto &lhs : stmt.targets) poison(lhs);
      return;
    }
    if (call->output_axes.size() != targets.size()) {
      d_.error(stmt.value->location, "'" + call->function + "' has " + std::to_string(call->output_axes.size()) +
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
        d_.error(targets[i].lhs->location, "output " + std::to_string(i + 1) + " of '" + call->function + "' has axes " +
                                               axes_text(current_->value(results[i]).axes) + ", but the left side names " +
                                               axes_text(targets[i].expanded));
        poison(*targets[i].lhs);
        continue;
      }
      bind_target(targets[i], results[i], stmt.location, true);
    }
  }

  // A diagram with several outputs can only be called where each output gets a name.
  bool check_single_outputs(const TypedExpr &node) {
    bool ok = true;
    if (node.kind == TypedExpr::Kind::Call && node.output_axes.size() > 1) {
      d_.error(node.location, "'" + node.function + "' has " + std::to_string(node.output_axes.size()) +
                                  " outputs; assign each of them: A[...], B[...] = " + node.function + "(...)");
      ok = false;
    }
    for (const auto &child : node.children) ok = check_single_outputs(*child) && ok;
    return ok;
  }

  // ------------------------------------------------- contraction placement

  static bool has_axis(const TypedExpr &node, int axis) { return contains(node.axes, axis); }

  // Sums `axis` at the lowest node holding all its free occurrences; when that
  // node is a factor of a product, the product is summed (a contraction).
  void place_sum(TypedExpr &root, int axis) {
    TypedExpr *node = &root;
    TypedExpr *parent = nullptr;
    while (true) {
      bool barrier = node->kind == TypedExpr::Kind::Call ||
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

  static bool remove_free_axis(TypedExpr &node, TypedExpr *place, int axis) {
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

  // ------------------------------------------------------------- typing

  std::unique_ptr<TypedExpr> make(TypedExpr::Kind kind, SourceLocation location) {
    auto node = std::make_unique<TypedExpr>();
    node->kind = kind;
    node->location = location;
    node->dtype = statement_dtype_;
    return node;
  }

  std::unique_ptr<TypedExpr> typed(const ast::Expr &expr) {
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
        node->function = expr.op == "-" ? "neg" : "not";
        if (expr.op == "!") {
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
        static const std::map<std::string, std::string> names{
            {"+", "add"}, {"-", "sub"}, {"<", "lt"}, {"<=", "le"}, {">", "gt"}, {">=", "ge"},
            {"==", "eq"}, {"!=", "ne"}, {"&&", "and"}, {"||", "or"}};
        auto node = make(TypedExpr::Kind::Elementwise, expr.location);
        node->function = names.at(expr.op);
        if (expr.op != "+" && expr.op != "-") {
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

  std::unique_ptr<TypedExpr> typed_product(const ast::Expr &expr) {
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
  std::unique_ptr<TypedExpr> typed_ref(const ast::TensorRef &ref, SourceLocation location) {
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
    if (!ref.has_brackets) {
      auto node = make(TypedExpr::Kind::Value, location);
      node->value = value_id;
      node->axes = value.axes;
      node->dtype = value.dtype;
      node->dtype_fixed = true;
      return node;
    }
    if (ref.indices.size() != value.axes.size()) {
      d_.error(ref.location, "'" + name + "' has " + std::to_string(value.axes.size()) +
                                 (value.axes.size() == 1 ? " axis " : " axes ") +
                                 axes_text(value.axes) + " but is indexed with " + std::to_string(ref.indices.size()));
      return nullptr;
    }
    auto node = make(TypedExpr::Kind::Access, location);
    node->value = value_id;
    node->dtype = value.dtype;
    node->dtype_fixed = true;
    bool identity = true;
    bool ok = true;
    for (size_t position = 0; position < ref.indices.size(); ++position) {
      const ast::Index &index = *ref.indices[position];
      int stored = value.axes[position];
      ir::AccessIndex access;
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
  bool typed_index(const ast::Index &index, int stored, const std::string &tensor, ir::AccessIndex &out,
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
    // A plain rename (`X[q, d]` of X[s, d]) requires equal sizes.
    if (out.terms.size() == 1 && out.terms[0].second == 1 && out.offset == 0) {
      int axis = out.terms[0].first;
      if (!same_size(axis, stored)) {
        d_.error(index.location, "axis '" + p_.axis(axis).name + "' (size " + size_text(axis) +
                                     ") indexes axis '" + p_.axis(stored).name + "' of '" + tensor + "' (size " +
                                     size_text(stored) + "); the sizes differ");
        return false;
      }
    }
    return true;
  }

  bool affine(const ast::Index &index, int64_t scale, std::map<int, int64_t> &terms, int64_t &offset) {
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

  std::unique_ptr<TypedExpr> typed_call(const ast::Expr &expr) {
    const std::string &name = expr.name.text;
    auto builtin = builtins().find(name);
    bool elementwise_minmax = (name == "max" || name == "min") && !expr.has_brackets;
    if (builtin != builtins().end() || elementwise_minmax) {
      if (find_diagram(name, expr.name.location, false) >= 0) {
        // A user diagram may shadow nothing: builtin names are reserved at declaration.
      }
      return typed_builtin(expr, elementwise_minmax ? Builtin{Builtin::Kind::Elementwise, 2} : builtin->second);
    }
    int callee = find_diagram(name, expr.name.location, true);
    if (callee == -2) return nullptr;
    if (callee < 0) {
      std::vector<std::string> names = visible_diagram_names();
      for (auto &[builtin_name, info] : builtins()) names.push_back(builtin_name);
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
    return typed_diagram_call(expr, callee);
  }

  std::unique_ptr<TypedExpr> typed_builtin(const ast::Expr &expr, Builtin builtin) {
    const std::string &name = expr.name.text;
    std::vector<std::unique_ptr<TypedExpr>> arguments;
    std::map<std::string, double> options;
    bool ok = true;
    for (const ast::Argument &argument : expr.arguments) {
      if (argument.keyword) {
        bool norm = builtin.kind == Builtin::Kind::Normalize && default_eps().count(name);
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
    bool wants_axes = builtin.kind == Builtin::Kind::Reduce || builtin.kind == Builtin::Kind::Normalize;
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
      if (!contains(arguments[0]->axes, axis)) {
        d_.error(item.name.location, "'" + name + "' over axis '" + item.name.text + "', but its argument has axes " +
                                         axes_text(arguments[0]->axes));
        return nullptr;
      }
      axes.push_back(axis);
    }
    if (wants_axes && axes.empty()) {
      d_.error(expr.location, "'" + name + "' needs at least one axis in its brackets");
      return nullptr;
    }
    std::unique_ptr<TypedExpr> node;
    switch (builtin.kind) {
      case Builtin::Kind::Elementwise:
      case Builtin::Kind::Cast: {
        node = make(TypedExpr::Kind::Elementwise, expr.location);
        node->function = name == "max" ? "maximum" : name == "min" ? "minimum" : name;
        if (builtin.kind == Builtin::Kind::Cast) {
          node->function = "cast";
          node->dtype = *ir::parse_dtype(name);
          node->dtype_fixed = true;
        }
        for (auto &argument : arguments) append_unique(node->axes, argument->axes);
        if (name == "where" && node->children.empty() && arguments[0]->dtype != DType::Bool) {
          d_.error(expr.arguments[0].value->location,
                   "the condition of 'where' must be a comparison or a bool tensor, not " +
                       std::string(ir::dtype_name(arguments[0]->dtype)));
          return nullptr;
        }
        break;
      }
      case Builtin::Kind::Reduce: {
        node = make(TypedExpr::Kind::Reduce, expr.location);
        node->function = name;
        for (int axis : arguments[0]->axes)
          if (!contains(axes, axis)) node->axes.push_back(axis);
        break;
      }
      case Builtin::Kind::Normalize: {
        node = make(TypedExpr::Kind::Normalize, expr.location);
        node->function = name;
        node->axes = arguments[0]->axes;
        if (default_eps().count(name)) node->options["eps"] = options.count("eps") ? options["eps"] : default_eps().at(name);
        break;
      }
    }
    node->op_axes = axes;
    node->children = std::move(arguments);
    return node;
  }

  std::unique_ptr<TypedExpr> typed_diagram_call(const ast::Expr &expr, int callee_index) {
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
    if (!expr.arguments.empty())
      for (const ast::Argument &argument : expr.arguments)
        if (argument.keyword) {
          d_.error(argument.keyword->location, "diagram arguments are positional; bind axes in brackets instead: " +
                                                   name + "[" + argument.keyword->text + " = ...]");
          return nullptr;
        }
    if (expr.arguments.size() != callee.inputs.size()) {
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
    node->function = name;
    node->callee = callee_index;
    for (auto [from, to] : binding) node->bindings.push_back({from, to});
    // Arguments: each must carry the mapped axes of its input; the rest are lifted.
    std::vector<int> mapped_all;
    for (int axis : interface_axes) mapped_all.push_back(binding[axis]);
    std::vector<std::pair<int, std::string>> lifted_from;  // axis, argument name
    for (size_t i = 0; i < expr.arguments.size(); ++i) {
      auto argument = typed(*expr.arguments[i].value);
      if (!argument) return nullptr;
      const ir::Value &input = callee.value(callee.inputs[i]);
      std::vector<int> wanted;
      for (int axis : input.axes) {
        int to = binding[axis];
        if (contains(wanted, to)) {
          d_.error(expr.arguments[i].value->location, "two axes of input '" + input.name + "' of '" + name +
                                                          "' are bound to the same axis '" + p_.axis(to).name + "'");
          return nullptr;
        }
        wanted.push_back(to);
      }
      for (size_t k = 0; k < wanted.size(); ++k)
        if (!contains(argument->axes, wanted[k])) {
          int from = input.axes[k];
          std::string via = from == wanted[k] ? "" : " (its axis '" + p_.axis(from).name + "' is bound to '" + p_.axis(wanted[k]).name + "')";
          auto &error = d_.error(expr.arguments[i].value->location,
                                 "argument " + std::to_string(i + 1) + " of '" + name + "' has axes " + axes_text(argument->axes) +
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
          d_.error(expr.arguments[i].value->location,
                   "lifting conflict: axis '" + p_.axis(axis).name + "' of argument " + std::to_string(i + 1) +
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

  // ------------------------------------------------------------ emission

  int emit(TypedExpr &node) {
    int result = emit_node(node);
    if (result < 0 || node.sum_axes.empty() || node.kind == TypedExpr::Kind::Product) return result;
    // A sum placed at a non-product node: reduce the node's value.
    auto op = new_op(ir::OpKind::Reduce, node.location);
    op->function = "sum";
    op->axes = node.sum_axes;
    op->operands = {result};
    std::vector<int> axes;
    for (int axis : current_->value(result).axes)
      if (!contains(node.sum_axes, axis)) axes.push_back(axis);
    return finish(std::move(op), axes, statement_float_dtype(), node.location);
  }

  DType statement_float_dtype() const {
    return ir::is_integer(statement_dtype_) || statement_dtype_ == DType::Bool ? DType::F32 : statement_dtype_;
  }

  int finish(std::unique_ptr<ir::Op> op, const std::vector<int> &axes, DType dtype, SourceLocation location) {
    int result = new_value(axes, dtype, location, "");
    current_->value(result).producer = op->id;
    op->results = {result};
    for (int operand : op->operands) reads_.insert(operand);
    frames_.back().region->ops.push_back(std::move(op));
    return result;
  }

  // The axes a node's own op produces (a sum placed at it comes after).
  static const std::vector<int> &produced(const TypedExpr &node) {
    return node.sum_axes.empty() ? node.axes : node.produced_axes;
  }

  DType node_dtype(const TypedExpr &node) const { return node.dtype_fixed ? node.dtype : statement_float_dtype(); }

  int emit_node(TypedExpr &node) {
    switch (node.kind) {
      case TypedExpr::Kind::Value: return node.value;
      case TypedExpr::Kind::Constant: {
        auto op = new_op(ir::OpKind::Constant, node.location);
        op->constant = node.constant;
        return finish(std::move(op), {}, DType::F32, node.location);
      }
      case TypedExpr::Kind::SizeOf: {
        auto op = new_op(ir::OpKind::SizeOf, node.location);
        op->axes = {node.axis};
        return finish(std::move(op), {}, DType::F32, node.location);
      }
      case TypedExpr::Kind::AxisIndex: {
        auto op = new_op(ir::OpKind::AxisIndex, node.location);
        op->axes = {node.axis};
        return finish(std::move(op), {node.axis}, DType::I32, node.location);
      }
      case TypedExpr::Kind::Access: {
        auto op = new_op(ir::OpKind::Access, node.location);
        op->operands = {node.value};
        for (auto &child : node.children) {
          int index = emit(*child);
          if (index < 0) return -1;
          op->operands.push_back(index);
        }
        op->access = node.access;
        return finish(std::move(op), produced(node), node.dtype, node.location);
      }
      case TypedExpr::Kind::Elementwise:
      case TypedExpr::Kind::Reduce:
      case TypedExpr::Kind::Normalize: {
        auto kind = node.kind == TypedExpr::Kind::Elementwise ? ir::OpKind::Elementwise
                    : node.kind == TypedExpr::Kind::Reduce    ? ir::OpKind::Reduce
                                                              : ir::OpKind::Normalize;
        auto op = new_op(kind, node.location);
        op->function = node.function;
        op->axes = node.op_axes;
        op->options = node.options;
        std::vector<int> axes;
        for (auto &child : node.children) {
          int operand = emit(*child);
          if (operand < 0) return -1;
          op->operands.push_back(operand);
          append_unique(axes, current_->value(operand).axes);
        }
        if (kind == ir::OpKind::Reduce) {
          std::vector<int> kept;
          for (int axis : axes)
            if (!contains(node.op_axes, axis)) kept.push_back(axis);
          axes = kept;
        }
        return finish(std::move(op), axes, node_dtype(node), node.location);
      }
      case TypedExpr::Kind::Call: {
        auto results = emit_call(node);
        return results.empty() ? -1 : results[static_cast<size_t>(node.output_index)];
      }
      case TypedExpr::Kind::Product: return emit_product(node);
    }
    return -1;
  }

  std::vector<int> emit_call(TypedExpr &node) {
    auto op = new_op(ir::OpKind::Call, node.location);
    op->function = node.function;
    op->callee = node.callee;
    op->bindings = node.bindings;
    op->lifted = node.lifted;
    for (auto &child : node.children) {
      int operand = emit(*child);
      if (operand < 0) return {};
      op->operands.push_back(operand);
      reads_.insert(operand);
    }
    std::vector<int> results;
    for (size_t i = 0; i < node.output_axes.size(); ++i) {
      int result = new_value(node.output_axes[i], node.output_dtypes[i], node.location, "");
      current_->value(result).producer = op->id;
      results.push_back(result);
    }
    op->results = results;
    frames_.back().region->ops.push_back(std::move(op));
    return results;
  }

  int emit_product(TypedExpr &node) {
    std::vector<int> factors;
    for (size_t i = 0; i < node.children.size(); ++i) {
      int factor = emit(*node.children[i]);
      if (factor < 0) return -1;
      factors.push_back(factor);
    }
    DType dtype = statement_float_dtype();
    if (node.sum_axes.empty()) {
      // A pointwise product chain: keep the user's order, one op per operator.
      int accumulated = factors[0];
      if (node.inverse[0]) accumulated = emit_elementwise("recip", {accumulated}, dtype, node.location);
      for (size_t i = 1; i < factors.size(); ++i)
        accumulated = emit_elementwise(node.inverse[i] ? "div" : "mul", {accumulated, factors[i]}, dtype, node.location);
      return accumulated;
    }
    auto op = new_op(ir::OpKind::Contract, node.location);
    std::vector<int> axes;
    for (size_t i = 0; i < factors.size(); ++i) {
      int factor = node.inverse[i] ? emit_elementwise("recip", {factors[i]}, dtype, node.location) : factors[i];
      op->operands.push_back(factor);
      append_unique(axes, current_->value(factor).axes);
    }
    op->axes = node.sum_axes;
    std::vector<int> kept;
    for (int axis : axes)
      if (!contains(node.sum_axes, axis)) kept.push_back(axis);
    return finish(std::move(op), kept, dtype, node.location);
  }

  int emit_elementwise(const std::string &function, const std::vector<int> &operands, DType dtype,
                       SourceLocation location) {
    auto op = new_op(ir::OpKind::Elementwise, location);
    op->function = function;
    op->operands = operands;
    std::vector<int> axes;
    for (int operand : operands) append_unique(axes, current_->value(operand).axes);
    return finish(std::move(op), axes, dtype, location);
  }

  // ------------------------------------------------------------ schedules

  void lower_schedules(int module) {
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
      for (const ast::ScheduleItem &entry : schedule.items) {
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
            std::vector<std::string> names;
            for (int id : diagram_axes) names.push_back(p_.axis(id).name);
            d_.error(entry.subject.location, "diagram '" + diagram.name + "' has no axis '" + entry.subject.text + "'" +
                                                 did_you_mean(entry.subject.text, names));
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
      diagram.schedules.push_back(std::move(out));
      current_module_ = module;
    }
  }

  // Diagrams that call themselves through others (direct self-calls are refused earlier).
  void report_call_cycles() {
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

  void warn_unused_axes() {
    for (const ir::Axis &axis : p_.axes) {
      if (used_axes_.count(axis.id)) continue;
      if (axis.module != c_.modules[0].path) continue;
      d_.warning(axis.location, "axis '" + axis.name + "' is declared but never used");
    }
  }

  Compilation &c_;
  ir::Program &p_;
  DiagnosticEngine &d_;
  std::vector<ModuleScope> modules_;
  std::map<const ast::Diagram *, DiagramScope> diagram_scopes_;
  std::map<int, std::pair<const ast::Diagram *, int>> ast_of_;  // diagram index -> (AST, module)
  std::set<int> used_axes_;
  ir::Diagram *current_ = nullptr;
  int current_module_ = 0;
  int current_index_ = -1;
  DiagramScope *current_scope_ = nullptr;
  std::vector<Frame> frames_;
  std::set<int> reads_;
  std::set<int> assigned_outputs_;
  std::set<std::pair<const ir::Diagram *, int>> poisoned_values_;
  DType statement_dtype_ = DType::F32;
  int next_op_id_ = 0;
};

}  // namespace

void lower_to_ir(Compilation &compilation, const std::vector<std::string> &defines) {
  Sema sema(compilation);
  sema.run(defines);
}

}  // namespace ncd
