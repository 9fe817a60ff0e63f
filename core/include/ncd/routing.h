// Routed contractions: the sparse mixture-of-experts pattern, found once.
//
// `H[t, top, f] = X[t, d] * W[I[t, top], d, f]` multiplies every token by the
// weights of the experts its router chose: one operand is a table (the
// experts' weights) read through a gather along one axis (the expert axis) by
// an integer index (the routing). Written so, the program means exactly the
// dense reference (each route picks its expert's slice), and the work is the
// routed work: #t·#top matrix rows, not #t·#experts. A backend must not
// materialise the gathered operand (#t·#top copies of a weight matrix); it
// groups the routes by expert and runs one matrix product per expert
// (a grouped GEMM), scattering the rows back. The CPU backend, the CUDA
// backend, the cost model and the renderer recognise the pattern here.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd::ir {

struct Routed {
  size_t operand = 0;          // position among the contraction's operands of the gathered value
  const Op *gather = nullptr;  // the access op that reads the table
  int table = -1;              // the table (value id)
  size_t expert = 0;           // the table's position read through the index (the expert axis)
  int index = -1;              // the integer routing index (value id)
  // Per other position of the table, the result axis it is read as (a renaming).
  std::vector<int> renamed;
};

// `contraction`'s routed operand, if it has one: a Contract op of `diagram`
// one of whose operands is produced by an Access op that
// - gathers exactly one position of its table through an integer index and
//   reads every other position as an axis of the same size (no shift, split
//   or second gather);
// - is read by this contraction only (`uses` counts the ops of the diagram
//   reading a value, outputs counted as a use);
// and whose index's axes the contraction keeps (each route's result lands in
// one place: nothing is summed across routes). Otherwise nullopt, and `why`
// (if given) says what is missing, for --explain.
std::optional<Routed> routed_operand(const Diagram &diagram, const Program &program, const Op &contraction,
                                     const ProducerIndex &producers, const std::vector<int> &uses,
                                     std::string *why = nullptr);

// How many ops of the diagram (in any region) read each value; outputs and
// repeat yields count as a use.
std::vector<int> use_counts(const Diagram &diagram);

}  // namespace ncd::ir
