// How a candidate's params follow from the input's (docs/ADVISOR.md, "Param
// conversions"). A high-level rewrite (grouped-query attention, a factorised
// weight) changes the params; verifying it on params drawn at random would
// measure nothing. A conversion states the published recipe instead, and the
// referee applies it to the verification's draw of the input's params before
// it runs the candidate, so the measured error is the rewrite's own.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/tensor.h"
#include "run_support.h"

namespace ncd::cli {

struct ParamConversion {
  enum class Op {
    Copy,      // the candidate's param is the input's `from` (axes matched by name)
    Mean,      // `from` with axis `axis` mean-pooled into `into` groups of consecutive entries (GQA's recipe)
    SvdLeft,   // U_r sqrt(S_r) of `from` viewed as rows (the param's axes but `rank`) by the other axes
    SvdRight,  // sqrt(S_r) V_r^T of the same view, the param's axes but `rank` being the columns
  };
  Op op = Op::Copy;
  std::string param, from;
  std::string axis, into;  // Mean
  std::string rank;        // SvdLeft, SvdRight: the candidate's axis of the factorisation's rank
};

// "copy", "mean", "svd_left", "svd_right".
const char *conversion_op_name(ParamConversion::Op op);

// One entry of a candidate's "params" array (JSON already parsed into the
// string fields present): false with `error` (without a location) when a
// field is missing or the op unknown.
bool make_conversion(const std::map<std::string, std::string> &fields, ParamConversion &out, std::string &error);

// Computes the converted params of the candidate into `out` (keyed by path)
// from `input_values`, the verification's tensors of the input's params.
// False with `error` ("params[I] (\"P\"): why") when an entry names a param
// either side lacks, axes that do not fit, or a param twice.
bool apply_conversions(const std::vector<ParamConversion> &conversions, const std::vector<Slot> &input_params,
                       const std::map<std::string, Tensor> &input_values, const std::vector<Slot> &candidate_params,
                       std::map<std::string, Tensor> &out, std::string &error);

// The singular values and vectors of the m x n row-major matrix `a`, largest
// first: a = u diag(s) v^T with u m x k, v n x k, k = min(m, n) (one-sided
// Jacobi in double precision; deterministic). Exposed for the oracle test.
void thin_svd(const std::vector<double> &a, int64_t m, int64_t n, std::vector<double> &u, std::vector<double> &s,
              std::vector<double> &v);

}  // namespace ncd::cli
