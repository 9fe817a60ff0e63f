// The rules that read an ONNX graph into the importer's model (onnx_model.h),
// shared by onnx_graph.cpp (the model, values, reads, elementwise ops),
// onnx_ops.cpp (products, windows, normalizations, reductions),
// onnx_shape.cpp (reshapes, chunks, slices, gathers and the shape arithmetic
// that feeds them) and onnx_views.cpp (gathers through integer tensors,
// broadcasts, triangles, tied weights). Private to the plugin.
#pragma once

#include <onnx/onnx_pb.h>

#include <optional>
#include <string>
#include <vector>

#include "onnx_model.h"

namespace ncd::onnx_import {

// Dimensions of any one tensor, and the largest dimension: beyond these a model is refused.
constexpr int kMaxRank = 8;
constexpr int64_t kMaxDim = int64_t{1} << 40;

struct Failure {
  std::string message;
};

std::string where(const onnx::NodeProto &node);
std::optional<ir::DType> dtype_of(int onnx_type);
const onnx::AttributeProto *attribute(const onnx::NodeProto &node, const std::string &name);
int64_t int_attribute(const onnx::NodeProto &node, const std::string &name, int64_t fallback);
// An attribute's list of `count` integers, each `fallback` when it is absent; a list of another length is refused.
std::vector<int64_t> int_list(const onnx::NodeProto &node, const std::string &name, int64_t fallback, size_t count);
double float_attribute(const onnx::NodeProto &node, const std::string &name, double fallback);
// The values of a tensor proto (raw or typed data) as doubles.
std::vector<double> tensor_values(const onnx::TensorProto &t, const std::string &what);

// Replaces every call of a local function of the model by the function's nodes (onnx_functions.cpp).
void inline_functions(onnx::ModelProto &model);

class Builder {
 public:
  explicit Builder(Graph &g) : g_(g) {}
  void run(onnx::ModelProto &model);
  static std::string number(double v) { return v < 0 ? "(" + float_text(v) + ")" : float_text(v); }

 private:
  Graph &g_;
  std::map<std::string, const onnx::ValueInfoProto *> shapes_;
  std::vector<std::pair<int, int>> pending_edges_;  // links made by the node being read
  std::vector<Regroup> pending_regroups_;
  std::vector<int> head_contractions_;  // nodes summed by products of two activations
  struct TableRead {                   // a gather's table, written by its bare name and its other nodes
    int value = -1, table = -1;
    std::vector<int> nodes;
  };
  std::vector<TableRead> table_reads_;

  // onnx_graph.cpp
  int declare(const std::string &name, const onnx::ValueInfoProto &info, const std::string &what);
  int add(Value v);
  void constant_tensor(const onnx::TensorProto &t, const std::string &name, const std::string &node);
  int lookup(const onnx::NodeProto &node, int k);
  int operand(const onnx::NodeProto &node, int k);
  int read(int id);
  int clone(int id);
  bool has_operand(const onnx::NodeProto &node, int k) const { return k < node.input_size() && !node.input(k).empty(); }
  bool is_data(const onnx::NodeProto &node, int k);
  int result(const onnx::NodeProto &node, std::vector<Dim> dims, std::string expr, ir::DType dtype, bool contraction,
             int output = 0);
  const Value &value(int id) const { return g_.values[static_cast<size_t>(id)]; }
  const std::vector<Dim> &dims(int use) const { return g_.uses[static_cast<size_t>(use)].dims; }
  ir::DType dtype(int use) const { return value(g_.uses[static_cast<size_t>(use)].value).dtype; }
  static std::string ref(int use) { return "{u:" + std::to_string(use) + "}"; }
  static std::string axis_ref(int node) { return "{a:" + std::to_string(node) + "}"; }
  void link(const onnx::NodeProto &node, int a, int b);
  std::vector<Dim> broadcast(const onnx::NodeProto &node, const std::vector<std::vector<Dim>> &operands);
  std::vector<Dim> broadcast_uses(const onnx::NodeProto &node, const std::vector<int> &uses);
  int elementwise(const onnx::NodeProto &node, const std::vector<int> &uses, const std::string &pattern);
  std::vector<size_t> positions(const onnx::NodeProto &node, const std::vector<int64_t> &axes, size_t rank);
  std::string axes_slot(const std::vector<Dim> &dims, const std::vector<size_t> &at, const onnx::NodeProto &node);
  void node(const onnx::NodeProto &node);
  bool fold(const onnx::NodeProto &node);

  // onnx_ops.cpp
  void window(const onnx::NodeProto &node);
  void name_window(const onnx::NodeProto &node, size_t spatial, size_t i, int in, int out, int tap);
  void transposed(const onnx::NodeProto &node);
  void grouped(const onnx::NodeProto &node, const std::vector<Dim> &X, const std::vector<Dim> &W, int64_t groups);
  void batchnorm(const onnx::NodeProto &node);
  void einsum(const onnx::NodeProto &node);
  void matmul(const onnx::NodeProto &node);
  void gemm(const onnx::NodeProto &node);
  void name_by_module(const onnx::NodeProto &node, const Dim &dim);
  void name_param(const onnx::NodeProto &node, int use, const std::string &suffix = "_weight");
  bool is_view_of_param(int use) const;
  void squeeze(const onnx::NodeProto &node);
  void layernorm(const onnx::NodeProto &node);
  void reduce(const onnx::NodeProto &node);

  // onnx_shape.cpp
  std::vector<ShapeItem> items(const onnx::NodeProto &node, int k);
  std::vector<int64_t> constant_list(const onnx::NodeProto &node, int k);
  int data_result(const onnx::NodeProto &node, std::vector<ShapeItem> items, int output = 0);
  bool shape_arithmetic(const onnx::NodeProto &node);
  void reshape(const onnx::NodeProto &node, const std::vector<ShapeItem> &target);
  void split(const onnx::NodeProto &node);
  void slice(const onnx::NodeProto &node);
  void gather(const onnx::NodeProto &node);
  void positions_list(const onnx::NodeProto &node, int u, size_t axis, std::vector<int64_t> index, int64_t extent);
  void chunk(const onnx::NodeProto &node, size_t axis, int64_t k, int64_t n);
  void range(const onnx::NodeProto &node);
  void concat(const onnx::NodeProto &node);
  void unequal_concat(const onnx::NodeProto &node, const std::vector<int> &uses, size_t axis,
                      const std::vector<std::vector<Dim>> &rest);
  void offset_slice(const onnx::NodeProto &node, int u, size_t axis, int64_t start, int fresh, int output = 0,
                    int64_t step = 1);
  std::string where_chain(int axis, const std::vector<int> &uses);
  bool triangle(Value &v);

  // onnx_views.cpp
  Dim dim_of_item(const onnx::NodeProto &node, const ShapeItem &item);
  void expand(const onnx::NodeProto &node);
  void constant_of_shape(const onnx::NodeProto &node);
  void trilu(const onnx::NodeProto &node);
  bool data_logic(const onnx::NodeProto &node);
  void gather_indices(const onnx::NodeProto &node);
  void split_table_reads();
  void tie_transposed();

 public:
  // Dispatch of the ops onnx_shape.cpp reads; false when `node` is not one of them.
  bool shape_node(const onnx::NodeProto &node);
  // Dispatch of the ops onnx_views.cpp reads; false when `node` is not one of them.
  bool view_node(const onnx::NodeProto &node);
};

}  // namespace ncd::onnx_import
