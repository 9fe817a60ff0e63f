// Measures the error of the CPU backend's float32 math (backends/cpu/vmath.h)
// against double-precision libm, in float32 ulps of the exact result.
//
// Used by tests/cpu/vmath_test.cpp (a sample of inputs, asserting the bounds
// that docs/RUN.md states) and bench/vmath_accuracy.cpp (every float32 input).
// The reference is glibc's double functions, whose error (below one double
// ulp, 2^-52 relative) is far below the float32 ulp (2^-23) being measured.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "vmath.h"

namespace ncd::cpu::accuracy {

struct Function {
  std::string name;
  float (*fast)(float);
  double (*reference)(double);
};

inline const std::vector<Function> &functions() {
  static const std::vector<Function> all = {
      {"exp", [](float x) { return exp_f(x); }, [](double x) { return std::exp(x); }},
      {"erf", erf_f, [](double x) { return std::erf(x); }},
      {"erfc", erfc_f, [](double x) { return std::erfc(x); }},
      // GELU's limit at -inf is -0 (the formula gives -inf * 0).
      {"gelu", gelu_f,
       [](double x) { return std::isinf(x) && x < 0 ? -0.0 : 0.5 * x * std::erfc(-x * 0.70710678118654752440); }},
      {"tanh", tanh_f, [](double x) { return std::tanh(x); }},
      {"sigmoid", sigmoid_f, [](double x) { return 1.0 / (1.0 + std::exp(-x)); }},
      {"silu", silu_f, [](double x) { return x / (1.0 + std::exp(-x)); }},
  };
  return all;
}

// The error of one function over a set of inputs.
struct Report {
  uint64_t inputs = 0;
  double max_ulp = 0;  // over inputs whose exact result is a normal float32 (or 0)
  float worst_input = 0;
  uint64_t small = 0;          // exact result below the smallest normal float32 (may be flushed)
  double max_small_error = 0;  // absolute, over those
  uint64_t wrong_special = 0;  // NaN, infinity or sign where the exact result disagrees
  float first_wrong_special = 0;

  void merge(const Report &other) {
    inputs += other.inputs;
    if (other.max_ulp > max_ulp) {
      max_ulp = other.max_ulp;
      worst_input = other.worst_input;
    }
    small += other.small;
    if (other.max_small_error > max_small_error) max_small_error = other.max_small_error;
    if (other.wrong_special && !wrong_special) first_wrong_special = other.first_wrong_special;
    wrong_special += other.wrong_special;
  }
};

// The float32 spacing at |v| (v a normal float32 magnitude).
inline double ulp_at(double v) {
  int exponent;
  std::frexp(std::fabs(v), &exponent);  // |v| = m 2^exponent, m in [0.5, 1)
  return std::ldexp(1.0, exponent - 24);
}

inline void check(const Function &f, float x, Report &report) {
  ++report.inputs;
  const float got = f.fast(x);
  const double exact = f.reference(static_cast<double>(x));
  const float rounded = static_cast<float>(exact);
  auto special = [&](bool ok) {
    if (ok) return;
    if (!report.wrong_special) report.first_wrong_special = x;
    ++report.wrong_special;
  };
  if (std::isnan(exact) || std::isnan(got)) return special(std::isnan(exact) && std::isnan(got));
  if (std::isinf(rounded) || std::isinf(got)) return special(got == rounded);
  if (std::fabs(exact) < FLT_MIN && exact != 0) {
    ++report.small;
    const double error = std::fabs(static_cast<double>(got) - exact);
    if (error > report.max_small_error) report.max_small_error = error;
    return;
  }
  if (exact == 0) return special(got == 0);
  const double ulps = std::fabs(static_cast<double>(got) - exact) / ulp_at(exact);
  if (ulps > report.max_ulp) {
    report.max_ulp = ulps;
    report.worst_input = x;
  }
}

// Every `stride`-th float32 bit pattern from `first` up to `last` (inclusive).
inline Report sweep(const Function &f, uint64_t first, uint64_t last, uint64_t stride) {
  Report report;
  for (uint64_t bits = first; bits <= last; bits += stride)
    check(f, std::bit_cast<float>(static_cast<uint32_t>(bits)), report);
  return report;
}

}  // namespace ncd::cpu::accuracy
