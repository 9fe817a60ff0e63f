// Formula: arithmetic, substitution and printing of cost formulas.
#include "ncd/formula.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sstream>

namespace ncd {

Rational::Rational(int64_t n, int64_t d) {
  if (d == 0) d = 1;
  if (d < 0) n = -n, d = -d;
  int64_t g = std::gcd(n < 0 ? -n : n, d);
  if (g == 0) g = 1;
  num = n / g;
  den = d / g;
}

Rational Rational::operator+(const Rational &other) const {
  return Rational(num * other.den + other.num * den, den * other.den);
}

Rational Rational::operator*(const Rational &other) const { return Rational(num * other.num, den * other.den); }

bool Rational::operator<(const Rational &other) const { return num * other.den < other.num * den; }

Formula Formula::constant(double value) {
  Formula out;
  out.add_term({}, value);
  return out;
}

Formula Formula::symbol(int id) {
  Formula out;
  out.add_term({{id, Rational(1)}}, 1.0);
  return out;
}

Formula Formula::from_poly(const Poly &poly) {
  Formula out;
  for (const auto &[monomial, coefficient] : poly.terms()) {
    Monomial m;
    for (auto [axis, power] : monomial) m.push_back({axis, Rational(power)});
    out.add_term(m, coefficient);
  }
  return out;
}

void Formula::add_term(const Monomial &monomial, double coefficient) {
  if (coefficient == 0) return;
  double &slot = terms_[monomial];
  double before = slot;
  slot += coefficient;
  // Cancellation to (relative) rounding noise removes the term.
  double scale = std::max(std::fabs(before), std::fabs(coefficient));
  if (std::fabs(slot) <= 1e-12 * scale || slot == 0) terms_.erase(monomial);
}

Formula Formula::operator+(const Formula &other) const {
  Formula out = *this;
  for (const auto &[monomial, coefficient] : other.terms_) out.add_term(monomial, coefficient);
  return out;
}

Formula Formula::operator-(const Formula &other) const {
  Formula out = *this;
  for (const auto &[monomial, coefficient] : other.terms_) out.add_term(monomial, -coefficient);
  return out;
}

namespace {

Formula::Monomial multiply(const Formula::Monomial &a, const Formula::Monomial &b) {
  std::map<int, Rational> powers;
  for (const auto &[symbol, power] : a) powers[symbol] = powers[symbol] + power;
  for (const auto &[symbol, power] : b) powers[symbol] = powers[symbol] + power;
  Formula::Monomial out;
  for (const auto &[symbol, power] : powers)
    if (power.num != 0) out.push_back({symbol, power});
  return out;
}

}  // namespace

Formula Formula::operator*(const Formula &other) const {
  Formula out;
  for (const auto &[a, ca] : terms_)
    for (const auto &[b, cb] : other.terms_) out.add_term(multiply(a, b), ca * cb);
  return out;
}

Formula Formula::scaled(double factor) const {
  Formula out;
  for (const auto &[monomial, coefficient] : terms_) out.add_term(monomial, coefficient * factor);
  return out;
}

std::optional<Formula> Formula::power(Rational exponent) const {
  if (terms_.empty()) return exponent.num > 0 ? std::optional<Formula>(Formula()) : std::nullopt;
  if (terms_.size() != 1) return std::nullopt;
  const auto &[monomial, coefficient] = *terms_.begin();
  if (coefficient < 0 && !exponent.is_integer()) return std::nullopt;
  Monomial m;
  for (const auto &[symbol, power] : monomial) {
    Rational p = power * exponent;
    if (p.num != 0) m.push_back({symbol, p});
  }
  Formula out;
  out.add_term(m, std::pow(coefficient, exponent.value()));
  return out;
}

std::optional<Formula> Formula::divide(const Formula &divisor) const {
  if (divisor.terms_.size() != 1) return std::nullopt;
  auto inverse = divisor.power(Rational(-1));
  if (!inverse) return std::nullopt;
  return *this * *inverse;
}

bool Formula::operator==(const Formula &other) const {
  if (terms_.size() != other.terms_.size()) return false;
  auto a = terms_.begin();
  auto b = other.terms_.begin();
  for (; a != terms_.end(); ++a, ++b) {
    if (a->first != b->first) return false;
    double scale = std::max(std::fabs(a->second), std::fabs(b->second));
    if (std::fabs(a->second - b->second) > 1e-9 * scale) return false;
  }
  return true;
}

std::optional<double> Formula::constant_value() const {
  if (terms_.empty()) return 0.0;
  if (terms_.size() == 1 && terms_.begin()->first.empty()) return terms_.begin()->second;
  return std::nullopt;
}

std::vector<int> Formula::symbols() const {
  std::set<int> ids;
  for (const auto &[monomial, coefficient] : terms_)
    for (const auto &[symbol, power] : monomial) ids.insert(symbol);
  return {ids.begin(), ids.end()};
}

Rational Formula::power_of(const Monomial &monomial, int symbol) {
  for (const auto &[s, p] : monomial)
    if (s == symbol) return p;
  return Rational(0);
}

std::optional<Formula> Formula::substitute(const std::function<Formula(int)> &value) const {
  Formula out;
  for (const auto &[monomial, coefficient] : terms_) {
    Formula term = constant(coefficient);
    for (const auto &[symbol, power] : monomial) {
      Formula replacement = value(symbol);
      if (power.is_integer() && power.num > 0) {
        for (int64_t i = 0; i < power.num; ++i) term = term * replacement;
      } else {
        auto raised = replacement.power(power);
        if (!raised) return std::nullopt;
        term = term * *raised;
      }
    }
    out = out + term;
  }
  return out;
}

std::optional<double> Formula::evaluate(const std::function<std::optional<double>(int)> &value) const {
  double total = 0;
  for (const auto &[monomial, coefficient] : terms_) {
    double term = coefficient;
    for (const auto &[symbol, power] : monomial) {
      auto v = value(symbol);
      if (!v) return std::nullopt;
      term *= power.is_integer() ? std::pow(*v, static_cast<double>(power.num)) : std::pow(*v, power.value());
    }
    total += term;
  }
  return total;
}

Formula Formula::filter(const std::function<bool(const Monomial &, double)> &keep) const {
  Formula out;
  for (const auto &[monomial, coefficient] : terms_)
    if (keep(monomial, coefficient)) out.add_term(monomial, coefficient);
  return out;
}

namespace {

std::string format_coefficient(double value) {
  if (std::fabs(value - std::round(value)) <= 1e-9 * std::fabs(value) && std::fabs(value) >= 0.5 && std::fabs(value) < 1e15) {
    std::ostringstream out;
    out << static_cast<long long>(std::llround(value));
    return out.str();
  }
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

std::string factor_text(const std::string &name, Rational power) {
  if (power == Rational(1)) return name;
  if (power == Rational(1, 2)) return "sqrt(" + name + ")";
  if (power.is_integer()) return name + "^" + std::to_string(power.num);
  return name + "^(" + std::to_string(power.num) + "/" + std::to_string(power.den) + ")";
}

}  // namespace

std::string Formula::to_string(const std::function<std::string(int)> &name) const {
  if (terms_.empty()) return "0";
  struct Term {
    double degree;
    std::string numerator, denominator;
    int denominator_factors;
    double coefficient;
  };
  // Axes (ids >= 0) in declaration order, then pseudo-symbols (ids < 0) by decreasing id.
  auto display_key = [](int symbol) -> long long { return symbol >= 0 ? symbol : (1LL << 40) - symbol; };
  std::vector<Term> ordered;
  for (const auto &[monomial, coefficient] : terms_) {
    Term term{0, "", "", 0, coefficient};
    std::vector<std::pair<int, Rational>> factors(monomial.begin(), monomial.end());
    std::stable_sort(factors.begin(), factors.end(),
                     [&](const auto &a, const auto &b) { return display_key(a.first) < display_key(b.first); });
    for (const auto &[symbol, power] : factors) {
      term.degree += power.value();
      if (power.num > 0) {
        term.numerator += (term.numerator.empty() ? "" : "*") + factor_text(name(symbol), power);
      } else {
        term.denominator += (term.denominator.empty() ? "" : "*") + factor_text(name(symbol), -power);
        ++term.denominator_factors;
      }
    }
    // A coefficient 1/n (n a small integer) joins the denominator: q*k/(2*tile_q), M/(2*d).
    double magnitude = std::fabs(coefficient);
    double inverse = magnitude > 0 ? 1.0 / magnitude : 0;
    if (magnitude < 1 && inverse <= 1e6 && std::fabs(inverse - std::round(inverse)) < 1e-9 * inverse && !term.numerator.empty()) {
      term.denominator = format_coefficient(std::round(inverse)) + (term.denominator.empty() ? "" : "*" + term.denominator);
      ++term.denominator_factors;
      term.coefficient = coefficient < 0 ? -1.0 : 1.0;
    }
    ordered.push_back(term);
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](const Term &a, const Term &b) {
    if (a.degree != b.degree) return a.degree > b.degree;
    if (a.numerator != b.numerator) return a.numerator < b.numerator;
    return a.denominator < b.denominator;
  });
  std::string out;
  for (size_t i = 0; i < ordered.size(); ++i) {
    const Term &term = ordered[i];
    bool negative = term.coefficient < 0;
    out += i == 0 ? (negative ? "-" : "") : (negative ? " - " : " + ");
    double magnitude = std::fabs(term.coefficient);
    bool unit = std::fabs(magnitude - 1) < 1e-12;
    std::string text;
    if (term.numerator.empty())
      text = format_coefficient(magnitude);
    else
      text = (unit ? "" : format_coefficient(magnitude) + "*") + term.numerator;
    if (!term.denominator.empty())
      text += "/" + (term.denominator_factors > 1 ? "(" + term.denominator + ")" : term.denominator);
    out += text;
  }
  return out;
}

}  // namespace ncd
