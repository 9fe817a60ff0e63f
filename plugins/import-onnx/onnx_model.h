// The ONNX importer's model of a graph (plugin import-onnx; docs/IMPORT.md):
// every ONNX value with its dimensions, each dimension either an axis (a
// class of dimensions that ops say are the same, kept by union-find) or
// absent (a broadcast placeholder of size 1: a reduction's kept dimension);
// and what each value is in ncd: an input, a param, a literal, a statement or
// an expression inlined into its one user. onnx_graph.cpp builds it (one
// rule per op), onnx_print.cpp names the axes and values and writes ncd.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/tensor.h"

namespace ncd::onnx_import {

struct Dim {
  int axis = -1;  // a union-find node, or -1: absent (broadcast, size 1)
  int64_t size = 1;
};

// Data: a constant tensor of several elements, read only as a list of axes (Unsqueeze, Squeeze, reductions).
enum class Role { Input, Param, Literal, Data, Statement, Inline };

struct Value {
  std::string onnx_name;
  std::vector<Dim> dims;
  ir::DType dtype = ir::DType::F32;
  Role role = Role::Statement;
  double literal = 0;    // Role::Literal
  std::vector<double> data;  // Role::Data, and a Param's values (for lists of axes)
  std::string node;      // the producing node's name (for messages and names)
  std::string op;        // its op type
  std::string expr;      // the ncd expression computing it, with {v:N} for a reference to value N
  bool contraction = false;  // its expression sums axes (its own statement; operands are references)
  std::vector<int> operands; // the values its node reads, in order
  int users = 0;
  std::string name;      // ncd name (filled by the printer)
  Tensor weight;         // Role::Param: the initializer, absent dims squeezed out
};

struct Graph {
  std::vector<Value> values;
  std::map<std::string, int> by_name;  // ONNX name -> value index
  std::vector<int> inputs, outputs, order;  // order: statement values in graph order
  std::vector<int> parent;                  // union-find over axes
  std::vector<int64_t> axis_size;
  std::vector<std::string> axis_hint;       // a name an axis may take (a dim_param, a module), "" none
  std::vector<int> axis_hint_rank;          // lower is better
  std::string graph_name, producer;
  int64_t opset = 0;

  int new_axis(int64_t size) {
    parent.push_back(static_cast<int>(parent.size()));
    axis_size.push_back(size);
    axis_hint.emplace_back();
    axis_hint_rank.push_back(1 << 30);
    return parent.back();
  }
  int find(int a) {
    while (parent[static_cast<size_t>(a)] != a) a = parent[static_cast<size_t>(a)] = parent[static_cast<size_t>(parent[static_cast<size_t>(a)])];
    return a;
  }
  void hint(int axis, const std::string &name, int rank) {
    int r = find(axis);
    if (rank < axis_hint_rank[static_cast<size_t>(r)]) {
      axis_hint_rank[static_cast<size_t>(r)] = rank;
      axis_hint[static_cast<size_t>(r)] = name;
    }
  }
  // Merges two axes; false when their sizes differ (the model is inconsistent).
  bool unite(int a, int b) {
    a = find(a), b = find(b);
    if (a == b) return true;
    if (axis_size[static_cast<size_t>(a)] != axis_size[static_cast<size_t>(b)]) return false;
    if (axis_hint_rank[static_cast<size_t>(b)] < axis_hint_rank[static_cast<size_t>(a)]) {
      axis_hint_rank[static_cast<size_t>(a)] = axis_hint_rank[static_cast<size_t>(b)];
      axis_hint[static_cast<size_t>(a)] = axis_hint[static_cast<size_t>(b)];
    }
    parent[static_cast<size_t>(b)] = a;
    return true;
  }
};

// Reads the model; false with `error` naming the node (or the part of the file) at fault.
bool build_graph(const std::string &bytes, Graph &graph, std::string &error);

// The ncd program of the graph: source text and weights by param name.
bool print_program(Graph &graph, const std::string &path, const std::map<std::string, std::string> &renames,
                   const std::string &diagram, std::string &source, std::vector<std::pair<std::string, Tensor>> &weights,
                   std::string &error);

// The innermost module of a node torch named by module path: "/encoder/fc1/Gemm" -> "fc1"; "" for "/Softmax".
std::string module_of(const std::string &node);

// Shortest decimal text that reads back as the same float32 ("1e-05", "0.5", "1.41421354").
std::string float_text(double v);

// The op types build_graph knows, for the message about one it does not.
const std::vector<std::string> &supported_ops();

}  // namespace ncd::onnx_import
