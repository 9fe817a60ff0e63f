// Writing the core IR back as .ncd source (see ncd/ir_source.h).
//
// The writer works in three steps. It chooses the diagrams (callees first) and
// one written axis per axis name. It then plans each diagram: names for
// temporaries, which operations become statements (constants, sizes and axis
// positions are spelled inline where the language allows), and where each param
// is declared so that it keeps its number of instances. Finally it writes the
// statements while tracking the names in scope the way sema does, so that every
// name it writes is known to resolve to the value the IR means, and runs the
// text through the canonical formatter.
//
// A statement `T[axes]: dtype = expr` whose right side is one operation on named
// values lowers to exactly that operation: nothing is summed (every axis of the
// right side is on the left), and the result already has the left side's dtype,
// so no conversion is added. That is what makes the written file compute the
// same function, rounding included.
#include "ncd/ir_source.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "ncd/diagnostics.h"
#include "ncd/format.h"
#include "ncd/parser.h"

namespace ncd {
namespace {

// An IR construct without a faithful spelling; caught by write_ncd_source.
struct Unwritable {
  std::string message;
};

[[noreturn]] void fail(const std::string &message) { throw Unwritable{message}; }

const std::map<std::string, std::string> &binary_operators() {
  static const std::map<std::string, std::string> table{{"add", "+"}, {"sub", "-"}, {"mul", "*"},  {"div", "/"},
                                                        {"lt", "<"},  {"le", "<="}, {"gt", ">"},   {"ge", ">="},
                                                        {"eq", "=="}, {"ne", "!="}, {"and", "&&"}, {"or", "||"}};
  return table;
}

// Elementwise builtins by their number of arguments.
const std::map<std::string, size_t> &elementwise_builtins() {
  static const std::map<std::string, size_t> table = [] {
    std::map<std::string, size_t> out;
    for (const char *name : {"exp", "log", "sqrt", "rsqrt", "tanh",   "sigmoid", "relu", "gelu",  "silu",  "abs",
                             "sin", "cos", "erf",  "recip", "square", "floor",   "ceil", "log1p", "expm1", "softplus"})
      out[name] = 1;
    for (const char *name : {"pow", "minimum", "maximum"}) out[name] = 2;
    out["where"] = 3;
    return out;
  }();
  return table;
}

const std::set<std::string> &reductions() {
  static const std::set<std::string> names{"sum", "max", "min", "mean", "logsumexp", "prod"};
  return names;
}

// Normalisations, with the eps the language uses when none is written.
const std::map<std::string, std::optional<double>> &normalizations() {
  static const std::map<std::string, std::optional<double>> table{
      {"softmax", std::nullopt}, {"logsoftmax", std::nullopt}, {"layernorm", 1e-5}, {"rmsnorm", 1e-6}};
  return table;
}

// Names that a temporary must not take: keywords, builtins and dtypes.
bool is_reserved(const std::string &name) {
  static const std::set<std::string> names = [] {
    std::set<std::string> out{"import", "axis", "diagram", "param", "repeat", "schedule", "inf", "max", "min"};
    for (const auto &[name, arity] : elementwise_builtins()) out.insert(name);
    for (const auto &name : reductions()) out.insert(name);
    for (const auto &[name, eps] : normalizations()) out.insert(name);
    for (const std::string &name : ir::dtype_names()) out.insert(name);
    return out;
  }();
  return names.count(name) > 0;
}

bool is_identifier(const std::string &name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  static const std::set<std::string> keywords{"import", "axis", "diagram", "param", "repeat", "schedule", "inf"};
  return !keywords.count(name);
}

// A name the user gave (temporaries are "" or "%N").
bool is_user_name(const std::string &name) { return !name.empty() && name[0] != '%'; }

bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::set<int> as_set(const std::vector<int> &list) { return {list.begin(), list.end()}; }

// The shortest text that reads back as the same double (negative: a negated literal).
std::string number_text(double value) {
  if (std::isnan(value)) fail("a NaN constant has no spelling in the language");
  std::string text = "inf";
  if (!std::isinf(value)) {
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof buffer, std::fabs(value));
    text.assign(buffer, result.ptr);
  }
  return std::signbit(value) ? "-" + text : text;
}

std::string quote(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n' || c == '\r') fail("schedule target \"" + text + "\" holds a line break");
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A coefficient p/q with a small denominator that reads back as exactly `value`.
std::pair<int64_t, int64_t> rational(double value) {
  for (int64_t denominator = 1; denominator <= 4096; ++denominator) {
    double scaled = value * static_cast<double>(denominator);
    double rounded = std::round(scaled);
    if (std::fabs(rounded) > 9.0e15) break;
    if (rounded / static_cast<double>(denominator) == value) return {static_cast<int64_t>(rounded), denominator};
  }
  fail("the size coefficient " + number_text(value) + " is not a simple fraction");
}

class Writer {
 public:
  explicit Writer(const ir::Program &program) : p_(program) {}

  std::string write(const std::vector<const ir::Diagram *> &roots, const SourceWriteOptions &options) {
    if (roots.empty()) fail("there is no diagram to write");
    roots_ = roots;
    for (const ir::Diagram *root : roots) collect(*root);
    check_diagram_names();
    choose_axes();
    for (const ir::Diagram *diagram : diagrams_) plans_[diagram] = plan(*diagram);
    choose_default_dtype();

    std::ostringstream out;
    if (!options.header_comment.empty()) {
      std::istringstream lines(options.header_comment);
      for (std::string line; std::getline(lines, line);) out << (line.empty() ? "#" : "# " + line) << "\n";
      out << "\n";
    }
    out << "default dtype " << ir::dtype_name(default_dtype_) << "\n\n";
    write_axes(out);
    for (const ir::Diagram *diagram : diagrams_) {
      out << "\n";
      write_diagram(out, *diagram);
      for (const ir::Schedule &schedule : diagram->schedules) {
        out << "\n";
        write_schedule(out, *diagram, schedule);
      }
    }
    return out.str();
  }

 private:
  // ---------------------------------------------------------------- diagrams

  void collect(const ir::Diagram &diagram) {
    if (std::find(diagrams_.begin(), diagrams_.end(), &diagram) != diagrams_.end()) return;
    if (!on_path_.insert(&diagram).second) fail("diagram '" + diagram.name + "' calls itself");
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Call) collect(callee(op));
    });
    on_path_.erase(&diagram);
    diagrams_.push_back(&diagram);
  }

  const ir::Diagram &callee(const ir::Op &op) const {
    if (op.callee < 0 || static_cast<size_t>(op.callee) >= p_.diagrams.size())
      fail("a call to '" + op.function + "' names no diagram of the program");
    return *p_.diagrams[static_cast<size_t>(op.callee)];
  }

  void check_diagram_names() {
    std::map<std::string, const ir::Diagram *> seen;
    for (const ir::Diagram *diagram : diagrams_) {
      if (!is_identifier(diagram->name)) fail("diagram name '" + diagram->name + "' is not a name of the language");
      auto [it, fresh] = seen.emplace(diagram->name, diagram);
      if (!fresh)
        fail("two diagrams are named '" + diagram->name + "' (in " + it->second->module + " and " + diagram->module +
             "); a written file holds one diagram of each name");
    }
  }

  // ---------------------------------------------------------------- axes

  // Every axis a diagram names: on the values it declares, computes or reads,
  // in its operations and in its schedules.
  std::set<int> axes_of(const ir::Diagram &diagram) const {
    std::set<int> out;
    auto add_value = [&](int id) {
      if (id < 0 || static_cast<size_t>(id) >= diagram.values.size())
        fail("diagram '" + diagram.name + "' names a value it does not hold");
      out.insert(diagram.value(id).axes.begin(), diagram.value(id).axes.end());
    };
    for (const std::vector<int> *values : {&diagram.inputs, &diagram.params, &diagram.outputs})
      for (int id : *values) add_value(id);
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      for (const std::vector<int> *values : {&op.operands, &op.results, &op.body_arguments, &op.body_yields})
        for (int id : *values) add_value(id);
      out.insert(op.axes.begin(), op.axes.end());
      for (const ir::AccessIndex &index : op.access) {
        for (auto [axis, coefficient] : index.terms) out.insert(axis);
        out.insert(index.split.begin(), index.split.end());
      }
      for (const auto &group : op.merges) out.insert(group.begin(), group.end());
      for (auto [from, to] : op.bindings) out.insert(to);
      out.insert(op.lifted.begin(), op.lifted.end());
    });
    for (const ir::Schedule &schedule : diagram.schedules)
      for (const ir::ScheduleDirective &directive : schedule.directives)
        if (directive.kind != ir::ScheduleDirective::Kind::Level) out.insert(directive.axis);
    for (int axis : out)
      if (axis < 0 || static_cast<size_t>(axis) >= p_.axes.size())
        fail("diagram '" + diagram.name + "' names an axis the program does not have");
    return out;
  }

  // Marks the axes whose own size (its file's size, or its definition) is used
  // somewhere below this instance of `diagram`; `bound` are the axes its call
  // binds to the caller's (docs/RUN.md: sizes inside calls).
  void find_owners(const ir::Diagram &diagram, const std::set<int> &bound,
                   std::set<std::pair<const ir::Diagram *, std::set<int>>> &seen) {
    if (!seen.insert({&diagram, bound}).second) return;
    std::set<int> done;
    std::function<void(int)> own = [&](int axis) {
      if (bound.count(axis) || !done.insert(axis).second) return;
      owners_.insert(axis);
      if (p_.axis(axis).derived)
        for (int base : p_.axis(axis).definition.axes()) own(base);
    };
    for (int axis : axes_of(diagram)) own(axis);
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      if (op.kind != ir::OpKind::Call) return;
      std::set<int> callee_bound;
      for (auto [from, to] : op.bindings) callee_bound.insert(from);
      find_owners(callee(op), callee_bound, seen);
    });
  }

  // A written file has one axis per name. Axes of several files that share a
  // name become one when at most one of them has its own size used (the others
  // are bound to a caller's axis wherever they appear), or when all that do
  // have the same size or definition, so that -D acts on them alike.
  void choose_axes() {
    std::set<int> used;
    for (const ir::Diagram *diagram : diagrams_) {
      std::set<int> axes = axes_of(*diagram);
      used.insert(axes.begin(), axes.end());
    }
    for (int axis : std::set<int>(used))
      if (p_.axis(axis).derived)
        for (int base : p_.axis(axis).definition.axes()) used.insert(base);
    // Only the roots run with their own sizes; a callee's axes take the sizes they are bound to.
    std::set<std::pair<const ir::Diagram *, std::set<int>>> seen;
    for (const ir::Diagram *root : roots_) find_owners(*root, {}, seen);
    for (int axis : used) {
      if (!is_identifier(p_.axis(axis).name) || is_reserved(p_.axis(axis).name))
        fail("axis name '" + p_.axis(axis).name + "' is not a name of the language");
      groups_[p_.axis(axis).name].push_back(axis);
    }
    for (auto &[name, members] : groups_) {
      int representative = members.front();
      for (int member : members)
        if (owners_.count(member)) {
          representative = member;
          break;
        }
      representatives_[name] = representative;
    }
    for (auto &[name, members] : groups_) {
      int representative = representatives_[name];
      for (int member : members)
        if (member != representative && owners_.count(member) && !equivalent(member, representative))
          fail("axes named '" + name + "' in " + describe_axis(representative) + " and " + describe_axis(member) +
               " differ, and the written diagrams use both sizes; a written file has one axis per name");
    }
  }

  std::string describe_axis(int axis) const {
    const ir::Axis &a = p_.axis(axis);
    std::string size = a.size ? std::to_string(*a.size) : "no size";
    if (a.derived) size = a.definition.to_string([&](int id) { return p_.axis(id).name; }) + " = " + size;
    return a.module + " (" + size + ")";
  }

  // The size of the written axis of this name, as a polynomial in written base axes.
  Poly written_poly(const std::string &name) {
    if (auto it = written_polys_.find(name); it != written_polys_.end()) return it->second;
    if (!expanding_.insert(name).second) fail("the definitions of the axes named '" + name + "' form a cycle");
    int representative = representatives_.at(name);
    const ir::Axis &axis = p_.axis(representative);
    Poly poly = axis.derived ? mapped(axis.definition) : Poly::axis(representative);
    expanding_.erase(name);
    written_polys_[name] = poly;
    return poly;
  }

  // A polynomial over program axes, over the written axes their names stand for.
  Poly mapped(const Poly &poly) {
    return poly.substitute([&](int axis) { return written_poly(p_.axis(axis).name); });
  }

  bool equivalent(int a, int b) {
    const ir::Axis &x = p_.axis(a), &y = p_.axis(b);
    if (x.derived != y.derived) return false;
    if (!x.derived) return x.size == y.size;
    return mapped(x.definition) == mapped(y.definition);
  }

  // The text of a derived axis's size: by degree, then by names.
  std::string size_expression(const Poly &poly) const {
    struct Term {
      bool negative;
      int degree;
      std::string factors;
      int64_t numerator, denominator;
    };
    std::vector<Term> terms;
    for (const auto &[monomial, coefficient] : poly.terms()) {
      Term term{coefficient < 0, 0, "", 0, 1};
      for (auto [axis, power] : monomial)
        for (int i = 0; i < power; ++i) {
          term.factors += (term.factors.empty() ? "" : " * ") + p_.axis(axis).name;
          ++term.degree;
        }
      std::tie(term.numerator, term.denominator) = rational(std::fabs(coefficient));
      terms.push_back(term);
    }
    std::sort(terms.begin(), terms.end(), [](const Term &a, const Term &b) {
      if (a.degree != b.degree) return a.degree > b.degree;
      return a.factors < b.factors;
    });
    // A size expression has no unary minus: it starts with a positive term.
    auto first = std::find_if(terms.begin(), terms.end(), [](const Term &term) { return !term.negative; });
    if (first == terms.end()) fail("an axis size is not positive");
    std::rotate(terms.begin(), first, first + 1);
    std::string out;
    for (const Term &term : terms) {
      if (!out.empty()) out += term.negative ? " - " : " + ";
      std::string text = term.factors;
      if (term.numerator != 1 || text.empty())
        text = std::to_string(term.numerator) + (text.empty() ? "" : " * " + text);
      if (term.denominator != 1) text += " / " + std::to_string(term.denominator);
      out += text;
    }
    return out;
  }

  // Axes in lines of readable length, every axis after those its size names.
  void write_axes(std::ostringstream &out) {
    std::vector<int> order;
    std::set<std::string> done, active;
    std::function<void(const std::string &)> visit = [&](const std::string &name) {
      if (done.count(name)) return;
      if (!active.insert(name).second) fail("the definitions of the axes named '" + name + "' form a cycle");
      const ir::Axis &axis = p_.axis(representatives_.at(name));
      if (axis.derived)
        for (int base : axis.definition.axes()) visit(p_.axis(base).name);
      active.erase(name);
      done.insert(name);
      order.push_back(axis.id);
    };
    std::vector<int> by_id;
    for (auto &[name, representative] : representatives_) by_id.push_back(representative);
    std::sort(by_id.begin(), by_id.end());
    for (int axis : by_id) visit(p_.axis(axis).name);
    std::string line;
    for (int id : order) {
      const ir::Axis &axis = p_.axis(id);
      axis_positions_[axis.name] = static_cast<int>(axis_positions_.size());
      std::string item = axis.name;
      if (axis.derived)
        item += " = " + size_expression(axis.definition);
      else if (axis.size)
        item += " = " + std::to_string(*axis.size);
      if (!line.empty() && line.size() + item.size() > 100) {
        out << line << "\n";
        line.clear();
      }
      line += (line.empty() ? "axis " : ", ") + item;
    }
    if (!line.empty()) out << line << "\n";
  }

  std::string axis_list(const std::vector<int> &axes) const {
    std::string out;
    for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + p_.axis(axes[i]).name;
    return out;
  }

  // ---------------------------------------------------------------- plans

  struct Plan {
    std::map<int, std::string> names;                       // value id -> written name
    std::map<int, const ir::Op *> producers;                // value id -> the op that defines it
    std::set<int> by_name;                                  // values that must be read by name, never inline
    std::map<const ir::Region *, std::vector<int>> params;  // params declared at the start of each region
  };

  static bool inlinable(ir::OpKind kind) {
    return kind == ir::OpKind::Constant || kind == ir::OpKind::SizeOf || kind == ir::OpKind::AxisIndex;
  }

  Plan plan(const ir::Diagram &diagram) {
    Plan plan;
    std::set<std::string> taken;
    for (const ir::Value &value : diagram.values)
      if (is_user_name(value.name)) {
        if (!is_identifier(value.name))
          fail("'" + value.name + "' of diagram '" + diagram.name + "' is not a name of the language");
        taken.insert(value.name);
      }
    for (auto &[name, members] : groups_) taken.insert(name);
    for (const ir::Diagram *other : diagrams_) taken.insert(other->name);
    auto user_name = [&](int id, const char *what) {
      const std::string &name = diagram.value(id).name;
      if (!is_user_name(name)) fail(std::string(what) + " " + name + " of diagram '" + diagram.name + "' has no name");
      plan.names[id] = name;
    };
    for (int id : diagram.inputs) user_name(id, "input");
    for (int id : diagram.params) user_name(id, "param");
    for (int id : diagram.outputs) user_name(id, "output");
    auto temporary = [&](int id) {
      const std::string base = "t" + std::to_string(id);
      std::string name = base;
      for (int suffix = 2; taken.count(name) || is_reserved(name); ++suffix) name = base + "_" + std::to_string(suffix);
      taken.insert(name);
      plan.names[id] = name;
    };
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      for (int id : op.results) {
        if (id < 0 || static_cast<size_t>(id) >= diagram.values.size())
          fail("an operation of diagram '" + diagram.name + "' has a result the diagram does not hold");
        plan.producers[id] = &op;
        if (is_user_name(diagram.value(id).name))
          plan.names[id] = diagram.value(id).name;
        else
          temporary(id);
      }
      for (int id : op.body_arguments) user_name(id, "carried value");
      for (int id : op.operands)
        if (id < 0 || static_cast<size_t>(id) >= diagram.values.size())
          fail("an operation of diagram '" + diagram.name + "' reads a value the diagram does not hold");
      if (op.kind == ir::OpKind::Access || op.kind == ir::OpKind::Merge) {
        if (op.operands.empty()) fail("an access or merge in diagram '" + diagram.name + "' has no operand");
        plan.by_name.insert(op.operands[0]);
      }
      for (const ir::AccessIndex &index : op.access)
        if (index.kind == ir::AccessIndex::Kind::Gather) {
          if (index.gather_operand < 1 || static_cast<size_t>(index.gather_operand) >= op.operands.size())
            fail("a gather in diagram '" + diagram.name + "' names no operand");
          plan.by_name.insert(op.operands[static_cast<size_t>(index.gather_operand)]);
        }
      if (op.kind == ir::OpKind::Repeat) {
        plan.by_name.insert(op.operands.begin(), op.operands.end());
        plan.by_name.insert(op.body_yields.begin(), op.body_yields.end());
      }
    });
    place_params(diagram, plan);
    return plan;
  }

  // A param exists once per iteration of the repeats around its declaration;
  // it is declared at the start of the innermost repeat body that gives it as
  // many instances as the IR says, on the way to its first use (the chain that
  // names its instances, see instances.h).
  void place_params(const ir::Diagram &diagram, Plan &plan) {
    std::map<int, std::vector<const ir::Op *>> first_use;
    std::vector<const ir::Op *> stack;
    std::function<void(const ir::Region &)> walk = [&](const ir::Region &region) {
      for (const auto &op : region.ops) {
        for (int operand : op->operands)
          if (contains(diagram.params, operand) && !first_use.count(operand)) first_use[operand] = stack;
        if (op->body) {
          stack.push_back(op.get());
          walk(*op->body);
          stack.pop_back();
        }
      }
    };
    walk(diagram.body);
    for (int id : diagram.params) {
      const ir::Value &param = diagram.value(id);
      const ir::Region *region = &diagram.body;
      int64_t product = 1;
      if (auto it = first_use.find(id); it != first_use.end())
        for (const ir::Op *repeat : it->second) {
          if (product == param.instances) break;
          product *= repeat->count;
          region = repeat->body.get();
        }
      if (product != param.instances)
        fail("param '" + param.name + "' of diagram '" + diagram.name + "' has " + std::to_string(param.instances) +
             " instances, which no place of its declaration gives");
      plan.params[region].push_back(id);
    }
  }

  // Constants, sizes and positions are spelled inline where they are read,
  // unless they have a name, are read where only a name can stand, or have
  // another dtype or other axes than the inline spelling gives. A negative
  // constant is a negated literal in the language, computed in the dtype of the
  // statement that holds it: its own statement keeps it exact in f32.
  bool needs_statement(const Plan &plan, const ir::Diagram &diagram, int value) const {
    auto it = plan.producers.find(value);
    if (it == plan.producers.end() || !inlinable(it->second->kind)) return true;
    const ir::Op &op = *it->second;
    const ir::Value &result = diagram.value(value);
    bool natural = op.kind == ir::OpKind::AxisIndex
                       ? result.dtype == ir::DType::I32 && op.axes.size() == 1 && result.axes == op.axes
                       : result.dtype == ir::DType::F32 && result.axes.empty() &&
                             !(op.kind == ir::OpKind::Constant && std::signbit(op.constant));
    return !natural || is_user_name(result.name) || plan.by_name.count(value) || contains(diagram.outputs, value);
  }

  // The dtype most declared tensors (inputs, params, outputs) have, then most
  // statements: declarations read best without annotations, and a file's few
  // f32 intermediates are annotated as people write them. Ties go to the first
  // dtype in dtype order.
  void choose_default_dtype() {
    std::map<ir::DType, std::pair<int, int>> counts;  // dtype -> (declarations, statements)
    for (const ir::Diagram *diagram : diagrams_) {
      const Plan &plan = plans_.at(diagram);
      std::set<int> declared;
      for (const std::vector<int> *values : {&diagram->inputs, &diagram->params, &diagram->outputs})
        for (int id : *values)
          if (declared.insert(id).second) ++counts[diagram->value(id).dtype].first;
      for (auto &[id, op] : plan.producers)
        if (op->kind != ir::OpKind::Repeat && !declared.count(id) && needs_statement(plan, *diagram, id))
          ++counts[diagram->value(id).dtype].second;
    }
    std::pair<int, int> best{-1, -1};
    for (auto &[dtype, count] : counts)
      if (count > best) {
        best = count;
        default_dtype_ = dtype;
      }
  }

  // ---------------------------------------------------------------- scope

  // Names in scope as sema tracks them: a frame per repeat body, with the
  // names it carries from one iteration to the next.
  struct Frame {
    std::map<std::string, int> names;
    std::map<std::string, int> carried;  // name -> block argument
  };

  int lookup(const std::string &name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
      if (auto it = frame->names.find(name); it != frame->names.end()) return it->second;
    return -1;
  }

  const Frame *carrier(const std::string &name) const {
    for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
      if (frame->carried.count(name)) return &*frame;
    return nullptr;
  }

  bool is_output_name(const std::string &name) const {
    for (int id : d_->outputs)
      if (d_->value(id).name == name) return true;
    return false;
  }

  const std::string &name_of(int value) const { return plan_->names.at(value); }

  std::string where() const { return " in diagram '" + d_->name + "'"; }

  // ---------------------------------------------------------------- writing

  void write_diagram(std::ostringstream &out, const ir::Diagram &diagram) {
    d_ = &diagram;
    plan_ = &plans_.at(&diagram);
    frames_.assign(1, Frame{});
    assigned_outputs_.clear();
    if (diagram.outputs.empty()) fail("diagram '" + diagram.name + "' has no outputs");
    out << "diagram " << diagram.name << "(" << declarations(diagram.inputs) << ") -> " << declarations(diagram.outputs)
        << " {\n";
    for (int id : diagram.inputs) frames_.back().names[name_of(id)] = id;
    region(out, diagram.body, 1);
    for (int id : diagram.outputs)
      if (!assigned_outputs_.count(name_of(id))) fail("output '" + name_of(id) + "'" + where() + " is never computed");
    out << "}\n";
  }

  std::string dtype_suffix(ir::DType dtype, ir::DType implicit) const {
    return dtype == implicit ? "" : ": " + std::string(ir::dtype_name(dtype));
  }

  std::string declarations(const std::vector<int> &values) const {
    std::string out;
    for (int id : values) {
      const ir::Value &value = d_->value(id);
      out += (out.empty() ? "" : ", ") + name_of(id) + "[" + axis_list(value.axes) + "]" +
             dtype_suffix(value.dtype, default_dtype_);
    }
    return out;
  }

  void region(std::ostringstream &out, const ir::Region &region, int depth) {
    const std::string indent(static_cast<size_t>(depth) * 2, ' ');
    if (auto it = plan_->params.find(&region); it != plan_->params.end()) {
      // Several params per line, as people write them, but short enough to read.
      std::string line;
      for (int id : it->second) {
        const std::string &name = name_of(id);
        if (lookup(name) >= 0 || is_output_name(name)) fail("param '" + name + "'" + where() + " hides another name");
        frames_.back().names[name] = id;
        std::string item =
            name + "[" + axis_list(d_->value(id).axes) + "]" + dtype_suffix(d_->value(id).dtype, default_dtype_);
        if (!line.empty() && line.size() + item.size() > 100) {
          out << indent << line << "\n";
          line.clear();
        }
        line += (line.empty() ? "param " : ", ") + item;
      }
      if (!line.empty()) out << indent << line << "\n";
    }
    for (const auto &op : region.ops) statement(out, *op, depth);
  }

  void statement(std::ostringstream &out, const ir::Op &op, int depth) {
    if (op.kind == ir::OpKind::Repeat) {
      repeat(out, op, depth);
      return;
    }
    if (op.kind != ir::OpKind::Call && op.results.size() != 1)
      fail("a " + std::string(ir::op_kind_name(op.kind)) + where() + " does not have one result");
    if (inlinable(op.kind) && !needs_statement(*plan_, *d_, op.results[0])) return;
    // The right side is read in the scope before the statement: `H = F(H)` reads the old H.
    std::string value;
    std::string merged_indices;
    switch (op.kind) {
      case ir::OpKind::Constant:
      case ir::OpKind::SizeOf:
      case ir::OpKind::AxisIndex: value = inline_text(op); break;
      case ir::OpKind::Access: value = access(op); break;
      case ir::OpKind::Merge: value = merge(op, merged_indices); break;
      case ir::OpKind::Elementwise: value = elementwise(op); break;
      case ir::OpKind::Contract: value = contract(op); break;
      case ir::OpKind::Reduce: value = reduce(op); break;
      case ir::OpKind::Normalize: value = normalize(op); break;
      case ir::OpKind::Call: value = call(op); break;
      case ir::OpKind::Repeat: break;
    }
    std::string targets;
    std::set<std::string> seen;
    for (int id : op.results) {
      if (!seen.insert(name_of(id)).second) fail("'" + name_of(id) + "'" + where() + " is assigned twice by one call");
      std::string indices = op.kind == ir::OpKind::Merge ? merged_indices : axis_list(d_->value(id).axes);
      targets += (targets.empty() ? "" : ", ") + target(id, indices);
    }
    for (int id : op.results) bind(id);
    out << std::string(static_cast<size_t>(depth) * 2, ' ') << targets << " = " << value << "\n";
  }

  // The left side for `value`, checked the way sema resolves it: a new name, an
  // output assigned once outside repeats, or a carried value of a repeat.
  std::string target(int value, const std::string &indices) {
    const std::string &name = name_of(value);
    const ir::Value &result = d_->value(value);
    ir::DType implicit = default_dtype_;
    if (lookup(name) >= 0) {
      const Frame *frame = carrier(name);
      if (!frame) fail("'" + name + "'" + where() + " is assigned twice");
      const ir::Value &argument = d_->value(frame->carried.at(name));
      if (argument.dtype != result.dtype || as_set(argument.axes) != as_set(result.axes))
        fail("carried value '" + name + "'" + where() + " changes its dtype or axes in the repeat");
      implicit = argument.dtype;
    } else if (is_output_name(name)) {
      if (frames_.size() > 1) fail("output '" + name + "'" + where() + " is computed inside a repeat");
      if (!contains(d_->outputs, value)) fail("'" + name + "'" + where() + " is named like an output but is not one");
      implicit = result.dtype;
      assigned_outputs_.insert(name);
    }
    return name + "[" + indices + "]" + dtype_suffix(result.dtype, implicit);
  }

  void bind(int value) { frames_.back().names[name_of(value)] = value; }

  // A value read by name: `X[a, b]` (its own axes, read as they are), or `s` for a scalar.
  std::string reference(int value) const {
    const std::string &name = name_of(value);
    if (lookup(name) != value) fail("'" + name + "'" + where() + " is read where that name means another value");
    const ir::Value &read = d_->value(value);
    return read.axes.empty() ? name : name + "[" + axis_list(read.axes) + "]";
  }

  std::string operand(int value) const {
    auto it = plan_->producers.find(value);
    if (it != plan_->producers.end() && inlinable(it->second->kind) && !needs_statement(*plan_, *d_, value))
      return inline_text(*it->second);
    return reference(value);
  }

  std::string inline_text(const ir::Op &op) const {
    if (op.kind == ir::OpKind::Constant) return number_text(op.constant);
    if (op.axes.size() != 1) fail("a " + std::string(ir::op_kind_name(op.kind)) + where() + " names no axis");
    const std::string &axis = p_.axis(op.axes[0]).name;
    if (op.kind == ir::OpKind::SizeOf) return "#" + axis;
    // An axis name in an expression is its positions only where no tensor takes that name.
    if (lookup(axis) >= 0)
      fail("the positions of axis '" + axis + "'" + where() + " are read where a tensor has that name");
    return axis;
  }

  void arity(const ir::Op &op, size_t count) const {
    if (op.operands.size() != count)
      fail("'" + op.function + "'" + where() + " has " + std::to_string(op.operands.size()) + " operands, not " +
           std::to_string(count));
  }

  std::string elementwise(const ir::Op &op) const {
    const std::string &function = op.function;
    // A copy broadcasts to its result's axes; everything else keeps the union of its operands'.
    std::set<int> axes = as_set(operand_axes(op)), result = as_set(d_->value(op.results[0]).axes);
    if (function == "copy" ? !std::includes(result.begin(), result.end(), axes.begin(), axes.end()) : axes != result)
      fail("the result of '" + function + "'" + where() + " does not have its operands' axes");
    std::vector<std::string> arguments;
    for (int id : op.operands) arguments.push_back(operand(id));
    if (auto it = binary_operators().find(function); it != binary_operators().end()) {
      arity(op, 2);
      return arguments[0] + " " + it->second + " " + arguments[1];
    }
    if (function == "neg" || function == "not") {
      arity(op, 1);
      return (function == "neg" ? "-" : "!") + arguments[0];
    }
    if (function == "copy") {
      arity(op, 1);
      return arguments[0];
    }
    std::string name = function;
    if (function == "cast") {
      arity(op, 1);
      name = std::string(ir::dtype_name(d_->value(op.results[0]).dtype));
    } else if (auto it = elementwise_builtins().find(function); it != elementwise_builtins().end()) {
      arity(op, it->second);
    } else {
      fail("the elementwise function '" + function + "'" + where() + " has no spelling in the language");
    }
    std::string out = name + "(";
    for (size_t i = 0; i < arguments.size(); ++i) out += (i ? ", " : "") + arguments[i];
    return out + ")";
  }

  // The axes of the operands, in order of first appearance.
  std::vector<int> operand_axes(const ir::Op &op) const {
    std::vector<int> out;
    for (int id : op.operands)
      for (int axis : d_->value(id).axes)
        if (!contains(out, axis)) out.push_back(axis);
    return out;
  }

  // `removed` must be axes of the operands, and the result must have exactly the others.
  void check_result_axes(const ir::Op &op, const std::vector<int> &available, const std::vector<int> &removed) const {
    std::set<int> kept = as_set(available);
    for (int axis : removed)
      if (!kept.erase(axis))
        fail("a " + std::string(ir::op_kind_name(op.kind)) + where() + " acts on axis '" + p_.axis(axis).name +
             "' that its operands lack");
    if (kept != as_set(d_->value(op.results[0]).axes))
      fail("the result of a " + std::string(ir::op_kind_name(op.kind)) + where() + " does not have its operands' axes");
  }

  // All axes of the right side are on the left except the summed ones, so the
  // product is one contraction over exactly those.
  std::string contract(const ir::Op &op) const {
    if (op.operands.empty()) fail("a contraction" + where() + " has no operands");
    check_result_axes(op, operand_axes(op), op.axes);
    if (op.operands.size() == 1) return "sum[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + ")";
    std::string out;
    for (int id : op.operands) out += (out.empty() ? "" : " * ") + operand(id);
    return out;
  }

  std::string reduce(const ir::Op &op) const {
    if (!reductions().count(op.function))
      fail("the reduction '" + op.function + "'" + where() + " has no spelling in the language");
    arity(op, 1);
    if (op.axes.empty()) fail("a reduction" + where() + " names no axes");
    check_result_axes(op, operand_axes(op), op.axes);
    return op.function + "[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + ")";
  }

  std::string normalize(const ir::Op &op) const {
    auto it = normalizations().find(op.function);
    if (it == normalizations().end())
      fail("the normalisation '" + op.function + "'" + where() + " has no spelling in the language");
    arity(op, 1);
    if (op.axes.empty()) fail("a normalisation" + where() + " names no axes");
    check_result_axes(op, operand_axes(op), {});
    for (int axis : op.axes)
      if (!contains(d_->value(op.operands[0]).axes, axis))
        fail("'" + op.function + "'" + where() + " normalises along an axis its operand lacks");
    std::string eps;
    for (auto &[key, value] : op.options) {
      if (key != "eps" || !it->second)
        fail("'" + op.function + "'" + where() + " has an option '" + key + "' the language cannot write");
      if (!(value >= 0)) fail("'" + op.function + "'" + where() + " has an eps the language cannot write");
      if (value != *it->second) eps = ", eps = " + number_text(value);
    }
    return op.function + "[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + eps + ")";
  }

  std::string affine_text(const ir::AccessIndex &index) const {
    std::vector<std::pair<int, int64_t>> terms;
    for (auto term : index.terms)
      if (term.second != 0) terms.push_back(term);
    // Positive terms first: a leading `-` binds tighter than `*` in an index.
    std::stable_partition(terms.begin(), terms.end(), [](const auto &term) { return term.second > 0; });
    std::string out;
    for (auto [axis, coefficient] : terms) {
      const std::string &name = p_.axis(axis).name;
      uint64_t magnitude =
          coefficient < 0 ? 0 - static_cast<uint64_t>(coefficient) : static_cast<uint64_t>(coefficient);
      std::string term = magnitude == 1 ? name : std::to_string(magnitude) + " * " + name;
      if (out.empty())
        out = coefficient > 0 ? term : magnitude == 1 ? "-" + term : "-(" + term + ")";
      else
        out += (coefficient > 0 ? " + " : " - ") + term;
    }
    if (index.offset != 0 || out.empty()) {
      uint64_t magnitude =
          index.offset < 0 ? 0 - static_cast<uint64_t>(index.offset) : static_cast<uint64_t>(index.offset);
      if (out.empty())
        out = (index.offset < 0 ? "-" : "") + std::to_string(magnitude);
      else
        out += (index.offset < 0 ? " - " : " + ") + std::to_string(magnitude);
    }
    return out;
  }

  std::string access(const ir::Op &op) const {
    int source = op.operands[0];
    const ir::Value &read = d_->value(source);
    if (op.access.size() != read.axes.size())
      fail("an access to '" + name_of(source) + "'" + where() + " has " + std::to_string(op.access.size()) +
           " indices for " + std::to_string(read.axes.size()) + " axes");
    if (lookup(name_of(source)) != source)
      fail("'" + name_of(source) + "'" + where() + " is read where that name means another value");
    std::vector<int> axes;
    auto add = [&](int axis) {
      if (!contains(axes, axis)) axes.push_back(axis);
    };
    std::string out = name_of(source) + "[";
    for (size_t i = 0; i < op.access.size(); ++i) {
      const ir::AccessIndex &index = op.access[i];
      out += i ? ", " : "";
      switch (index.kind) {
        case ir::AccessIndex::Kind::Affine:
          for (auto [axis, coefficient] : index.terms)
            if (coefficient != 0) add(axis);
          out += affine_text(index);
          break;
        case ir::AccessIndex::Kind::Split:
          if (index.split.size() < 2) fail("a split" + where() + " names fewer than two axes");
          for (int axis : index.split) add(axis);
          out += "(" + axis_list(index.split) + ")";
          break;
        case ir::AccessIndex::Kind::Gather: {
          int through = op.operands[static_cast<size_t>(index.gather_operand)];
          // In an index, a name that is an axis is read as the axis.
          if (groups_.count(name_of(through)))
            fail("'" + name_of(through) + "'" + where() + " gathers but is named like an axis");
          if (!ir::is_integer(d_->value(through).dtype))
            fail("'" + name_of(through) + "'" + where() + " gathers but is not an integer tensor");
          for (int axis : d_->value(through).axes) add(axis);
          out += reference(through);
          break;
        }
      }
    }
    if (as_set(axes) != as_set(d_->value(op.results[0]).axes))
      fail("the result of an access to '" + name_of(source) + "'" + where() + " does not have the axes of its indices");
    return out + "]";
  }

  // `T[s, (heads, d)] = H[s, heads, d]`: the merged axis is the one sema finds
  // for the product, which must be the IR's.
  std::string merge(const ir::Op &op, std::string &indices) {
    int source = op.operands[0];
    int result = op.results[0];
    const std::vector<int> &result_axes = d_->value(result).axes;
    if (op.operands.size() != 1 || op.merges.size() != result_axes.size())
      fail("a merge" + where() + " does not have one group per result axis");
    std::vector<int> expanded;
    for (size_t i = 0; i < op.merges.size(); ++i) {
      const std::vector<int> &group = op.merges[i];
      if (group.empty()) fail("a merge" + where() + " has an empty group");
      expanded.insert(expanded.end(), group.begin(), group.end());
      indices += (i ? ", " : "");
      if (group.size() == 1) {
        if (group[0] != result_axes[i]) fail("a merge" + where() + " renames an axis");
        indices += p_.axis(group[0]).name;
        continue;
      }
      indices += "(" + axis_list(group) + ")";
      Poly product = Poly::constant(1);
      for (int axis : group) product = product * written_poly(p_.axis(axis).name);
      std::vector<std::string> candidates;
      for (auto &[name, representative] : representatives_)
        if (p_.axis(representative).derived && written_poly(name) == product) candidates.push_back(name);
      std::string merged = candidates.size() == 1 ? candidates[0] : "";
      // A declared output or carried value says which axis it stores.
      const std::string &target = name_of(result);
      if (is_output_name(target) || (lookup(target) >= 0 && carrier(target)))
        for (const std::string &candidate : candidates)
          for (int axis : result_axes)
            if (p_.axis(axis).name == candidate) merged = candidate;
      if (merged != p_.axis(result_axes[i]).name)
        fail("the merge into '" + p_.axis(result_axes[i]).name + "'" + where() +
             " would be read as a merge into another axis of the same size");
    }
    if (as_set(expanded) != as_set(d_->value(source).axes) || expanded.size() != d_->value(source).axes.size())
      fail("a merge" + where() + " does not merge exactly the axes of its operand");
    return reference(source);
  }

  // Bindings are written except where sema makes them by itself: an axis of the
  // callee's inputs and outputs bound to the caller's axis of its name.
  std::string call(const ir::Op &op) const {
    const ir::Diagram &target = callee(op);
    if (op.operands.size() != target.inputs.size())
      fail("a call to '" + target.name + "'" + where() + " passes " + std::to_string(op.operands.size()) +
           " arguments to " + std::to_string(target.inputs.size()) + " inputs");
    if (op.results.size() != target.outputs.size())
      fail("a call to '" + target.name + "'" + where() + " does not take every output");
    std::set<int> interface;
    for (int id : target.inputs) interface.insert(target.value(id).axes.begin(), target.value(id).axes.end());
    for (int id : target.outputs) interface.insert(target.value(id).axes.begin(), target.value(id).axes.end());
    // Sema lifts the call over the arguments' axes that no interface axis is bound to.
    std::map<int, int> bound(op.bindings.begin(), op.bindings.end());
    std::set<int> lifted = as_set(operand_axes(op));
    for (int axis : interface) {
      if (!bound.count(axis)) bound[axis] = axis;
      lifted.erase(bound[axis]);
    }
    for (size_t i = 0; i < op.results.size(); ++i) {
      std::set<int> expected = lifted;
      for (int axis : target.value(target.outputs[i]).axes) expected.insert(bound[axis]);
      if (expected != as_set(d_->value(op.results[i]).axes))
        fail("output '" + target.value(target.outputs[i]).name + "' of a call to '" + target.name + "'" + where() +
             " does not have the axes the call gives it");
    }
    // In the order of the written axes, as sema records them.
    std::vector<std::pair<int, int>> written;
    for (auto [from, to] : op.bindings)
      if (p_.axis(from).name != p_.axis(to).name || !interface.count(from)) written.push_back({from, to});
    std::sort(written.begin(), written.end(), [&](const auto &a, const auto &b) {
      return axis_positions_.at(p_.axis(a.first).name) < axis_positions_.at(p_.axis(b.first).name);
    });
    std::string bindings;
    for (auto [from, to] : written)
      bindings += (bindings.empty() ? "" : ", ") + p_.axis(from).name + " = " + p_.axis(to).name;
    std::string out = target.name + (bindings.empty() ? "" : "[" + bindings + "]") + "(";
    for (size_t i = 0; i < op.operands.size(); ++i) out += (i ? ", " : "") + operand(op.operands[i]);
    return out + ")";
  }

  // `repeat N { ... }`: the operand, the block argument, the yield and the
  // result of each carried value share one name, which sema then carries.
  // Where a pass left the operand or the yield under another name (it removed
  // the copy that named it), a copy names it again.
  void repeat(std::ostringstream &out, const ir::Op &op, int depth) {
    const size_t carried = op.operands.size();
    if (!op.body || op.count < 1 || op.body_arguments.size() != carried || op.body_yields.size() != carried ||
        op.results.size() != carried)
      fail("a repeat" + where() + " does not carry each value through its body");
    const std::string indent(static_cast<size_t>(depth) * 2, ' ');
    std::vector<std::string> names;
    for (size_t i = 0; i < carried; ++i) {
      const std::string &name = name_of(op.body_arguments[i]);
      if (name_of(op.results[i]) != name || std::find(names.begin(), names.end(), name) != names.end())
        fail("the value carried as '" + name + "' by a repeat" + where() + " changes its name");
      names.push_back(name);
      if (lookup(name) == op.operands[i]) continue;
      if (lookup(name) >= 0 || is_output_name(name))
        fail("the value carried as '" + name + "' by a repeat" + where() + " enters it under another name");
      out << indent << renaming_copy(op.body_arguments[i], op.operands[i]) << "\n";
      frames_.back().names[name] = op.operands[i];
    }
    // Sema carries the names the body assigns that exist before the repeat.
    std::set<std::string> assigned(names.begin(), names.end());
    std::function<void(const ir::Region &)> scan = [&](const ir::Region &region) {
      for (const auto &inner : region.ops) {
        if (inner->body) {
          scan(*inner->body);
          for (int id : inner->body_arguments) assigned.insert(name_of(id));
          continue;
        }
        for (int id : inner->results)
          if (needs_statement(*plan_, *d_, id)) assigned.insert(name_of(id));
      }
    };
    scan(*op.body);
    for (const std::string &name : assigned)
      if (lookup(name) >= 0 && std::find(names.begin(), names.end(), name) == names.end())
        fail("a repeat" + where() + " assigns '" + name + "', which exists before it, without carrying it");
    out << indent << "repeat " << op.count << " {\n";
    Frame frame;
    for (size_t i = 0; i < carried; ++i) {
      frame.names[names[i]] = op.body_arguments[i];
      frame.carried[names[i]] = op.body_arguments[i];
    }
    frames_.push_back(frame);
    region(out, *op.body, depth + 1);
    for (size_t i = 0; i < carried; ++i) {
      if (frames_.back().names.at(names[i]) == op.body_yields[i]) continue;
      out << indent << "  " << renaming_copy(op.body_arguments[i], op.body_yields[i]) << "\n";
      frames_.back().names[names[i]] = op.body_yields[i];
    }
    frames_.pop_back();
    out << indent << "}\n";
    for (int id : op.results) bind(id);
  }

  // `N[axes] = V[axes]`: the carried value `argument` takes the value `source`.
  std::string renaming_copy(int argument, int source) const {
    const ir::Value &to = d_->value(argument), &from = d_->value(source);
    if (to.dtype != from.dtype || as_set(to.axes) != as_set(from.axes))
      fail("the value carried as '" + name_of(argument) + "' by a repeat" + where() + " changes its dtype or axes");
    return name_of(argument) + "[" + axis_list(to.axes) + "]" + dtype_suffix(to.dtype, default_dtype_) + " = " +
           reference(source);
  }

  void write_schedule(std::ostringstream &out, const ir::Diagram &diagram, const ir::Schedule &schedule) {
    out << "schedule " << diagram.name << (schedule.target.empty() ? "" : " for " + quote(schedule.target)) << " {\n";
    for (const ir::ScheduleDirective &directive : schedule.directives) {
      switch (directive.kind) {
        case ir::ScheduleDirective::Kind::Group:
        case ir::ScheduleDirective::Kind::Stream:
          out << "  " << (directive.kind == ir::ScheduleDirective::Kind::Group ? "group " : "stream ")
              << p_.axis(directive.axis).name << " by " << directive.amount << "\n";
          break;
        case ir::ScheduleDirective::Kind::Level: {
          if (!is_identifier(directive.level)) fail("memory level '" + directive.level + "' is not a name");
          std::string values;
          for (int id : directive.values) {
            // Sema finds a tensor of a schedule by name: the last value of that name.
            const std::string &name = diagram.value(id).name;
            int last = -1;
            for (const ir::Value &value : diagram.values)
              if (value.name == name) last = value.id;
            if (!is_user_name(name) || last != id)
              fail("a schedule of diagram '" + diagram.name + "' keeps a value that has no name of its own");
            values += (values.empty() ? "" : ", ") + name;
          }
          if (values.empty()) fail("a schedule of diagram '" + diagram.name + "' names a level without tensors");
          out << "  level " << directive.level << ": " << values << "\n";
          break;
        }
      }
    }
    out << "}\n";
  }

  const ir::Program &p_;
  std::vector<const ir::Diagram *> diagrams_;  // in written order, callees first
  std::vector<const ir::Diagram *> roots_;
  std::set<const ir::Diagram *> on_path_;
  std::set<int> owners_;                            // axes whose own size some written diagram uses
  std::map<std::string, std::vector<int>> groups_;  // axis name -> program axes of that name
  std::map<std::string, int> representatives_;      // axis name -> the axis written for it
  std::map<std::string, Poly> written_polys_;
  std::map<std::string, int> axis_positions_;  // axis name -> its place among the written axes
  std::set<std::string> expanding_;
  std::map<const ir::Diagram *, Plan> plans_;
  ir::DType default_dtype_ = ir::DType::F32;
  // The diagram being written.
  const ir::Diagram *d_ = nullptr;
  const Plan *plan_ = nullptr;
  std::vector<Frame> frames_;
  std::set<std::string> assigned_outputs_;
};

}  // namespace

bool write_ncd_source(const ir::Program &program, const std::vector<const ir::Diagram *> &roots,
                      const SourceWriteOptions &options, std::string &text, std::string &error) {
  std::string raw;
  try {
    raw = Writer(program).write(roots, options);
  } catch (const Unwritable &unwritable) {
    error = unwritable.message;
    return false;
  }
  // The formatter's layout is the canonical one; parsing also proves the text is well formed.
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  int file_id = sources.add("<written>", "<written>", raw);
  auto ast = parse_file(sources, file_id, diagnostics);
  if (!ast || diagnostics.has_errors()) {
    error = "internal error: the written source does not parse";
    for (const Diagnostic &diagnostic : diagnostics.all())
      error += "\n  " + sources.describe(diagnostic.location) + ": " + diagnostic.message;
    return false;
  }
  text = format_file(*ast, sources.file(file_id));
  return true;
}

}  // namespace ncd
