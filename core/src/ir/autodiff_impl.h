// What autodiff.cpp (the reverse sweep, calls, the derived diagrams) and
// autodiff_rules.cpp (the vector-Jacobian product of each op kind and the
// op table's formulas) share: a builder that appends ops to a diagram.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ncd/autodiff.h"
#include "ncd/ir.h"

namespace ncd::autodiff {

// Whether values of the dtype carry cotangents (integers and booleans do not).
inline bool is_real(ir::DType dtype) { return !ir::is_integer(dtype) && dtype != ir::DType::Bool; }

// An op with no derivative ncd can state; reported as a located error.
struct Failure {
  SourceLocation location;
  std::string message;
};

// Appends ops to the top-level body of `diagram`, each at `location`. The vectors it keeps are taken
// by value: a reference into the diagram's values would not survive the values it adds.
class Builder {
 public:
  Builder(ir::Program &program, ir::Diagram &diagram) : program(program), diagram(diagram) {}

  ir::Program &program;
  ir::Diagram &diagram;
  SourceLocation location;

  const ir::Value &value(int id) const { return diagram.value(id); }
  int constant(double number);
  int size_of(int axis);
  int axis_index(int axis);
  // `fn` pointwise; the result has the union of the operands' axes and `extra`.
  int elementwise(ops::Fn fn, const std::vector<int> &operands, ir::DType dtype, std::vector<int> extra = {});
  int reduce(ops::Fn fn, int operand, const std::vector<int> &axes, ir::DType dtype);
  // The result in `prefer`'s order when it has those axes.
  int contract(const std::vector<int> &operands, const std::vector<int> &summed, ir::DType dtype,
               const std::vector<int> &prefer = {});
  int scan(ops::Fn fn, const std::vector<int> &operands, int axis, ir::DType dtype);
  int access(const std::vector<int> &operands, std::vector<ir::AccessIndex> indices, std::vector<int> axes,
             ir::DType dtype);
  // `operand`'s axes merged by `groups`, one per result axis (`axes`).
  int merge(int operand, std::vector<std::vector<int>> groups, std::vector<int> axes, ir::DType dtype);
  // `v` with exactly `axes`: summed over the others, copied along missing ones, in `dtype`.
  int fit(int v, std::vector<int> axes, ir::DType dtype);
  // The product of the sizes of `axes` as a scalar.
  int count(const std::vector<int> &axes);
  // A new axis of the program of the same size as `axis` (autodiff_rules.cpp says how).
  int copy_axis(int axis);
  // `v` with axis `from` renamed to `to` (of the same size).
  int rename(int v, int from, int to);
  // Gives `value` a readable name (when free) for the written file.
  void name(int value, const std::string &name);

 private:
  int emit(std::unique_ptr<ir::Op> op, std::vector<int> axes, ir::DType dtype);
  // The diagram's value names, gathered at the first `name` (values the builder adds are unnamed).
  std::set<std::string> names_;
  bool names_known_ = false;
};

// What a row's formula may name (ops::Info::vjp).
struct FormulaScope {
  int a = -1, b = -1, c = -1;  // operands
  int r = -1;                  // the result
  int g = -1;                  // the result's cotangent
  std::vector<int> axes;       // the function's axes (sum, mean, rsum, n)
  double eps = 0;
  ir::DType dtype = ir::DType::F32;
};

// Builds the formula's value; -1 for "0" (no contribution). Throws Failure on
// a formula the grammar does not accept (a bug of the table, caught by tests).
int build_formula(Builder &b, std::string_view formula, const FormulaScope &scope);

// The cotangent of each operand of `op` (-1 where none), given the cotangent
// of each result (-1 where none). Not for calls and repeats (autodiff.cpp).
std::vector<int> operand_cotangents(Builder &b, const ir::Op &op, const std::vector<int> &result_cotangents);

// FlashAttention's form of a softmax's derivative when its result P is read by one
// contraction O = Σ_k P·V over its axis k: P recomputed as exp(S − L) from the
// row's logsumexp L (`lse`, what a kernel keeps of the forward; recompute_softmax,
// -1 when the pattern does not hold), and Σ_k dP·P as D = Σ dO·O over O's
// other axes (a row of O, not of P): attention_softmax returns dS.
int recompute_softmax(Builder &b, const ir::Op &softmax, const ir::Op &consumer, int &lse);
int attention_softmax(Builder &b, const ir::Op &softmax, int recomputed, int d_p, const ir::Op &consumer, int d_o);

// `callee` with the lifted axes of a call made its own (autodiff_lift.cpp); `carried`: for each
// input, the lifted axes its argument has. nullptr when the callee has one of those axes already
// or holds a repeat.
std::unique_ptr<ir::Diagram> lift_callee(const ir::Diagram &callee, const std::vector<int> &lifted,
                                         const std::vector<std::vector<int>> &carried);

// A derived step split into its forward and backward passes (autodiff_save.cpp).
struct StepParts {
  const ir::Diagram *original = nullptr;  // D
  const ir::Diagram *grad = nullptr;      // D_grad: D's ops (ids up to D's max_op_id), then the backward's
  std::vector<int> scores;                // attention scores the backward recomputes
  std::vector<int> row_stats;             // their rows' logsumexp: forward work a pass may save
};

// Prices `policy`; with `add`, adds D_forward and D_backward to the program.
SaveChoice split_step(ir::Program &program, const StepParts &parts, SavePolicy policy, bool add,
                      ir::Diagram *&forward, ir::Diagram *&backward);

}  // namespace ncd::autodiff
