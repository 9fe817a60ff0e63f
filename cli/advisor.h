// `ncd optimize --advisor`: ncd as the referee of proposed rewrites
// (docs/ADVISOR.md). An advisor — an external command speaking the JSON
// protocol, or the built-in search — proposes candidate diagrams; ncd checks
// each (parse, sema), verifies it against the input on the CPU backend at
// reduced sizes, prices it on the hardware profile, and keeps the fastest
// verified one. Every proposal gets a verdict.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common.h"
#include "ncd/frontend.h"
#include "ncd/hardware.h"
#include "ncd/registry.h"
#include "param_conversion.h"

namespace ncd::cli {

// The protocol's version (docs/ADVISOR.md): the request carries it, and an
// answer must state the same one. Optional fields added since are extensions
// of the same version, named in the request's "extensions" (an advisor that
// checks the version keeps working).
inline constexpr int kAdvisorProtocolVersion = 1;
inline constexpr const char *kAdvisorExtensions[] = {"params"};

enum class AdvisorLevel { High, Mid, Low, All };

struct AdvisorSettings {
  std::string command;  // "builtin", or a command run with /bin/sh -c
  int rounds = 1;
  AdvisorLevel level = AdvisorLevel::All;
  double timeout = 60;  // seconds per call of the command
  bool allow_inexact = false;
  double tolerance = 0.05;  // with allow_inexact: the largest relative L2 error accepted per output
  bool explain = false;
};

struct AdvisorContext {
  std::string input;   // the .ncd file optimized
  std::string output;  // the -o path
  std::string diagram;
  std::string pipeline;  // the passes that made the starting point, for the header
  const HardwareProfile *hardware = nullptr;
  Registry *registry = nullptr;
  FrontendOptions frontend;
  int64_t verify_size = 64;
  uint64_t seed = 1;
  std::vector<std::string> input_axes;  // the axis names the input file declares (verification may resize them)
  std::vector<std::string> explain;     // the pipeline's explain log, sent to the advisor
};

// A proposal: full .ncd text, or schedule blocks only (replacing the current
// text's blocks of the same diagrams), with a one-line rationale, and how its
// params follow from the input's (a high-level rewrite that changes them).
struct AdvisorCandidate {
  std::string ncd, schedule, rationale;
  std::vector<ParamConversion> params;
  std::string params_error;  // a malformed "params" entry: the candidate's verdict
};

// Runs the advisor's rounds from `text` (the verified output of the
// pipeline). `text` becomes the best verified candidate, if any was faster.
// An advisor that fails (cannot start, exits non-zero, is killed, times out,
// answers what is not the protocol) gets a warning on stderr and ends the
// rounds; `text` keeps the best result so far. Returns kSuccess, or
// kUserError when the starting point itself cannot be priced.
int run_advisor(const AdvisorSettings &settings, const AdvisorContext &context, std::string &text);

// The built-in advisor (advisor_builtin.cpp): candidates for `source` (a
// self-contained .ncd text) at `level` — the catalogue of algebraic rewrites
// (high), alternative pipelines from the input (mid) and a search over the
// schedules' tile sizes (low).
std::vector<AdvisorCandidate> builtin_candidates(const AdvisorContext &context, AdvisorLevel level,
                                                 const std::string &source);

// The high-level catalogue (advisor_catalogue.cpp): grouped- and multi-query
// attention from multi-head, low-rank factorisations of large weights, tied
// embeddings, each found where it applies in the input's diagram, written
// optimized by `pipeline`, with the conversion of its params.
void catalogue_candidates(const AdvisorContext &context, const std::vector<std::string> &pipeline,
                          std::vector<AdvisorCandidate> &out);

// How the built-in advisor compiles the input: the run's -I and -D.
CompileOptions advisor_compile_options(const AdvisorContext &context);

// Runs `pipeline` on `diagram` of `compilation` and writes the result as .ncd
// text under the comment `header`; false when a pass fails or the result has
// no spelling.
bool optimize_and_write(const AdvisorContext &context, Compilation &compilation, ir::Diagram &diagram,
                        const std::vector<std::string> &pipeline, const std::string &header, std::string &text);

// "high", "mid", "low", "all".
const char *level_name(AdvisorLevel level);

// A priced time as the advisor's messages print it: "28.06 us".
std::string format_micros(double seconds);

}  // namespace ncd::cli
