// How `ncd optimize` checks its output (docs/OPTIMIZE.md, "What verification
// does"): the run of input and output on the CPU backend, at the sizes
// ncd/equiv.h plans, on one draw of random data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "ncd/equiv.h"
#include "ncd/ir.h"
#include "run_support.h"

namespace ncd::cli {

struct VerifyRequest {
  std::string input;        // the .ncd file that was optimized
  std::string output;       // the -o path: names the optimized text in messages
  const std::string *text = nullptr;  // the optimized .ncd text
  std::string diagram;
  uint64_t seed = 1;
  int64_t target = 64;
  bool explain = false;
  // The pipeline changes what the diagram computes (Pass::exact): the
  // outputs are measured against `tolerance` (relative L2 error) and the
  // figures always printed, instead of checked for equivalence.
  bool inexact = false;
  std::string pipeline;  // the passes, for messages
  double tolerance = 0.05;
  FrontendOptions frontend;
  EquivMeasure *measured = nullptr;  // when set: the largest differences found
  std::string *sizes = nullptr;      // when set: the sizes verified at ("-D q=64 -D k=128")
  EquivVerdict *verdict = nullptr;   // when set: what the comparison found (untouched when nothing ran)
  const std::vector<ParamConversion> *conversions = nullptr;  // when set: the output's params from the input's
};

// Compiles the input file and the optimized text (in memory: no scratch file)
// at the planned sizes, runs both and compares. Returns kSuccess when they
// match; otherwise prints why (they differ, verification ran out of memory,
// or a file did not compile at those sizes) and returns kUserError.
int verify_optimized(ir::Program &optimized, ir::Diagram &root, size_t first_new_axis, const VerifyRequest &request);

}  // namespace ncd::cli
