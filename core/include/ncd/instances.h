// Instances of diagrams at run time: the axis sizes a callee sees at a call
// site, and the names of param instances (docs/RUN.md, "Param names").
//
// A param exists once per call site of its diagram and once per iteration of
// every repeat that encloses its declaration or the call that reaches it. Its
// path names that chain from the root diagram:
//
//   path     = segment "." segment "." ... "." param name
//   segment  = call site:  the callee's name, or NAME@K (K from 0, in op order)
//                          when the caller has several call sites of that callee
//            | iteration:  the 0-based iteration of an enclosing repeat, or I@R
//                          when the diagram has several repeats (R from 0, in op order)
//
// e.g. "wte", "LayerNorm.gamma", "3.GPT2Block.LayerNorm@1.beta". Backends, the
// CLI (--params, --random) and tools all use these names.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

// The concrete axis sizes inside one instance of a diagram. The root instance
// uses the program's sizes (defaults and -D). Inside a call, a bound callee
// axis takes the size of the caller's axis; an unbound derived axis follows its
// definition over the callee's sizes; other axes keep their file's size.
class AxisSizes {
 public:
  explicit AxisSizes(const ir::Program &program) : program_(&program) {}
  AxisSizes(const ir::Program &program, const ir::Op &call, const AxisSizes &caller);
  // nullopt when the axis has no concrete size (symbolic and not set by -D).
  std::optional<int64_t> size(int axis) const;
  // "axis 'n' has no size; set it with -D n=SIZE"
  std::string missing_message(int axis) const;

 private:
  const ir::Program *program_;
  bool root_ = true;
  std::map<int, std::optional<int64_t>> bound_;  // callee axis -> size of the caller axis it is bound to
  mutable std::map<int, std::optional<int64_t>> cache_;
};

// The naming facts of one diagram: call-site labels, repeat segments, and the
// repeats that multiply each param.
class ParamNaming {
 public:
  explicit ParamNaming(const ir::Diagram &diagram);
  const std::string &call_label(const ir::Op *call) const { return call_labels_.at(call); }
  std::string repeat_segment(const ir::Op *repeat, int64_t iteration) const;
  // The repeats (outermost first) enclosing `op` in its diagram.
  const std::vector<const ir::Op *> &enclosing_repeats(const ir::Op *op) const { return enclosing_.at(op); }
  // The repeats (outermost first) whose iterations each have their own instance of param `value`.
  const std::vector<const ir::Op *> &param_repeats(int value) const;
  bool param_used(int value) const { return param_repeats_.count(value) > 0; }

 private:
  std::map<const ir::Op *, std::string> call_labels_;
  std::map<const ir::Op *, int> repeat_ordinals_;
  size_t repeat_count_ = 0;
  std::map<const ir::Op *, std::vector<const ir::Op *>> enclosing_;
  std::map<int, std::vector<const ir::Op *>> param_repeats_;
};

struct ParamInstance {
  std::string path;
  const ir::Diagram *diagram = nullptr;  // where the param is declared
  int value = -1;                        // its value id there
  std::vector<std::string> axis_names;
  std::vector<int64_t> shape;
  ir::DType dtype = ir::DType::F32;
};

// Every param instance that running `diagram` reads (unused params are not
// listed). Returns false (with `error`) when an axis has no concrete size.
bool list_param_instances(const ir::Program &program, const ir::Diagram &diagram, std::vector<ParamInstance> &out,
                          std::string &error);

}  // namespace ncd
