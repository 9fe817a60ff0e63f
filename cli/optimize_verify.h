// How `ncd optimize` checks its output (docs/OPTIMIZE.md, "What verification
// does"): the axis sizes it verifies at, and the run of input and output on
// the CPU backend at those sizes on one draw of random data.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "ncd/ir.h"

namespace ncd::cli {

// The sizes verification compiles both files with.
struct VerifyPlan {
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
VerifyPlan plan_verify_sizes(ir::Program &program, ir::Diagram &root, int64_t target,
                             const std::vector<std::string> &user_defines, size_t first_new_axis);

struct VerifyRequest {
  std::string input;        // the .ncd file that was optimized
  std::string output;       // the -o path: names the optimized text in messages
  const std::string *text = nullptr;  // the optimized .ncd text
  std::string diagram;
  uint64_t seed = 1;
  int64_t target = 64;
  bool explain = false;
  FrontendOptions frontend;
};

// Compiles the input file and the optimized text (in memory: no scratch file)
// at the planned sizes, runs both and compares. Returns kSuccess when they
// match; otherwise prints why (they differ, verification ran out of memory,
// or a file did not compile at those sizes) and returns kUserError.
int verify_optimized(ir::Program &optimized, ir::Diagram &root, size_t first_new_axis, const VerifyRequest &request);

}  // namespace ncd::cli
