// The ONNX ops that read a tensor another way without computing on it
// (plugin import-onnx, docs/IMPORT.md): Gather through an integer tensor (an
// embedding lookup, `wte[idx[batch, seq], d]`), Expand (a broadcast: named
// axes broadcast by name, so the new dimensions are only linked to the axes
// the shape names), ConstantOfShape (a shape list of one number, or a number
// broadcast over the axes of a shape), Trilu (a comparison of positions,
// `where(col <= row + k, x, 0.0)`), the logic torch computes on shape lists
// for `expand(..., -1)` (Equal and Where folded), and a weight torch stores
// transposed for a tied projection read as the weight it was copied from.
// Preconditions: the operands were read by onnx_graph.cpp; every refusal
// names the node.
#include <algorithm>
#include <cmath>
#include <map>

#include "onnx_builder.h"

namespace ncd::onnx_import {

bool Builder::view_node(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  if (op == "Expand") expand(node);
  else if (op == "ConstantOfShape") constant_of_shape(node);
  else if (op == "Trilu") trilu(node);
  else if ((op == "Equal" || op == "Where") && data_logic(node)) return true;
  else return false;
  return true;
}

// A dimension a shape list names: a dimension's size (the same axis), a number (a new axis of that
// size; 1 is a broadcast placeholder), or a product of sizes with a number.
Dim Builder::dim_of_item(const onnx::NodeProto &node, const ShapeItem &item) {
  if (item.coef == 1 && item.nodes.size() == 1) {
    const int n = g_.new_axis(g_.size_of(item.nodes[0]));
    g_.unite(n, item.nodes[0]);
    return make_dim(n, g_.size_of(n), -1);
  }
  int64_t size = item.coef;
  bool symbolic = false;
  for (int id : item.nodes) {
    const int64_t s = g_.size_of(id);
    symbolic = symbolic || s == 0;
    size = s == 0 ? size : size > kMaxDim / s ? kMaxDim + 1 : size * s;
  }
  if (symbolic) {
    // A product of sizes (a merged B * T): an axis that is the product of theirs.
    if (item.coef != 1)
      throw Failure{where(node) + " makes a dimension of " + std::to_string(item.coef) + " times sizes without a "
                    "number; ncd import reads a dimension's own size, a number or a product of sizes"};
    const int n = g_.new_axis(0);
    if (!g_.factorize(n, item.nodes)) throw Failure{where(node) + " makes a dimension that is a product of itself"};
    return make_dim(n, 0, -1);
  }
  if (size < 1 || size > kMaxDim) throw Failure{where(node) + " makes a dimension of size " + std::to_string(size)};
  if (size == 1) return make_dim(-1, 1, -1);
  const int n = g_.new_axis(size);
  return make_dim(n, size, -1);
}

// Expand: NumPy broadcasting to a shape. A dimension the input has stays (a 1 in the shape keeps it);
// the others are new dimensions on the axes the shape names. ncd broadcasts by name, so the value is
// its input read as it is.
void Builder::expand(const onnx::NodeProto &node) {
  const int x = operand(node, 0);
  const std::vector<Dim> X = dims(x);
  const std::vector<ShapeItem> shape = items(node, 1);
  const size_t rank = std::max(X.size(), shape.size());
  if (rank > static_cast<size_t>(kMaxRank)) throw Failure{where(node) + " makes a tensor of more than 8 dimensions"};
  std::vector<Dim> out(rank, make_dim(-1, 1, -1));
  for (size_t pos = 0; pos < rank; ++pos) {
    const Dim *d = pos + X.size() >= rank ? &X[pos + X.size() - rank] : nullptr;
    const ShapeItem *s = pos + shape.size() >= rank ? &shape[pos + shape.size() - rank] : nullptr;
    const bool keep = !s || (s->nodes.empty() && s->coef == 1);
    if (d && d->axis >= 0) {
      const int64_t extent = g_.size_of(d->axis);
      out[pos] = *d;
      if (keep) continue;
      if (s->coef == 1 && s->nodes.size() == 1) {
        // The shape names a size equal to this dimension's: one axis of the model, but no wire of this
        // node (x.expand(B, H, T, T) names T for the key positions too).
        if (!g_.unite(d->axis, s->nodes[0]))
          throw Failure{where(node) + " broadcasts an axis of size " + (extent ? std::to_string(extent) : "unknown") +
                        " to another size, which ncd's named axes cannot (the axis would have to vanish)"};
        continue;
      }
      // A number, or a product of sizes (a merged B * T), that shape inference found equal to the
      // dimension: checked where both are numbers.
      int64_t wanted = s->coef;
      for (int id : s->nodes) wanted = g_.size_of(id) == 0 || wanted > kMaxDim ? 0 : wanted * g_.size_of(id);
      if (extent != 0 && wanted != 0 && extent != wanted)
        throw Failure{where(node) + " broadcasts an axis of size " + std::to_string(extent) + " to " +
                      std::to_string(wanted) + ", which ncd's named axes cannot (the axis would have to vanish)"};
      continue;
    }
    if (!keep) {
      out[pos] = dim_of_item(node, *s);
      out[pos].spread = true;
    }
  }
  result(node, out, ref(x), dtype(x), false);
}

// ConstantOfShape: of a short list of numbers with an integer value, a shape list (torch's
// `expand(..., -1)` arithmetic); else a tensor of one number over the axes the shape names
// (torch.zeros_like, torch.full): a number of the program that keeps those dimensions, so that
// arithmetic on it folds (`zeros_like(x) + 1.5` is 1.5) and what reads it has its axes.
void Builder::constant_of_shape(const onnx::NodeProto &node) {
  const std::vector<ShapeItem> shape = items(node, 0);
  double fill = 0;
  int type = onnx::TensorProto::FLOAT;
  if (const auto *a = attribute(node, "value"); a && a->has_t()) {
    const std::vector<double> values = tensor_values(a->t(), where(node) + ": its value");
    if (values.size() != 1) throw Failure{where(node) + " has a value of " + std::to_string(values.size()) + " elements"};
    fill = values[0];
    type = a->t().data_type();
  }
  const bool integer = type == onnx::TensorProto::INT64 || type == onnx::TensorProto::INT32;
  if (integer && shape.size() == 1 && shape[0].nodes.empty() && shape[0].coef >= 0 && shape[0].coef <= 64) {
    data_result(node, std::vector<ShapeItem>(static_cast<size_t>(shape[0].coef), ShapeItem{static_cast<int64_t>(fill), {}}));
    return;
  }
  if (shape.size() > static_cast<size_t>(kMaxRank)) throw Failure{where(node) + " makes a tensor of more than 8 dimensions"};
  auto dtype = dtype_of(type);
  if (!dtype && type != onnx::TensorProto::DOUBLE) throw Failure{where(node) + " fills with element type " + std::to_string(type) + ", which has no ncd dtype"};
  std::vector<Dim> out;
  for (const ShapeItem &item : shape) {
    out.push_back(dim_of_item(node, item));
    out.back().spread = true;
  }
  if (dtype == ir::DType::Bool) {  // torch.ones_like(x, dtype=torch.bool): a truth value, cast from a number
    result(node, out, fill != 0 ? "bool(1.0)" : "bool(0.0)", ir::DType::Bool, false);
    return;
  }
  // A number with the dimensions it is broadcast over: its readers broadcast by name.
  Value &v = g_.values[static_cast<size_t>(result(node, out, number(fill), dtype.value_or(ir::DType::F32), false))];
  v.role = Role::Literal;
  v.literal = dtype && ir::is_integer(*dtype) ? fill : static_cast<double>(static_cast<float>(fill));
}

// Trilu: torch.tril / torch.triu of the last two dimensions (row i, column j): the lower part keeps
// j <= i + k, the upper part j >= i + k; the rest is zero.
void Builder::trilu(const onnx::NodeProto &node) {
  const int x = operand(node, 0);
  const std::vector<Dim> X = dims(x);
  int64_t k = 0;
  if (has_operand(node, 1)) {
    const std::vector<int64_t> list = constant_list(node, 1);
    if (list.size() != 1) throw Failure{where(node) + " has a diagonal offset of " + std::to_string(list.size()) + " elements"};
    k = list[0];
  }
  if (X.size() < 2 || X[X.size() - 2].axis < 0 || X.back().axis < 0)
    throw Failure{where(node) + " cuts a triangle from a tensor whose last two dimensions are not both axes"};
  if (k > kMaxDim || k < -kMaxDim) throw Failure{where(node) + " has a diagonal offset of " + std::to_string(k)};
  const bool upper = int_attribute(node, "upper", 1) != 0;
  const std::string i = axis_ref(X[X.size() - 2].axis), j = axis_ref(X.back().axis);
  const std::string bound = k == 0 ? i : k > 0 ? i + " + " + std::to_string(k) : i + " - " + std::to_string(-k);
  const std::string test = j + (upper ? " >= " : " <= ") + bound;
  const ir::DType type = dtype(x);
  std::string expr;
  if (type == ir::DType::Bool) expr = test + " && " + ref(x);
  else expr = "where(" + test + ", " + ref(x) + ", " + (ir::is_integer(type) ? "0" : "0.0") + ")";
  result(node, X, expr, type, false);
}

// Equal and Where on shape lists (torch's `expand(..., -1)`: Where(Equal(shape, -1), 1, shape)): folded
// when each comparison is decided by the numbers (a size is at least 1). False: not on shape lists.
bool Builder::data_logic(const onnx::NodeProto &node) {
  auto listed = [&](int k) {
    if (!has_operand(node, k)) return false;
    const Role r = value(lookup(node, k)).role;
    return r == Role::Data || r == Role::Literal;
  };
  const bool where_op = node.op_type() == "Where";
  if (!(where_op ? is_data(node, 0) && listed(1) && listed(2) : (is_data(node, 0) || is_data(node, 1)) && listed(0) && listed(1)))
    return false;
  std::vector<std::vector<ShapeItem>> in;
  for (int k = 0; k < (where_op ? 3 : 2); ++k) in.push_back(items(node, k));
  size_t n = 1;
  for (const auto &list : in) {
    if (list.size() != 1 && n != 1 && list.size() != n)
      throw Failure{where(node) + " combines shape lists of different lengths"};
    if (list.size() != 1) n = list.size();
  }
  auto at = [&](size_t k, size_t i) -> const ShapeItem & { return in[k][in[k].size() == 1 ? 0 : i]; };
  auto roots = [&](const ShapeItem &s) {
    std::vector<int> r;
    for (int id : s.nodes) r.push_back(g_.find(id));
    std::sort(r.begin(), r.end());
    return r;
  };
  std::vector<ShapeItem> out;
  for (size_t i = 0; i < n; ++i) {
    if (where_op) {
      const ShapeItem &c = at(0, i);
      if (!c.nodes.empty()) throw Failure{where(node) + " chooses by a size; ncd import folds choices by numbers"};
      out.push_back(c.coef != 0 ? at(1, i) : at(2, i));
      continue;
    }
    const ShapeItem &a = at(0, i), &b = at(1, i);
    std::optional<bool> same;
    if (a.coef == b.coef && roots(a) == roots(b)) same = true;
    else if (a.nodes.empty() && b.nodes.empty()) same = false;
    else {
      // A product of sizes (each at least 1) times its number: its sign is the number's.
      const ShapeItem &sized = a.nodes.empty() ? b : a, &other = a.nodes.empty() ? a : b;
      if (other.nodes.empty() && (other.coef == 0 || (other.coef < 0) != (sized.coef < 0))) same = false;
    }
    if (!same)
      throw Failure{where(node) + " compares sizes of dimensions it cannot decide; ncd import folds comparisons "
                    "of shapes with numbers"};
    out.push_back(ShapeItem{*same ? 1 : 0, {}});
  }
  data_result(node, std::move(out));
  return true;
}

// Gather through an integer tensor along a dimension: an ncd gather, the table read at the index
// tensor's values (`wte[idx[batch, seq], d]`; a position outside the dimension reads zero where
// ONNX would count a negative index from the end). The table is written as its bare name around the
// index: its read has no dimensions of its own, each other dimension is named by its node.
void Builder::gather_indices(const onnx::NodeProto &node) {
  {
    const Value &index = value(lookup(node, 1));  // not a shape list: onnx_shape.cpp read those
    if (!ir::is_integer(index.dtype))
      throw Failure{where(node) + " gathers with indices of dtype " + std::string(ir::dtype_name(index.dtype)) +
                    "; ncd gathers through integer tensors"};
    // The positions of an axis (wpe(arange(T))) are the table's first rows: `wpe_weight[seq + 0, d]`.
    if (index.op == "Range" && index.dims.size() == 1 && index.dims[0].axis >= 0 && index.expr.rfind("{a:", 0) == 0 &&
        index.expr.find('}') + 1 == index.expr.size()) {
      const size_t axis = positions(node, {int_attribute(node, "axis", 0)}, value(lookup(node, 0)).dims.size())[0];
      const int rows = g_.new_axis(g_.size_of(index.dims[0].axis));
      g_.unite(rows, index.dims[0].axis);
      const int table = value(lookup(node, 0)).dims[axis].axis;
      if (table >= 0 && !module_of(node.name()).empty()) g_.hint(table, module_of(node.name()), 2);
      offset_slice(node, operand(node, 0), axis, 0, rows);
      return;
    }
  }
  // The table and the indices are written as references: a value inlined elsewhere is a statement here.
  auto declared = [&](int id) {
    while (value(id).role == Role::Inline && value(id).uses.size() == 1 && value(id).expr == ref(value(id).uses[0]))
      id = g_.uses[static_cast<size_t>(value(id).uses[0])].value;
    if (value(id).role == Role::Inline) g_.values[static_cast<size_t>(id)].role = Role::Statement;
  };
  const int t = operand(node, 0);
  std::vector<Dim> T = dims(t);
  const int table = g_.uses[static_cast<size_t>(t)].value;
  if (value(table).role == Role::Inline) g_.values[static_cast<size_t>(table)].role = Role::Statement;
  const size_t axis = positions(node, {int_attribute(node, "axis", 0)}, T.size())[0];
  if (T[axis].axis < 0) throw Failure{where(node) + " gathers along a broadcast dimension of size 1"};
  const int i = operand(node, 1);
  declared(g_.uses[static_cast<size_t>(i)].value);
  const std::vector<Dim> I = dims(i);
  if (T.size() - 1 + I.size() > static_cast<size_t>(kMaxRank)) throw Failure{where(node) + " makes a tensor of more than 8 dimensions"};
  std::string items;
  std::vector<Dim> out;
  for (size_t p = 0; p < T.size(); ++p) {
    if (p == axis) {
      items += (items.empty() ? "" : ", ") + ref(i);
      out.insert(out.end(), I.begin(), I.end());
    } else {
      if (T[p].axis >= 0) items += (items.empty() ? "" : ", ") + axis_ref(T[p].axis);
      out.push_back(T[p]);
    }
  }
  // An embedding's rows take the layer's name ("/wte/Gather": wte), unless a better name comes.
  const std::string module = module_of(node.name());
  if (!module.empty()) g_.hint(T[axis].axis, module, 2);
  for (Dim &d : g_.uses[static_cast<size_t>(t)].dims) d.axis = -1;  // the bare name
  TableRead read{-1, table, {}};
  for (size_t p = 0; p < T.size(); ++p)
    if (p != axis && T[p].axis >= 0) read.nodes.push_back(T[p].axis);
  read.value = result(node, out, ref(t) + "[" + items + "]", value(table).dtype, false);
  table_reads_.push_back(std::move(read));
}

// Once every reshape is read: a dimension of a table declared whole (an input, a param, an output)
// that is a product of axes is read as a split, `wte[idx[b, s], (heads, d)]`; a computed table is
// declared with the parts.
void Builder::split_table_reads() {
  for (const TableRead &r : table_reads_) {
    const Value &t = value(r.table);
    const bool whole = t.role == Role::Input || t.role == Role::Param ||
                       std::find(g_.outputs.begin(), g_.outputs.end(), r.table) != g_.outputs.end();
    if (!whole) continue;
    std::string &expr = g_.values[static_cast<size_t>(r.value)].expr;
    for (int n : r.nodes) {
      if (g_.atoms(n).size() < 2) continue;
      const std::string slot = axis_ref(n);
      if (const size_t at = expr.find(slot); at != std::string::npos) expr.replace(at, slot.size(), "(" + slot + ")");
    }
  }
}

// torch writes a weight read as `x @ w.t()` (a tied output projection) as a transposed copy under
// a made-up name ("onnx::MatMul_20"): read it as the weight it equals, transposed, so that the
// program has the one weight.
void Builder::tie_transposed() {
  std::map<std::pair<int64_t, int64_t>, std::vector<int>> named;  // [rows, cols] -> named 2-D params
  auto shape2 = [&](const Value &v) -> std::optional<std::pair<int64_t, int64_t>> {
    if (v.role != Role::Param || v.weight.shape.size() != 2 || v.dims.size() != 2) return std::nullopt;
    return std::make_pair(v.weight.shape[0], v.weight.shape[1]);
  };
  const size_t count = g_.values.size();
  for (size_t id = 0; id < count; ++id)
    if (auto s = shape2(g_.values[id]); s && g_.values[id].onnx_name.rfind("onnx::", 0) != 0)
      named[*s].push_back(static_cast<int>(id));
  for (size_t id = 0; id < count; ++id) {
    const Value &copy = g_.values[id];
    auto s = shape2(copy);
    if (!s || copy.onnx_name.rfind("onnx::", 0) != 0) continue;
    auto it = named.find({s->second, s->first});
    if (it == named.end()) continue;
    for (int source : it->second) {
      const Value &w = value(source);
      if (w.dtype != copy.dtype) continue;
      const int64_t rows = s->first, cols = s->second;
      bool equal = true;
      for (int64_t r = 0; r < rows && equal; ++r)
        for (int64_t c = 0; c < cols && equal; ++c) {
          const size_t a = static_cast<size_t>(r * cols + c), b = static_cast<size_t>(c * rows + r);
          equal = copy.weight.is_int() ? copy.weight.ints[a] == w.weight.ints[b] : copy.weight.values[a] == w.weight.values[b];
        }
      if (!equal) continue;
      const int u = read(source);
      const std::vector<Dim> W = dims(u);
      Value view;
      view.onnx_name = copy.onnx_name;
      view.role = Role::Inline;
      view.op = "Transpose";
      view.dtype = copy.dtype;
      view.expr = ref(u);
      view.uses = {u};
      for (size_t p : {size_t{1}, size_t{0}}) {
        const int n = g_.new_axis(g_.size_of(W[p].axis));
        g_.unite(n, W[p].axis);
        view.edges.emplace_back(n, W[p].axis);
        view.dims.push_back(make_dim(n, g_.size_of(n), -1));
      }
      const int made = add(std::move(view));
      g_.order.push_back(made);
      break;
    }
  }
}

}  // namespace ncd::onnx_import
