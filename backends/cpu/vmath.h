// Vectorisable float64 exp, erf and erfc for the kernels' hot loops.
//
// Written without branches or library calls so that the compiler vectorises
// the loops that call them (glibc's scalar expf/erfcf are an order of
// magnitude slower per element). They are computed in float64 with errors
// near 1e-15, so float32 results rounded from them are the correctly rounded
// values except in rare near-ties: at least as accurate as glibc's float
// functions.
#pragma once

#include <cstdint>
#include <cstring>

namespace ncd::cpu {

inline double bits_to_double(uint64_t bits) {
  double d;
  std::memcpy(&d, &bits, 8);
  return d;
}

// e^x for every double x (NaN propagates). Results below the smallest normal
// double are 0 (never a subnormal: subnormal arithmetic costs a hundred
// cycles per operation on x86, and float results that small are 0 anyway);
// results above the double range saturate at e^709 (+inf once in float).
inline double exp_d(double x) {
  double xc = x < -708.0 ? -708.0 : x;
  xc = xc > 709.0 ? 709.0 : xc;
  // x = n ln2 + r, |r| <= ln2/2 (Cody-Waite with fdlibm's split of ln2).
  const double t = xc * 1.4426950408889634;
  double n = (t + 6755399441055744.0) - 6755399441055744.0;  // round to nearest integer
  n = n == n ? n : 0.0;
  const double r = (xc - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  // e^r by Taylor to degree 11: truncation error < 7e-15 for |r| <= 0.347.
  double p = 2.505210838544172e-08;  // 1/11!
  p = p * r + 2.755731922398589e-07;  // 1/10!
  p = p * r + 2.7557319223985893e-06;
  p = p * r + 2.48015873015873e-05;
  p = p * r + 1.984126984126984e-04;
  p = p * r + 1.388888888888889e-03;
  p = p * r + 8.333333333333333e-03;
  p = p * r + 4.1666666666666664e-02;
  p = p * r + 1.6666666666666666e-01;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  // 2^n in two factors, each a normal double (n in [-1075, 1023]).
  const int64_t ni = static_cast<int64_t>(n);
  const int64_t n1 = ni / 2, n2 = ni - n1;
  const double s1 = bits_to_double(static_cast<uint64_t>(n1 + 1023) << 52);
  const double s2 = bits_to_double(static_cast<uint64_t>(n2 + 1023) << 52);
  const double result = p * s1 * s2;
  const double flushed = x < -708.0 ? 0.0 : result;
  return x == x ? flushed : x;
}

// erf(x) (complement false) or erfc(x) (complement true), after W. J. Cody,
// "Rational Chebyshev approximations for the error function", Math. Comp. 23
// (1969), with the coefficients of SPECFUN's CALERF. The three intervals'
// rationals are all evaluated and one is selected (so that loops vectorise);
// the far interval's rational in 1/x^2 is rewritten as one in x^2, so that a
// single division serves every interval.
inline double erf_family(double x, bool complement) {
  const double y = x < 0 ? -x : x;
  // |x| <= 0.46875: erf(x) = x P0(x^2) / Q0(x^2).
  const double s = y * y;
  double n0 = 1.85777706184603153e-1 * s, d0 = s;
  n0 = (n0 + 3.16112374387056560e00) * s;
  d0 = (d0 + 2.36012909523441209e01) * s;
  n0 = (n0 + 1.13864154151050156e02) * s;
  d0 = (d0 + 2.44024637934444173e02) * s;
  n0 = (n0 + 3.77485237685302021e02) * s;
  d0 = (d0 + 1.28261652607737228e03) * s;
  n0 = x * (n0 + 3.20937758913846947e03);
  d0 = d0 + 2.84423683343917062e03;
  // 0.46875 < |x| <= 4: erfc(|x|) = e^(-x^2) P1(|x|) / Q1(|x|).
  double n1 = 2.15311535474403846e-8 * y, d1 = y;
  n1 = (n1 + 5.64188496988670089e-1) * y;
  d1 = (d1 + 1.57449261107098347e01) * y;
  n1 = (n1 + 8.88314979438837594e00) * y;
  d1 = (d1 + 1.17693950891312499e02) * y;
  n1 = (n1 + 6.61191906371416295e01) * y;
  d1 = (d1 + 5.37181101862009858e02) * y;
  n1 = (n1 + 2.98635138197400131e02) * y;
  d1 = (d1 + 1.62138957456669019e03) * y;
  n1 = (n1 + 8.81952221241769090e02) * y;
  d1 = (d1 + 3.29079923573345963e03) * y;
  n1 = (n1 + 1.71204761263407058e03) * y;
  d1 = (d1 + 4.36261909014324716e03) * y;
  n1 = (n1 + 2.05107837782607147e03) * y;
  d1 = (d1 + 3.43936767414372164e03) * y;
  n1 = n1 + 1.23033935479799725e03;
  d1 = d1 + 1.23033935480374942e03;
  // |x| > 4: erfc(|x|) = e^(-x^2) (1/sqrt(pi) - P2(1/x^2) / (x^2 Q2(1/x^2))) / |x|; with z = x^2,
  // P2(1/z) z^5 = Pz(z) and Q2(1/z) z^5 = Qz(z), so erfc = e^(-x^2) (z Qz / sqrt(pi) - Pz) / (z Qz |x|).
  const double yl = y > 4.0 ? (y < 27.0 ? y : 27.0) : 4.0;
  const double z = yl * yl;
  double pz = 6.58749161529837803e-4, qz = 2.33520497626869185e-3;
  pz = pz * z + 1.60837851487422766e-2;
  qz = qz * z + 6.05183413124413191e-2;
  pz = pz * z + 1.25781726111229246e-1;
  qz = qz * z + 5.27905102951428412e-1;
  pz = pz * z + 3.60344899949804439e-1;
  qz = qz * z + 1.87295284992346047e00;
  pz = pz * z + 3.05326634961232344e-1;
  qz = qz * z + 2.56852019228982242e00;
  pz = pz * z + 1.63153871373020978e-2;
  qz = qz * z + 1.0;
  const double zq = z * qz;
  const double n2 = zq * 5.6418958354775628695e-1 - pz;
  const double d2 = zq * yl;
  // One division for the selected interval.
  const bool small = y <= 0.46875, middle = y <= 4.0;
  const double num = small ? n0 : (middle ? n1 : n2);
  const double den = small ? d0 : (middle ? d1 : d2);
  const double quotient = num / den;
  // e^(-y^2) with y^2 split as y16^2 + del for an accurate argument.
  const double yb = y < 30.0 ? y : 30.0;
  const double y16 = static_cast<double>(static_cast<int64_t>(16.0 * yb)) * 0.0625;
  const double del = (y - y16) * (y + y16);
  const double gauss = exp_d(-y16 * y16 - del);
  const double erfc_scaled = gauss * quotient;
  const double erfc_abs = y < 26.543 ? erfc_scaled : 0.0;  // erfc(|x|) for |x| > 0.46875
  // Only selects below: every candidate is computed above.
  const double erfc_small = 1.0 - quotient;
  const double erfc_negative = 2.0 - erfc_abs;
  const double erf_negative = erfc_abs - 1.0, erf_positive = 1.0 - erfc_abs;
  const bool negative = x < 0;
  const double big_c = negative ? erfc_negative : erfc_abs;
  const double big_e = negative ? erf_negative : erf_positive;
  const double result = complement ? (small ? erfc_small : big_c) : (small ? quotient : big_e);
  return x == x ? result : x;
}

inline double erfc_d(double x) { return erf_family(x, true); }
inline double erf_d(double x) { return erf_family(x, false); }

// tanh(x) = sign(x) (1 - e^(-2|x|)) / (1 + e^(-2|x|)); a series near 0, where the difference cancels.
inline double tanh_d(double x) {
  const double a = x < 0 ? -x : x;
  const double e = exp_d(-2.0 * a);
  const double far = (1.0 - e) / (1.0 + e);
  const double x2 = x * x;
  const double near = x * (1.0 - x2 * (1.0 / 3.0 - x2 * (2.0 / 15.0)));
  const double signed_far = x < 0 ? -far : far;
  return a < 1e-4 ? near : signed_far;
}

// 1 / (1 + e^(-x)), without overflow.
inline double sigmoid_d(double x) {
  const double e = exp_d(x < 0 ? x : -x);  // e^(-|x|) <= 1
  const double positive = 1.0 / (1.0 + e), negative = e / (1.0 + e);
  return x < 0 ? negative : positive;
}

}  // namespace ncd::cpu
