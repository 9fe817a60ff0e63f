// Model merging of parameter checkpoints (`ncd merge`, docs/MERGE.md):
// several safetensors files holding the params of one diagram are combined
// tensor by tensor into one file, by linear averaging, spherical
// interpolation (slerp), task arithmetic, TIES-merging or DARE.
//
// The inputs are checked against the diagram's param list from their headers
// alone before any output is written, then streamed: each tensor is read in
// chunks through read-only memory maps and written to a temporary file that
// is renamed over the output at the end, so the memory used is a few chunks
// (plus, for TIES, one tensor's magnitudes), never a whole model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

enum class MergeMethod { Linear, Slerp, TaskArithmetic, Ties, Dare };

// "linear", "slerp", "task-arithmetic", "ties", "dare".
const std::vector<std::string> &merge_method_names();
std::optional<MergeMethod> parse_merge_method(const std::string &name);
std::string merge_method_name(MergeMethod method);
// task-arithmetic, ties and dare combine task vectors θ_i − θ_base.
bool merge_method_uses_base(MergeMethod method);
// ties and dare sparsify the task vectors.
bool merge_method_uses_density(MergeMethod method);
// The --density a method uses when none is given: TIES keeps the top 20%
// (the paper's k = 20), DARE keeps 10% (drop rate 0.9).
double merge_default_density(MergeMethod method);

// One param the diagram reads (from list_param_instances).
struct MergeParam {
  std::string path;
  std::vector<int64_t> shape;
  ir::DType dtype = ir::DType::F32;
};

struct MergeRequest {
  MergeMethod method = MergeMethod::Linear;
  std::string diagram;              // its name, for messages
  std::vector<std::string> inputs;  // the checkpoints θ_1 ... θ_n
  std::string base;                 // θ_base; empty for linear and slerp
  // One per input (slerp: one, the interpolation factor t), already
  // defaulted and validated by the caller.
  std::vector<double> weights;
  double density = 1.0;  // ties and dare, in (0, 1]
  uint64_t seed = 0;     // dare
  std::string output;
};

// Checks every input and the base against `params` (each param present with
// its shape and dtype, no other tensor), then writes the merged checkpoint
// atomically. On failure returns false with `error` naming the file and the
// param, and leaves no output behind.
bool merge_checkpoints(const std::vector<MergeParam> &params, const MergeRequest &request, std::string &error);

// DARE's keep decision for element `element` of task vector `input` (0-based)
// of the param at `path`: a counter-based hash of (seed, path, input,
// element), so the mask does not depend on the order or the threads that
// compute it (docs/MERGE.md, "dare").
bool dare_keep(uint64_t seed, const std::string &path, uint64_t input, uint64_t element, double density);

}  // namespace ncd
