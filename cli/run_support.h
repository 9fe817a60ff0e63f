// What `ncd run` and `ncd equiv` share: the data a diagram needs (inputs by
// name, params by path), read from .npy/safetensors files or generated from a
// seed, and running it on a backend. Every problem is reported as
// "ncd: error: FILE: message" naming the file and the expected shape.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "ncd/instantiate.h"
#include "ncd/registry.h"
#include "ncd/tensor.h"

namespace ncd::cli {

// A tensor the diagram needs: an input of the root diagram or a param instance.
struct Slot {
  std::string name;  // input name or param path
  bool param = false;
  ir::DType dtype = ir::DType::F32;
  std::vector<std::string> axis_names;
  std::vector<int64_t> shape;
  RandomSpec random;  // how --random fills it
  // "input 'X' [seq=8, model=16] f32"
  std::string describe() const;
};

// The inputs and param instances of `diagram`; false (after printing) when a size is unknown.
bool list_slots(const ir::Program &program, const ir::Diagram &diagram, std::vector<Slot> &inputs,
                std::vector<Slot> &params);

struct RunData {
  std::map<std::string, Tensor> inputs;
  std::map<std::string, Tensor> params;
  std::vector<std::string> generated_inputs, generated_params;
  bool out_of_memory = false;  // set when generating failed for lack of memory
};

// Runtime sizes from the data: for each input axis without a size (not
// derived), the size of that dimension of the input's --in NAME=FILE.npy,
// as `-D AXIS=N` defines in `defines` (the first input that has the axis
// decides; a file that disagrees is reported when it is read). Only .npy
// headers are read; false (after printing) when one cannot be.
bool sizes_from_inputs(const ir::Program &program, const ir::Diagram &diagram, const std::vector<std::string> &in_options,
                       std::vector<std::string> &defines);

// Reads `path` (a .npy file) as the tensor `slot` needs; prints an error naming the file.
bool read_slot_npy(const std::string &path, const Slot &slot, Tensor &out);

// Fills `data` from --in NAME=PATH, --params DIR|FILE.safetensors and, for what
// is still missing, --random SEED. Prints every problem (those of random data
// prefixed with `random_label`); returns false if any.
bool gather_data(const std::vector<Slot> &inputs, const std::vector<Slot> &params,
                 const std::vector<std::string> &in_options, const std::string &params_option,
                 std::optional<uint64_t> seed, RunData &data, bool &usage_error,
                 const std::string &random_label = "--random");

// The backend that runs diagrams (`name`, default "cpu"); prints why when absent.
const Backend *find_executor(const std::string &name, const std::vector<std::string> &plugins);

// Writes a tensor as .npy (bf16/f8 as float32), atomically; prints on failure.
bool write_npy(const std::string &path, const Tensor &tensor);

// What `ncd equiv` compares (also used by `ncd optimize --verify`).
// The largest differences over every output, for a caller that reports them.
struct ParamConversion;  // param_conversion.h

struct EquivMeasure {
  double max_abs = 0, rel_l2 = 0;
};

struct EquivRequest {
  std::string a, b, diagram, backend = "cpu";
  uint64_t seed = 1;
  double rtol = -1, atol = -1;  // negative: the default of each output's dtype
  // Non-negative: an output agrees when its relative L2 error is at most this
  // (an inexact rewrite), instead of element by element within rtol and atol.
  double max_rel_l2 = -1;
  int threads = 0;
  FrontendOptions frontend;
  EquivMeasure *measured = nullptr;  // when set: filled with the largest differences found
  // When set: B's params that these compute from A's draw (a rewrite that
  // changes the params); they need not match A's params of the same path.
  const std::vector<ParamConversion> *conversions = nullptr;
};

// Runs the diagram of both files on the same random data and prints the error
// figures per output to `out`; returns 0 when every output is within tolerance,
// 1 otherwise (problems with the files go to stderr).
int run_equiv(const EquivRequest &request, std::ostream &out);

// One side of a comparison: a compiled program and the diagram to run.
struct EquivSide {
  std::string file;  // names the side in messages
  const ir::Program *program = nullptr;
  const ir::Diagram *diagram = nullptr;
};

enum class EquivVerdict { Equivalent, Differs, Failed, OutOfMemory };

// What run_equiv does after compiling (request.a, .b and .frontend are not
// used): the random data is drawn once, from side 0's slots, and shared with
// side 1 (the interfaces must agree; params of the same path are the same
// tensor). Failed and OutOfMemory are printed to stderr, prefixed with
// `random_label` where the data could not be made.
EquivVerdict compare_diagrams(const EquivSide (&sides)[2], const EquivRequest &request, std::ostream &out,
                              const std::string &random_label = "--random");

}  // namespace ncd::cli
