// Checking that two programs compute the same thing, cheaply: the sizes to
// run them at (every axis shrunk as far as the relations the programs rely on
// allow) and the comparison of their outputs. `ncd equiv` and `ncd optimize`'s
// verification run both programs on a backend; the CLI prints what this finds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ncd/ir.h"
#include "ncd/tensor.h"

namespace ncd {

// The sizes a check of two programs compiles both with.
struct SizePlan {
  std::vector<std::string> defines;  // every -D, the user's (shrunk where planned) then the planner's
  std::vector<std::string> derived;  // "model=12": derived axes whose size the plan changed
  std::vector<std::string> kept;     // "'x' at 4096: why": axes larger than the target left at full size
  std::vector<std::string> above;    // the same for axes that shrank, but not down to the target
  std::vector<std::string> untiled;  // "'d' at 4 (its tiles need a multiple of 64)"
};

// Shrinks every axis the optimized `root` uses (through calls and bindings),
// whether sized by default, by -D or derived from others, to at most `target`
// where the relations the output relies on allow: each axis stays a multiple
// of the tiles the schedules put on it (also through call bindings), derived
// sizes stay positive integers and multiples of their tiles. A derived axis is
// shrunk by shrinking the base axes it is made of. Axes with an id from
// `first_new_axis` on were made by the passes (the input file cannot name them).
SizePlan plan_sizes(ir::Program &program, ir::Diagram &root, int64_t target, const std::vector<std::string> &user_defines,
                    size_t first_new_axis);

// An element of B matches the one of A when |a - b| <= atol + rtol * |a|
// (NaN matches NaN).
struct Tolerance {
  double rtol, atol;
};
// The default of a dtype: about its rounding error over a few operations;
// exact for integers and booleans.
Tolerance default_tolerance(ir::DType dtype);

// How far an output of B is from the same output of A.
struct OutputDifference {
  bool shapes_differ = false;  // no alignment of B's axes with A's: nothing else is set
  double max_abs = 0, max_rel = 0;
  // ||B - A||_2 / ||A||_2 over all elements (0 when both are 0; infinity
  // when a NaN of one side is a number on the other): the measure of an
  // inexact rewrite such as quantization.
  double rel_l2 = 0;
  int64_t failures = 0;    // elements beyond the tolerance
  int64_t first = -1;      // A's linear index of the first of them
  double a_value = 0, b_value = 0;  // the two values there
};

// Compares B with A element by element. Axes are matched by name (in any
// order); when the names differ but the shapes are equal, by position.
OutputDifference compare_output(const std::vector<std::string> &a_axes, const Tensor &a,
                                const std::vector<std::string> &b_axes, const Tensor &b, Tolerance tolerance);

}  // namespace ncd
