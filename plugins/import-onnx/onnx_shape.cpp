// The ops that change how a tensor's elements are grouped into dimensions,
// and the integer arithmetic on shapes that feeds them (plugin import-onnx,
// docs/IMPORT.md). ncd has no layouts, so none of them moves data: a reshape
// that splits a dimension says its class is a product (768 = heads × d), one
// that merges says the same of the merged class, a chunk (Split) or a
// constant Gather reads a dimension at a constant position, and the shapes
// torch computes at run time (Shape, Gather, Concat, arithmetic) are folded
// to items that name the dimensions they came from. Preconditions: the
// operands were read by onnx_graph.cpp; every refusal names the node.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "onnx_builder.h"

namespace ncd::onnx_import {
namespace {

// coef × the product of symbolic classes: sizes compared as monomials.
struct Mono {
  int64_t coef = 1;
  std::vector<int> syms;
  bool operator==(const Mono &o) const { return coef == o.coef && syms == o.syms; }
};

// a / b when it is a monomial with a whole coefficient.
std::optional<Mono> divide(const Mono &a, const Mono &b) {
  if (b.coef == 0 || a.coef % b.coef != 0) return std::nullopt;
  Mono q{a.coef / b.coef, a.syms};
  for (int s : b.syms) {
    auto it = std::find(q.syms.begin(), q.syms.end(), s);
    if (it == q.syms.end()) return std::nullopt;
    q.syms.erase(it);
  }
  return q;
}

}  // namespace

std::vector<ShapeItem> Builder::items(const onnx::NodeProto &node, int k) {
  const Value &v = value(lookup(node, k));
  if (v.role == Role::Data) return v.items;
  if (v.role == Role::Literal)  // INT64_MAX ("to the end" of a Slice) does not survive a double: clamp
    return {ShapeItem{v.literal >= 9.2e18 ? INT64_MAX : v.literal <= -9.2e18 ? INT64_MIN : static_cast<int64_t>(v.literal), {}}};
  throw Failure{where(node) + " takes its input " + std::to_string(k + 1) + " ('" + node.input(k) +
                "') from a computation on tensors; ncd import needs a shape it can fold to sizes"};
}

std::vector<int64_t> Builder::constant_list(const onnx::NodeProto &node, int k) {
  std::vector<int64_t> out;
  for (const ShapeItem &item : items(node, k)) {
    if (!item.nodes.empty())
      throw Failure{where(node) + " takes its input " + std::to_string(k + 1) + " ('" + node.input(k) +
                    "') from the size of a dimension; ncd import needs it constant"};
    out.push_back(item.coef);
  }
  return out;
}

int Builder::data_result(const onnx::NodeProto &node, std::vector<ShapeItem> list, int output) {
  if (node.output_size() <= output || node.output(output).empty()) throw Failure{where(node) + " has no output"};
  Value v;
  v.onnx_name = node.output(output);
  v.role = Role::Data;
  v.node = node.name();
  v.op = node.op_type();
  v.items = std::move(list);
  return add(std::move(v));
}

// Add, Sub, Mul, Div on shapes: products of sizes stay symbolic, the rest must be numbers.
bool Builder::shape_arithmetic(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  if (op != "Add" && op != "Sub" && op != "Mul" && op != "Div") return false;
  if (node.input_size() != 2 || !(is_data(node, 0) || is_data(node, 1))) return false;
  std::vector<ShapeItem> a = items(node, 0), b = items(node, 1);
  if (a.size() != b.size() && a.size() != 1 && b.size() != 1)
    throw Failure{where(node) + " combines shapes of " + std::to_string(a.size()) + " and " + std::to_string(b.size()) +
                  " elements"};
  auto numeric = [&](const ShapeItem &item) -> std::optional<int64_t> {
    int64_t n = item.coef;
    for (int node_id : item.nodes) {
      const int64_t s = g_.size_of(node_id);
      if (s == 0) return std::nullopt;
      n *= s;
    }
    return n;
  };
  std::vector<ShapeItem> out;
  for (size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
    const ShapeItem &x = a[a.size() == 1 ? 0 : i], &y = b[b.size() == 1 ? 0 : i];
    ShapeItem r;
    if (op == "Mul") {
      r.coef = x.coef * y.coef;
      r.nodes = x.nodes;
      r.nodes.insert(r.nodes.end(), y.nodes.begin(), y.nodes.end());
    } else if (op == "Div" && y.nodes.empty() && y.coef != 0 && x.coef % y.coef == 0) {
      r = x;
      r.coef /= y.coef;
    } else {
      auto nx = numeric(x), ny = numeric(y);
      if (!nx || !ny || (op == "Div" && *ny == 0))
        throw Failure{where(node) + " computes with the size of a dimension without a size; ncd import folds only "
                      "products of such sizes"};
      r.coef = op == "Add" ? *nx + *ny : op == "Sub" ? *nx - *ny : op == "Mul" ? *nx * *ny
               : (*nx - ((*nx % *ny) + *ny) % *ny) / *ny;  // floor division, as int64 Div on whole numbers
    }
    if (auto n = numeric(r); n && !r.nodes.empty() && op == "Div") r = ShapeItem{*n, {}};
    out.push_back(std::move(r));
  }
  data_result(node, std::move(out));
  return true;
}

bool Builder::shape_node(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  if (op == "Shape") {
    const Value &x = value(lookup(node, 0));
    std::vector<ShapeItem> list;
    if (x.role == Role::Data) list.push_back(ShapeItem{static_cast<int64_t>(x.items.size()), {}});  // a list's length
    for (const Dim &d : x.dims) list.push_back(d.axis >= 0 ? ShapeItem{1, {d.axis}} : ShapeItem{1, {}});
    const int64_t rank = static_cast<int64_t>(list.size());
    int64_t start = int_attribute(node, "start", 0), end = int_attribute(node, "end", rank);
    start = std::clamp(start < 0 ? start + rank : start, int64_t{0}, rank);
    end = std::clamp(end < 0 ? end + rank : end, int64_t{0}, rank);
    data_result(node, std::vector<ShapeItem>(list.begin() + start, list.begin() + std::max(start, end)));
    return true;
  }
  if (shape_arithmetic(node)) return true;
  const bool data = is_data(node, 0);
  if (data && op == "Cast") {
    // A size cast to a float (a scale, 1 / sqrt(head width)) is a number of the program.
    const int64_t to = int_attribute(node, "to", 0);
    std::vector<ShapeItem> list = items(node, 0);
    if ((to == onnx::TensorProto::FLOAT || to == onnx::TensorProto::DOUBLE || to == onnx::TensorProto::FLOAT16 ||
         to == onnx::TensorProto::BFLOAT16) && list.size() == 1) {
      double n = static_cast<double>(list[0].coef);
      bool known = true;
      for (int id : list[0].nodes) {
        known = known && g_.size_of(id) != 0;
        n *= static_cast<double>(g_.size_of(id));
      }
      if (!known) {  // a size without a number stays a size (Range's limit)
        data_result(node, list);
        return true;
      }
      Value v;
      v.onnx_name = node.output(0);
      v.role = Role::Literal;
      v.literal = n;
      add(std::move(v));
      return true;
    }
  }
  if (data && (op == "Unsqueeze" || op == "Squeeze" || op == "Cast" || op == "Identity")) {
    data_result(node, items(node, 0));
    return true;
  }
  // A shape list joined from sizes and numbers (a 1-element constant is a number: [-1] of expand(-1, C)).
  bool listed = op == "Concat" && node.input_size() > 0, any_data = false;
  for (int k = 0; listed && k < node.input_size(); ++k) {
    const Role r = has_operand(node, k) ? value(lookup(node, k)).role : Role::Statement;
    listed = r == Role::Data || r == Role::Literal;
    any_data = any_data || r == Role::Data;
  }
  if (listed && any_data) {
    std::vector<ShapeItem> list;
    for (int k = 0; k < node.input_size(); ++k)
      for (const ShapeItem &item : items(node, k)) list.push_back(item);
    data_result(node, std::move(list));
    return true;
  }
  if ((op == "Gather" || op == "Slice") && data) {
    std::vector<ShapeItem> list = items(node, 0), out;
    const int64_t n = static_cast<int64_t>(list.size());
    if (op == "Gather") {
      for (int64_t i : constant_list(node, 1)) {
        if (i < -n || i >= n) throw Failure{where(node) + " reads element " + std::to_string(i) + " of a shape of " + std::to_string(n)};
        out.push_back(list[static_cast<size_t>(i < 0 ? i + n : i)]);
      }
    } else {
      int64_t start = constant_list(node, 1).at(0), end = constant_list(node, 2).at(0);
      start = std::clamp(start < 0 ? start + n : start, int64_t{0}, n);
      end = std::clamp(end < 0 ? end + n : end, int64_t{0}, n);
      for (int64_t i = start; i < end; ++i) out.push_back(list[static_cast<size_t>(i)]);
    }
    data_result(node, std::move(out));
    return true;
  }
  if (op == "Reshape" && data) {  // a shape list kept a list ([-1] or its length)
    const std::vector<ShapeItem> list = items(node, 0), target = items(node, 1);
    if (target.size() != 1 || !target[0].nodes.empty() ||
        (target[0].coef != -1 && target[0].coef != static_cast<int64_t>(list.size())))
      throw Failure{where(node) + " reshapes a shape list into more than one dimension"};
    data_result(node, list);
    return true;
  }
  if (op == "Reshape") {
    reshape(node, items(node, 1));
    return true;
  }
  if (op == "Flatten") {
    const std::vector<Dim> &X = value(lookup(node, 0)).dims;
    int64_t axis = int_attribute(node, "axis", 1);
    if (axis < 0) axis += static_cast<int64_t>(X.size());
    if (axis < 0 || axis > static_cast<int64_t>(X.size())) throw Failure{where(node) + " has axis out of range"};
    ShapeItem outer, inner;
    for (size_t p = 0; p < X.size(); ++p)
      if (X[p].axis >= 0) (static_cast<int64_t>(p) < axis ? outer : inner).nodes.push_back(X[p].axis);
    reshape(node, {outer, inner});
    return true;
  }
  // On tensors (the shape forms of Concat, Slice and Gather were read above).
  static const std::map<std::string, void (Builder::*)(const onnx::NodeProto &)> rules = {
      {"Concat", &Builder::concat}, {"Gather", &Builder::gather}, {"Range", &Builder::range},
      {"Slice", &Builder::slice},   {"Split", &Builder::split}};
  if (auto it = rules.find(op); it != rules.end()) {
    (this->*it->second)(node);
    return true;
  }
  return false;
}

// Reshape: the operand's dims and the target's sizes are matched left to right in groups of equal
// product; a group of one is the same axis, one into several a split, several into one a merge.
void Builder::reshape(const onnx::NodeProto &node, const std::vector<ShapeItem> &target) {
  const int x = operand(node, 0);
  const std::vector<Dim> X = dims(x);
  const bool allowzero = int_attribute(node, "allowzero", 0) != 0;
  auto mono_of = [&](int64_t coef, const std::vector<int> &nodes) {
    Mono m{coef, {}};
    for (int n : nodes) {
      for (int atom : g_.atoms(n)) {  // a product of symbolic axes is compared as its parts
        const int64_t s = g_.size_of(atom);
        if (s == 0) m.syms.push_back(g_.find(atom));
        else m.coef *= s;
      }
    }
    std::sort(m.syms.begin(), m.syms.end());
    return m;
  };
  std::vector<Dim> in;  // the operand's dims of size other than 1
  Mono total{1, {}};
  for (const Dim &d : X) {
    if (d.axis < 0 || g_.size_of(d.axis) == 1) continue;
    in.push_back(d);
    Mono m = mono_of(1, {d.axis});
    total.coef *= m.coef;
    total.syms.insert(total.syms.end(), m.syms.begin(), m.syms.end());
  }
  std::sort(total.syms.begin(), total.syms.end());
  // The target's sizes; -1 is what is left.
  std::vector<Mono> want(target.size());
  std::vector<int> same_as(target.size(), -1);  // a target element that is one dimension's size: that class
  int infer = -1;
  Mono known{1, {}};
  for (size_t i = 0; i < target.size(); ++i) {
    ShapeItem item = target[i];
    if (item.nodes.empty() && item.coef == 0 && !allowzero) {
      if (i >= X.size()) throw Failure{where(node) + " copies dimension " + std::to_string(i) + ", which its input lacks"};
      item = X[i].axis >= 0 ? ShapeItem{1, {X[i].axis}} : ShapeItem{1, {}};
    }
    if (item.nodes.empty() && item.coef == -1) {
      if (infer >= 0) throw Failure{where(node) + " has two dimensions of size -1"};
      infer = static_cast<int>(i);
      continue;
    }
    if (item.coef < 1 || item.coef > kMaxDim)
      throw Failure{where(node) + " reshapes to a dimension of size " + std::to_string(item.coef)};
    want[i] = mono_of(item.coef, item.nodes);
    if (item.coef == 1 && item.nodes.size() == 1) same_as[i] = item.nodes[0];
    known.coef *= want[i].coef;
    known.syms.insert(known.syms.end(), want[i].syms.begin(), want[i].syms.end());
  }
  std::sort(known.syms.begin(), known.syms.end());
  if (infer >= 0) {
    auto rest = divide(total, known);
    if (!rest) throw Failure{where(node) + " reshapes to sizes whose product is not its input's"};
    want[static_cast<size_t>(infer)] = *rest;
  } else if (!(known == total)) {
    throw Failure{where(node) + " reshapes to sizes whose product is not its input's"};
  }
  auto size_of_mono = [](const Mono &m) { return m.syms.empty() ? m.coef : 0; };
  std::vector<Dim> out(target.size(), make_dim(-1, 1, -1));
  std::vector<size_t> outs;  // target positions of size other than 1
  for (size_t j = 0; j < target.size(); ++j)
    if (!(want[j] == Mono{1, {}})) outs.push_back(j);
  size_t i = 0, j = 0;
  while (i < in.size() || j < outs.size()) {
    if (i >= in.size() || j >= outs.size()) throw Failure{where(node) + " reshapes to sizes whose product is not its input's"};
    std::vector<size_t> a = {i++}, b = {j++};
    Mono pa = mono_of(1, {in[a[0]].axis}), pb = want[outs[b[0]]];
    while (!(pa == pb)) {
      if (divide(pb, pa) && i < in.size()) {
        a.push_back(i);
        Mono m = mono_of(1, {in[i++].axis});
        pa.coef *= m.coef;
        pa.syms.insert(pa.syms.end(), m.syms.begin(), m.syms.end());
        std::sort(pa.syms.begin(), pa.syms.end());
      } else if (divide(pa, pb) && j < outs.size()) {
        b.push_back(j);
        const Mono &m = want[outs[j++]];
        pb.coef *= m.coef;
        pb.syms.insert(pb.syms.end(), m.syms.begin(), m.syms.end());
        std::sort(pb.syms.begin(), pb.syms.end());
      } else {
        throw Failure{where(node) + " regroups dimensions in a way ncd import cannot follow"};
      }
    }
    // The group's common refinement: the prefix products of both sides, in one chain of divisors
    // ([N, E] -> [N*H, D] with E = H*D gives pieces N, H, D).
    auto mul = [](Mono m, const Mono &f) {
      m.coef *= f.coef;
      m.syms.insert(m.syms.end(), f.syms.begin(), f.syms.end());
      std::sort(m.syms.begin(), m.syms.end());
      return m;
    };
    std::vector<Mono> pieces;
    std::vector<std::vector<size_t>> of_in(a.size()), of_out(b.size());
    Mono done{1, {}}, ea = mono_of(1, {in[a[0]].axis}), eb = want[outs[b[0]]];
    for (size_t ia = 0, ib = 0; ia < a.size() && ib < b.size();) {
      // ea, eb: the products up to the end of the current dims of each side.
      std::optional<Mono> next;
      if (ea == eb) next = ea;
      else if (divide(eb, ea)) next = ea;
      else if (divide(ea, eb)) next = eb;
      else throw Failure{where(node) + " regroups dimensions in a way ncd import cannot follow"};
      auto piece = divide(*next, done);
      if (!piece) throw Failure{where(node) + " regroups dimensions in a way ncd import cannot follow"};
      pieces.push_back(*piece);
      of_in[ia].push_back(pieces.size() - 1);
      of_out[ib].push_back(pieces.size() - 1);
      done = *next;
      const bool end_a = done == ea, end_b = done == eb;
      if (end_a && ++ia < a.size()) ea = mul(ea, mono_of(1, {in[a[ia]].axis}));
      if (end_b && ++ib < b.size()) eb = mul(eb, want[outs[b[ib]]]);
    }
    std::vector<Dim> piece_dims(pieces.size());
    for (size_t k = 0; k < a.size(); ++k) {
      const Dim &d = in[a[k]];
      if (of_in[k].size() == 1) {
        piece_dims[of_in[k][0]] = d;
        continue;
      }
      Regroup r;
      r.coarse = d.axis;
      std::vector<int> parts;
      for (size_t p : of_in[k]) {
        Dim f = make_dim(g_.new_axis(size_of_mono(pieces[p])), size_of_mono(pieces[p]), -1);
        piece_dims[p] = f;
        r.fine.push_back(f);
        parts.push_back(f.axis);
      }
      if (!g_.factorize(d.axis, parts)) throw Failure{where(node) + " splits a dimension that is split differently elsewhere"};
      pending_regroups_.push_back(std::move(r));
    }
    for (size_t k = 0; k < b.size(); ++k) {
      const size_t pos = outs[b[k]];
      // A size read from another tensor names that axis only when it has no number: [B*T] -> [B, T].
      if (of_out[k].size() == 1) {
        out[pos] = piece_dims[of_out[k][0]];
        if (same_as[pos] >= 0 && out[pos].size == 0 && !g_.unite(same_as[pos], out[pos].axis))
          throw Failure{where(node) + " reshapes to sizes that disagree"};
        continue;
      }
      Dim d = make_dim(g_.new_axis(size_of_mono(want[pos])), size_of_mono(want[pos]), -1);
      Regroup r;
      r.coarse = d.axis;
      std::vector<int> parts;
      for (size_t p : of_out[k]) {
        r.fine.push_back(piece_dims[p]);
        parts.push_back(piece_dims[p].axis);
      }
      if (!g_.factorize(d.axis, parts) || (same_as[pos] >= 0 && d.size == 0 && !g_.unite(same_as[pos], d.axis)))
        throw Failure{where(node) + " merges dimensions into one that is split differently elsewhere"};
      out[pos] = d;
      pending_regroups_.push_back(std::move(r));
    }
  }
  result(node, out, ref(x), dtype(x), false);
}

// Split into equal parts: the dimension is (parts, part); output k reads it at part k.
void Builder::split(const onnx::NodeProto &node) {
  const Value &source = value(lookup(node, 0));
  const std::vector<Dim> X = source.dims;
  auto at = positions(node, {int_attribute(node, "axis", 0)}, X.size());
  const size_t axis = at[0];
  const int64_t n = node.output_size();
  std::vector<int64_t> sizes;
  if (has_operand(node, 1)) sizes = constant_list(node, 1);
  else if (const auto *a = attribute(node, "split")) sizes.assign(a->ints().begin(), a->ints().end());
  const int64_t extent = X[axis].axis >= 0 ? g_.size_of(X[axis].axis) : 1;
  if (extent == 0) throw Failure{where(node) + " splits a dimension without a size"};
  if (sizes.empty()) sizes.assign(static_cast<size_t>(n), extent / std::max<int64_t>(n, 1));
  if (static_cast<int64_t>(sizes.size()) != n || n < 1)
    throw Failure{where(node) + " has " + std::to_string(n) + " outputs for " + std::to_string(sizes.size()) + " parts"};
  int64_t sum = 0;
  bool equal = true;
  for (int64_t s : sizes) {
    if (s < 1) throw Failure{where(node) + " splits into an empty part"};
    equal = equal && s == sizes[0];
    sum += s;
  }
  if (sum != extent) throw Failure{where(node) + " splits a dimension of size " + std::to_string(extent) + " into parts of " + std::to_string(sum)};
  if (!equal) {  // each part a slice at its offset
    int64_t start = 0;
    for (int k = 0; k < n; ++k) {
      offset_slice(node, operand(node, 0), axis, start, g_.new_axis(sizes[static_cast<size_t>(k)]), k);
      start += sizes[static_cast<size_t>(k)];
    }
    return;
  }
  int parts_axis = -1, part_axis = -1;
  for (int k = 0; k < n; ++k) {
    const int u = operand(node, 0);
    const Dim d = dims(u)[axis];
    const int p = g_.new_axis(n), q = g_.new_axis(sizes[0]);
    g_.hint(p, "part", 2);
    if (k == 0) parts_axis = p, part_axis = q;
    else if (!g_.unite(p, parts_axis) || !g_.unite(q, part_axis)) throw Failure{where(node) + " splits inconsistently"};
    if (!g_.factorize(d.axis, {p, q})) throw Failure{where(node) + " splits a dimension that is split differently elsewhere"};
    pending_regroups_.push_back(Regroup{d.axis, {make_dim(p, n, k), make_dim(q, sizes[0], -1)}});
    std::vector<Dim> out = dims(u);
    out[axis] = make_dim(q, sizes[0], -1);
    result(node, out, ref(u), dtype(u), false, k);
  }
}

// Range(0, n, 1): the positions of an axis of n (ncd: the axis used as a value).
void Builder::range(const onnx::NodeProto &node) {
  const std::vector<ShapeItem> start = items(node, 0), limit = items(node, 1), delta = items(node, 2);
  if (start.size() != 1 || limit.size() != 1 || delta.size() != 1 || !start[0].nodes.empty() || start[0].coef != 0 ||
      !delta[0].nodes.empty() || delta[0].coef != 1)
    throw Failure{where(node) + " counts other than from 0 in steps of 1; ncd import reads the positions of an axis"};
  int axis = -1;
  if (limit[0].nodes.empty()) {
    if (limit[0].coef < 1 || limit[0].coef > kMaxDim) throw Failure{where(node) + " counts to " + std::to_string(limit[0].coef)};
    axis = g_.new_axis(limit[0].coef);
  } else if (limit[0].coef == 1 && limit[0].nodes.size() == 1) {
    axis = g_.new_axis(g_.size_of(limit[0].nodes[0]));
    g_.unite(limit[0].nodes[0], axis);
  } else {
    throw Failure{where(node) + " counts to a product of sizes; ncd import reads the positions of one axis"};
  }
  const auto out = shapes_.find(node.output(0));
  ir::DType dtype = ir::DType::I32;
  if (out != shapes_.end() && out->second->type().has_tensor_type())
    if (auto d = dtype_of(out->second->type().tensor_type().elem_type())) dtype = *d;
  const std::string positions = axis_ref(axis);
  result(node, {make_dim(axis, g_.size_of(axis), -1)}, dtype == ir::DType::I32 ? positions : std::string(ir::dtype_name(dtype)) + "(" + positions + ")", dtype, false);
}

// Concat of n tensors of one size along an axis: that axis is (parts, part), part k read from tensor k.
void Builder::concat(const onnx::NodeProto &node) {
  std::vector<int> uses;
  for (int k = 0; k < node.input_size(); ++k) uses.push_back(operand(node, k));
  if (uses.empty()) throw Failure{where(node) + " has no inputs"};
  const size_t rank = dims(uses[0]).size();
  auto at = positions(node, {int_attribute(node, "axis", 0)}, rank);
  const size_t axis = at[0];
  if (uses.size() == 1) {
    result(node, dims(uses[0]), ref(uses[0]), dtype(uses[0]), false);
    return;
  }
  std::vector<std::vector<Dim>> rest;
  auto size_at = [&](int u) { return dims(u)[axis].axis >= 0 ? g_.size_of(dims(u)[axis].axis) : int64_t{1}; };
  const int64_t size = size_at(uses[0]);
  bool equal = true;
  for (int u : uses) {
    const std::vector<Dim> &D = dims(u);
    if (D.size() != rank) throw Failure{where(node) + " joins tensors of different ranks"};
    equal = equal && size_at(u) == size;
    std::vector<Dim> r = D;
    r.erase(r.begin() + static_cast<std::ptrdiff_t>(axis));
    rest.push_back(r);
  }
  if (!equal) {
    unequal_concat(node, uses, axis, rest);
    return;
  }
  if (size == 0) throw Failure{where(node) + " joins along a dimension without a size"};
  const int64_t n = static_cast<int64_t>(uses.size());
  const int parts = g_.new_axis(n), part = g_.new_axis(size), whole = g_.new_axis(n * size);
  g_.hint(parts, "part", 2);
  for (int u : uses)
    if (dims(u)[axis].axis >= 0) link(node, part, dims(u)[axis].axis);
  if (!g_.factorize(whole, {parts, part})) throw Failure{where(node) + " joins inconsistently"};
  pending_regroups_.push_back(Regroup{whole, {make_dim(parts, n, -1), make_dim(part, size, -1)}});
  std::vector<Dim> out = broadcast(node, rest);
  out.insert(out.begin() + static_cast<std::ptrdiff_t>(axis), make_dim(whole, n * size, -1));
  result(node, out, where_chain(parts, uses), dtype(uses[0]), false);
}

// Parts of different sizes joined: Y[r] = A[r + 0] + B[r - #A] + ..., each part read at its offset
// (zero outside its range).
void Builder::unequal_concat(const onnx::NodeProto &node, const std::vector<int> &uses, size_t axis,
                             const std::vector<std::vector<Dim>> &rest) {
  int64_t total = 0;
  for (int u : uses) {
    const int64_t s = dims(u)[axis].axis >= 0 ? g_.size_of(dims(u)[axis].axis) : 1;
    if (s == 0) throw Failure{where(node) + " joins along a dimension without a size"};
    total += s;
  }
  const int whole = g_.new_axis(total);
  std::string expr;
  int64_t offset = 0;
  for (int u : uses) {
    Dim &d = g_.uses[static_cast<size_t>(u)].dims[axis];
    const int64_t s = d.axis >= 0 ? g_.size_of(d.axis) : 1;
    std::string part = ref(u);
    if (d.axis < 0) {  // a broadcast placeholder (a class token): one position of the whole
      part = "where(" + axis_ref(whole) + " == " + std::to_string(offset) + ", " + part + ", 0.0)";
    } else {
      d.terms = {{1, whole}};
      d.offset = -offset;
    }
    offset += s;
    expr += (expr.empty() ? "" : " + ") + part;
  }
  std::vector<Dim> out = broadcast(node, rest);
  out.insert(out.begin() + static_cast<std::ptrdiff_t>(axis), make_dim(whole, total, -1));
  result(node, out, expr, dtype(uses[0]), false);
}

// Positions start, start + step, ... of dimension `axis` as a new axis `fresh`: use `u` of the
// operand read at step * fresh + start (a prefix of a longer axis is `fresh + 0`).
void Builder::offset_slice(const onnx::NodeProto &node, int u, size_t axis, int64_t start, int fresh, int output,
                           int64_t step) {
  Dim &d = g_.uses[static_cast<size_t>(u)].dims[axis];
  d.terms = {{step, fresh}};
  d.offset = start;
  std::vector<Dim> out = dims(u);
  out[axis] = make_dim(fresh, g_.size_of(fresh), -1);
  result(node, out, ref(u), dtype(u), false, output);
}

// where(axis == 0, uses[0], where(axis == 1, uses[1], ... uses[n - 1])): one operand per position.
std::string Builder::where_chain(int axis, const std::vector<int> &uses) {
  std::string expr = ref(uses.back());
  for (size_t k = uses.size() - 1; k-- > 0;)
    expr = "where(" + axis_ref(axis) + " == " + std::to_string(k) + ", " + ref(uses[k]) + ", " + expr + ")";
  return expr;
}

// Part k of n equal parts of dimension `axis`: of a weight, a weight of its own (the part copied);
// of a computed value, the dimension written (parts, part) and read at part k.
void Builder::chunk(const onnx::NodeProto &node, size_t axis, int64_t k, int64_t n) {
  const int id = lookup(node, 0);
  const Value &source = value(id);
  const int64_t extent = g_.size_of(source.dims[axis].axis), length = extent / n;
  if (source.role == Role::Param) {
    Value v;
    v.onnx_name = source.onnx_name + "_" + std::to_string(k);
    v.name = (source.name.empty() ? source.onnx_name : source.name) + "_" + std::to_string(k);
    v.role = Role::Param;
    v.dtype = source.dtype;
    v.node = node.name();
    size_t q = 0;  // the dimension among the weight's kept ones
    for (size_t p = 0; p < axis; ++p) q += source.dims[p].axis >= 0 ? 1 : 0;
    std::vector<int64_t> shape = source.weight.shape;
    int64_t outer = 1, inner = 1;
    for (size_t p = 0; p < q; ++p) outer *= shape[p];
    for (size_t p = q + 1; p < shape.size(); ++p) inner *= shape[p];
    shape[q] = length;
    v.weight = Tensor::zeros(v.dtype, shape);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < length * inner; ++i) {
        const size_t from = static_cast<size_t>((o * extent + k * length) * inner + i), to = static_cast<size_t>(o * length * inner + i);
        if (v.weight.is_int()) v.weight.ints[to] = source.weight.ints[from];
        else v.weight.values[to] = source.weight.values[from];
      }
    for (size_t p = 0; p < source.dims.size(); ++p) {
      Dim d = source.dims[p];
      if (d.axis >= 0) d.axis = g_.new_axis(p == axis ? length : g_.size_of(d.axis));
      if (p == axis) d.size = length;
      v.dims.push_back(d);
    }
    add(std::move(v));
    g_.by_name[node.output(0)] = static_cast<int>(g_.values.size()) - 1;
    return;
  }
  const int u = operand(node, 0);
  const Dim d = dims(u)[axis];
  const int p = g_.new_axis(n), q = g_.new_axis(length);
  g_.hint(p, "part", 2);
  if (!g_.factorize(d.axis, {p, q})) throw Failure{where(node) + " cuts a dimension that is split differently elsewhere"};
  pending_regroups_.push_back(Regroup{d.axis, {make_dim(p, n, k), make_dim(q, length, -1)}});
  std::vector<Dim> out = dims(u);
  out[axis] = make_dim(q, length, -1);
  result(node, out, ref(u), dtype(u), false);
}

// Gather with a constant scalar index along a dimension: that dimension read at one position
// (through an integer tensor: onnx_views.cpp).
void Builder::gather(const onnx::NodeProto &node) {
  if (!is_data(node, 1) && value(lookup(node, 1)).role != Role::Literal) {
    gather_indices(node);
    return;
  }
  const int u = operand(node, 0);
  std::vector<Dim> X = dims(u);
  auto at = positions(node, {int_attribute(node, "axis", 0)}, X.size());
  std::vector<int64_t> index = constant_list(node, 1);
  const int64_t extent = X[at[0]].axis >= 0 ? g_.size_of(X[at[0]].axis) : 1;
  if (value(lookup(node, 1)).role != Role::Literal) {
    positions_list(node, u, at[0], index, extent);
    return;
  }
  if (index.size() != 1) throw Failure{where(node) + " gathers with an empty list of positions"};
  int64_t i = index[0] < 0 ? index[0] + extent : index[0];
  if (extent == 0 || i < 0 || i >= extent) throw Failure{where(node) + " reads position " + std::to_string(index[0]) + " of a dimension of size " + (extent ? std::to_string(extent) : "unknown")};
  g_.uses[static_cast<size_t>(u)].dims[at[0]].at = i;
  X.erase(X.begin() + static_cast<std::ptrdiff_t>(at[0]));
  result(node, X, ref(u), dtype(u), false);
}

// Gather of a list of constant positions (x[:, [0, 2]]) along `axis`, read by use `u`: a new axis
// of the list's length, read at step * t + first when the positions are evenly spaced, else one
// constant read per position chosen by `where`.
void Builder::positions_list(const onnx::NodeProto &node, int u, size_t axis, std::vector<int64_t> index, int64_t extent) {
  // One position per output position: the list is one-dimensional when the output keeps the rank.
  auto known = shapes_.find(node.output(0));
  const bool flat = known != shapes_.end() && known->second->type().has_tensor_type() &&
                    known->second->type().tensor_type().has_shape() &&
                    known->second->type().tensor_type().shape().dim_size() == static_cast<int>(dims(u).size());
  if (!flat || index.empty() || index.size() > 64)
    throw Failure{where(node) + " gathers positions given as a constant of several dimensions or more than 64 of "
                  "them; ncd import reads a list of up to 64 positions"};
  if (extent == 0) throw Failure{where(node) + " gathers positions of a dimension without a size"};
  for (int64_t &i : index) {
    if (i < 0) i += extent;
    if (i < 0 || i >= extent) throw Failure{where(node) + " reads position " + std::to_string(i) + " of a dimension of size " + std::to_string(extent)};
  }
  const int64_t n = static_cast<int64_t>(index.size()), step = n > 1 ? index[1] - index[0] : 1;
  bool even = step != 0;
  for (size_t k = 1; k < index.size() && even; ++k) even = index[k] - index[k - 1] == step;
  const int t = g_.new_axis(n);
  std::vector<Dim> out = dims(u);
  out[axis] = make_dim(t, n, -1);
  if (even) {
    offset_slice(node, u, axis, index[0], t, 0, step);
    return;
  }
  std::vector<int> reads = {u};
  for (size_t k = 1; k < index.size(); ++k) {
    const int r = operand(node, 0);
    for (size_t p = 0; p < dims(r).size(); ++p)
      if (p != axis && dims(r)[p].axis >= 0) link(node, dims(r)[p].axis, dims(u)[p].axis);
    reads.push_back(r);
  }
  for (size_t k = 0; k < reads.size(); ++k) g_.uses[static_cast<size_t>(reads[k])].dims[axis].at = index[k];
  result(node, out, where_chain(t, reads), dtype(u), false);
}

// Slice: a mask of positions (a triangle) cut to the sizes it is read at, a slice that keeps
// every element, one of equal parts (a chunk), or any other run of one dimension (read at an offset).
void Builder::slice(const onnx::NodeProto &node) {
  const int id = lookup(node, 0);
  const Value source = value(id);
  const std::vector<ShapeItem> starts = items(node, 1), ends = items(node, 2);
  std::vector<int64_t> axes, steps;
  if (has_operand(node, 3)) axes = constant_list(node, 3);
  else for (size_t k = 0; k < starts.size(); ++k) axes.push_back(static_cast<int64_t>(k));
  if (has_operand(node, 4)) steps = constant_list(node, 4);
  if (axes.size() != starts.size() || ends.size() != starts.size())
    throw Failure{where(node) + " has lists of different lengths"};
  auto at = positions(node, axes, source.dims.size());
  std::vector<Dim> out = source.dims;
  std::vector<std::pair<int, int>> renamed;  // a triangle's node -> its new node
  for (size_t k = 0; k < at.size(); ++k) {
    const Dim d = source.dims[at[k]];
    const int64_t extent = d.axis >= 0 ? g_.size_of(d.axis) : 1;
    if (!starts[k].nodes.empty()) throw Failure{where(node) + " slices from a start computed from sizes"};
    if (!steps.empty() && steps[k] != 1) {
      // Every step-th position (or backwards): the operand read at step * t + start.
      const int64_t step = steps[k];
      if (step == 0 || at.size() != 1 || d.axis < 0 || !ends[k].nodes.empty() || extent == 0)
        throw Failure{where(node) + " slices with step " + std::to_string(step) + " a dimension without a size, to "
                      "a computed end or along several dimensions; ncd import reads steps other than 1 of one "
                      "sized dimension"};
      // ONNX clamps start and end to [0, extent] going forward, [-1, extent - 1] going back.
      int64_t first = starts[k].coef < 0 ? starts[k].coef + extent : starts[k].coef;
      int64_t stop = ends[k].coef < 0 && ends[k].coef > -(int64_t{1} << 62) ? ends[k].coef + extent : ends[k].coef;
      first = step > 0 ? std::clamp<int64_t>(first, 0, extent) : std::clamp<int64_t>(first, -1, extent - 1);
      stop = step > 0 ? std::clamp<int64_t>(stop, 0, extent) : std::clamp<int64_t>(stop, -1, extent - 1);
      const int64_t length = step > 0 ? (stop - first + step - 1) / step : (first - stop - step - 1) / -step;
      if (length < 1) throw Failure{where(node) + " slices to an empty dimension"};
      offset_slice(node, operand(node, 0), at[0], first, g_.new_axis(length), 0, step);
      return;
    }
    int64_t start = starts[k].coef < 0 ? starts[k].coef + extent : starts[k].coef;
    ShapeItem end = ends[k];
    if (end.nodes.empty() && end.coef < 0) end.coef = std::max<int64_t>(end.coef + extent, 0);
    const bool to_end = end.nodes.empty() && (end.coef >= extent || end.coef >= (int64_t{1} << 62));
    if (start == 0 && to_end) continue;  // the whole dimension
    if (source.op != "Triangle" && d.axis >= 0 && end.nodes.empty() && at.size() == 1) {
      const int64_t stop = std::min(end.coef, extent), length = stop - start;
      if (start >= 0 && length >= 1 && extent % length == 0 && start % length == 0) {
        chunk(node, at[0], start / length, extent / length);
        return;
      }
    }
    if (source.op != "Triangle" && at.size() == 1 && d.axis >= 0 && start >= 0) {
      // Another part of one dimension: a new axis read at an offset (a RoPE table cut to the length).
      int fresh = -1;
      if (end.nodes.empty() && std::min(end.coef, extent) - start >= 1) {
        fresh = g_.new_axis(std::min(end.coef, extent) - start);
      } else if (!end.nodes.empty() && start == 0 && end.coef == 1 && end.nodes.size() == 1) {
        fresh = g_.new_axis(g_.size_of(end.nodes[0]));
        g_.unite(fresh, end.nodes[0]);
      } else {
        throw Failure{where(node) + " slices to an empty dimension or a size ncd import cannot follow"};
      }
      offset_slice(node, operand(node, 0), at[0], start, fresh);
      return;
    }
    if (start != 0 || source.op != "Triangle" || d.axis < 0)
      throw Failure{where(node) + " slices several dimensions of a value at once, or from a negative start; "
                    "ncd import reads such slices only of a mask of positions (a triangle)"};
    int64_t size = end.nodes.empty() ? end.coef : 0;
    int fresh = -1;
    if (end.nodes.empty()) {
      if (size < 1 || size > extent) throw Failure{where(node) + " slices to an empty or larger dimension"};
      fresh = g_.new_axis(size);
    } else if (end.coef == 1 && end.nodes.size() == 1) {
      fresh = g_.new_axis(g_.size_of(end.nodes[0]));
      g_.unite(fresh, end.nodes[0]);
    } else {
      throw Failure{where(node) + " slices to a size ncd import cannot follow"};
    }
    out[at[k]] = make_dim(fresh, g_.size_of(fresh), -1);
    renamed.emplace_back(d.axis, fresh);
  }
  if (renamed.empty()) {
    const int u = operand(node, 0);
    result(node, dims(u), ref(u), dtype(u), false);
    return;
  }
  // A new triangle over the cut dims: the same comparison of positions.
  Value v;
  v.onnx_name = node.output(0);
  v.node = node.name();
  v.op = "Triangle";
  v.role = Role::Inline;
  v.dtype = source.dtype;
  v.dims = out;
  v.expr = source.expr;
  for (const auto &[from, to] : renamed) {
    const std::string a = axis_ref(from), b = axis_ref(to);
    for (size_t p; (p = v.expr.find(a)) != std::string::npos;) v.expr.replace(p, a.size(), b);
  }
  const int made = add(std::move(v));
  g_.order.push_back(made);
}

// A constant whose last two dimensions hold one value on and below a diagonal and another
// above it (torch.tril/triu of ones, a causal mask) is a comparison of positions, not data.
bool Builder::triangle(Value &v) {
  const size_t rank = v.dims.size();
  if (rank < 2 || v.data.empty()) return false;
  for (size_t p = 0; p + 2 < rank; ++p)
    if (v.dims[p].axis >= 0) return false;
  const Dim &row = v.dims[rank - 2], &col = v.dims[rank - 1];
  if (row.axis < 0 || col.axis < 0) return false;
  const int64_t rows = row.size, cols = col.size;
  const std::vector<double> &f = v.data;
  for (int lower = 1; lower >= 0; --lower) {
    for (int64_t k = -2; k <= 2; ++k) {
      // lower: true where j <= i + k; upper: true where j >= i + k.
      auto cond = [&](int64_t i, int64_t j) { return lower ? j <= i + k : j >= i + k; };
      double on = 0, off = 0;
      bool seen_on = false, seen_off = false, ok = true;
      for (int64_t i = 0; i < rows && ok; ++i)
        for (int64_t j = 0; j < cols && ok; ++j) {
          const double x = f[static_cast<size_t>(i * cols + j)];
          bool &seen = cond(i, j) ? seen_on : seen_off;
          double &value = cond(i, j) ? on : off;
          if (!seen) seen = true, value = x;
          else if (!(value == x || (std::isinf(value) && value == x))) ok = false;
        }
      if (!ok || !seen_on || !seen_off || on == off) continue;
      const std::string i = axis_ref(row.axis), j = axis_ref(col.axis);
      const std::string bound = k == 0 ? i : k > 0 ? i + " + " + std::to_string(k) : i + " - " + std::to_string(-k);
      const std::string test = j + (lower ? " <= " : " >= ") + bound;
      if (v.dtype == ir::DType::Bool) v.expr = on != 0 ? test : "!(" + test + ")";
      else v.expr = "where(" + test + ", " + number(on) + ", " + number(off) + ")";
      v.role = Role::Inline;
      v.op = "Triangle";
      v.weight = Tensor();
      return true;
    }
  }
  return false;
}

}  // namespace ncd::onnx_import
