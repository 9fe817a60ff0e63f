// Writing one diagram of the IR as .ncd statements (see ir_source_writer.h):
// its signature, its params where their instances say, one statement per
// operation with the right side spelled as sema reads it (elementwise
// operators and builtins, contractions, reductions, normalisations, accesses,
// merges, calls with the bindings sema would not make by itself, repeats), and
// its schedules. Names are tracked in scope the way sema tracks them, so that
// every name written resolves to the value the IR means.
#include "ir_source_writer.h"
#include "ncd/instantiate.h"

namespace ncd::ir_source_detail {

int Writer::lookup(const std::string &name) const {
  for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
    if (auto it = frame->names.find(name); it != frame->names.end()) return it->second;
  return -1;
}

const Writer::Frame *Writer::carrier(const std::string &name) const {
  for (auto frame = frames_.rbegin(); frame != frames_.rend(); ++frame)
    if (frame->carried.count(name)) return &*frame;
  return nullptr;
}

bool Writer::is_output_name(const std::string &name) const {
  for (int id : d_->outputs)
    if (d_->value(id).name == name) return true;
  return false;
}

void Writer::write_diagram(std::ostringstream &out, const ir::Diagram &diagram) {
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

std::string Writer::dtype_suffix(ir::DType dtype, ir::DType implicit) const {
  return dtype == implicit ? "" : ": " + std::string(ir::dtype_name(dtype));
}

std::string Writer::declarations(const std::vector<int> &values) const {
  std::string out;
  for (int id : values) {
    const ir::Value &value = d_->value(id);
    out += (out.empty() ? "" : ", ") + name_of(id) + "[" + axis_list(value.axes) + "]" +
           dtype_suffix(value.dtype, default_dtype_);
  }
  return out;
}

void Writer::region(std::ostringstream &out, const ir::Region &region, int depth) {
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
  for (const auto &op : region.ops)
    if (op->kind == ir::OpKind::Repeat) index_positions_[op.get()] = iteration_index(*op);
  for (const auto &op : region.ops)
    if (!index_ops_.count(op.get())) statement(out, *op, depth);
}

int Writer::iteration_index(const ir::Op &repeat) {
  auto constant = [&](int value, double number) {
    auto it = plan_->producers.find(value);
    return it != plan_->producers.end() && it->second->kind == ir::OpKind::Constant && it->second->constant == number &&
                   d_->value(value).axes.empty()
               ? it->second
               : nullptr;
  };
  for (size_t k = 0; k < repeat.body_arguments.size() && k < repeat.operands.size(); ++k) {
    const int argument = repeat.body_arguments[k];
    const ir::Value &value = d_->value(argument);
    if (value.dtype != ir::DType::I32 || !value.axes.empty() || d_->value(repeat.results[k]).name[0] != '%') continue;
    const ir::Op *zero = constant(repeat.operands[k], 0);
    auto step = plan_->producers.find(repeat.body_yields[k]);
    if (!zero || step == plan_->producers.end()) continue;
    const ir::Op &add = *step->second;
    if (add.kind != ir::OpKind::Elementwise || add.function != ops::Fn::Add || add.operands.size() != 2) continue;
    const int other = add.operands[0] == argument ? add.operands[1] : add.operands[1] == argument ? add.operands[0] : -1;
    const ir::Op *one = other >= 0 ? constant(other, 1) : nullptr;
    if (!one) continue;
    index_ops_.insert({zero, &add, one});
    return static_cast<int>(k);
  }
  return -1;
}

void Writer::statement(std::ostringstream &out, const ir::Op &op, int depth) {
  if (op.kind == ir::OpKind::Repeat) {
    repeat(out, op, depth);
    return;
  }
  if (op.kind != ir::OpKind::Call && op.results.size() != (op.kind == ir::OpKind::Select ? 2u : 1u))
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
    case ir::OpKind::Scan: value = scan(op); break;
    case ir::OpKind::Select: value = select(op); break;
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
std::string Writer::target(int value, const std::string &indices) {
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

// A value read by name: `X[a, b]` (its own axes, read as they are), or `s` for a scalar.
std::string Writer::reference(int value) const {
  const std::string &name = name_of(value);
  if (lookup(name) != value) fail("'" + name + "'" + where() + " is read where that name means another value");
  const ir::Value &read = d_->value(value);
  return read.axes.empty() ? name : name + "[" + axis_list(read.axes) + "]";
}

std::string Writer::operand(int value) const {
  auto it = plan_->producers.find(value);
  if (it != plan_->producers.end() && inlinable(it->second->kind) && !needs_statement(*plan_, *d_, value))
    return inline_text(*it->second);
  return reference(value);
}

std::string Writer::inline_text(const ir::Op &op) const {
  if (op.kind == ir::OpKind::Constant) return number_text(op.constant);
  if (op.axes.size() != 1) fail("a " + std::string(ir::op_kind_name(op.kind)) + where() + " names no axis");
  const std::string &axis = p_.axis(op.axes[0]).name;
  if (op.kind == ir::OpKind::SizeOf) return "#" + axis;
  // An axis name in an expression is its positions only where no tensor takes that name.
  if (lookup(axis) >= 0)
    fail("the positions of axis '" + axis + "'" + where() + " are read where a tensor has that name");
  return axis;
}

void Writer::arity(const ir::Op &op, size_t count) const {
  if (op.operands.size() != count)
    fail("'" + std::string(ops::name(op.function)) + "'" + where() + " has " + std::to_string(op.operands.size()) + " operands, not " +
         std::to_string(count));
}

std::string Writer::elementwise(const ir::Op &op) const {
  const ops::Info &row = ops::info(op.function);
  const std::string function(row.name);
  // A copy broadcasts to its result's axes; everything else keeps the union of its operands'.
  std::set<int> axes = as_set(operand_axes(op)), result = as_set(d_->value(op.results[0]).axes);
  if (row.syntax == ops::Syntax::Copy ? !std::includes(result.begin(), result.end(), axes.begin(), axes.end())
                                      : axes != result)
    fail("the result of '" + function + "'" + where() + " does not have its operands' axes");
  std::vector<std::string> arguments;
  for (int id : op.operands) arguments.push_back(operand(id));
  if (row.kind != ops::Kind::Elementwise && row.kind != ops::Kind::Cast)
    fail("the elementwise function '" + function + "'" + where() + " has no spelling in the language");
  arity(op, static_cast<size_t>(row.arity));
  std::string name = function;
  switch (row.syntax) {
    case ops::Syntax::Infix: return arguments[0] + " " + std::string(row.symbol) + " " + arguments[1];
    case ops::Syntax::Prefix: return std::string(row.symbol) + arguments[0];
    case ops::Syntax::Copy: return arguments[0];
    case ops::Syntax::DType: name = std::string(ir::dtype_name(d_->value(op.results[0]).dtype)); break;
    case ops::Syntax::Call: break;
    case ops::Syntax::None: fail("the elementwise function '" + function + "'" + where() + " has no spelling in the language");
  }
  std::string out = name + "(";
  for (size_t i = 0; i < arguments.size(); ++i) out += (i ? ", " : "") + arguments[i];
  return out + ")";
}

// The axes of the operands, in order of first appearance.
std::vector<int> Writer::operand_axes(const ir::Op &op) const {
  std::vector<int> out;
  for (int id : op.operands)
    for (int axis : d_->value(id).axes)
      if (!contains(out, axis)) out.push_back(axis);
  return out;
}

// `removed` must be axes of the operands, and the result must have exactly the others.
void Writer::check_result_axes(const ir::Op &op, const std::vector<int> &available, const std::vector<int> &removed) const {
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
std::string Writer::contract(const ir::Op &op) const {
  if (op.operands.empty()) fail("a contraction" + where() + " has no operands");
  check_result_axes(op, operand_axes(op), op.axes);
  if (op.operands.size() == 1) return "sum[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + ")";
  std::string out;
  for (int id : op.operands) out += (out.empty() ? "" : " * ") + operand(id);
  return out;
}

std::string Writer::reduce(const ir::Op &op) const {
  const std::string function(ops::name(op.function));
  if (ops::info(op.function).kind != ops::Kind::Reduce)
    fail("the reduction '" + function + "'" + where() + " has no spelling in the language");
  arity(op, 1);
  if (op.axes.empty()) fail("a reduction" + where() + " names no axes");
  check_result_axes(op, operand_axes(op), op.axes);
  return function + "[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + ")";
}

// `V[.., top], I[.., top] = topk[e](X)`: the results' axis in place of the
// one selected along is the left side's (sema finds it there).
std::string Writer::select(const ir::Op &op) const {
  const std::string function(ops::name(op.function));
  if (ops::info(op.function).kind != ops::Kind::Select)
    fail("the selection '" + function + "'" + where() + " has no spelling in the language");
  arity(op, 1);
  if (op.axes.size() != 2) fail("a selection" + where() + " does not name its two axes");
  return function + "[" + p_.axis(op.axes[0]).name + "](" + operand(op.operands[0]) + ")";
}

std::string Writer::normalize(const ir::Op &op) const {
  const ops::Info &row = ops::info(op.function);
  const std::string function(row.name);
  if (row.kind != ops::Kind::Normalize)
    fail("the normalisation '" + function + "'" + where() + " has no spelling in the language");
  arity(op, 1);
  if (op.axes.empty()) fail("a normalisation" + where() + " names no axes");
  check_result_axes(op, operand_axes(op), {});
  for (int axis : op.axes)
    if (!contains(d_->value(op.operands[0]).axes, axis))
      fail("'" + function + "'" + where() + " normalises along an axis its operand lacks");
  std::string eps;
  for (auto &[key, value] : op.options) {
    if (key != "eps" || !row.eps)
      fail("'" + function + "'" + where() + " has an option '" + key + "' the language cannot write");
    if (!(value >= 0)) fail("'" + function + "'" + where() + " has an eps the language cannot write");
    if (value != row.default_eps) eps = ", eps = " + number_text(value);
  }
  return function + "[" + axis_list(op.axes) + "](" + operand(op.operands[0]) + eps + ")";
}

std::string Writer::scan(const ir::Op &op) const {
  const ops::Info &row = ops::info(op.function);
  const std::string function(row.name);
  if (row.kind != ops::Kind::Scan) fail("the scan '" + function + "'" + where() + " has no spelling in the language");
  arity(op, static_cast<size_t>(row.arity));
  if (op.axes.size() != 1) fail("the scan '" + function + "'" + where() + " does not name one axis");
  check_result_axes(op, operand_axes(op), {});
  if (!contains(operand_axes(op), op.axes[0]))
    fail("'" + function + "'" + where() + " scans along an axis its operands lack");
  std::string out = function + "[" + axis_list(op.axes) + "](";
  for (size_t i = 0; i < op.operands.size(); ++i) out += (i ? ", " : "") + operand(op.operands[i]);
  return out + ")";
}

std::string Writer::affine_text(const ir::AccessIndex &index, int stored) const {
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
  // One axis of another size at offset 0 is affine only written with arithmetic (a bare axis renames).
  // Sizes that are equal only as numbers stay `+ 0`: -D may make them differ.
  if (index.offset == 0 && terms.size() == 1 && terms[0].second == 1 && terms[0].first != stored &&
      p_.size_poly(terms[0].first) != p_.size_poly(stored))
    return out + " + 0";
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

std::string Writer::access(const ir::Op &op) const {
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
        out += affine_text(index, read.axes[i]);
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
std::string Writer::merge(const ir::Op &op, std::string &indices) {
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
    std::vector<int> chosen;
    for (auto &[name, representative] : representatives_)
      if (p_.axis(representative).derived && written_poly(name) == product) chosen.push_back(representative);
    // An alias (`axis b = a`) of another candidate is not one, as sema reads it.
    for (int id : chosen) {
      const int original = p_.axis(id).alias_of;
      if (original < 0 || std::none_of(chosen.begin(), chosen.end(), [&](int o) {
            return p_.axis(o).name == p_.axis(original).name;
          }))
        candidates.push_back(p_.axis(id).name);
    }
    std::string merged = candidates.size() == 1 ? candidates[0] : "";
    // A declared output or carried value says which axis it stores.
    const std::string &target = name_of(result);
    if (is_output_name(target) || (lookup(target) >= 0 && carrier(target)))
      for (const std::string &candidate : candidates)
        for (int axis : result_axes)
          if (p_.axis(axis).name == candidate) merged = candidate;
    // No product names it: sema merges into the declared axis of the product's size (`(two, half)` into d).
    if (candidates.empty() && (is_output_name(target) || (lookup(target) >= 0 && carrier(target))))
      merged = p_.axis(result_axes[i]).name;
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
std::string Writer::call(const ir::Op &op) const {
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
  std::string out = (op.label.empty() ? "" : call_label_source(op.label) + ": ") + target.name +
                    (bindings.empty() ? "" : "[" + bindings + "]") + "(";
  for (size_t i = 0; i < op.operands.size(); ++i) out += (i ? ", " : "") + operand(op.operands[i]);
  return out + ")";
}

// `repeat N { ... }`: the operand, the block argument, the yield and the
// result of each carried value share one name, which sema then carries.
// Where a pass left the operand or the yield under another name (it removed
// the copy that named it), a copy names it again.
void Writer::repeat(std::ostringstream &out, const ir::Op &op, int depth) {
  const size_t carried = op.operands.size();
  if (!op.body || op.count < 1 || op.body_arguments.size() != carried || op.body_yields.size() != carried ||
      op.results.size() != carried)
    fail("a repeat" + where() + " does not carry each value through its body");
  const std::string indent(static_cast<size_t>(depth) * 2, ' ');
  const int index = index_positions_.at(&op);  // found when the enclosing region was scanned
  std::vector<std::string> names;
  for (size_t i = 0; i < carried; ++i) {
    const std::string &name = name_of(op.body_arguments[i]);
    if (static_cast<int>(i) == index) {
      if (lookup(name) >= 0 || is_output_name(name)) fail("the iteration index '" + name + "'" + where() + " hides another name");
      names.push_back(name);
      continue;
    }
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
  out << indent << "repeat " << op.count << (index >= 0 ? " as " + names[static_cast<size_t>(index)] : "") << " {\n";
  Frame frame;
  for (size_t i = 0; i < carried; ++i) {
    frame.names[names[i]] = op.body_arguments[i];
    if (static_cast<int>(i) != index) frame.carried[names[i]] = op.body_arguments[i];
  }
  frames_.push_back(frame);
  region(out, *op.body, depth + 1);
  for (size_t i = 0; i < carried; ++i) {
    if (static_cast<int>(i) == index || frames_.back().names.at(names[i]) == op.body_yields[i]) continue;
    out << indent << "  " << renaming_copy(op.body_arguments[i], op.body_yields[i]) << "\n";
    frames_.back().names[names[i]] = op.body_yields[i];
  }
  frames_.pop_back();
  out << indent << "}\n";
  for (int id : op.results) bind(id);
}

// `N[axes] = V[axes]`: the carried value `argument` takes the value `source`.
std::string Writer::renaming_copy(int argument, int source) const {
  const ir::Value &to = d_->value(argument), &from = d_->value(source);
  if (to.dtype != from.dtype || as_set(to.axes) != as_set(from.axes))
    fail("the value carried as '" + name_of(argument) + "' by a repeat" + where() + " changes its dtype or axes");
  return name_of(argument) + "[" + axis_list(to.axes) + "]" + dtype_suffix(to.dtype, default_dtype_) + " = " +
         reference(source);
}

void Writer::write_schedule(std::ostringstream &out, const ir::Diagram &diagram, const ir::Schedule &schedule) {
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

// The mesh as one block of `shard` lines (sharding is no kernel plan, so its own block).
void Writer::write_shards(std::ostringstream &out, const ir::Diagram &diagram) {
  out << "schedule " << diagram.name << " {\n";
  for (const ir::ShardDirective &shard : diagram.shards) {
    std::string axes;
    std::set<std::string> written;  // a shard names axes by name: every file's axis of that name at once
    for (int axis : shard.axes)
      if (written.insert(p_.axis(axis).name).second) axes += (axes.empty() ? "" : ", ") + p_.axis(axis).name;
    out << "  shard " << axes << " over " << shard.devices << "\n";
  }
  out << "}\n";
}

}  // namespace ncd::ir_source_detail
