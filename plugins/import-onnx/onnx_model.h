// The ONNX importer's model of a graph (plugin import-onnx; docs/IMPORT.md).
//
// Every dimension of every value, and of every read of a value (a *use*), is
// a node; an op links the nodes it says are the same wire (a matrix
// product's summed dimensions, broadcast dimensions, a result and the
// operand it passes through). Linked nodes form a *class* (union-find), an
// axis of the model with one size. A reshape does not link: it says that a
// class is the product of others (`factors`: 768 = heads × d), and a split
// or a chunk says which part of a dimension a use reads. Each statement is
// named on its own (onnx_print.cpp): the links made inside it decide which
// dimensions are one axis there, so a class met twice in a statement (the
// query and key positions of `q @ k.T`) gets a second name.
//
// onnx_graph.cpp and onnx_shape.cpp build it (one rule per op),
// onnx_print.cpp names the axes and values and writes ncd.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/tensor.h"

namespace ncd::onnx_import {

struct Dim {
  int axis = -1;     // a node, or -1: absent (a broadcast placeholder of size 1)
  int64_t size = 1;  // 0: symbolic
  int64_t at = -1;   // in a use: the dimension is read at this constant position (a chunk, a Gather)
  // In a use: the dimension is read at Σ coef·node + offset (a convolution's window; outside reads 0).
  std::vector<std::pair<int64_t, int>> terms;
  int64_t offset = 0;
  // The value is the same at every position along it: a broadcast (Expand, ConstantOfShape) that its
  // expression does not carry, so a reduction over it is no sum in ncd (onnx_ops.cpp, reduce).
  bool spread = false;
};

inline Dim make_dim(int axis, int64_t size, int64_t at = -1) {
  Dim d;
  d.axis = axis, d.size = size, d.at = at;
  return d;
}

// A read of a value by one node: its own nodes, linked to the value's.
struct Use {
  int value = -1;
  std::vector<Dim> dims;
};

// A class written as a product where one op changes granularity: `coarse` is the
// product of `fine` (outermost first). A fine node may be a constant position (Dim::at).
struct Regroup {
  int coarse = -1;
  std::vector<Dim> fine;
};

// An element of a shape computed in the graph (Shape, Gather, Concat, arithmetic): coef × Π sizes of nodes.
struct ShapeItem {
  int64_t coef = 1;
  std::vector<int> nodes;
};

// Data: a constant or computed integer list (a shape, a list of axes), never a tensor of the program.
enum class Role { Input, Param, Literal, Data, Statement, Inline };

struct Value {
  std::string onnx_name;
  std::vector<Dim> dims;
  ir::DType dtype = ir::DType::F32;
  Role role = Role::Statement;
  double literal = 0;               // Role::Literal
  std::vector<ShapeItem> items;     // Role::Data
  std::vector<double> data;         // a Param's values when few (lists of axes, masks)
  std::string node;                 // the producing node's name (for messages and names)
  std::string op;                   // its op type
  std::string expr;                 // ncd expression: {u:K} reads use K, {a:N} names node N's axis
  bool contraction = false;         // its expression sums axes (its own statement; operands are references)
  bool merged = false;              // declared with its products merged on the left, as an output is
  std::vector<int> uses;            // the uses its expression reads
  std::vector<std::pair<int, int>> edges;  // nodes its op links (results, uses)
  std::vector<Regroup> regroups;    // granularity changes its op makes
  int users = 0;
  std::string name;                 // ncd name (filled by the printer)
  Tensor weight;                    // Role::Param: the initializer, absent dims squeezed out
};

struct Graph {
  std::vector<Value> values;
  std::vector<Use> uses;
  std::map<std::string, int> by_name;       // ONNX name -> value index
  std::vector<int> inputs, outputs, order;  // order: computed values in graph order
  std::vector<int> parent;                  // union-find over nodes
  std::vector<int64_t> axis_size;           // per class root: size, 0 symbolic
  std::vector<std::string> axis_hint;       // a name a class may take (a dim_param, a module), "" none
  std::vector<int> axis_hint_rank;          // lower is better
  std::map<int, std::vector<int>> factors;  // class root -> the nodes it is the product of
  std::string graph_name, producer;
  int64_t opset = 0;

  int new_axis(int64_t size);
  int find(int a);
  void hint(int axis, const std::string &name, int rank);
  int64_t size_of(int node) { return axis_size[static_cast<size_t>(find(node))]; }
  // Merges two classes (and their factorizations); false when their sizes or factorizations differ.
  bool unite(int a, int b);
  // Records that the class of `node` is the product of the classes of `parts`; false when it disagrees.
  bool factorize(int node, const std::vector<int> &parts);
  // The classes a class is written as, finest first-level-expanded: a class without factors is itself.
  std::vector<int> atoms(int node);
};

// A run of N >= 2 layers of one module list, folded into a diagram called in `repeat` (onnx_layers.cpp).
struct Layers {
  std::string prefix;                     // the list's module path: "h", "encoder/layers"
  std::vector<std::vector<int>> regions;  // each layer's statements, in order
  std::vector<std::vector<int>> params;   // each layer's params, in the order its statements read them
  std::vector<int> outputs;               // the value each layer hands on
  int carried = -1;                       // the value the first layer reads where the others read outputs[i - 1]
  std::vector<int> invariants;            // values computed before the layers that every layer reads
};

// A module path segment that is an item of a module list: "h.0", "layers.12".
bool list_item(const std::string &segment);

// The module list and item of a node torch named by module path: "/h.0/attn/MatMul" -> {"h", 0},
// "/encoder/layers.2/fc/Gemm" -> {"encoder/layers", 2}; {"", -1} outside any list.
std::pair<std::string, int> layer_key(const std::string &node);

// The runs of layers among `statements` (in order) that are one computation with other weights;
// their corresponding dimensions are united, so that every layer prints alike.
std::vector<Layers> find_layers(Graph &graph, const std::vector<int> &statements);

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
