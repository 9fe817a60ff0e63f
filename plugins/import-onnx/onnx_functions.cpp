// ONNX local functions (docs/IMPORT.md): torch.onnx.export(...,
// export_modules_as_functions=...) writes each module of the given classes as
// a function of the model and each of its calls as one node. The importer
// reads one flat graph, so every call is replaced by the function's nodes
// before shape inference: the function's own values are renamed under the
// call's name, its inputs and outputs are the call's, an attribute that
// refers to the call's (`ref_attr_name`) takes the call's value (or is left
// out, as ONNX says, when the call has none), and each node is named after
// the call (`/h.0/Block:MatMul_3`: the module path is the call's), so that a
// module list's layers still fold into `repeat` (onnx_layers.cpp).
// Preconditions: none.
#include <functional>
#include <map>

#include "onnx_builder.h"

namespace ncd::onnx_import {

void inline_functions(onnx::ModelProto &model) {
  std::map<std::pair<std::string, std::string>, const onnx::FunctionProto *> functions;
  for (const auto &f : model.functions()) functions[{f.domain(), f.name()}] = &f;
  if (functions.empty()) return;
  google::protobuf::RepeatedPtrField<onnx::NodeProto> flat;
  int calls = 0;
  std::function<void(const onnx::NodeProto &, int)> place = [&](const onnx::NodeProto &node, int depth) {
    auto it = functions.find({node.domain(), node.op_type()});
    if (it == functions.end()) {
      *flat.Add() = node;
      return;
    }
    if (depth >= 32) throw Failure{where(node) + " calls local functions nested more than 32 deep (or recursively)"};
    const onnx::FunctionProto &f = *it->second;
    const std::string scope =
        node.name().empty() ? "/" + node.op_type() + "_" + std::to_string(calls) : node.name();
    const std::string prefix = "call" + std::to_string(calls++) + "::";
    std::map<std::string, std::string> outer;  // the function's inputs and outputs -> the call's values
    for (int k = 0; k < f.input_size() && k < node.input_size(); ++k) outer[f.input(k)] = node.input(k);
    for (int k = 0; k < f.output_size() && k < node.output_size(); ++k)
      if (!node.output(k).empty()) outer[f.output(k)] = node.output(k);
    auto rename = [&](const std::string &name) {
      if (name.empty()) return name;
      auto o = outer.find(name);
      return o != outer.end() ? o->second : prefix + name;
    };
    std::map<std::string, const onnx::AttributeProto *> given;
    for (const auto &a : node.attribute()) given[a.name()] = &a;
    for (const onnx::NodeProto &inner : f.node()) {
      onnx::NodeProto copy = inner;
      for (int k = 0; k < copy.input_size(); ++k) copy.set_input(k, rename(inner.input(k)));
      for (int k = 0; k < copy.output_size(); ++k) copy.set_output(k, rename(inner.output(k)));
      copy.set_name(scope + ":" + (inner.name().empty() ? inner.op_type() : inner.name()));
      copy.clear_attribute();
      for (const auto &a : inner.attribute()) {
        if (a.ref_attr_name().empty()) {
          *copy.add_attribute() = a;
          continue;
        }
        auto g = given.find(a.ref_attr_name());
        if (g == given.end()) continue;
        onnx::AttributeProto b = *g->second;
        b.set_name(a.name());
        *copy.add_attribute() = b;
      }
      place(copy, depth + 1);
    }
  };
  for (const auto &node : model.graph().node()) place(node, 0);
  model.mutable_graph()->mutable_node()->Swap(&flat);
  model.clear_functions();
}

}  // namespace ncd::onnx_import
