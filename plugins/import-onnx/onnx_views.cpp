// The ONNX ops that read a tensor another way without computing on it
// (plugin import-onnx, docs/IMPORT.md): Gather through an integer tensor (an
// embedding lookup, `wte[idx[batch, seq], d]`), and a weight torch stores
// transposed for a tied projection read as the weight it was copied from.
// Preconditions: the operands were read by onnx_graph.cpp; every refusal
// names the node.
#include <algorithm>
#include <cmath>
#include <map>

#include "onnx_builder.h"

namespace ncd::onnx_import {

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
