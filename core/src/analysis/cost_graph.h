// The cost model's flattened graph: a diagram with its calls inlined through
// their bindings (ncd/instantiate.h) and its repeat bodies kept once with a
// multiplier, as virtual axes, values and operations (`Graph`), every figure a
// Formula and a number at once (`Sized`); the FLOPs of each function are
// columns of the op table (ncd/ops.h). Private to the cost model: the pricer
// (pricer.h; cost.cpp, napkin.cpp) prices the graph.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cost_format.h"
#include "ncd/cost.h"
#include "ncd/instantiate.h"
#include "ncd/schedule_check.h"

namespace ncd::cost_graph {

constexpr int kCapacitySymbol = -1;
constexpr int kSquareTileSymbol = -2;
inline int tile_symbol(int vaxis) { return -1000 - 2 * vaxis; }
inline int chunk_symbol(int vaxis) { return -1001 - 2 * vaxis; }

constexpr double kBoltzmann = 1.380649e-23;  // J/K (exact, SI 2019)

struct Sized {
  Formula f;
  double v = 0;
  static Sized of(double x) { return {Formula::constant(x), x}; }
  Sized operator*(const Sized &o) const { return {f * o.f, v * o.v}; }
  Sized operator+(const Sized &o) const { return {f + o.f, v + o.v}; }
  Sized operator-(const Sized &o) const { return {f - o.f, v - o.v}; }
  Sized &operator+=(const Sized &o) { return *this = *this + o; }
  Sized scaled(double k) const { return {f.scaled(k), v * k}; }
  Figure figure() const { return {v, f}; }
};

inline Sized divide(const Sized &a, const Sized &b) {
  auto q = a.f.divide(b.f);
  return {q ? *q : a.f.scaled(b.v != 0 ? 1.0 / b.v : 0.0), b.v != 0 ? a.v / b.v : 0.0};
}

inline bool contains(const std::vector<int> &list, int item) { return std::find(list.begin(), list.end(), item) != list.end(); }

// FLOPs of a reduction or normalisation (docs/COST.md, "FLOPs"): row.flops
// per element of `each` plus row.flops_out per element of `per` (results,
// rows). Factors of 1 and 0 leave the term as is or out, so that formulas
// stay as short as the model states them.
inline Sized per_element(const Sized &each, const Sized &per, const ops::Info &row) {
  auto term = [](const Sized &s, double k) { return k == 1 ? s : s.scaled(k); };
  Sized out = term(each, row.flops);
  if (row.flops_out != 0) out = out + term(per, row.flops_out);
  return out;
}

// ------------------------------------------------------------ the flat graph

struct VAxis {
  std::string name;
  Sized size;
  int program_axis = -1;
};

struct VValue {
  std::string name;
  std::vector<int> axes;
  ir::DType dtype = ir::DType::F32;
  enum class Role { Input, Param, Intermediate, Output } role = Role::Intermediate;
  bool free = false;  // constants, sizes, axis indices and what only they compute: registers
  int producer = -1;  // vop index
  int alias_of = -1;  // a renamed view of another value
  std::vector<std::pair<int, int>> alias_axes;  // (this value's axis, the aliased value's axis)
  int instance = -1;
  int ir_value = -1;
  SourceLocation location;
};

struct VOp {
  const ir::Op *op = nullptr;
  std::vector<int> operands, results, axes;
  std::vector<ir::AccessIndex> access;
  std::vector<std::vector<int>> merges;
  double repeat = 1;
  int row = -1;
  int instance = -1;
  bool view() const { return op->kind == ir::OpKind::Access || op->kind == ir::OpKind::Merge; }
  bool hidden() const {
    return view() || op->kind == ir::OpKind::Constant || op->kind == ir::OpKind::SizeOf ||
           op->kind == ir::OpKind::AxisIndex;
  }
};

struct Row {
  std::string name, what;
  SourceLocation location;
  int parent = -1;
  std::vector<int> children;
  int vop = -1;  // leaf rows
  int first = 0, last = 0;
  const ir::Op *call = nullptr;  // call rows
  int instance = -1;             // call rows: the callee's instance
  double repeat = 1;
};

struct Instance {
  const ir::Diagram *diagram = nullptr;
  std::map<int, int> axes;    // program axis → vaxis
  std::vector<int> lifted;    // vaxes
  std::map<int, int> values;  // ir value → vvalue
};

struct Read {
  int storage;
  Sized elements;
  std::vector<double> extents;  // per axis of the storage, what the read touches
};

using Extents = std::map<int, Sized>;  // vaxis → extent (absent: the whole axis)

class Graph {
 public:
  explicit Graph(const ir::Program &program) : p_(program) {
    for (const ir::Axis &axis : program.axes)
      vaxes.push_back({axis.name,
                       {Formula::symbol(axis.id), axis.size ? static_cast<double>(*axis.size) : std::nan("")},
                       axis.id});
  }

  void build(const ir::Diagram &diagram) {
    Instance root;
    root.diagram = &diagram;
    instances.push_back(root);
    for (int id : diagram.inputs) make_value(0, id, VValue::Role::Input, {});
    for (int id : diagram.params) make_value(0, id, VValue::Role::Param, {});
    emit_region(0, diagram.body, 1.0, -1);
    for (int id : diagram.outputs) values[static_cast<size_t>(instances[0].values.at(id))].role = VValue::Role::Output;
  }

  const ir::Program &p_;
  std::vector<VAxis> vaxes;
  std::vector<VValue> values;
  std::vector<VOp> vops;
  std::vector<Row> rows;
  std::vector<int> top_rows;
  std::vector<Instance> instances;

  double numeric(const Formula &formula) const {
    auto value = formula.evaluate([&](int symbol) -> std::optional<double> {
      if (symbol < 0 || symbol >= static_cast<int>(p_.axes.size())) return std::nullopt;
      auto size = p_.axis(symbol).size;
      return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
    });
    return value ? *value : std::nan("");
  }

  int vaxis_of(int instance, int axis) {
    auto &map = instances[static_cast<size_t>(instance)].axes;
    if (auto it = map.find(axis); it != map.end()) return it->second;
    if (instance == 0) {
      map[axis] = axis;
      return axis;
    }
    const ir::Axis &a = p_.axis(axis);
    Sized size;
    if (a.derived) {
      auto formula = Formula::from_poly(a.definition).substitute([&](int base) {
        return vaxes[static_cast<size_t>(vaxis_of(instance, base))].size.f;
      });
      size.f = formula ? *formula : Formula::symbol(axis);
      size.v = numeric(size.f);
    } else {
      size = {Formula::symbol(axis), a.size ? static_cast<double>(*a.size) : std::nan("")};
    }
    int id = static_cast<int>(vaxes.size());
    vaxes.push_back({a.name, size, axis});
    instances[static_cast<size_t>(instance)].axes[axis] = id;
    return id;
  }

  int value_of(int instance, int ir_value) const { return instances[static_cast<size_t>(instance)].values.at(ir_value); }

  int make_value(int instance, int ir_value, VValue::Role role, const std::vector<int> &lifted) {
    const ir::Diagram &diagram = *instances[static_cast<size_t>(instance)].diagram;
    const ir::Value &source = diagram.value(ir_value);
    VValue value;
    value.name = source.name;
    for (int axis : source.axes) value.axes.push_back(vaxis_of(instance, axis));
    for (int axis : lifted)
      if (!contains(value.axes, axis)) value.axes.push_back(axis);
    value.dtype = source.dtype;
    value.role = role;
    value.instance = instance;
    value.ir_value = ir_value;
    value.location = source.location;
    int id = static_cast<int>(values.size());
    values.push_back(value);
    instances[static_cast<size_t>(instance)].values[ir_value] = id;
    return id;
  }

  int alias(int instance, int ir_value, int base, std::vector<int> axes, std::vector<std::pair<int, int>> pairs) {
    int id = make_value(instance, ir_value, VValue::Role::Intermediate, {});
    VValue &value = values[static_cast<size_t>(id)];
    value.axes = std::move(axes);
    value.alias_of = base;
    value.alias_axes = std::move(pairs);
    value.free = values[static_cast<size_t>(base)].free;
    return id;
  }

  int new_row(int parent, const std::string &name, const std::string &what, SourceLocation location) {
    Row row;
    row.parent = parent;
    row.name = name;
    row.what = what;
    row.location = location;
    row.first = static_cast<int>(vops.size());
    int id = static_cast<int>(rows.size());
    rows.push_back(row);
    if (parent >= 0)
      rows[static_cast<size_t>(parent)].children.push_back(id);
    else
      top_rows.push_back(id);
    return id;
  }

  std::string axis_list(const std::vector<int> &axes, int instance) {
    std::string out;
    for (int axis : axes) out += (out.empty() ? "" : ", ") + vaxes[static_cast<size_t>(vaxis_of(instance, axis))].name;
    return out;
  }

  std::string describe(const ir::Op &op, int instance) {
    std::string kind(ir::op_kind_name(op.kind));
    switch (op.kind) {
      case ir::OpKind::Contract: return "contract sum[" + axis_list(op.axes, instance) + "]";
      case ir::OpKind::Reduce:
      case ir::OpKind::Normalize:
      case ir::OpKind::Scan:
        return kind + " " + std::string(ops::name(op.function)) + "[" + axis_list(op.axes, instance) + "]";
      case ir::OpKind::Select:
        return kind + " " + std::string(ops::name(op.function)) + "[" + axis_list({op.axes.at(0)}, instance) + "]";
      case ir::OpKind::Elementwise: return kind + " " + std::string(ops::name(op.function));
      default: return kind;
    }
  }

  void emit_region(int instance, const ir::Region &region, double repeat, int parent) {
    for (const auto &op : region.ops) {
      if (op->kind == ir::OpKind::Call)
        emit_call(instance, *op, repeat, parent);
      else if (op->kind == ir::OpKind::Repeat)
        emit_repeat(instance, *op, repeat, parent);
      else
        emit_op(instance, *op, repeat, parent);
    }
  }

  void emit_op(int instance, const ir::Op &op, double repeat, int parent) {
    VOp v;
    v.op = &op;
    v.instance = instance;
    v.repeat = repeat;
    for (int operand : op.operands) v.operands.push_back(value_of(instance, operand));
    for (int axis : op.axes) v.axes.push_back(vaxis_of(instance, axis));
    v.access = op.access;
    for (auto &index : v.access) {
      for (auto &term : index.terms) term.first = vaxis_of(instance, term.first);
      for (int &axis : index.split) axis = vaxis_of(instance, axis);
    }
    for (const auto &group : op.merges) {
      std::vector<int> mapped;
      for (int axis : group) mapped.push_back(vaxis_of(instance, axis));
      v.merges.push_back(mapped);
    }
    // The lifted axes the operands carry are carried by the results.
    std::vector<int> lifted;
    for (int axis : instances[static_cast<size_t>(instance)].lifted)
      for (int operand : v.operands)
        if (contains(values[static_cast<size_t>(operand)].axes, axis) && !contains(lifted, axis)) lifted.push_back(axis);
    bool all_free = true;
    for (int operand : v.operands) all_free = all_free && values[static_cast<size_t>(operand)].free;
    bool free = op.kind == ir::OpKind::Constant || op.kind == ir::OpKind::SizeOf || op.kind == ir::OpKind::AxisIndex ||
                (op.kind == ir::OpKind::Elementwise && all_free);
    int index = static_cast<int>(vops.size());
    for (int result : op.results) {
      int id = make_value(instance, result, VValue::Role::Intermediate, lifted);
      values[static_cast<size_t>(id)].producer = index;
      values[static_cast<size_t>(id)].free = free;
      v.results.push_back(id);
    }
    const ir::Diagram &diagram = *instances[static_cast<size_t>(instance)].diagram;
    std::string name = op.results.empty() ? "" : diagram.value(op.results[0]).name;
    int row = new_row(parent, name, describe(op, instance), op.location);
    v.row = row;
    rows[static_cast<size_t>(row)].vop = index;
    vops.push_back(v);
    rows[static_cast<size_t>(row)].last = static_cast<int>(vops.size());
  }

  void emit_call(int instance, const ir::Op &op, double repeat, int parent) {
    const CallBinding binding(p_, op);
    const ir::Diagram &callee = binding.callee();
    Instance inner;
    inner.diagram = &callee;
    std::set<int> used;
    // The caller's vaxis of a bound callee axis, `own` when unbound.
    auto caller_vaxis = [&](const CallBinding::AxisPair &pair, int own) {
      return pair.caller >= 0 ? vaxis_of(instance, pair.caller) : own;
    };
    std::string bindings;
    for (auto [from, to] : op.bindings) {
      int v = vaxis_of(instance, to);
      if (p_.axis(from).name != p_.axis(to).name || from != to)
        bindings += (bindings.empty() ? "" : ", ") + p_.axis(from).name + " = " + vaxes[static_cast<size_t>(v)].name;
      if (!used.insert(v).second) {
        // Two callee axes bound to one caller axis (Attention[q = s, k = s]): a copy of the same size.
        int copy = static_cast<int>(vaxes.size());
        vaxes.push_back({p_.axis(from).name, vaxes[static_cast<size_t>(v)].size, from});
        v = copy;
      }
      inner.axes[from] = v;
    }
    inner.lifted = instances[static_cast<size_t>(instance)].lifted;
    std::string over;
    for (int axis : op.lifted) {
      int v = vaxis_of(instance, axis);
      if (!contains(inner.lifted, v)) inner.lifted.push_back(v);
      over += (over.empty() ? "" : ", ") + vaxes[static_cast<size_t>(v)].name;
    }
    int ci = static_cast<int>(instances.size());
    instances.push_back(inner);
    std::string what = "call " + callee.name + (bindings.empty() ? "" : "[" + bindings + "]") +
                       (over.empty() ? "" : " over " + over);
    const ir::Diagram &caller = *instances[static_cast<size_t>(instance)].diagram;
    int row = new_row(parent, op.results.empty() ? "" : caller.value(op.results[0]).name, what, op.location);
    rows[static_cast<size_t>(row)].call = &op;
    rows[static_cast<size_t>(row)].instance = ci;
    rows[static_cast<size_t>(row)].repeat = repeat;
    // A copy: emit_region below adds instances, which may move the vector.
    const std::vector<int> lifted = instances[static_cast<size_t>(ci)].lifted;
    for (size_t k = 0; k < callee.inputs.size(); ++k) {
      int outer = value_of(instance, op.operands[k]);
      std::vector<int> axes;
      std::vector<std::pair<int, int>> pairs;
      for (const CallBinding::AxisPair &pair : binding.input_axes(k)) {
        int mine = vaxis_of(ci, pair.callee);
        axes.push_back(mine);
        pairs.push_back({mine, caller_vaxis(pair, mine)});
      }
      for (int axis : lifted)
        if (contains(values[static_cast<size_t>(outer)].axes, axis)) {
          axes.push_back(axis);
          pairs.push_back({axis, axis});
        }
      alias(ci, callee.inputs[k], outer, axes, pairs);
    }
    for (int id : callee.params) make_value(ci, id, VValue::Role::Param, {});
    emit_region(ci, callee.body, repeat, row);
    for (size_t k = 0; k < callee.outputs.size() && k < op.results.size(); ++k) {
      int inner_value = value_of(ci, callee.outputs[k]);
      std::vector<int> axes;
      std::vector<std::pair<int, int>> pairs;
      for (const CallBinding::AxisPair &pair : binding.output_axes(k)) {
        int theirs = vaxis_of(ci, pair.callee);
        int mine = caller_vaxis(pair, theirs);
        axes.push_back(mine);
        pairs.push_back({mine, theirs});
      }
      for (int axis : values[static_cast<size_t>(inner_value)].axes)
        if (contains(lifted, axis) && !contains(axes, axis)) {
          axes.push_back(axis);
          pairs.push_back({axis, axis});
        }
      alias(instance, op.results[k], inner_value, axes, pairs);
    }
    rows[static_cast<size_t>(row)].last = static_cast<int>(vops.size());
  }

  void emit_repeat(int instance, const ir::Op &op, double repeat, int parent) {
    int row = new_row(parent, "", "repeat " + std::to_string(op.count), op.location);
    rows[static_cast<size_t>(row)].repeat = repeat * static_cast<double>(op.count);
    auto identity = [&](int base) {
      std::vector<std::pair<int, int>> pairs;
      for (int axis : values[static_cast<size_t>(base)].axes) pairs.push_back({axis, axis});
      return pairs;
    };
    for (size_t k = 0; k < op.body_arguments.size(); ++k) {
      int outer = value_of(instance, op.operands[k]);
      alias(instance, op.body_arguments[k], outer, values[static_cast<size_t>(outer)].axes, identity(outer));
    }
    emit_region(instance, *op.body, repeat * static_cast<double>(op.count), row);
    for (size_t k = 0; k < op.results.size(); ++k) {
      int yield = value_of(instance, op.body_yields[k]);
      alias(instance, op.results[k], yield, values[static_cast<size_t>(yield)].axes, identity(yield));
    }
    rows[static_cast<size_t>(row)].last = static_cast<int>(vops.size());
  }

  // ---------------------------------------------------------------- reads

  Sized full(int vaxis) const { return vaxes[static_cast<size_t>(vaxis)].size; }

  Sized extent(const Extents &extents, int vaxis) const {
    auto it = extents.find(vaxis);
    return it != extents.end() ? it->second : full(vaxis);
  }

  Sized clamp(const Sized &extent, int vaxis) const {
    Sized whole = full(vaxis);
    return extent.v >= whole.v - 1e-9 ? whole : extent;
  }

  // The storages a read of `value` touches, with the elements of each, when
  // the reader covers `extents` of the value's axes.
  void reads(int value_id, const Extents &extents, std::vector<Read> &out, int depth = 0) const {
    const VValue &value = values[static_cast<size_t>(value_id)];
    if (value.free || depth > 64) return;
    if (value.alias_of >= 0) {
      Extents base;
      for (auto [mine, theirs] : value.alias_axes) base[theirs] = extent(extents, mine);
      reads(value.alias_of, base, out, depth + 1);
      return;
    }
    if (value.producer >= 0) {
      const VOp &op = vops[static_cast<size_t>(value.producer)];
      if (op.op->kind == ir::OpKind::Access) {
        const VValue &source = values[static_cast<size_t>(op.operands[0])];
        Extents inner;
        for (size_t position = 0; position < source.axes.size(); ++position) {
          int axis = source.axes[position];
          if (position >= op.access.size()) {  // a lifted axis: passes through
            inner[axis] = extent(extents, axis);
            continue;
          }
          const ir::AccessIndex &index = op.access[position];
          Sized e = Sized::of(1);
          switch (index.kind) {
            case ir::AccessIndex::Kind::Affine:
              for (auto [term, coefficient] : index.terms)
                e = e + (extent(extents, term) - Sized::of(1)).scaled(std::fabs(static_cast<double>(coefficient)));
              break;
            case ir::AccessIndex::Kind::Split:
              for (int part : index.split) e = e * extent(extents, part);
              break;
            case ir::AccessIndex::Kind::Gather: {
              int gather = op.operands[static_cast<size_t>(index.gather_operand)];
              for (int part : values[static_cast<size_t>(gather)].axes) e = e * extent(extents, part);
              reads(gather, extents, out, depth + 1);
              break;
            }
          }
          inner[axis] = clamp(e, axis);
        }
        reads(op.operands[0], inner, out, depth + 1);
        return;
      }
      if (op.op->kind == ir::OpKind::Merge) {
        Extents inner;
        for (size_t i = 0; i < value.axes.size(); ++i) {
          int axis = value.axes[i];
          Sized e = extent(extents, axis);
          if (i >= op.merges.size()) {
            inner[axis] = e;
            continue;
          }
          const auto &group = op.merges[i];
          if (group.size() == 1 || e.v >= full(axis).v - 1e-9) {
            for (int part : group) inner[part] = group.size() == 1 ? e : full(part);
            continue;
          }
          Sized rest = Sized::of(1);
          for (size_t k = 1; k < group.size(); ++k) {
            rest = rest * full(group[k]);
            inner[group[k]] = full(group[k]);
          }
          inner[group[0]] = clamp(divide(e, rest), group[0]);
        }
        reads(op.operands[0], inner, out, depth + 1);
        return;
      }
    }
    Sized elements = Sized::of(1);
    std::vector<double> per_axis;
    for (int axis : value.axes) {
      Sized e = extent(extents, axis);
      elements = elements * e;
      per_axis.push_back(e.v);
    }
    out.push_back({value_id, elements, per_axis});
  }

  int storage(int value_id) const {
    while (values[static_cast<size_t>(value_id)].alias_of >= 0) value_id = values[static_cast<size_t>(value_id)].alias_of;
    return value_id;
  }

  // Reads of one op: each distinct operand once.
  std::vector<Read> op_reads(const VOp &op, const Extents &extents) const {
    std::vector<Read> out;
    std::set<int> seen;
    for (int operand : op.operands)
      if (seen.insert(operand).second) reads(operand, extents, out);
    return out;
  }

  Sized elements_of(int value_id, const Extents &extents) const {
    Sized out = Sized::of(1);
    for (int axis : values[static_cast<size_t>(value_id)].axes) out = out * extent(extents, axis);
    return out;
  }

  // ---------------------------------------------------------------- FLOPs

  Sized product(const std::vector<int> &axes, const Extents &extents) const {
    Sized out = Sized::of(1);
    for (int axis : axes) out = out * extent(extents, axis);
    return out;
  }

  Sized flops(const VOp &op, const Extents &extents) const {
    auto axes_of = [&](int value) -> const std::vector<int> & { return values[static_cast<size_t>(value)].axes; };
    switch (op.op->kind) {
      case ir::OpKind::Elementwise:
        return product(axes_of(op.results[0]), extents).scaled(ops::info(op.op->function).flops);
      case ir::OpKind::Contract: {
        std::vector<int> iteration = axes_of(op.results[0]);
        int inner = 0, outer = 0;
        for (int operand : op.operands) {
          bool summed = false;
          for (int axis : axes_of(operand)) summed = summed || contains(op.axes, axis);
          if (summed) {
            ++inner;
            for (int axis : axes_of(operand))
              if (!contains(iteration, axis)) iteration.push_back(axis);
          } else {
            ++outer;
          }
        }
        for (int axis : op.axes)
          if (!contains(iteration, axis)) iteration.push_back(axis);
        // (inner - 1) multiplies and one add per point of the iteration space:
        // a multiply-add counts 2; operands without summed axes scale the result.
        Sized space = product(iteration, extents);
        Sized out = space.scaled(inner >= 2 ? inner : 1);
        if (outer > 0) out += product(axes_of(op.results[0]), extents).scaled(outer);
        return out;
      }
      case ir::OpKind::Reduce: {
        Sized in = product(axes_of(op.operands[0]), extents);
        Sized out = product(axes_of(op.results[0]), extents);
        return per_element(in, out, ops::info(op.op->function));
      }
      case ir::OpKind::Normalize: {
        Sized x = product(axes_of(op.operands[0]), extents);
        std::vector<int> kept;
        for (int axis : axes_of(op.operands[0]))
          if (!contains(op.axes, axis)) kept.push_back(axis);
        Sized rows = product(kept, extents);
        return per_element(x, rows, ops::info(op.op->function));
      }
      // The work of the sequential recurrence: the row's FLOPs per result element (docs/COST.md).
      case ir::OpKind::Scan:
        return per_element(product(axes_of(op.results[0]), extents), Sized::of(0), ops::info(op.op->function));
      case ir::OpKind::Select: {
        // A comparison sort: ⌈log2 n⌉ comparisons per element of a row of n.
        Sized x = product(axes_of(op.operands[0]), extents);
        const double n = extent(extents, op.axes.at(0)).v;
        return x.scaled(ops::info(op.op->function).flops * std::max(1.0, std::ceil(std::log2(std::max(n, 1.0)))));
      }
      default: return Sized::of(0);
    }
  }

  // Evaluations on special-function units (docs/COST.md): one per result
  // element of a special pointwise function, one per operand element of a
  // special reduction or normalisation (softmax's exp, logsumexp's exp).
  Sized special(const VOp &op, const Extents &extents) const {
    if (!ops::info(op.op->function).special) return Sized::of(0);
    switch (op.op->kind) {
      case ir::OpKind::Elementwise: return product(values[static_cast<size_t>(op.results[0])].axes, extents);
      case ir::OpKind::Reduce:
      case ir::OpKind::Normalize: return product(values[static_cast<size_t>(op.operands[0])].axes, extents);
      default: return Sized::of(0);
    }
  }

  // The dtype an op computes in: a contraction's widest summed operand, a
  // position's operand, else the widest of its operands and results (free
  // scalars aside).
  ir::DType compute_dtype(const VOp &op) const {
    ir::DType best = ir::DType::F32;
    int best_bytes = 0;
    auto consider = [&](int value) {
      const VValue &v = values[static_cast<size_t>(value)];
      if (v.free) return;
      if (ir::dtype_bytes(v.dtype) > best_bytes) {
        best_bytes = ir::dtype_bytes(v.dtype);
        best = v.dtype;
      }
    };
    if (op.op->kind == ir::OpKind::Contract) {
      for (int operand : op.operands) {
        bool summed = false;
        for (int axis : values[static_cast<size_t>(operand)].axes) summed = summed || contains(op.axes, axis);
        if (summed) consider(operand);
      }
    } else {
      for (int operand : op.operands) consider(operand);
      // Positions (argmax, argmin, topk, sort) compare their operand's values; the i32 positions are stored, not
      // computed with.
      const bool positions = op.op->kind == ir::OpKind::Select ||
                             (op.op->kind == ir::OpKind::Reduce && ops::info(op.op->function).position);
      if (!positions)
        for (int result : op.results) consider(result);
    }
    if (best_bytes == 0) {
      for (int result : op.results) consider(result);
      if (best_bytes == 0) return ir::DType::F32;
    }
    if (best == ir::DType::Bool || best == ir::DType::I32) return best == ir::DType::Bool ? ir::DType::I8 : best;
    return best;
  }
};

}  // namespace ncd::cost_graph
