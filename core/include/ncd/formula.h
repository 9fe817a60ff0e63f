// Cost formulas: Poly extended with division and roots.
//
// The cost model states every figure as a formula in the axis sizes. Traffic
// under a schedule divides by tile sizes (`2*q*k*d/tile_q`), and the Napkin
// closed forms take roots of a level's capacity (`2*a*b*c/sqrt(M) + a*c`), so a
// Formula is a sum of terms `c * Π symbol^p` with rational powers p. Symbols are
// axis ids (>= 0, as in Poly) or pseudo-symbols (< 0) that the cost model names
// (tile sizes, stream chunks, the capacity M). Poly is left untouched; a Formula
// is built from one with from_poly().
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ncd/poly.h"

namespace ncd {

// A reduced fraction with a positive denominator.
struct Rational {
  int64_t num = 0;
  int64_t den = 1;

  Rational() = default;
  Rational(int64_t n, int64_t d = 1);
  Rational operator+(const Rational &other) const;
  Rational operator-() const { return Rational(-num, den); }
  Rational operator*(const Rational &other) const;
  bool operator==(const Rational &other) const { return num == other.num && den == other.den; }
  bool operator<(const Rational &other) const;
  double value() const { return static_cast<double>(num) / static_cast<double>(den); }
  bool is_integer() const { return den == 1; }
};

class Formula {
 public:
  using Monomial = std::vector<std::pair<int, Rational>>;  // (symbol, power), sorted by symbol, no zero powers

  Formula() = default;
  static Formula constant(double value);
  static Formula symbol(int id);
  static Formula from_poly(const Poly &poly);

  Formula operator+(const Formula &other) const;
  Formula operator-(const Formula &other) const;
  Formula operator*(const Formula &other) const;
  Formula &operator+=(const Formula &other) { return *this = *this + other; }
  Formula scaled(double factor) const;
  // A single term raised to a rational power; nullopt for sums of several terms
  // (or a negative coefficient under a root).
  std::optional<Formula> power(Rational exponent) const;
  // Division by a single term (always exact: powers may go negative).
  std::optional<Formula> divide(const Formula &divisor) const;

  bool operator==(const Formula &other) const;
  bool operator!=(const Formula &other) const { return !(*this == other); }
  bool is_zero() const { return terms_.empty(); }
  std::optional<double> constant_value() const;
  bool single_term() const { return terms_.size() == 1; }
  std::vector<int> symbols() const;
  // The power of `symbol` in a term (0 when absent).
  static Rational power_of(const Monomial &monomial, int symbol);

  // Replaces each symbol by a formula. A symbol with a non-integer or negative
  // power needs a single-term replacement; otherwise nullopt.
  std::optional<Formula> substitute(const std::function<Formula(int)> &value) const;
  std::optional<double> evaluate(const std::function<std::optional<double>(int)> &value) const;
  // Keeps the terms for which `keep` is true.
  Formula filter(const std::function<bool(const Monomial &, double)> &keep) const;

  // "4*q*k*d^2/M + 2*q*d", "2*a*b*c/sqrt(M) + a*c": highest degree first, then
  // by names; `^` for powers, `/` for negative powers, sqrt() for one half.
  std::string to_string(const std::function<std::string(int)> &name) const;

  const std::map<Monomial, double> &terms() const { return terms_; }

 private:
  void add_term(const Monomial &monomial, double coefficient);
  std::map<Monomial, double> terms_;
};

}  // namespace ncd
