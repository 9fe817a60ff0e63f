// Reading an ONNX model into the importer's graph (onnx_model.h): the file
// parsed with ONNX's own protobuf classes, shapes completed by ONNX's shape
// inference, then one rule per op type that says which dimensions are the
// same axis and what ncd expression computes the node. Preconditions: none;
// every refusal names the node (or the part of the file) and nothing is kept.
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <set>

#include "onnx_model.h"

namespace ncd::onnx_import {
namespace {

// Dimensions of any one tensor, and elements of an initializer: beyond these a model is refused.
constexpr int kMaxRank = 8;
constexpr int64_t kMaxDim = int64_t{1} << 40;

struct Failure {
  std::string message;
};

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

template <class T>
double little(const char *p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return static_cast<double>(v);
}

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
    case onnx::TensorProto::FLOAT16:
      take(2, [&](const char *p) { return f16(static_cast<int32_t>(little<uint16_t>(p))); }, t.int32_data(), f16);
      break;
    case onnx::TensorProto::BFLOAT16:
      take(2, [&](const char *p) { return bf16(static_cast<int32_t>(little<uint16_t>(p))); }, t.int32_data(), bf16);
      break;
    default:
      throw Failure{what + " has element type " + std::to_string(t.data_type()) +
                    ", which ncd import does not read (float32/16, bfloat16, float64, int32, int64)"};
  }
  return out;
}

class Builder {
 public:
  explicit Builder(Graph &g) : g_(g) {}

  void run(onnx::ModelProto &model) {
    for (const auto &opset : model.opset_import())
      if (opset.domain().empty() || opset.domain() == "ai.onnx") g_.opset = opset.version();
    if (g_.opset == 0) throw Failure{"the model imports no version of the standard ONNX operator set"};
    if (g_.opset < 13 || g_.opset > 21)
      throw Failure{"the model uses ONNX operator set " + std::to_string(g_.opset) +
                    "; ncd import reads sets 13 to 21 (torch.onnx.export(..., opset_version=17))"};
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
      int id = declare(input.name(), input, "graph input '" + input.name() + "'", true);
      g_.values[static_cast<size_t>(id)].role = Role::Input;
      g_.inputs.push_back(id);
    }
    for (const auto &t : graph.initializer()) param(t);
    for (const auto &node : graph.node()) this->node(node);
    for (const auto &output : graph.output()) {
      auto it = g_.by_name.find(output.name());
      if (it == g_.by_name.end()) throw Failure{"graph output '" + output.name() + "' is computed by no node"};
      Value &v = g_.values[static_cast<size_t>(it->second)];
      if (v.role == Role::Input || v.role == Role::Param || v.role == Role::Literal)
        throw Failure{"graph output '" + output.name() + "' is an input, a weight or a constant, not a computation"};
      v.role = Role::Statement;
      ++v.users;
      g_.outputs.push_back(it->second);
    }
    if (g_.outputs.empty()) throw Failure{"the graph has no outputs"};
  }

 private:
  Graph &g_;
  std::map<std::string, const onnx::ValueInfoProto *> shapes_;

  // A value with the shape ONNX gives `info`; each dimension a new axis (named by a dim_param when it has one).
  int declare(const std::string &name, const onnx::ValueInfoProto &info, const std::string &what, bool input) {
    if (!info.type().has_tensor_type()) throw Failure{what + " is not a tensor"};
    const auto &type = info.type().tensor_type();
    auto dtype = dtype_of(type.elem_type());
    if (!dtype)
      throw Failure{what + " has element type " + std::to_string(type.elem_type()) +
                    ", which has no ncd dtype (float32, float16, bfloat16, int8, int32, bool)"};
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
        if (input) g_.hint(dim.axis, name + "_" + std::to_string(i), 3);
      } else if (d.has_dim_param() && input) {
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

  int add(Value v) {
    const std::string name = v.onnx_name;
    g_.values.push_back(std::move(v));
    int id = static_cast<int>(g_.values.size()) - 1;
    g_.by_name[name] = id;
    return id;
  }

  void param(const onnx::TensorProto &t) {
    const std::string what = "initializer '" + t.name() + "'";
    auto dtype = dtype_of(t.data_type());
    if (t.dims_size() > kMaxRank) throw Failure{what + " has more than 8 dimensions"};
    std::vector<double> data = tensor_values(t, what);
    Value v;
    v.onnx_name = t.name();
    if (t.dims_size() == 0 || (data.size() == 1 && t.dims_size() <= 1)) {
      v.role = Role::Literal;  // a scalar weight is a number in the program
      v.literal = data.at(0);
      add(std::move(v));
      return;
    }
    if (!dtype && t.data_type() != onnx::TensorProto::DOUBLE && t.data_type() != onnx::TensorProto::INT64)
      throw Failure{what + " has no ncd dtype"};
    v.dtype = dtype.value_or(t.data_type() == onnx::TensorProto::INT64 ? ir::DType::I32 : ir::DType::F32);
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
    if (data.size() <= 64) v.data = data;  // small integer lists may be axes
    v.weight = Tensor::zeros(v.dtype, shape);
    for (size_t i = 0; i < data.size(); ++i) {
      if (v.weight.is_int()) v.weight.ints[i] = static_cast<int32_t>(data[i]);
      else v.weight.values[i] = convert_float(static_cast<float>(data[i]), v.dtype);
    }
    add(std::move(v));
  }

  int operand(const onnx::NodeProto &node, int k) {
    if (k >= node.input_size() || node.input(k).empty())
      throw Failure{where(node) + " lacks its input " + std::to_string(k + 1)};
    auto it = g_.by_name.find(node.input(k));
    if (it == g_.by_name.end())
      throw Failure{where(node) + " reads '" + node.input(k) + "', which no earlier node, input or initializer defines "
                    "(the graph is not in order, or has a cycle)"};
    Value &v = g_.values[static_cast<size_t>(it->second)];
    if (v.role == Role::Data)
      throw Failure{where(node) + " reads the constant tensor '" + node.input(k) +
                    "' as a tensor; ncd import reads constant tensors only as lists of axes"};
    ++v.users;
    return it->second;
  }
  // A list of integers given as an input (Unsqueeze's axes, ReduceSum's axes): a constant or an initializer.
  std::vector<int64_t> constant_list(const onnx::NodeProto &node, int k) {
    auto it = g_.by_name.find(node.input(k));
    if (it == g_.by_name.end())
      throw Failure{where(node) + " reads '" + node.input(k) + "', which no earlier node, input or initializer defines "
                    "(the graph is not in order, or has a cycle)"};
    const Value &v = g_.values[static_cast<size_t>(it->second)];
    std::vector<int64_t> out;
    if (v.role == Role::Literal) out.push_back(static_cast<int64_t>(v.literal));
    else if (v.role == Role::Data || (v.role == Role::Param && !v.data.empty()))
      for (double d : v.data) out.push_back(static_cast<int64_t>(d));
    else
      throw Failure{where(node) + " takes its input " + std::to_string(k + 1) + " ('" + node.input(k) +
                    "') from a computation; ncd import needs it constant"};
    return out;
  }
  bool has_operand(const onnx::NodeProto &node, int k) { return k < node.input_size() && !node.input(k).empty(); }

  // The result of `node` with the dims given; its dtype from shape inference, else the first operand's.
  int result(const onnx::NodeProto &node, std::vector<Dim> dims, std::string expr, ir::DType dtype, bool contraction) {
    if (node.output_size() < 1 || node.output(0).empty()) throw Failure{where(node) + " has no output"};
    Value v;
    v.onnx_name = node.output(0);
    v.dims = std::move(dims);
    v.dtype = dtype;
    v.node = node.name();
    v.op = node.op_type();
    v.expr = std::move(expr);
    v.contraction = contraction;
    v.role = contraction ? Role::Statement : Role::Inline;  // a contraction is its own statement
    for (size_t at = v.expr.find("{v:"); at != std::string::npos; at = v.expr.find("{v:", at + 1))
      v.operands.push_back(std::stoi(v.expr.substr(at + 3)));
    auto known = shapes_.find(node.output(0));
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

  const Value &value(int id) const { return g_.values[static_cast<size_t>(id)]; }
  static std::string ref(int id) { return "{v:" + std::to_string(id) + "}"; }

  void same(const onnx::NodeProto &node, int a, int b) {
    if (!g_.unite(a, b))
      throw Failure{where(node) + " pairs dimensions of sizes " + std::to_string(g_.axis_size[static_cast<size_t>(g_.find(a))]) +
                    " and " + std::to_string(g_.axis_size[static_cast<size_t>(g_.find(b))])};
  }

  // NumPy broadcasting of the operands' dims, right-aligned; axes of equal extent are united.
  std::vector<Dim> broadcast(const onnx::NodeProto &node, const std::vector<std::vector<Dim>> &operands) {
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
        if (d->axis >= 0 && g_.axis_size[static_cast<size_t>(g_.find(d->axis))] == 0) symbolic = true;
        if (d->size > 1) size = d->size;
      }
      int axis = -1;
      for (const Dim *d : here) {
        if (d->axis < 0) continue;
        const int64_t extent = g_.axis_size[static_cast<size_t>(g_.find(d->axis))];
        if (extent != 0 && extent != size && !symbolic)
          throw Failure{where(node) + " broadcasts an axis of size " + std::to_string(extent) + " to " +
                        std::to_string(size) + ", which ncd's named axes cannot (the axis would have to vanish)"};
        if (axis < 0) axis = d->axis;
        else same(node, axis, d->axis);
      }
      out[pos].axis = axis;
      out[pos].size = symbolic ? 0 : size;
    }
    return out;
  }
  std::vector<Dim> broadcast(const onnx::NodeProto &node, const std::vector<int> &ids) {
    std::vector<std::vector<Dim>> operands;
    for (int id : ids) operands.push_back(value(id).dims);
    return broadcast(node, operands);
  }

  int elementwise(const onnx::NodeProto &node, const std::vector<int> &ids, const std::string &pattern) {
    std::string expr = pattern;
    for (size_t k = 0; k < ids.size(); ++k) {
      const std::string slot = "$" + std::to_string(k);
      for (size_t at; (at = expr.find(slot)) != std::string::npos;) expr.replace(at, slot.size(), ref(ids[k]));
    }
    return result(node, broadcast(node, ids), expr, value(ids[0]).dtype, false);
  }

  // Positive axis positions of an `axes` list over a rank.
  std::vector<size_t> positions(const onnx::NodeProto &node, const std::vector<int64_t> &axes, size_t rank) {
    std::vector<size_t> out;
    for (int64_t a : axes) {
      int64_t p = a < 0 ? a + static_cast<int64_t>(rank) : a;
      if (p < 0 || p >= static_cast<int64_t>(rank))
        throw Failure{where(node) + " names axis " + std::to_string(a) + " of a rank-" + std::to_string(rank) + " tensor"};
      out.push_back(static_cast<size_t>(p));
    }
    return out;
  }
  std::string axes_slot(const std::vector<Dim> &dims, const std::vector<size_t> &at, const onnx::NodeProto &node) {
    std::string s;
    for (size_t p : at) {
      if (dims[p].axis < 0) throw Failure{where(node) + " works along a broadcast dimension of size 1"};
      s += (s.empty() ? "" : ", ") + ("{a:" + std::to_string(dims[p].axis) + "}");
    }
    return s;
  }

  void node(const onnx::NodeProto &node) {
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
    if (auto it = unary.find(op); it != unary.end()) {
      elementwise(node, {operand(node, 0)}, it->second);
    } else if (auto it2 = binary.find(op); it2 != binary.end()) {
      elementwise(node, {operand(node, 0), operand(node, 1)}, it2->second);
    } else if (auto it3 = logic.find(op); it3 != logic.end()) {
      std::vector<int> ids;
      for (int k = 0; k < node.input_size(); ++k) ids.push_back(operand(node, k));
      if (ids.size() != static_cast<size_t>(op == "Not" ? 1 : op == "Where" ? 3 : 2))
        throw Failure{where(node) + " has " + std::to_string(ids.size()) + " inputs"};
      elementwise(node, ids, it3->second);
    } else if (op == "Transpose") {
      int x = operand(node, 0);
      const auto &X = value(x).dims;
      std::vector<int64_t> perm;
      if (const auto *a = attribute(node, "perm")) perm.assign(a->ints().begin(), a->ints().end());
      for (size_t p = perm.empty() ? 0 : X.size(); p < X.size(); ++p) perm.insert(perm.begin(), static_cast<int64_t>(p));
      if (perm.size() != X.size()) throw Failure{where(node) + " permutes " + std::to_string(perm.size()) + " of " +
                                                 std::to_string(X.size()) + " dimensions"};
      std::vector<Dim> out;
      for (size_t p : positions(node, perm, X.size())) out.push_back(X[p]);
      result(node, out, ref(x), value(x).dtype, false);  // ncd has no layouts: the same tensor
    } else if (op == "Unsqueeze" || op == "Squeeze") {
      squeeze(node);
    } else if (op == "Gelu") {
      const auto *a = attribute(node, "approximate");
      elementwise(node, {operand(node, 0)}, a && a->s() == "tanh" ? "gelu_tanh($0)" : "gelu($0)");
    } else if (op == "Identity" || (op == "Cast" && dtype_of(static_cast<int>(int_attribute(node, "to", 0))) ==
                                                        std::optional<ir::DType>(value(operand(node, 0)).dtype))) {
      // The same value under another name: its users are counted where the alias is read.
      int id = operand(node, 0);
      if (op == "Cast") --g_.values[static_cast<size_t>(id)].users;  // the condition above read it too
      --g_.values[static_cast<size_t>(id)].users;
      g_.by_name[node.output(0)] = id;
    } else if (op == "Cast") {
      int id = operand(node, 0);
      auto to = dtype_of(static_cast<int>(int_attribute(node, "to", 0)));
      if (!to) throw Failure{where(node) + " casts to element type " + std::to_string(int_attribute(node, "to", 0)) +
                             ", which has no ncd dtype"};
      result(node, value(id).dims, std::string(ir::dtype_name(*to)) + "(" + ref(id) + ")", *to, false);
    } else if (op == "Constant") {
      const auto *a = attribute(node, "value");
      double number = 0;
      if (a && a->has_t()) {
        std::vector<double> data = tensor_values(a->t(), where(node));
        if (data.size() != 1) {
          if (data.empty() || data.size() > 64)
            throw Failure{where(node) + " is a constant of " + std::to_string(data.size()) +
                          " elements; ncd import reads scalars, and lists of axes"};
          Value v;
          v.onnx_name = node.output(0);
          v.role = Role::Data;
          v.node = node.name();
          v.data = std::move(data);
          add(std::move(v));
          return;
        }
        number = data[0];
      } else if (const auto *f = attribute(node, "value_float")) {
        number = f->f();
      } else if (const auto *i = attribute(node, "value_int")) {
        number = static_cast<double>(i->i());
      } else {
        throw Failure{where(node) + " has no scalar value"};
      }
      Value v;
      v.onnx_name = node.output(0);
      v.role = Role::Literal;
      v.literal = number;
      add(std::move(v));
    } else if (op == "MatMul") {
      matmul(node);
    } else if (op == "Gemm") {
      gemm(node);
    } else if (op == "Softmax" || op == "LogSoftmax") {
      int x = operand(node, 0);
      auto at = positions(node, {int_attribute(node, "axis", -1)}, value(x).dims.size());
      const std::string fn = op == "Softmax" ? "softmax" : "logsoftmax";
      result(node, value(x).dims, fn + "[" + axes_slot(value(x).dims, at, node) + "](" + ref(x) + ")", value(x).dtype,
             false);
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

  void matmul(const onnx::NodeProto &node) {
    int a = operand(node, 0), b = operand(node, 1);
    std::vector<Dim> A = value(a).dims, B = value(b).dims;
    if (A.empty() || B.empty()) throw Failure{where(node) + " multiplies a scalar"};
    const bool vector_a = A.size() == 1, vector_b = B.size() == 1;
    const Dim ka = A.back(), kb = vector_b ? B.back() : B[B.size() - 2];
    if (ka.axis < 0 || kb.axis < 0) throw Failure{where(node) + " sums over a broadcast dimension of size 1"};
    same(node, ka.axis, kb.axis);
    std::vector<Dim> out;
    // Batch dimensions broadcast as elementwise operands do.
    if (A.size() > 2 || B.size() > 2)
      out = broadcast(node, std::vector<std::vector<Dim>>{{A.begin(), A.end() - (vector_a ? 1 : 2)},
                                                          {B.begin(), B.end() - (vector_b ? 1 : 2)}});
    if (!vector_a) out.push_back(A[A.size() - 2]);
    if (!vector_b) {
      out.push_back(B.back());
      name_by_module(node, B.back());
    }
    result(node, out, ref(a) + " * " + ref(b), value(a).dtype, true);
  }

  void gemm(const onnx::NodeProto &node) {
    int a = operand(node, 0), b = operand(node, 1);
    const bool ta = int_attribute(node, "transA", 0) != 0, tb = int_attribute(node, "transB", 0) != 0;
    const double alpha = float_attribute(node, "alpha", 1.0), beta = float_attribute(node, "beta", 1.0);
    const auto &A = value(a).dims, &B = value(b).dims;
    if (A.size() != 2 || B.size() != 2) throw Failure{where(node) + " takes two matrices"};
    Dim m = ta ? A[1] : A[0], ka = ta ? A[0] : A[1], kb = tb ? B[1] : B[0], n = tb ? B[0] : B[1];
    if (ka.axis < 0 || kb.axis < 0) throw Failure{where(node) + " sums over a broadcast dimension of size 1"};
    name_by_module(node, n);
    same(node, ka.axis, kb.axis);
    std::string expr = ref(a) + " * " + ref(b) + (alpha != 1.0 ? " * " + number(alpha) : "");
    std::vector<Dim> out = {m, n};
    if (has_operand(node, 2) && beta != 0.0) {
      int c = operand(node, 2);
      out = broadcast(node, std::vector<std::vector<Dim>>{out, value(c).dims});
      expr += " + " + ref(c) + (beta != 1.0 ? " * " + number(beta) : "");
    }
    result(node, out, expr, value(a).dtype, true);
  }

  // The features a layer makes take the layer's name: torch names nodes by module path ("/fc1/Gemm": fc1).
  void name_by_module(const onnx::NodeProto &node, const Dim &dim) {
    const std::string module = module_of(node.name());
    if (dim.axis >= 0 && !module.empty()) g_.hint(dim.axis, module, 1);
  }

  // Unsqueeze adds broadcast placeholders; Squeeze drops size-1 dimensions (a real axis of size 1
  // is summed away in a statement of its own: the sum of one element).
  void squeeze(const onnx::NodeProto &node) {
    int x = operand(node, 0);
    const auto &X = value(x).dims;
    std::vector<int64_t> axes;
    if (const auto *a = attribute(node, "axes")) axes.assign(a->ints().begin(), a->ints().end());
    else if (has_operand(node, 1)) axes = constant_list(node, 1);
    std::vector<Dim> out;
    bool real = false;
    if (node.op_type() == "Unsqueeze") {
      auto at = positions(node, axes, X.size() + axes.size());
      size_t next = 0;
      for (size_t p = 0; p < X.size() + axes.size(); ++p)
        out.push_back(std::find(at.begin(), at.end(), p) != at.end() ? Dim{-1, 1} : X[next++]);
    } else {
      std::vector<size_t> at;
      if (axes.empty()) {
        for (size_t p = 0; p < X.size(); ++p)
          if (X[p].size == 1) at.push_back(p);
      } else {
        at = positions(node, axes, X.size());
      }
      for (size_t p = 0; p < X.size(); ++p) {
        if (std::find(at.begin(), at.end(), p) == at.end()) {
          out.push_back(X[p]);
        } else if (X[p].size != 1) {
          throw Failure{where(node) + " squeezes a dimension of size " + std::to_string(X[p].size)};
        } else if (X[p].axis >= 0) {
          real = true;
        }
      }
    }
    result(node, out, ref(x), value(x).dtype, real);
  }

  void layernorm(const onnx::NodeProto &node) {
    int x = operand(node, 0);
    const auto &X = value(x).dims;
    int64_t axis = int_attribute(node, "axis", -1);
    if (axis < 0) axis += static_cast<int64_t>(X.size());
    if (axis < 0 || axis >= static_cast<int64_t>(X.size())) throw Failure{where(node) + " has axis out of range"};
    std::vector<size_t> at;
    for (size_t p = static_cast<size_t>(axis); p < X.size(); ++p) at.push_back(p);
    const double eps = float_attribute(node, "epsilon", 1e-5);
    std::string expr = "layernorm[" + axes_slot(X, at, node) + "](" + ref(x) + ", eps = " + number(eps) + ")";
    std::vector<int> ids = {x};
    if (has_operand(node, 1)) {
      int s = operand(node, 1);
      ids.push_back(s);
      expr += " * " + ref(s);
    }
    if (has_operand(node, 2)) {
      int b = operand(node, 2);
      ids.push_back(b);
      expr += " + " + ref(b);
    }
    if (node.output_size() > 1)
      for (int k = 1; k < node.output_size(); ++k)
        if (!node.output(k).empty()) throw Failure{where(node) + ": its mean and inverse deviation outputs are not read"};
    result(node, broadcast(node, ids), expr, value(x).dtype, false);
  }

  void reduce(const onnx::NodeProto &node) {
    int x = operand(node, 0);
    const auto &X = value(x).dims;
    std::vector<int64_t> axes;
    if (const auto *a = attribute(node, "axes")) {
      axes.assign(a->ints().begin(), a->ints().end());
    } else if (has_operand(node, 1)) {
      axes = constant_list(node, 1);
    } else {
      for (size_t p = 0; p < X.size(); ++p) axes.push_back(static_cast<int64_t>(p));
    }
    auto at = positions(node, axes, X.size());
    const bool keep = int_attribute(node, "keepdims", 1) != 0;
    std::vector<Dim> out;
    for (size_t p = 0; p < X.size(); ++p) {
      bool reduced = std::find(at.begin(), at.end(), p) != at.end();
      if (!reduced) out.push_back(X[p]);
      else if (keep) out.push_back(Dim{-1, 1});  // kept as a broadcast placeholder
    }
    const std::string fn = node.op_type() == "ReduceMean"  ? "mean"
                           : node.op_type() == "ReduceSum" ? "sum"
                           : node.op_type() == "ReduceMax" ? "max"
                                                           : "min";
    result(node, out, fn + "[" + axes_slot(X, at, node) + "](" + ref(x) + ")", value(x).dtype, false);
  }

 public:
  static std::string number(double v) { return v < 0 ? "(" + float_text(v) + ")" : float_text(v); }
  const onnx::GraphProto *graph_ = nullptr;
};

}  // namespace

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

// torch exports GELU (exact) as x * (erf(x / sqrt 2) + 1) * 0.5: found again, it is gelu(x).
void recognize_gelu(Graph &g) {
  auto at = [&](int id) -> Value & { return g.values[static_cast<size_t>(id)]; };
  auto literal = [&](int id, double want, double tolerance) {
    return at(id).role == Role::Literal && std::fabs(at(id).literal - want) <= tolerance;
  };
  auto single = [&](int id, const char *op) { return at(id).role == Role::Inline && at(id).users == 1 && at(id).op == op; };
  for (int id : g.order) {
    Value &v = at(id);
    if (v.op != "Mul" || v.operands.size() != 2) continue;
    int half = v.operands[1], product = v.operands[0];
    if (!literal(half, 0.5, 0)) std::swap(half, product);
    if (!literal(half, 0.5, 0) || !single(product, "Mul")) continue;
    const Value &p = at(product);
    for (int side = 0; side < 2; ++side) {
      int x = p.operands[static_cast<size_t>(side)], sum = p.operands[static_cast<size_t>(1 - side)];
      if (!single(sum, "Add") || at(sum).operands.size() != 2) continue;
      int erf = at(sum).operands[0], one = at(sum).operands[1];
      if (!literal(one, 1.0, 0)) std::swap(erf, one);
      if (!literal(one, 1.0, 0) || !single(erf, "Erf")) continue;
      int div = at(erf).operands.at(0);
      if (!single(div, "Div") || at(div).operands.size() != 2 || at(div).operands[0] != x ||
          !literal(at(div).operands[1], std::sqrt(2.0), 1e-6))
        continue;
      v.expr = "gelu({v:" + std::to_string(x) + "})";
      v.op = "Gelu";
      v.operands = {x};
      --at(x).users;  // read by the division and the product; now by gelu alone
      for (int gone : {product, sum, erf, div}) at(gone).users = 0;
      break;
    }
  }
}

}  // namespace

const std::vector<std::string> &supported_ops() {
  static const std::vector<std::string> ops = {
      "Abs", "Add", "And", "Cast", "Ceil", "Constant", "Cos", "Div", "Equal", "Erf", "Exp", "Floor", "Gelu", "Gemm",
      "Greater", "GreaterOrEqual", "Identity", "LayerNormalization", "Less", "LessOrEqual", "Log", "LogSoftmax",
      "MatMul", "Max", "Min", "Mul", "Neg", "Not", "Or", "Pow", "Reciprocal", "ReduceMax", "ReduceMean", "ReduceMin",
      "ReduceSum", "Relu", "Sigmoid", "Sin", "Softmax", "Softplus", "Sqrt", "Squeeze", "Sub", "Tanh", "Transpose",
      "Unsqueeze", "Where"};
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
    builder.graph_ = &model.graph();
    builder.run(model);
    recognize_gelu(graph);
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
