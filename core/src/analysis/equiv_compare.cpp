// Comparing the outputs of two programs (ncd/equiv.h).
#include <algorithm>
#include <cmath>
#include <limits>

#include "ncd/equiv.h"

namespace ncd {

Tolerance default_tolerance(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return {1e-4, 1e-5};
    case ir::DType::F16: return {1e-2, 1e-3};
    case ir::DType::BF16: return {2e-2, 1e-2};
    case ir::DType::F8E4M3: return {1.25e-1, 5e-2};
    case ir::DType::F8E5M2: return {2.5e-1, 1e-1};
    case ir::DType::I8: case ir::DType::I32: case ir::DType::Bool: return {0, 0};
  }
  return {1e-4, 1e-5};
}

OutputDifference compare_output(const std::vector<std::string> &a_axes, const Tensor &ta,
                                const std::vector<std::string> &b_axes, const Tensor &tb, Tolerance tol) {
  OutputDifference diff;
  // B's element for each of A's positions: the same axes by name, in any order.
  std::vector<int64_t> b_stride(a_axes.size(), 0);
  bool aligned = a_axes.size() == b_axes.size() && ta.shape.size() == a_axes.size() && tb.shape.size() == b_axes.size();
  if (aligned) {
    std::vector<int64_t> strides(b_axes.size(), 1);
    for (size_t d = b_axes.size(); d-- > 1;) strides[d - 1] = strides[d] * tb.shape[d];
    for (size_t d = 0; d < a_axes.size() && aligned; ++d) {
      auto it = std::find(b_axes.begin(), b_axes.end(), a_axes[d]);
      if (it == b_axes.end() || tb.shape[static_cast<size_t>(it - b_axes.begin())] != ta.shape[d])
        aligned = false;
      else
        b_stride[d] = strides[static_cast<size_t>(it - b_axes.begin())];
    }
  }
  if (!aligned) {
    if (tb.shape != ta.shape) {
      diff.shapes_differ = true;
      return diff;
    }
    b_stride.assign(ta.shape.size(), 1);
    for (size_t d = ta.shape.size(); d-- > 1;) b_stride[d - 1] = b_stride[d] * ta.shape[d];
  }
  const int64_t n = ta.size();
  double error_sq = 0, norm_sq = 0;
  std::vector<int64_t> index(ta.shape.size(), 0);
  int64_t b_offset = 0;
  for (int64_t i = 0; i < n; ++i) {
    double a = ta.get_double(i), b = tb.get_double(b_offset);
    bool same = (std::isnan(a) && std::isnan(b)) || a == b;
    double abs_error = same ? 0 : std::fabs(a - b);
    if (std::isnan(abs_error)) abs_error = std::numeric_limits<double>::infinity();
    double scale = std::max(std::fabs(a), std::fabs(b));
    double rel_error = same ? 0 : (scale > 0 ? abs_error / scale : 0);
    if (!same && !(abs_error <= tol.atol + tol.rtol * std::fabs(a))) {
      if (diff.failures++ == 0) {
        diff.first = i;
        diff.a_value = a;
        diff.b_value = b;
      }
    }
    if (!same) error_sq += abs_error * abs_error;
    if (!std::isnan(a)) norm_sq += a * a;
    diff.max_abs = std::max(diff.max_abs, abs_error);
    diff.max_rel = std::max(diff.max_rel, rel_error);
    for (size_t d = index.size(); d-- > 0;) {
      if (++index[d] < ta.shape[d]) {
        b_offset += b_stride[d];
        break;
      }
      b_offset -= (ta.shape[d] - 1) * b_stride[d];
      index[d] = 0;
    }
  }
  diff.rel_l2 = error_sq == 0 ? 0 : norm_sq > 0 ? std::sqrt(error_sq / norm_sq) : std::numeric_limits<double>::infinity();
  return diff;
}

}  // namespace ncd
