// Call instantiation, the one definition every consumer of calls shares (the
// CPU executor, the CUDA generator, the cost graph, the param listing): how a
// call site binds its callee's axes to the caller's (CallBinding), and the
// instances of diagrams at run time (Instance): the axis sizes a callee sees
// at a call site and the names of its param instances (docs/RUN.md, "Param
// names").
//
// A param exists once per call site of its diagram and once per iteration of
// every repeat that encloses its declaration or the call that reaches it. Its
// path names that chain from the root diagram:
//
//   path     = segment "." segment "." ... "." param name
//   segment  = named call site (`attn: F(x)`): its name, then the 0-based iteration
//                          of each repeat of the caller enclosing it ("h.3"), as
//                          torch names a module list's items
//            | call site:  the callee's name, or NAME@K (K from 0, in op order)
//                          when the caller has several unnamed call sites of that
//                          callee, after the iterations of the repeats enclosing it
//            | iteration:  the 0-based iteration of an enclosing repeat, or I@R
//                          when the diagram has several repeats (R from 0, in op order)
//
// e.g. "wte", "LayerNorm.gamma", "3.GPT2Block.ln_2.beta",
// "h.3.attn.c_attn.weight". Backends, the CLI (--params, --random) and tools
// all use these names.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
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

// A call site's name: a name of the language (`attn`), or a run of the segments
// above joined by dots (`h.3`, `0.Block@1`), which names exactly that path; how
// `ncd grad` writes the iterations of a repeat it unrolls.
bool is_call_label(const std::string &label);
// The label as the language spells it: a name as is, a path in double quotes.
std::string call_label_source(const std::string &label);

class ParamNaming;

// One segment of a param path: literal text (a call site's label and its '.',
// or the param's name), or the iteration of an enclosing repeat, named by the
// naming of the diagram that holds the repeat. Backends resolve iterations
// their own way: the CPU executor with the iteration it runs, the CUDA
// generator with a host loop variable.
struct PathSegment {
  std::string text;
  const ir::Op *repeat = nullptr;
  const ParamNaming *naming = nullptr;
  bool bare = false;  // after a named call site: the iteration alone (`h.3`), never `I@R`
};
using ParamPath = std::vector<PathSegment>;

// The naming facts of one diagram: call-site labels, repeat segments, and the
// repeats that multiply each param.
class ParamNaming {
 public:
  explicit ParamNaming(const ir::Diagram &diagram);
  const std::string &call_label(const ir::Op *call) const { return call_labels_.at(call); }
  std::string repeat_segment(const ir::Op *repeat, int64_t iteration) const;
  // The segments a call site adds to its callee's param paths: a named one its name, then the
  // iterations of the repeats enclosing it (`h.3.`); an unnamed one those iterations, then its label
  // (`3.GPT2Block.`).
  ParamPath call_path(const ir::Op *call) const;
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


// The path as text, each repeat segment at iteration(repeat).
std::string path_text(const ParamPath &path, const std::function<int64_t(const ir::Op *)> &iteration);

// One ParamNaming per diagram, made on first use and kept (instances point to them).
class Namings {
 public:
  const ParamNaming &of(const ir::Diagram &diagram);

 private:
  std::map<const ir::Diagram *, std::unique_ptr<ParamNaming>> namings_;
};

// How a call site meets its callee: the binding (callee axis -> caller axis)
// and, per input and output of the callee, its axes in order, each with the
// caller axis it is bound to. Axes the call is lifted over (op.lifted) are the
// caller's own: they bind nothing and pass through every value that depends
// on the arguments.
class CallBinding {
 public:
  CallBinding(const ir::Program &program, const ir::Op &call);
  struct AxisPair {
    int callee = -1;
    int caller = -1;  // -1: not bound (sema binds every axis of an input or output)
  };
  const ir::Op &call() const { return *call_; }
  const ir::Diagram &callee() const { return *callee_; }
  std::optional<int> caller_axis(int callee_axis) const;
  std::vector<AxisPair> input_axes(size_t k) const;
  std::vector<AxisPair> output_axes(size_t k) const;
  // "internal: axis 'd' of 'F' is not bound"
  std::string unbound_message(int callee_axis) const;

 private:
  std::vector<AxisPair> pairs(int value) const;
  const ir::Program *program_;
  const ir::Op *call_;
  const ir::Diagram *callee_;
  std::map<int, int> binding_;
};

// One instance of a diagram: the root, or a callee entered from its caller's
// instance through a call site (inside any repeats of the caller). It knows
// the axis sizes there, the naming of the diagram, and the path of the params
// declared there.
class Instance {
 public:
  Instance(const ir::Program &program, const ir::Diagram &root, Namings &namings);
  Instance(const Instance &caller, const ir::Op &call);
  const ir::Program &program() const { return *program_; }
  const ir::Diagram &diagram() const { return *diagram_; }
  const AxisSizes &sizes() const { return sizes_; }
  const ParamNaming &naming() const { return *naming_; }
  // The call site that made this instance; nullptr at the root.
  const CallBinding *binding() const { return binding_ ? &*binding_ : nullptr; }
  // Where the params declared in this diagram are: the caller's prefix, the
  // caller's repeats around the call, the call site's label.
  const ParamPath &prefix() const { return prefix_; }
  // The whole path of param `value`: the prefix, each repeat of this diagram
  // that multiplies it, its name.
  ParamPath param_path(int value) const;
  Namings &namings() const { return *namings_; }

 private:
  const ir::Program *program_;
  const ir::Diagram *diagram_;
  Namings *namings_;
  const ParamNaming *naming_;
  AxisSizes sizes_;
  std::optional<CallBinding> binding_;
  ParamPath prefix_;
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
