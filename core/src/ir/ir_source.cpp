// Writing the core IR back as .ncd source (see ncd/ir_source.h).
//
// The writer works in three steps. It chooses the diagrams (callees first) and
// one written axis per axis name. It then plans each diagram: names for
// temporaries, which operations become statements (constants, sizes and axis
// positions are spelled inline where the language allows), and where each param
// is declared so that it keeps its number of instances. Finally it writes the
// statements while tracking the names in scope the way sema does, so that every
// name it writes is known to resolve to the value the IR means, and runs the
// text through the canonical formatter. The Writer class is declared in
// ir_source_writer.h; this file holds the driver and the first two steps,
// ir_source_statements.cpp the writing.
//
// A statement `T[axes]: dtype = expr` whose right side is one operation on named
// values lowers to exactly that operation: nothing is summed (every axis of the
// right side is on the left), and the result already has the left side's dtype,
// so no conversion is added. That is what makes the written file compute the
// same function, rounding included.
#include "ncd/ir_source.h"

#include "ir_source_writer.h"
#include "ncd/diagnostics.h"
#include "ncd/format.h"
#include "ncd/parser.h"

namespace ncd::ir_source_detail {

std::string Writer::write(const std::vector<const ir::Diagram *> &roots, const SourceWriteOptions &options) {
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
    if (!diagram->shards.empty()) {
      out << "\n";
      write_shards(out, *diagram);
    }
  }
  return out.str();
}

void Writer::collect(const ir::Diagram &diagram) {
  if (std::find(diagrams_.begin(), diagrams_.end(), &diagram) != diagrams_.end()) return;
  if (!on_path_.insert(&diagram).second) fail("diagram '" + diagram.name + "' calls itself");
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind == ir::OpKind::Call) collect(callee(op));
  });
  on_path_.erase(&diagram);
  diagrams_.push_back(&diagram);
}

const ir::Diagram &Writer::callee(const ir::Op &op) const {
  if (op.callee < 0 || static_cast<size_t>(op.callee) >= p_.diagrams.size())
    fail("a call to '" + op.callee_name + "' names no diagram of the program");
  return *p_.diagrams[static_cast<size_t>(op.callee)];
}

void Writer::check_diagram_names() {
  std::map<std::string, const ir::Diagram *> seen;
  for (const ir::Diagram *diagram : diagrams_) {
    if (!is_identifier(diagram->name)) fail("diagram name '" + diagram->name + "' is not a name of the language");
    auto [it, fresh] = seen.emplace(diagram->name, diagram);
    if (!fresh)
      fail("two diagrams are named '" + diagram->name + "' (in " + it->second->module + " and " + diagram->module +
           "); a written file holds one diagram of each name");
  }
}

// Every axis a diagram names: on the values it declares, computes or reads,
// in its operations and in its schedules.
std::set<int> Writer::axes_of(const ir::Diagram &diagram) const {
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
  for (const ir::ShardDirective &shard : diagram.shards) out.insert(shard.axes.begin(), shard.axes.end());
  for (int axis : out)
    if (axis < 0 || static_cast<size_t>(axis) >= p_.axes.size())
      fail("diagram '" + diagram.name + "' names an axis the program does not have");
  return out;
}

// Marks the axes whose own size (its file's size, or its definition) is used
// somewhere below this instance of `diagram`; `bound` are the axes its call
// binds to the caller's (docs/RUN.md: sizes inside calls).
void Writer::find_owners(const ir::Diagram &diagram, const std::set<int> &bound,
                         std::set<std::pair<const ir::Diagram *, std::set<int>>> &seen) {
  if (!seen.insert({&diagram, bound}).second) return;
  std::set<int> done;
  std::function<void(int)> own = [&](int axis) {
    if (bound.count(axis) || !done.insert(axis).second) return;
    owners_.insert(axis);
    for (int base : defining_axes(p_.axis(axis))) own(base);
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
void Writer::choose_axes() {
  std::set<int> used;
  for (const ir::Diagram *diagram : diagrams_) {
    std::set<int> axes = axes_of(*diagram);
    used.insert(axes.begin(), axes.end());
  }
  for (int axis : std::set<int>(used))
    for (int base : defining_axes(p_.axis(axis))) used.insert(base);
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

std::string Writer::describe_axis(int axis) const {
  const ir::Axis &a = p_.axis(axis);
  std::string size = a.size ? std::to_string(*a.size) : "no size";
  if (a.derived) size = a.definition.to_string([&](int id) { return p_.axis(id).name; }) + " = " + size;
  return a.module + " (" + size + ")";
}

// An alias written as one (`axis b = a`, which sema reads as an alias again): its original is written.
bool Writer::written_alias(const ir::Axis &axis) const {
  if (!axis.derived || axis.alias_of < 0) return false;
  auto it = representatives_.find(p_.axis(axis.alias_of).name);
  return it != representatives_.end() && it->second == axis.alias_of;
}

// The axes a derived or computed axis's size reads.
std::vector<int> Writer::defining_axes(const ir::Axis &axis) const {
  if (written_alias(axis)) return {axis.alias_of};
  if (axis.derived) return axis.definition.axes();
  if (axis.formula) return axis.formula->axes();
  return {};
}

// The size of the written axis of this name, as a polynomial in written base axes.
Poly Writer::written_poly(const std::string &name) {
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
Poly Writer::mapped(const Poly &poly) {
  return poly.substitute([&](int axis) { return written_poly(p_.axis(axis).name); });
}

bool Writer::equivalent(int a, int b) {
  const ir::Axis &x = p_.axis(a), &y = p_.axis(b);
  if (x.derived != y.derived || !x.formula != !y.formula) return false;
  if (x.formula) {
    auto text = [&](const ir::Axis &a) {
      return a.formula->substitute([&](int axis) { return mapped(Poly::axis(axis)); }).to_string([&](const Poly &poly) {
        return size_expression(poly);
      });
    };
    return text(x) == text(y);
  }
  if (!x.derived) return x.size == y.size;
  return mapped(x.definition) == mapped(y.definition);
}

// The text of a derived axis's size: by degree, then by names.
std::string Writer::size_expression(const Poly &poly) const {
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
void Writer::write_axes(std::ostringstream &out) {
  std::vector<int> order;
  std::set<std::string> done, active;
  std::function<void(const std::string &)> visit = [&](const std::string &name) {
    if (done.count(name)) return;
    if (!active.insert(name).second) fail("the definitions of the axes named '" + name + "' form a cycle");
    const ir::Axis &axis = p_.axis(representatives_.at(name));
    for (int base : defining_axes(axis)) visit(p_.axis(base).name);
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
    if (written_alias(axis))
      item += " = " + p_.axis(axis.alias_of).name;
    else if (axis.derived)
      item += " = " + size_expression(axis.definition);
    else if (axis.formula)
      item += " = " + axis.formula->to_string([&](const Poly &poly) { return size_expression(poly); });
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

std::string Writer::axis_list(const std::vector<int> &axes) const {
  std::string out;
  for (size_t i = 0; i < axes.size(); ++i) out += (i ? ", " : "") + p_.axis(axes[i]).name;
  return out;
}

bool Writer::inlinable(ir::OpKind kind) {
  return kind == ir::OpKind::Constant || kind == ir::OpKind::SizeOf || kind == ir::OpKind::AxisIndex;
}

Writer::Plan Writer::plan(const ir::Diagram &diagram) {
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
// names its instances, see ncd/instantiate.h).
void Writer::place_params(const ir::Diagram &diagram, Plan &plan) {
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
bool Writer::needs_statement(const Plan &plan, const ir::Diagram &diagram, int value) const {
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
void Writer::choose_default_dtype() {
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

}  // namespace ncd::ir_source_detail

namespace ncd {

bool write_ncd_source(const ir::Program &program, const std::vector<const ir::Diagram *> &roots,
                      const SourceWriteOptions &options, std::string &text, std::string &error) {
  std::string raw;
  try {
    raw = ir_source_detail::Writer(program).write(roots, options);
  } catch (const ir_source_detail::Unwritable &unwritable) {
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
