// Vectorisable float32 exp, erf, erfc, GELU, tanh and sigmoid for the
// kernels' hot loops.
//
// glibc's scalar float functions cost tens of cycles per element and keep
// loops from vectorising; these are written without branches or library calls
// (selects only, every candidate computed) so that a loop calling them runs 16
// lanes wide on AVX-512. Polynomials are evaluated with fused multiply-adds,
// written out as std::fma: the result of each is defined (one rounding), so
// results are the same bits on every machine and every build, with or
// without hardware FMA (where the CPU has it, -march=native makes each one
// instruction). Each polynomial is written out as its chain of fma_f calls:
// with a helper (a loop over a coefficient table, or a variadic template)
// GCC 12 left GELU out of line, one call per element, 12x slower.
// Coefficients come from scripts/fit_vmath.py; the largest
// error of each function over all float32 inputs is measured by
// bench/vmath_accuracy.cpp (bench/results/vmath_accuracy.md) and bounded in
// tests/cpu/vmath_test.cpp; docs/RUN.md states the bounds. Results smaller
// than the smallest normal float32 may be flushed to zero (an absolute error
// below 1.2e-38), so that masked values (e^-inf) never take the slow
// subnormal path.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace ncd::cpu {

inline float fma_f(float a, float b, float c) { return std::fma(a, b, c); }

// 2^n for an integer-valued n in [-126, 127].
inline float exp2_int(float n) {
  return std::bit_cast<float>(static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23);
}

// e^(x + tail) 2^scale for |tail| <= ulp(x) (tail and scale 0: e^x), where
// the result is a normal float32 (else 0, or +inf above the range); NaN
// propagates. `scale` (|scale| <= 100) lets callers carry a factor past the
// end of the normal range.
inline float exp_f(float x, float tail = 0.0f, int scale = 0) {
  const float shift = static_cast<float>(scale) * 0.693147182f;
  const bool overflow = x > 88.72283935546875f - shift;
  const bool underflow = x < -87.33654022216797f - shift;
  const float xc = (overflow || underflow || x != x) ? 0.0f : x;
  // x = n ln2 + r, |r| <= ln2/2: n ln2_hi is exact (ln2_hi has 16 bits, |n| < 256)
  // and so is x - n ln2_hi (the two are within a factor 2 of each other).
  const float n = (xc * 1.44269502162933349609f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693145751953125f;
  r = fma_f(-n, 1.42860682030941723212e-6f, r);
  r = r + tail;
  // e^r = 1 + r + r^2 P(r).
  float p = 0.0001984473055927083f;
  p = fma_f(p, r, 0.0013929515844210982f);
  p = fma_f(p, r, 0.00833337102085352f);
  p = fma_f(p, r, 0.04166650399565697f);
  p = fma_f(p, r, 0.1666666716337204f);
  p = fma_f(p, r, 0.5f);
  const float er = 1.0f + fma_f(r * r, p, r);
  // 2^(n + scale) in two factors, each in the normal range.
  const float total = n + static_cast<float>(scale);
  const float n1 = static_cast<float>(static_cast<int32_t>(total) / 2);
  const float result = er * exp2_int(n1) * exp2_int(total - n1);
  const float bounded = overflow ? INFINITY : (underflow ? 0.0f : result);
  return x == x ? bounded : x;
}

// e^(x - m), with the rounding error of x - m carried into the exponent
// (TwoSum), so that shifting by a row's maximum costs no accuracy.
inline float exp_difference_f(float x, float m) {
  const float d = x - m;
  const float back = d - x;
  const float error = (x - (d - back)) + (-m - back);
  return exp_f(d, std::fabs(d) < INFINITY ? error : 0.0f);
}

// erfc(y) e^(y^2) for y >= 0.5: a polynomial in y up to 2, R(1/y^2) / y beyond.
// Callers multiply by e^(-y^2) last, so that a result in the normal range
// never passes through a subnormal intermediate.
inline float erfc_scaled(float y) {
  const float t = y - 1.25f;
  float q = 6.03038897679653e-05f;
  q = fma_f(q, t, -0.0001905877434182912f);
  q = fma_f(q, t, 0.00047240490675903857f);
  q = fma_f(q, t, -0.0013108544517308474f);
  q = fma_f(q, t, 0.0035527709405869246f);
  q = fma_f(q, t, -0.009085067547857761f);
  q = fma_f(q, t, 0.02201152592897415f);
  q = fma_f(q, t, -0.05021795630455017f);
  q = fma_f(q, t, 0.10679555684328079f);
  q = fma_f(q, t, -0.2088218778371811f);
  q = fma_f(q, t, 0.36782291531562805f);
  const float yf = y < 2.0f ? 2.0f : y;
  const float u = 1.0f / (yf * yf);
  float s = 33.87412643432617f;
  s = fma_f(s, u, -44.438926696777344f);
  s = fma_f(s, u, 26.852331161499023f);
  s = fma_f(s, u, -10.462458610534668f);
  s = fma_f(s, u, 3.2756502628326416f);
  s = fma_f(s, u, -1.038683295249939f);
  s = fma_f(s, u, 0.4226348400115967f);
  s = fma_f(s, u, -0.28208795189857483f);
  s = fma_f(s, u, 0.5641895532608032f);
  return y < 2.0f ? q : s / yf;
}

// e^(-y^2) for y^2 = square + square_tail (the tail is the rounding error of square).
inline float gauss_f(float square, float square_tail) { return exp_f(-square, -square_tail); }

// erf(y) / y = P(y^2) for |y| <= 0.5.
inline float erf_near(float y) {
  const float s = y * y;
  float p = -0.000772752973716706f;
  p = fma_f(p, s, 0.005202311556786299f);
  p = fma_f(p, s, -0.026863520964980125f);
  p = fma_f(p, s, 0.1128377690911293f);
  p = fma_f(p, s, -0.37612637877464294f);
  p = fma_f(p, s, 1.128379225730896f);
  return y * p;
}

// erfc(|x|) for |x| > 0.5 (|x| clamped to 10, beyond which it is 0 in float32).
inline float erfc_far(float x) {
  const float y = std::fabs(x) < 10.0f ? std::fabs(x) : 10.0f;
  const float square = y * y;
  return gauss_f(square, fma_f(y, y, -square)) * erfc_scaled(y > 0.5f ? y : 0.5f);
}

inline float erf_f(float x) {
  const float far = std::copysign(1.0f - erfc_far(x), x);
  const float result = std::fabs(x) <= 0.5f ? erf_near(x) : far;
  return x == x ? result : x;
}

inline float erfc_f(float x) {
  const float tail = erfc_far(x);
  const float near = 1.0f - erf_near(x);
  const float far = x < 0.0f ? 2.0f - tail : tail;
  const float result = std::fabs(x) <= 0.5f ? near : far;
  return x == x ? result : x;
}

// GELU, x Phi(x) = x/2 erfc(-x/sqrt(2)). For x < 0 the erfc tail is used
// directly (1 + erf would cancel), with y^2 = x^2/2 split exactly so that its
// rounding does not reach the exponent.
inline float gelu_f(float x) {
  const float xc = std::fabs(x) < 14.5f ? x : std::copysign(14.5f, x);
  const float y = std::fabs(xc) * 0.70710678118654752440f;
  const float square = xc * xc;
  const float gauss = gauss_f(0.5f * square, 0.5f * fma_f(xc, xc, -square));
  const float shape = erfc_scaled(y > 0.5f ? y : 0.5f);
  const float phi_near = 0.5f + 0.5f * erf_near(x * 0.70710678118654752440f);
  const float result_near = x * phi_near;
  // x >= 0: x (1 - erfc(y)/2); x < 0: (x/2 Q(y)) e^(-y^2), the small factor last.
  const float result_positive = x * (1.0f - 0.5f * (gauss * shape));
  const float result_negative = (0.5f * x * shape) * gauss;
  const float result = y <= 0.5f ? result_near : (x < 0.0f ? result_negative : result_positive);
  // Below -14.5 the result is below the float32 normal range; above 14.5 it is x.
  const float bounded = x < -14.5f ? -0.0f : (x > 14.5f ? x : result);
  return x == x ? bounded : x;
}

inline float tanh_f(float x) {
  const float a = std::fabs(x) < 10.0f ? std::fabs(x) : 10.0f;
  const float e = exp_f(-2.0f * a);
  const float far = std::copysign((1.0f - e) / (1.0f + e), x);
  const float s = x * x;
  float p = 0.0025620723608881235f;
  p = fma_f(p, s, -0.00855123158544302f);
  p = fma_f(p, s, 0.021824467927217484f);
  p = fma_f(p, s, -0.053965285420417786f);
  p = fma_f(p, s, 0.1333332657814026f);
  p = fma_f(p, s, -0.3333333432674408f);
  const float near = fma_f(x * s, p, x);
  const float result = std::fabs(x) <= 0.55f ? near : far;
  return x == x ? result : x;
}

// 1 / (1 + e^(-x)), with e^(-|x|) <= 1 so that nothing overflows.
inline float sigmoid_f(float x) {
  const float e = exp_f(-std::fabs(x));
  const float d = 1.0f / (1.0f + e);
  return x < 0.0f ? e * d : d;
}

// x sigmoid(x). For x < -87 e^x is below the normal range while x e^x is not
// (down to -92): e^x is carried scaled by 2^64 and the scale is removed last.
inline float silu_f(float x) {
  const float scaled = exp_f(-std::fabs(x), 0.0f, 64);
  const float denominator = 1.0f + scaled * 0x1p-64f;
  return x < 0.0f ? ((x * scaled) / denominator) * 0x1p-64f : x / denominator;
}

}  // namespace ncd::cpu
