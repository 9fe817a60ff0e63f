// The core IR: a typed dataflow graph of operations on named-axis values.
//
// A Program holds every axis and diagram of a run (the root file and its
// imports). Each diagram is a list of operations in dependency order; every
// value names its axes (ids into Program::axes) and its dtype, and every
// operation keeps the source location it was lowered from. Axis order on a
// value is its storage layout only: operations match axes by identity, never
// by position. Passes, the cost model, renderers and backends all read this.
//
// Semantics of each operation kind are stated in docs/IR_JSON.md ("Core IR").
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ncd/ops.h"
#include "ncd/poly.h"
#include "ncd/source.h"

namespace ncd::ir {

enum class DType { F32, F16, BF16, F8E4M3, F8E5M2, I8, I32, Bool };
std::string_view dtype_name(DType dtype);
std::optional<DType> parse_dtype(std::string_view name);
std::vector<std::string> dtype_names();
int dtype_bytes(DType dtype);
bool is_integer(DType dtype);

struct Axis {
  int id = -1;
  std::string name;
  std::string module;  // path of the declaring file
  SourceLocation location;
  bool derived = false;             // `axis model = heads * d`
  // `axis b = a`: declared as another axis, of its size; beside that axis, never a merge's target.
  int alias_of = -1;
  Poly definition;                  // derived: over other axes; otherwise the axis itself
  // Computed (`axis out = (t - kw) // stride + 1`): a rounded quotient no polynomial states. The
  // axis is then its own symbol (definition), not derived; the formula gives its size.
  std::shared_ptr<const SizeFormula> formula;
  std::optional<int64_t> default_size;
  std::optional<int64_t> size;      // concrete size after defaults, -D and derivation
  bool overridden = false;          // set by -D
};

struct Value {
  enum class Role { Input, Param, Intermediate, Output, BlockArgument };
  int id = -1;
  std::string name;       // the user's name; temporaries get "%N"-style names
  std::vector<int> axes;  // axis ids, in storage order
  DType dtype = DType::F32;
  Role role = Role::Intermediate;
  SourceLocation location;
  int producer = -1;      // id of the defining op, -1 for inputs, params and block arguments
  // Params declared inside `repeat N` (directly or through a call) exist once per iteration.
  int64_t instances = 1;
};

enum class OpKind {
  Constant,     // scalar literal (value in `constant`)
  SizeOf,       // scalar size of `axes[0]`
  AxisIndex,    // integer tensor over `axes[0]`: its position 0..n-1
  Access,       // reads operand 0 through `access` (renaming, affine, split, gather)
  Merge,        // merges groups of operand axes into single axes (`merges`)
  Elementwise,  // `function` applied pointwise; operands broadcast by axis name
  Contract,     // product of all operands, summed over `axes`
  Reduce,       // `function` (an ops::Kind::Reduce) over `axes`
  Normalize,    // `function` (an ops::Kind::Normalize) along `axes`
  Scan,         // `function` (an ops::Kind::Scan) along `axes[0]`; operands broadcast by axis name, axes kept
  // `function` (an ops::Kind::Select) along `axes[0]`, its results' axis
  // `axes[1]` in its place: results the values and their positions (i32)
  Select,
  Call,         // diagram `callee` with `bindings`, lifted over `lifted`
  Repeat,       // `body` run `count` times, threading `body_arguments` → `body_yields`
};
std::string_view op_kind_name(OpKind kind);
// The op kind that applies `fn`: Elementwise for pointwise functions and
// casts, Reduce, Normalize, Scan, Select; Constant (no function) for ops::Fn::None.
OpKind op_kind_of(ops::Fn fn);

// An index into one position of the accessed tensor: an affine form of axes
// (`x + k`, `2*x`, `s - 1`), a split of that position into several axes
// (`(heads, d)`), or a gather through an integer tensor operand.
struct AccessIndex {
  enum class Kind { Affine, Split, Gather };
  Kind kind = Kind::Affine;
  std::vector<std::pair<int, int64_t>> terms;  // Affine: (axis id, coefficient)
  int64_t offset = 0;                          // Affine
  std::vector<int> split;                      // Split: axis ids, outermost first
  int gather_operand = -1;                     // Gather: operand position (≥ 1)
};

struct Region;

struct Op {
  int id = -1;
  OpKind kind = OpKind::Elementwise;
  // Elementwise/Reduce/Normalize/Scan: the function (ncd/ops.h), whose kind matches
  // the op's and whose arity is the number of operands; None for other ops.
  ops::Fn function = ops::Fn::None;
  std::vector<int> operands;   // value ids
  std::vector<int> results;    // value ids
  // Contract: summed; Reduce: reduced; Normalize: normalised; Scan: scanned; SizeOf/AxisIndex; Select: along, result
  std::vector<int> axes;
  double constant = 0;         // Constant
  std::map<std::string, double> options;  // e.g. eps for normalisations
  std::vector<AccessIndex> access;        // Access: one per position of operand 0
  std::vector<std::vector<int>> merges;   // Merge: per result axis, the operand axes merged (or one)
  // Call
  int callee = -1;                             // index into Program::diagrams
  std::string callee_name;                     // the callee's name, for messages and printing
  std::string label;                           // the call site's name (`attn: F(x)`), "" when unnamed
  std::vector<std::pair<int, int>> bindings;   // (callee axis, caller axis)
  std::vector<int> lifted;                     // caller axes the call is lifted over
  // Repeat
  int64_t count = 0;
  std::unique_ptr<Region> body;
  std::vector<int> body_arguments;  // values inside the body that take each operand
  std::vector<int> body_yields;     // values the body hands to the next iteration
  SourceLocation location;
};

struct Region {
  std::vector<std::unique_ptr<Op>> ops;
};

struct ScheduleDirective {
  enum class Kind { Group, Stream, Level };
  Kind kind = Kind::Group;
  int axis = -1;               // Group, Stream
  int64_t amount = 0;          // Group, Stream: tile size
  std::string level;           // Level
  std::vector<int> values;     // Level: value ids resident at that level
  SourceLocation location;
};

// `shard AXES over N` (docs/SHARDING.md): one dimension of a device mesh.
// Every axis named is split into N equal slices, slice r on the mesh
// coordinate r; a diagram's shards, outermost first, make a mesh of the
// product of their device counts. Kept beside the schedules, not among their
// directives: a schedule of shards alone plans no kernel.
struct ShardDirective {
  std::vector<int> axes;  // axis ids split across this mesh dimension
  int64_t devices = 1;
  SourceLocation location;
  std::string target;  // the `for "..."` of the schedule block it was written in
};

struct Schedule {
  std::string target;  // hardware profile name, "" when not given
  std::vector<ScheduleDirective> directives;
  SourceLocation location;
};

struct Diagram {
  std::string name;
  std::string module;
  SourceLocation location;
  std::vector<int> inputs, params, outputs;  // value ids
  std::vector<Value> values;                 // indexed by value id
  Region body;
  std::vector<Schedule> schedules;
  std::vector<ShardDirective> shards;  // the device mesh, outermost dimension first
  int max_op_id = 0;

  Value &value(int id) { return values.at(static_cast<size_t>(id)); }
  const Value &value(int id) const { return values.at(static_cast<size_t>(id)); }
  // The op defining a value (nullptr for inputs, params and block arguments):
  // one walk of the body. For many lookups over a diagram that does not change
  // meanwhile, build a ProducerIndex.
  const Op *producer(int value_id) const;
  Op *producer(int value_id);
};

// The defining op of every value of a diagram, found in one walk. It holds
// pointers into the diagram's ops, so it is only valid until the diagram is
// edited (passes edit regions directly, so the diagram cannot keep such an
// index current itself).
class ProducerIndex {
 public:
  explicit ProducerIndex(const Diagram &diagram);
  const Op *producer(int value_id) const {
    return value_id >= 0 && static_cast<size_t>(value_id) < by_value_.size() ? by_value_[static_cast<size_t>(value_id)]
                                                                             : nullptr;
  }

 private:
  std::vector<const Op *> by_value_;
};

struct Module {
  std::string path;        // as displayed
  std::string resolved;    // absolute path
  std::vector<std::string> imports;  // resolved paths
};

struct Program {
  std::vector<Axis> axes;
  std::vector<std::unique_ptr<Diagram>> diagrams;
  std::vector<Module> modules;  // modules[0] is the root file
  int root_module = 0;

  const Axis &axis(int id) const { return axes.at(static_cast<size_t>(id)); }
  Diagram *find_diagram(std::string_view name, std::string_view module = {});
  const Diagram *find_diagram(std::string_view name, std::string_view module = {}) const;
  // Diagrams defined in the root file, in source order.
  std::vector<const Diagram *> root_diagrams() const;
  std::vector<Diagram *> editable_root_diagrams();  // the same, for passes to edit
  // Size of an axis as a polynomial in base axes (derived axes expanded).
  Poly size_poly(int axis_id) const;
  std::optional<int64_t> size(int axis_id) const { return axis(axis_id).size; }
  // The same axis, the same polynomial, or the same number (unknown counts as unequal): what a
  // renaming index requires.
  bool same_size(int a, int b) const;
  std::string axis_label(int axis_id) const;  // "d(64)" or "q" when symbolic
  // What a derived or computed axis's size is, for people: "heads*d", "(-kw + t) // stride + 1"; "" for a base axis.
  std::string definition_text(int axis_id) const;
};

// Walks every op of a region, nested repeat bodies included, in order.
template <typename Fn>
void for_each_op(const Region &region, Fn &&fn) {
  for (const auto &op : region.ops) {
    fn(*op);
    if (op->body) for_each_op(*op->body, fn);
  }
}

}  // namespace ncd::ir
