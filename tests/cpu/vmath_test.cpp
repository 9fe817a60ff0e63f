// Error bounds of the CPU backend's float32 math (backends/cpu/vmath.h)
// against double-precision libm, on a sample of every float32 range: every
// 251st bit pattern (17 million inputs per function) and every input of the
// intervals where the formulas switch. The bounds are those docs/RUN.md
// states; bench/vmath_accuracy.cpp measures the same on all 2^32 inputs.
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <limits>

#include "vmath_accuracy.h"

namespace ncd::cpu::accuracy {
namespace {

// The stated bound of each function, in float32 ulps of the exact result.
double bound(const std::string &name) {
  if (name == "exp") return 1.0;
  if (name == "erf") return 3.0;
  if (name == "erfc") return 3.5;
  if (name == "gelu") return 5.0;
  if (name == "silu") return 3.5;
  if (name == "tanh") return 2.0;
  return 3.0;  // sigmoid
}

const Function &function(const std::string &name) {
  for (const Function &f : functions())
    if (f.name == name) return f;
  throw std::runtime_error("no function " + name);
}

uint64_t bits(float x) { return std::bit_cast<uint32_t>(x); }

// Every float32 in [low, high].
Report dense(const Function &f, float low, float high) {
  if (low < 0 && high > 0) {  // negative floats' bit patterns run the other way
    Report report = dense(f, low, -0.0f);
    report.merge(dense(f, 0.0f, high));
    return report;
  }
  uint64_t a = bits(low), b = bits(high);
  if (a > b) std::swap(a, b);
  return sweep(f, a, b, 1);
}

void expect_within(const Function &f, const Report &report) {
  EXPECT_LE(report.max_ulp, bound(f.name)) << f.name << " at x = " << report.worst_input;
  EXPECT_EQ(report.wrong_special, 0u) << f.name << " first at x = " << report.first_wrong_special;
  EXPECT_LE(report.max_small_error, static_cast<double>(FLT_MIN)) << f.name;
}

class VmathBound : public testing::TestWithParam<std::string> {};

TEST_P(VmathBound, SampleOfAllInputs) {
  const Function &f = function(GetParam());
  Report report = sweep(f, 0, 0xffffffffu, 251);
  EXPECT_GT(report.inputs, 17000000u);
  expect_within(f, report);
}

TEST_P(VmathBound, EveryInputWhereFormulasMeet) {
  const Function &f = function(GetParam());
  Report report;
  // The interval switches (0.5, 0.55, 2 and their images x sqrt 2 for GELU),
  // the float32 overflow and underflow of exp, and the flush of GELU's tail.
  for (float edge :
       {0.5f, 0.55f, 0.70710677f, 1.0f, 2.0f, 2.828427f, 10.0f, 13.2f, 14.5f, 87.33654f, 88.72284f, 103.97208f})
    for (float sign : {1.0f, -1.0f}) {
      const float centre = sign * edge;
      report.merge(dense(f, std::nextafter(centre, -INFINITY) - 1e-3f * std::max(1.0f, edge),
                         std::nextafter(centre, INFINITY) + 1e-3f * std::max(1.0f, edge)));
    }
  EXPECT_GT(report.inputs, 600000u);
  expect_within(f, report);
}

INSTANTIATE_TEST_SUITE_P(Functions, VmathBound,
                         testing::Values("exp", "erf", "erfc", "gelu", "tanh", "sigmoid", "silu"));

TEST(Vmath, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(exp_f(-inf), 0.0f);
  EXPECT_EQ(exp_f(inf), inf);
  EXPECT_EQ(exp_f(0.0f), 1.0f);
  EXPECT_EQ(exp_f(89.0f), inf);
  EXPECT_EQ(exp_f(-200.0f), 0.0f);
  EXPECT_EQ(exp_difference_f(-inf, 3.0f), 0.0f);
  EXPECT_EQ(exp_difference_f(3.0f, 3.0f), 1.0f);
  EXPECT_EQ(erf_f(inf), 1.0f);
  EXPECT_EQ(erf_f(-inf), -1.0f);
  EXPECT_EQ(erfc_f(-inf), 2.0f);
  EXPECT_EQ(erfc_f(inf), 0.0f);
  EXPECT_EQ(gelu_f(inf), inf);
  EXPECT_EQ(gelu_f(-inf), 0.0f);
  EXPECT_TRUE(std::signbit(gelu_f(-20.0f)));
  EXPECT_EQ(tanh_f(inf), 1.0f);
  EXPECT_EQ(tanh_f(-inf), -1.0f);
  EXPECT_EQ(sigmoid_f(inf), 1.0f);
  EXPECT_EQ(sigmoid_f(-inf), 0.0f);
  for (float (*f)(float) : {+[](float x) { return exp_f(x); }, erf_f, erfc_f, gelu_f, tanh_f, sigmoid_f, silu_f})
    EXPECT_TRUE(std::isnan(f(nan)));
}

// x - m carries its rounding error into the exponent: e^(x - m) as accurate as
// e^ of an exact argument, where the float32 difference alone would be 20 ulps off.
TEST(Vmath, ExpDifferenceIsExact) {
  const float x = 0.1f, m = 20.0f;
  const double exact = std::exp(static_cast<double>(x) - static_cast<double>(m));
  const float got = exp_difference_f(x, m);
  EXPECT_LE(std::fabs(got - exact) / ulp_at(exact), 1.0);
  EXPECT_GT(std::fabs(exp_f(x - m) - exact) / ulp_at(exact), 2.0);
}

}  // namespace
}  // namespace ncd::cpu::accuracy
