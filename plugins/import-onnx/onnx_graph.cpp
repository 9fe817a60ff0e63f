// Reading an ONNX model into the importer's graph (onnx_model.h): the file
// parsed with ONNX's own protobuf classes, shapes completed by ONNX's shape
// inference, then one rule per op type that says which dimensions are the
// same axis and what ncd expression computes the node (products, windows,
// normalizations and reductions are in onnx_ops.cpp, the shape-changing ops
// in onnx_shape.cpp). Preconditions: none; every refusal names the
// node (or the part of the file) and nothing is kept.
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>

#include "onnx_builder.h"

namespace ncd::onnx_import {

std::string where(const onnx::NodeProto &node) {
  return "node '" + (node.name().empty() ? node.output_size() ? node.output(0) : std::string("?") : node.name()) +
         "' (" + node.op_type() + ")";
}

std::optional<ir::DType> dtype_of(int onnx_type) {
  switch (onnx_type) {
    case onnx::TensorProto::FLOAT: return ir::DType::F32;
    case onnx::TensorProto::FLOAT16: return ir::DType::F16;
    case onnx::TensorProto::BFLOAT16: return ir::DType::BF16;
    case onnx::TensorProto::INT8: return ir::DType::I8;
    case onnx::TensorProto::INT32: return ir::DType::I32;
    case onnx::TensorProto::INT64: return ir::DType::I32;  // token ids, positions: ncd indexes with i32
    case onnx::TensorProto::BOOL: return ir::DType::Bool;
    default: return std::nullopt;
  }
}

const onnx::AttributeProto *attribute(const onnx::NodeProto &node, const std::string &name) {
  for (const auto &a : node.attribute())
    if (a.name() == name) return &a;
  return nullptr;
}
int64_t int_attribute(const onnx::NodeProto &node, const std::string &name, int64_t fallback) {
  const auto *a = attribute(node, name);
  return a ? a->i() : fallback;
}
double float_attribute(const onnx::NodeProto &node, const std::string &name, double fallback) {
  const auto *a = attribute(node, name);
  return a ? static_cast<double>(a->f()) : fallback;
}

namespace {
template <class T>
double little(const char *p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return static_cast<double>(v);
}

}  // namespace

// The float values of a tensor proto (raw or typed data), for initializers and constants.
std::vector<double> tensor_values(const onnx::TensorProto &t, const std::string &what) {
  int64_t count = 1;
  for (int64_t d : t.dims()) {
    if (d < 0 || d > kMaxDim || (count > 0 && d > kMaxDim / count)) throw Failure{what + " has an absurd shape"};
    count *= d;
  }
  if (t.data_location() == onnx::TensorProto::EXTERNAL)
    throw Failure{what + " keeps its data in an external file, which ncd import does not read"};
  std::vector<double> out;
  // The data are little-endian raw bytes, or a typed field: each element converted to double.
  auto take = [&](size_t bytes, auto decode, const auto &typed, auto convert) {
    if (t.has_raw_data()) {
      if (t.raw_data().size() != static_cast<size_t>(count) * bytes)
        throw Failure{what + " has " + std::to_string(t.raw_data().size()) + " bytes of data for " +
                      std::to_string(count) + " elements"};
      out.reserve(static_cast<size_t>(count));
      for (int64_t i = 0; i < count; ++i) out.push_back(decode(t.raw_data().data() + i * static_cast<int64_t>(bytes)));
    } else {
      if (typed.size() != count)
        throw Failure{what + " has " + std::to_string(typed.size()) + " values for " + std::to_string(count) + " elements"};
      for (auto v : typed) out.push_back(convert(v));
    }
  };
  auto same = [](auto v) { return static_cast<double>(v); };
  auto f16 = [](int32_t v) { return static_cast<double>(f16_from_bits(static_cast<uint16_t>(v))); };
  auto bf16 = [](int32_t v) { return static_cast<double>(bf16_from_bits(static_cast<uint16_t>(v))); };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT: take(4, little<float>, t.float_data(), same); break;
    case onnx::TensorProto::DOUBLE: take(8, little<double>, t.double_data(), same); break;
    case onnx::TensorProto::INT64: take(8, little<int64_t>, t.int64_data(), same); break;
    case onnx::TensorProto::INT32: take(4, little<int32_t>, t.int32_data(), same); break;
    case onnx::TensorProto::INT8: take(1, little<int8_t>, t.int32_data(), same); break;
    case onnx::TensorProto::BOOL: take(1, little<uint8_t>, t.int32_data(), same); break;
    case onnx::TensorProto::FLOAT16:
      take(2, [&](const char *p) { return f16(static_cast<int32_t>(little<uint16_t>(p))); }, t.int32_data(), f16);
      break;
    case onnx::TensorProto::BFLOAT16:
      take(2, [&](const char *p) { return bf16(static_cast<int32_t>(little<uint16_t>(p))); }, t.int32_data(), bf16);
      break;
    default:
      throw Failure{what + " has element type " + std::to_string(t.data_type()) +
                    ", which ncd import does not read (float32/16, bfloat16, float64, int8, int32, int64, bool)"};
  }
  return out;
}

int Graph::new_axis(int64_t size) {
  parent.push_back(static_cast<int>(parent.size()));
  axis_size.push_back(size);
  axis_hint.emplace_back();
  axis_hint_rank.push_back(1 << 30);
  return parent.back();
}

int Graph::find(int a) {
  while (parent[static_cast<size_t>(a)] != a)
    a = parent[static_cast<size_t>(a)] = parent[static_cast<size_t>(parent[static_cast<size_t>(a)])];
  return a;
}

void Graph::hint(int axis, const std::string &name, int rank) {
  int r = find(axis);
  if (rank < axis_hint_rank[static_cast<size_t>(r)]) {
    axis_hint_rank[static_cast<size_t>(r)] = rank;
    axis_hint[static_cast<size_t>(r)] = name;
  }
}

bool Graph::unite(int a, int b) {
  a = find(a), b = find(b);
  if (a == b) return true;
  if (axis_size[static_cast<size_t>(a)] != axis_size[static_cast<size_t>(b)]) return false;
  if (axis_hint_rank[static_cast<size_t>(b)] < axis_hint_rank[static_cast<size_t>(a)]) {
    axis_hint_rank[static_cast<size_t>(a)] = axis_hint_rank[static_cast<size_t>(b)];
    axis_hint[static_cast<size_t>(a)] = axis_hint[static_cast<size_t>(b)];
  }
  parent[static_cast<size_t>(b)] = a;
  auto fb = factors.find(b);
  if (fb == factors.end()) return true;
  std::vector<int> parts = fb->second;
  factors.erase(fb);
  return factorize(a, parts);
}

std::vector<int> Graph::atoms(int node) {
  std::function<void(int, int, std::vector<int> &)> walk = [&](int n, int depth, std::vector<int> &out) {
    const int r = find(n);
    auto it = factors.find(r);
    if (it == factors.end() || depth > 64) {  // a product nested deeper is a malformed model: stop there
      out.push_back(r);
      return;
    }
    for (int part : std::vector<int>(it->second)) walk(part, depth + 1, out);
  };
  std::vector<int> out;
  walk(node, 0, out);
  return out;
}

bool Graph::factorize(int node, const std::vector<int> &parts) {
  int r = find(node);
  for (int part : parts)
    if (find(part) == r) return false;  // a class cannot be a product containing itself
  auto it = factors.find(r);
  if (it == factors.end()) {
    factors[r] = parts;
    return true;
  }
  std::vector<int> mine = it->second;
  if (mine.size() != parts.size()) {
    // 2304 = (3, 768) and 2304 = (3, 12, 64): the same when written finest.
    std::vector<int> a, b;
    for (int p : mine)
      for (int x : atoms(p)) a.push_back(x);
    for (int p : parts)
      for (int x : atoms(p)) b.push_back(x);
    if (a.size() != b.size()) return false;
    mine = a;
    std::vector<int> flat = b;
    for (size_t i = 0; i < mine.size(); ++i)
      if (!unite(mine[i], flat[i])) return false;
    return true;
  }
  for (size_t i = 0; i < mine.size(); ++i)
    if (!unite(mine[i], parts[i])) return false;
  return true;
}

void Builder::run(onnx::ModelProto &model) {
  for (const auto &opset : model.opset_import())
    if (opset.domain().empty() || opset.domain() == "ai.onnx") g_.opset = opset.version();
  if (g_.opset == 0) throw Failure{"the model imports no version of the standard ONNX operator set"};
  if (g_.opset < 13 || g_.opset > 21)
    throw Failure{"the model uses ONNX operator set " + std::to_string(g_.opset) +
                  "; ncd import reads sets 13 to 21 (torch.onnx.export(..., opset_version=17))"};
  inline_functions(model);
  try {
    onnx::shape_inference::InferShapes(model);
  } catch (const std::exception &e) {
    throw Failure{std::string("ONNX shape inference failed: ") + e.what()};
  }
  const onnx::GraphProto &graph = model.graph();
  g_.graph_name = graph.name();
  g_.producer = model.producer_name() + (model.producer_version().empty() ? "" : " " + model.producer_version());
  for (const auto &info : graph.value_info()) shapes_[info.name()] = &info;
  for (const auto &info : graph.output()) shapes_[info.name()] = &info;
  std::set<std::string> initializers;
  for (const auto &t : graph.initializer()) initializers.insert(t.name());
  for (const auto &input : graph.input()) {
    if (initializers.count(input.name())) continue;
    int id = declare(input.name(), input, "graph input '" + input.name() + "'");
    g_.values[static_cast<size_t>(id)].role = Role::Input;
    g_.inputs.push_back(id);
  }
  for (const auto &t : graph.initializer()) constant_tensor(t, t.name(), "");
  tie_transposed();
  for (const auto &node : graph.node()) this->node(node);
  for (const auto &output : graph.output()) {
    auto it = g_.by_name.find(output.name());
    if (it == g_.by_name.end()) throw Failure{"graph output '" + output.name() + "' is computed by no node"};
    Value &v = g_.values[static_cast<size_t>(it->second)];
    if (v.role != Role::Statement && v.role != Role::Inline)
      throw Failure{"graph output '" + output.name() + "' is an input, a weight or a constant, not a computation"};
    v.role = Role::Statement;
    ++v.users;
    g_.outputs.push_back(it->second);
  }
  if (g_.outputs.empty()) throw Failure{"the graph has no outputs"};
  // Classes that are the same product are one axis (a merged (heads, d) and the q part it came from).
  for (bool changed = true; changed;) {
    changed = false;
    std::map<std::vector<int>, int> seen;
    for (const auto &[cls, parts] : std::map<int, std::vector<int>>(g_.factors)) {
      std::vector<int> roots;
      for (int p : parts) roots.push_back(g_.find(p));
      auto [it, fresh] = seen.emplace(roots, cls);
      if (!fresh && g_.find(it->second) != g_.find(cls)) {
        if (!g_.unite(it->second, cls)) throw Failure{"two dimensions of one product have different sizes"};
        changed = true;
        break;
      }
    }
  }
  // Attention: a product of two activations summing one part of a split (q @ k.T sums the head
  // width); the other part is the heads.
  for (const auto &[cls, parts] : g_.factors) {
    if (parts.size() != 2) continue;
    for (int summed : head_contractions_)
      if (g_.find(summed) == g_.find(parts[1])) {
        g_.hint(parts[0], "heads", 2);
        g_.hint(parts[1], "head_dim", 2);
      }
  }
  split_table_reads();
}

// A graph input with the shape ONNX gives `info`; each dimension a new class (named by a dim_param when it has one).
int Builder::declare(const std::string &name, const onnx::ValueInfoProto &info, const std::string &what) {
  if (!info.type().has_tensor_type()) throw Failure{what + " is not a tensor"};
  const auto &type = info.type().tensor_type();
  auto dtype = dtype_of(type.elem_type());
  if (!dtype)
    throw Failure{what + " has element type " + std::to_string(type.elem_type()) +
                  ", which has no ncd dtype (float32, float16, bfloat16, int8, int32, int64 as i32, bool)"};
  if (!type.has_shape()) throw Failure{what + " has no shape"};
  Value v;
  v.onnx_name = name;
  v.dtype = *dtype;
  if (type.shape().dim_size() > kMaxRank) throw Failure{what + " has more than 8 dimensions"};
  for (int i = 0; i < type.shape().dim_size(); ++i) {
    const auto &d = type.shape().dim(i);
    Dim dim;
    if (d.has_dim_value()) {
      if (d.dim_value() < 1 || d.dim_value() > kMaxDim)
        throw Failure{what + " has dimension " + std::to_string(i) + " of size " + std::to_string(d.dim_value())};
      dim.size = d.dim_value();
      dim.axis = g_.new_axis(dim.size);
      g_.hint(dim.axis, name + "_" + std::to_string(i), 3);
    } else if (d.has_dim_param()) {
      dim.size = 0;  // symbolic: no size
      dim.axis = g_.new_axis(0);
      g_.hint(dim.axis, d.dim_param(), 0);
    } else {
      throw Failure{what + " has dimension " + std::to_string(i) + " of unknown size"};
    }
    v.dims.push_back(dim);
  }
  return add(std::move(v));
}

int Builder::add(Value v) {
  const std::string name = v.onnx_name;
  g_.values.push_back(std::move(v));
  int id = static_cast<int>(g_.values.size()) - 1;
  g_.by_name[name] = id;
  return id;
}

// An initializer or a Constant: a scalar is a number in the program, a short integer
// list is data (a shape, axes), anything else a param (a triangle of positions, a mask).
void Builder::constant_tensor(const onnx::TensorProto &t, const std::string &name, const std::string &node) {
  const std::string what = node.empty() ? "initializer '" + name + "'" : "constant '" + name + "'";
  if (t.dims_size() > kMaxRank) throw Failure{what + " has more than 8 dimensions"};
  std::vector<double> data = tensor_values(t, what);
  Value v;
  v.onnx_name = name;
  v.node = node;
  v.op = node.empty() ? "" : "Constant";
  const bool integer = t.data_type() == onnx::TensorProto::INT64 || t.data_type() == onnx::TensorProto::INT32;
  if (t.dims_size() == 0 || (data.size() == 1 && t.dims_size() <= 1)) {
    v.role = Role::Literal;
    v.literal = data.at(0);
    add(std::move(v));
    return;
  }
  if (integer && t.dims_size() == 1 && data.size() <= 64) {
    v.role = Role::Data;
    for (double d : data)  // INT64_MAX ("to the end" of a Slice) does not survive a double: clamp
      v.items.push_back(ShapeItem{d >= 9.2e18 ? INT64_MAX : d <= -9.2e18 ? INT64_MIN : static_cast<int64_t>(d), {}});
    add(std::move(v));
    return;
  }
  auto dtype = dtype_of(t.data_type());
  if (!dtype && t.data_type() != onnx::TensorProto::DOUBLE && !integer) throw Failure{what + " has no ncd dtype"};
  v.dtype = dtype.value_or(integer ? ir::DType::I32 : ir::DType::F32);
  v.role = Role::Param;
  std::vector<int64_t> shape;
  for (int64_t d : t.dims()) {
    Dim dim;
    dim.size = d;
    if (d > 1) dim.axis = g_.new_axis(d);
    else if (d == 1) dim.axis = -1;  // squeezed: a weight's size-1 dimension only broadcasts
    else throw Failure{what + " has a dimension of size 0"};
    v.dims.push_back(dim);
    if (dim.axis >= 0) shape.push_back(d);
  }
  v.weight = Tensor::zeros(v.dtype, shape);
  for (size_t i = 0; i < data.size(); ++i) {
    if (v.weight.is_int()) v.weight.ints[i] = static_cast<int32_t>(data[i]);
    else v.weight.values[i] = convert_float(static_cast<float>(data[i]), v.dtype);
  }
  if (data.size() <= (size_t{1} << 22)) v.data = std::move(data);
  if (!triangle(v)) v.data.clear();
  int id = add(std::move(v));
  if (g_.values[static_cast<size_t>(id)].role == Role::Inline) g_.order.push_back(id);
}

int Builder::lookup(const onnx::NodeProto &node, int k) {
  if (!has_operand(node, k)) throw Failure{where(node) + " lacks its input " + std::to_string(k + 1)};
  auto it = g_.by_name.find(node.input(k));
  if (it == g_.by_name.end())
    throw Failure{where(node) + " reads '" + node.input(k) + "', which no earlier node, input or initializer defines "
                  "(the graph is not in order, or has a cycle)"};
  return it->second;
}

bool Builder::is_data(const onnx::NodeProto &node, int k) {
  return has_operand(node, k) && value(lookup(node, k)).role == Role::Data;
}

// A read of input k: new nodes, each linked to the value's.
int Builder::operand(const onnx::NodeProto &node, int k) {
  const int id = lookup(node, k);
  if (value(id).role == Role::Data)
    throw Failure{where(node) + " reads '" + node.input(k) + "', a list of integers (a shape), as a tensor; ncd "
                  "import reads such lists only as shapes and axes"};
  return read(id);
}

// A view read again (q read whole and as two halves) is a view of its own for each reader, so
// that one statement's readers of it do not share its wires.
int Builder::read(int id) {
  {
    const Value &v = value(id);
    if (v.role == Role::Inline && v.users >= 1 && v.uses.size() == 1 && v.expr == ref(v.uses[0])) id = clone(id);
  }
  Value &v = g_.values[static_cast<size_t>(id)];
  ++v.users;
  Use use;
  use.value = id;
  for (const Dim &d : v.dims) {
    Dim mine = d;
    if (d.axis >= 0) {
      mine.axis = g_.new_axis(g_.size_of(d.axis));
      g_.unite(d.axis, mine.axis);
    }
    use.dims.push_back(mine);
  }
  g_.uses.push_back(std::move(use));
  return static_cast<int>(g_.uses.size()) - 1;
}

int Builder::clone(int id) {
  Value c = value(id);
  const Use old_use = g_.uses[static_cast<size_t>(c.uses[0])];
  const int use = read(old_use.value);
  std::map<int, int> fresh;
  auto map = [&](int node) {
    if (node < 0) return node;
    auto it = fresh.find(node);
    if (it != fresh.end()) return it->second;
    const int n = g_.new_axis(g_.size_of(node));
    g_.unite(node, n);
    fresh[node] = n;
    return n;
  };
  const Use &new_use = g_.uses[static_cast<size_t>(use)];
  for (size_t i = 0; i < old_use.dims.size(); ++i)
    if (old_use.dims[i].axis >= 0) fresh[old_use.dims[i].axis] = new_use.dims[i].axis;
  g_.uses[static_cast<size_t>(use)].dims = [&] {
    std::vector<Dim> d = new_use.dims;
    for (size_t i = 0; i < d.size() && i < old_use.dims.size(); ++i) {
      d[i].at = old_use.dims[i].at;
      d[i].offset = old_use.dims[i].offset;
      d[i].terms.clear();
      for (const auto &[coef, n] : old_use.dims[i].terms) d[i].terms.emplace_back(coef, map(n));
    }
    return d;
  }();
  for (Dim &d : c.dims) d.axis = map(d.axis);
  for (auto &[a, b] : c.edges) a = map(a), b = map(b);
  for (Regroup &r : c.regroups) {
    r.coarse = map(r.coarse);
    for (Dim &d : r.fine) d.axis = map(d.axis);
  }
  c.uses = {use};
  c.expr = ref(use);
  c.users = 0;
  g_.values.push_back(std::move(c));
  const int made = static_cast<int>(g_.values.size()) - 1;
  g_.order.push_back(made);
  return made;
}

// The result of `node` with the dims given (each a new node linked to the given one);
// its dtype from shape inference, else the one given.
int Builder::result(const onnx::NodeProto &node, std::vector<Dim> dims, std::string expr, ir::DType dtype,
                    bool contraction, int output) {
  if (node.output_size() <= output || node.output(output).empty()) throw Failure{where(node) + " has no output"};
  Value v;
  v.onnx_name = node.output(output);
  for (Dim &d : dims) {
    if (d.axis < 0) continue;
    const int fresh = g_.new_axis(g_.size_of(d.axis));
    link(node, fresh, d.axis);
    d.axis = fresh;
    d.at = -1;
  }
  v.dims = std::move(dims);
  v.dtype = dtype;
  v.node = node.name();
  v.op = node.op_type();
  v.expr = std::move(expr);
  v.contraction = contraction;
  v.role = contraction ? Role::Statement : Role::Inline;  // a contraction is its own statement
  for (size_t at = v.expr.find("{u:"); at != std::string::npos; at = v.expr.find("{u:", at + 1))
    v.uses.push_back(std::stoi(v.expr.substr(at + 3)));
  v.edges = std::move(pending_edges_);
  v.regroups = std::move(pending_regroups_);
  pending_edges_.clear();
  pending_regroups_.clear();
  auto known = shapes_.find(v.onnx_name);
  if (known != shapes_.end() && known->second->type().has_tensor_type()) {
    const auto &type = known->second->type().tensor_type();
    if (type.has_shape() && type.shape().dim_size() != static_cast<int>(v.dims.size()))
      throw Failure{where(node) + ": ONNX gives its output " + std::to_string(type.shape().dim_size()) +
                    " dimensions, ncd's reading " + std::to_string(v.dims.size())};
    if (auto d = dtype_of(type.elem_type())) v.dtype = *d;
  }
  int id = add(std::move(v));
  g_.order.push_back(id);
  return id;
}

void Builder::link(const onnx::NodeProto &node, int a, int b) {
  const int64_t sa = g_.size_of(a), sb = g_.size_of(b);
  if (!g_.unite(a, b))
    throw Failure{where(node) + " pairs dimensions of sizes " + (sa ? std::to_string(sa) : "unknown") + " and " +
                  (sb ? std::to_string(sb) : "unknown") + (sa == sb ? " that are reshaped differently" : "")};
  pending_edges_.emplace_back(a, b);
}

// NumPy broadcasting of the operands' dims, right-aligned; dims at one position are linked.
std::vector<Dim> Builder::broadcast(const onnx::NodeProto &node, const std::vector<std::vector<Dim>> &operands) {
  size_t rank = 0;
  for (const auto &dims : operands) rank = std::max(rank, dims.size());
  std::vector<Dim> out(rank);
  for (size_t pos = 0; pos < rank; ++pos) {
    std::vector<const Dim *> here;  // the operands' dims at this position
    for (const auto &dims : operands)
      if (pos + dims.size() >= rank) here.push_back(&dims[pos + dims.size() - rank]);
    int64_t size = 1;
    bool symbolic = false;
    for (const Dim *d : here) {
      if (d->axis >= 0 && g_.size_of(d->axis) == 0) symbolic = true;
      if (d->size > 1) size = d->size;
    }
    int axis = -1;
    bool spread = true;  // along it, every operand that has it is the same everywhere
    for (const Dim *d : here) {
      if (d->axis < 0) continue;
      spread = spread && d->spread;
      const int64_t extent = g_.size_of(d->axis);
      if (extent != 0 && extent != size && !symbolic)
        throw Failure{where(node) + " broadcasts an axis of size " + std::to_string(extent) + " to " +
                      std::to_string(size) + ", which ncd's named axes cannot (the axis would have to vanish)"};
      if (axis < 0) axis = d->axis;
      else link(node, axis, d->axis);
    }
    out[pos].axis = axis;
    out[pos].size = symbolic ? 0 : size;
    out[pos].spread = axis >= 0 && spread;
  }
  return out;
}

std::vector<Dim> Builder::broadcast_uses(const onnx::NodeProto &node, const std::vector<int> &uses) {
  std::vector<std::vector<Dim>> operands;
  for (int u : uses) operands.push_back(dims(u));
  return broadcast(node, operands);
}

int Builder::elementwise(const onnx::NodeProto &node, const std::vector<int> &uses, const std::string &pattern) {
  std::string expr = pattern;
  for (size_t k = 0; k < uses.size(); ++k) {
    const std::string slot = "$" + std::to_string(k);
    for (size_t at; (at = expr.find(slot)) != std::string::npos;) expr.replace(at, slot.size(), ref(uses[k]));
  }
  return result(node, broadcast_uses(node, uses), expr, dtype(uses[0]), false);
}

// Positive axis positions of an `axes` list over a rank.
std::vector<size_t> Builder::positions(const onnx::NodeProto &node, const std::vector<int64_t> &axes, size_t rank) {
  std::vector<size_t> out;
  for (int64_t a : axes) {
    int64_t p = a < 0 ? a + static_cast<int64_t>(rank) : a;
    if (p < 0 || p >= static_cast<int64_t>(rank))
      throw Failure{where(node) + " names axis " + std::to_string(a) + " of a rank-" + std::to_string(rank) + " tensor"};
    out.push_back(static_cast<size_t>(p));
  }
  return out;
}

std::string Builder::axes_slot(const std::vector<Dim> &dims, const std::vector<size_t> &at, const onnx::NodeProto &node) {
  std::string s;
  for (size_t p : at) {
    if (dims[p].axis < 0) throw Failure{where(node) + " works along a broadcast dimension of size 1"};
    s += (s.empty() ? "" : ", ") + axis_ref(dims[p].axis);
  }
  return s;
}

void Builder::node(const onnx::NodeProto &node) {
  if (!node.domain().empty() && node.domain() != "ai.onnx")
    throw Failure{where(node) + " is from operator domain '" + node.domain() + "', which ncd import does not read"};
  const std::string &op = node.op_type();
  static const std::map<std::string, std::string> unary = {
      {"Relu", "relu($0)"},     {"Tanh", "tanh($0)"}, {"Sigmoid", "sigmoid($0)"}, {"Erf", "erf($0)"},
      {"Exp", "exp($0)"},       {"Log", "log($0)"},   {"Sqrt", "sqrt($0)"},       {"Reciprocal", "recip($0)"},
      {"Neg", "-$0"},           {"Abs", "abs($0)"},   {"Softplus", "softplus($0)"}, {"Sin", "sin($0)"},
      {"Cos", "cos($0)"},       {"Floor", "floor($0)"}, {"Ceil", "ceil($0)"}};
  static const std::map<std::string, std::string> logic = {
      {"Equal", "$0 == $1"}, {"Less", "$0 < $1"}, {"LessOrEqual", "$0 <= $1"}, {"Greater", "$0 > $1"},
      {"GreaterOrEqual", "$0 >= $1"}, {"And", "$0 && $1"}, {"Or", "$0 || $1"}, {"Not", "!$0"},
      {"Where", "where($0, $1, $2)"}};
  static const std::map<std::string, std::string> binary = {
      {"Add", "$0 + $1"}, {"Sub", "$0 - $1"}, {"Mul", "$0 * $1"}, {"Div", "$0 / $1"}, {"Pow", "pow($0, $1)"},
      {"Max", "maximum($0, $1)"}, {"Min", "minimum($0, $1)"}};
  if (shape_node(node)) return;
  if (view_node(node)) return;
  if (fold(node)) return;
  if (auto it = unary.find(op); it != unary.end()) {
    elementwise(node, {operand(node, 0)}, it->second);
  } else if (auto it2 = binary.find(op); it2 != binary.end()) {
    elementwise(node, {operand(node, 0), operand(node, 1)}, it2->second);
  } else if (auto it3 = logic.find(op); it3 != logic.end()) {
    std::vector<int> uses;
    for (int k = 0; k < node.input_size(); ++k) uses.push_back(operand(node, k));
    if (uses.size() != static_cast<size_t>(op == "Not" ? 1 : op == "Where" ? 3 : 2))
      throw Failure{where(node) + " has " + std::to_string(uses.size()) + " inputs"};
    elementwise(node, uses, it3->second);
  } else if (op == "Transpose") {
    int x = operand(node, 0);
    const auto &X = dims(x);
    std::vector<int64_t> perm;
    if (const auto *a = attribute(node, "perm")) perm.assign(a->ints().begin(), a->ints().end());
    for (size_t p = perm.empty() ? 0 : X.size(); p < X.size(); ++p) perm.insert(perm.begin(), static_cast<int64_t>(p));
    if (perm.size() != X.size())
      throw Failure{where(node) + " permutes " + std::to_string(perm.size()) + " of " + std::to_string(X.size()) +
                    " dimensions"};
    std::vector<Dim> out;
    for (size_t p : positions(node, perm, X.size())) out.push_back(X[p]);
    result(node, out, ref(x), dtype(x), false);  // ncd has no layouts: the same tensor
  } else if (op == "Unsqueeze" || op == "Squeeze") {
    squeeze(node);
  } else if (op == "Gelu") {
    const auto *a = attribute(node, "approximate");
    elementwise(node, {operand(node, 0)}, a && a->s() == "tanh" ? "gelu_tanh($0)" : "gelu($0)");
  } else if (op == "Identity" || (op == "Cast" && dtype_of(static_cast<int>(int_attribute(node, "to", 0))) ==
                                                      std::optional<ir::DType>(value(lookup(node, 0)).dtype))) {
    // The same value under another name: its users are counted where the alias is read.
    g_.by_name[node.output(0)] = lookup(node, 0);
  } else if (op == "Cast") {
    int u = operand(node, 0);
    auto to = dtype_of(static_cast<int>(int_attribute(node, "to", 0)));
    if (!to)
      throw Failure{where(node) + " casts to element type " + std::to_string(int_attribute(node, "to", 0)) +
                    ", which has no ncd dtype"};
    result(node, dims(u), std::string(ir::dtype_name(*to)) + "(" + ref(u) + ")", *to, false);
  } else if (op == "Constant") {
    const auto *a = attribute(node, "value");
    if (a && a->has_t()) {
      constant_tensor(a->t(), node.output(0), node.name());
    } else {
      Value v;
      v.onnx_name = node.output(0);
      v.role = Role::Literal;
      if (const auto *f = attribute(node, "value_float")) v.literal = f->f();
      else if (const auto *i = attribute(node, "value_int")) v.literal = static_cast<double>(i->i());
      else throw Failure{where(node) + " has no scalar value"};
      add(std::move(v));
    }
  } else if (op == "MatMul") {
    matmul(node);
  } else if (op == "Einsum") {
    einsum(node);
  } else if (op == "Conv" || op == "MaxPool" || op == "AveragePool") {
    window(node);
  } else if (op == "ConvTranspose") {
    transposed(node);
  } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
    int x = operand(node, 0);
    const auto &X = dims(x);
    std::vector<size_t> at;
    std::vector<Dim> out;
    for (size_t p = 0; p < X.size(); ++p) {
      if (p >= 2 && X[p].axis >= 0) at.push_back(p);
      out.push_back(p >= 2 ? make_dim(-1, 1, -1) : X[p]);
    }
    if (at.empty()) {
      result(node, out, ref(x), dtype(x), false);
    } else {
      const std::string fn = op == "GlobalAveragePool" ? "mean" : "max";
      result(node, out, fn + "[" + axes_slot(X, at, node) + "](" + ref(x) + ")", dtype(x), false);
    }
  } else if (op == "BatchNormalization") {
    batchnorm(node);
  } else if (op == "Gemm") {
    gemm(node);
  } else if (op == "Softmax" || op == "LogSoftmax") {
    int x = operand(node, 0);
    auto at = positions(node, {int_attribute(node, "axis", -1)}, dims(x).size());
    const std::string fn = op == "Softmax" ? "softmax" : "logsoftmax";
    result(node, dims(x), fn + "[" + axes_slot(dims(x), at, node) + "](" + ref(x) + ")", dtype(x), false);
  } else if (op == "LayerNormalization") {
    layernorm(node);
  } else if (op == "ReduceMean" || op == "ReduceSum" || op == "ReduceMax" || op == "ReduceMin") {
    reduce(node);
  } else {
    std::string list;
    for (const std::string &name : supported_ops()) list += (list.empty() ? "" : ", ") + name;
    throw Failure{where(node) + ": ncd import does not support op " + op + " yet; it reads " + list};
  }
}

// Arithmetic on numbers alone (a scale 1 / sqrt(8)) is a number of the program.
bool Builder::fold(const onnx::NodeProto &node) {
  static const std::map<std::string, std::function<double(double, double)>> ops = {
      {"Add", [](double a, double b) { return a + b; }},      {"Sub", [](double a, double b) { return a - b; }},
      {"Mul", [](double a, double b) { return a * b; }},      {"Div", [](double a, double b) { return a / b; }},
      {"Pow", [](double a, double b) { return std::pow(a, b); }}, {"Sqrt", [](double a, double) { return std::sqrt(a); }},
      {"Reciprocal", [](double a, double) { return 1 / a; }}, {"Neg", [](double a, double) { return -a; }}};
  auto it = ops.find(node.op_type());
  if (it == ops.end() || node.input_size() < 1 || node.input_size() > 2) return false;
  double x[2] = {0, 0};
  bool shaped = false;  // a number over dimensions (ConstantOfShape): the result keeps them
  for (int k = 0; k < node.input_size(); ++k) {
    const Value &v = value(lookup(node, k));
    if (v.role != Role::Literal) return false;
    x[k] = v.literal;
    shaped = shaped || !v.dims.empty();
  }
  const double r = it->second(x[0], x[1]);
  if (!std::isfinite(r)) return false;
  if (shaped) {
    std::vector<int> uses;
    for (int k = 0; k < node.input_size(); ++k) uses.push_back(operand(node, k));
    Value &made = g_.values[static_cast<size_t>(result(node, broadcast_uses(node, uses), number(r), dtype(uses[0]), false))];
    made.role = Role::Literal;
    made.literal = static_cast<double>(static_cast<float>(r));
    made.uses.clear();
    return true;
  }
  Value v;
  v.onnx_name = node.output(0);
  v.role = Role::Literal;
  v.literal = static_cast<double>(static_cast<float>(r));
  add(std::move(v));
  return true;
}

std::string module_of(const std::string &node) {
  const size_t end = node.rfind('/');
  if (end == std::string::npos || end == 0) return "";
  const size_t slash = node.rfind('/', end - 1);
  const size_t begin = slash == std::string::npos ? 0 : slash + 1;
  return node.substr(begin, end - begin);
}

std::string float_text(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char text[64];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(text, sizeof text, "%.*g", digits, v);
    if (static_cast<float>(std::strtod(text, nullptr)) == static_cast<float>(v)) break;
  }
  std::string s = text;
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  return s;
}

namespace {

// torch exports GELU as its formula (opset < 20): exact, x * (erf(x / √2) + 1) * 0.5, and
// tanh, 0.5 * x * (1 + tanh(√(2/π) * (x + 0.044715 * x³))). Found again, each is one call.
class Gelus {
 public:
  explicit Gelus(Graph &g) : g_(g) {}

  void run() {
    for (int id : g_.order) {
      if (at(id).op != "Mul") continue;
      std::vector<int> removed;
      int x_use = -1;
      const int product = other(id, 0.5, 0);
      if (product < 0 || !single(product, "Mul")) continue;
      removed.push_back(product);
      if ((x_use = exact(product, removed)) >= 0) replace(id, "gelu", x_use, removed);
      else if ((x_use = tanh_form(product, removed)) >= 0) replace(id, "gelu_tanh", x_use, removed);
    }
  }

 private:
  Graph &g_;
  Value &at(int id) { return g_.values[static_cast<size_t>(id)]; }
  int read(int id, size_t k) { return g_.uses[static_cast<size_t>(at(id).uses.at(k))].value; }
  bool literal(int id, double want, double tolerance) {
    return at(id).role == Role::Literal && std::fabs(at(id).literal - want) <= tolerance;
  }
  bool single(int id, const char *op) {
    return at(id).role == Role::Inline && at(id).users == 1 && at(id).op == op && at(id).uses.size() == (op[0] == 'E' || op[0] == 'T' ? 1u : 2u);
  }
  // The operand of a two-operand node that is not the literal `want` (-1 when neither is).
  int other(int id, double want, double tolerance) {
    if (at(id).uses.size() != 2) return -1;
    if (literal(read(id, 1), want, tolerance)) return read(id, 0);
    if (literal(read(id, 0), want, tolerance)) return read(id, 1);
    return -1;
  }
  // product = x * (OP(...) + 1), x on `side`: OP's node (and x, the sum), or -1.
  int one_plus(int product, size_t side, const char *op, int &x, int &sum) {
    x = read(product, side), sum = read(product, 1 - side);
    if (!single(sum, "Add")) return -1;
    const int inner = other(sum, 1.0, 0);
    return inner >= 0 && single(inner, op) ? inner : -1;
  }
  // product = x * (erf(x / √2) + 1): the use of x in product, or -1.
  int exact(int product, std::vector<int> &removed) {
    for (size_t side = 0; side < 2; ++side) {
      int x = -1, sum = -1;
      const int erf = one_plus(product, side, "Erf", x, sum);
      if (erf < 0) continue;
      const int div = read(erf, 0);
      if (!single(div, "Div") || read(div, 0) != x || !literal(read(div, 1), std::sqrt(2.0), 1e-6)) continue;
      removed.insert(removed.end(), {sum, erf, div});
      return at(product).uses[side];
    }
    return -1;
  }
  // product = x * (tanh(c * (x + 0.044715 * x*x*x)) + 1): the use of x in product, or -1.
  int tanh_form(int product, std::vector<int> &removed) {
    for (size_t side = 0; side < 2; ++side) {
      int x = -1, sum = -1;
      const int tanh = one_plus(product, side, "Tanh", x, sum);
      if (tanh < 0) continue;
      const int scaled = read(tanh, 0);
      if (!single(scaled, "Mul")) continue;
      const int inner = other(scaled, std::sqrt(2.0 / M_PI), 1e-6);
      if (inner < 0 || !single(inner, "Add")) continue;
      int cube_term = read(inner, 1);
      if (read(inner, 0) != x) {
        if (read(inner, 1) != x) continue;
        cube_term = read(inner, 0);
      }
      if (!single(cube_term, "Mul")) continue;
      const int cube = other(cube_term, 0.044715, 1e-7);
      if (cube < 0 || !cubes(cube, x, removed)) continue;
      removed.insert(removed.end(), {sum, tanh, scaled, inner, cube_term, cube});
      return at(product).uses[side];
    }
    return -1;
  }
  // x*x*x written as x * (x * x), (x * x) * x or pow(x, 3).
  bool cubes(int cube, int x, std::vector<int> &removed) {
    if (single(cube, "Pow")) return read(cube, 0) == x && literal(read(cube, 1), 3.0, 0);
    if (!single(cube, "Mul")) return false;
    for (size_t side = 0; side < 2; ++side) {
      const int square = read(cube, 1 - side);
      if (read(cube, side) == x && single(square, "Mul") && read(square, 0) == x && read(square, 1) == x) {
        removed.push_back(square);
        return true;
      }
    }
    return false;
  }
  void replace(int id, const std::string &fn, int x_use, const std::vector<int> &removed) {
    Value &v = at(id);
    const Use &use = g_.uses[static_cast<size_t>(x_use)];
    const int x = use.value;
    v.expr = fn + "({u:" + std::to_string(x_use) + "})";
    v.op = fn == "gelu" ? "Gelu" : "GeluTanh";
    v.uses = {x_use};
    // The result and x's read are the same wires (right-aligned, as broadcasting).
    for (size_t i = 0; i < std::min(v.dims.size(), use.dims.size()); ++i) {
      const Dim &a = v.dims[v.dims.size() - 1 - i], &b = use.dims[use.dims.size() - 1 - i];
      if (a.axis >= 0 && b.axis >= 0) v.edges.emplace_back(a.axis, b.axis);
    }
    for (int gone : removed) {
      for (int u : at(gone).uses)
        if (u != x_use && g_.uses[static_cast<size_t>(u)].value == x) --at(x).users;
      at(gone).users = 0;
    }
  }
};

}  // namespace

const std::vector<std::string> &supported_ops() {
  static const std::vector<std::string> ops = {
      "Abs", "Add", "And", "AveragePool", "BatchNormalization", "Cast", "Ceil", "Concat", "Constant",
      "ConstantOfShape", "Conv", "ConvTranspose", "Cos", "Div", "Einsum", "Equal", "Erf", "Exp", "Expand", "Flatten", "Floor",
      "Gather", "Gelu", "Gemm", "GlobalAveragePool", "GlobalMaxPool", "Greater", "GreaterOrEqual", "Identity",
      "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax", "MatMul", "Max", "MaxPool", "Min", "Mul",
      "Neg", "Not", "Or", "Pow", "Range", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin", "ReduceSum", "Relu",
      "Reshape", "Shape", "Sigmoid", "Sin", "Slice", "Softmax", "Softplus", "Split", "Sqrt", "Squeeze", "Sub", "Tanh",
      "Transpose", "Trilu", "Unsqueeze", "Where"};
  return ops;
}

bool build_graph(const std::string &bytes, Graph &graph, std::string &error) {
  onnx::ModelProto model;
  if (bytes.size() > static_cast<size_t>(INT32_MAX) || !model.ParseFromString(bytes)) {
    error = "not an ONNX model (the protobuf does not parse: truncated, or another kind of file)";
    return false;
  }
  if (!model.has_graph()) {
    error = "the ONNX model has no graph";
    return false;
  }
  try {
    Builder builder(graph);
    builder.run(model);
    Gelus(graph).run();
  } catch (const Failure &f) {
    error = f.message;
    return false;
  } catch (const std::exception &e) {
    error = std::string("reading the ONNX model failed: ") + e.what();
    return false;
  }
  return true;
}

}  // namespace ncd::onnx_import
