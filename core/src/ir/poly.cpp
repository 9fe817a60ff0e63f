// Poly: arithmetic, substitution and printing of symbolic sizes.
#include "ncd/poly.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace ncd {

Poly Poly::constant(double value) {
  Poly out;
  out.add_term({}, value);
  return out;
}

Poly Poly::axis(int id) {
  Poly out;
  out.add_term({{id, 1}}, 1.0);
  return out;
}

void Poly::add_term(const Monomial &monomial, double coefficient) {
  double &slot = terms_[monomial];
  slot += coefficient;
  if (std::fabs(slot) < 1e-12) terms_.erase(monomial);
}

Poly Poly::operator+(const Poly &other) const {
  Poly out = *this;
  for (const auto &[monomial, coefficient] : other.terms_) out.add_term(monomial, coefficient);
  return out;
}

Poly Poly::operator-(const Poly &other) const {
  Poly out = *this;
  for (const auto &[monomial, coefficient] : other.terms_) out.add_term(monomial, -coefficient);
  return out;
}

namespace {

Poly::Monomial multiply(const Poly::Monomial &a, const Poly::Monomial &b) {
  std::map<int, int> powers;
  for (auto [axis, power] : a) powers[axis] += power;
  for (auto [axis, power] : b) powers[axis] += power;
  Poly::Monomial out;
  for (auto [axis, power] : powers)
    if (power != 0) out.push_back({axis, power});
  return out;
}

}  // namespace

Poly Poly::operator*(const Poly &other) const {
  Poly out;
  for (const auto &[a, ca] : terms_)
    for (const auto &[b, cb] : other.terms_) out.add_term(multiply(a, b), ca * cb);
  return out;
}

std::optional<Poly> Poly::divide(const Poly &divisor) const {
  if (divisor.terms_.size() != 1) return std::nullopt;
  const auto &[monomial, coefficient] = *divisor.terms_.begin();
  Monomial inverse;
  for (auto [axis, power] : monomial) inverse.push_back({axis, -power});
  Poly out;
  for (const auto &[term, c] : terms_) {
    Monomial quotient = multiply(term, inverse);
    for (auto [axis, power] : quotient)
      if (power < 0) return std::nullopt;
    out.add_term(quotient, c / coefficient);
  }
  return out;
}

std::optional<double> Poly::constant_value() const {
  if (terms_.empty()) return 0.0;
  if (terms_.size() == 1 && terms_.begin()->first.empty()) return terms_.begin()->second;
  return std::nullopt;
}

std::vector<int> Poly::axes() const {
  std::set<int> ids;
  for (const auto &[monomial, coefficient] : terms_)
    for (auto [axis, power] : monomial) ids.insert(axis);
  return {ids.begin(), ids.end()};
}

Poly Poly::substitute(const std::function<Poly(int)> &axis_value) const {
  Poly out;
  for (const auto &[monomial, coefficient] : terms_) {
    Poly term = constant(coefficient);
    for (auto [axis, power] : monomial)
      for (int i = 0; i < power; ++i) term = term * axis_value(axis);
    out = out + term;
  }
  return out;
}

std::optional<double> Poly::evaluate(const std::function<std::optional<double>(int)> &size) const {
  double total = 0;
  for (const auto &[monomial, coefficient] : terms_) {
    double term = coefficient;
    for (auto [axis, power] : monomial) {
      auto value = size(axis);
      if (!value) return std::nullopt;
      term *= std::pow(*value, power);
    }
    total += term;
  }
  return total;
}

namespace {

std::string format_number(double value) {
  if (std::fabs(value - std::round(value)) < 1e-9 && std::fabs(value) < 1e15) {
    std::ostringstream out;
    out << static_cast<long long>(std::llround(value));
    return out.str();
  }
  std::ostringstream out;
  out.precision(6);
  out << value;
  return out.str();
}

}  // namespace

std::string Poly::to_string(const std::function<std::string(int)> &name) const {
  if (terms_.empty()) return "0";
  // Highest degree first, then by names, so printing is stable and reads naturally.
  struct Term {
    int degree;
    std::string factors;
    double coefficient;
  };
  std::vector<Term> ordered;
  for (const auto &[monomial, coefficient] : terms_) {
    int degree = 0;
    std::string factors;
    for (auto [axis, power] : monomial) {
      degree += power;
      for (int i = 0; i < power; ++i) factors += (factors.empty() ? "" : "*") + name(axis);
    }
    ordered.push_back({degree, factors, coefficient});
  }
  std::stable_sort(ordered.begin(), ordered.end(), [](const Term &a, const Term &b) {
    if (a.degree != b.degree) return a.degree > b.degree;
    return a.factors < b.factors;
  });
  std::string out;
  for (size_t i = 0; i < ordered.size(); ++i) {
    double coefficient = ordered[i].coefficient;
    bool negative = coefficient < 0;
    if (i == 0)
      out += negative ? "-" : "";
    else
      out += negative ? " - " : " + ";
    double magnitude = std::fabs(coefficient);
    if (ordered[i].factors.empty()) {
      out += format_number(magnitude);
    } else {
      if (std::fabs(magnitude - 1) > 1e-12) out += format_number(magnitude) + "*";
      out += ordered[i].factors;
    }
  }
  return out;
}

// ---------------------------------------------------------------- formulas

std::shared_ptr<const SizeFormula> SizeFormula::leaf(Poly poly) {
  auto out = std::make_shared<SizeFormula>();
  out->poly_ = std::move(poly);
  return out;
}

std::shared_ptr<const SizeFormula> SizeFormula::node(Kind kind, std::shared_ptr<const SizeFormula> lhs,
                                                     std::shared_ptr<const SizeFormula> rhs) {
  auto out = std::make_shared<SizeFormula>();
  out->kind_ = kind;
  out->lhs_ = std::move(lhs);
  out->rhs_ = std::move(rhs);
  return out;
}

std::optional<double> SizeFormula::evaluate(const std::function<std::optional<double>(int)> &size) const {
  if (kind_ == Kind::Leaf) return poly_.evaluate(size);
  auto a = lhs_->evaluate(size);
  auto b = rhs_->evaluate(size);
  if (!a || !b) return std::nullopt;
  switch (kind_) {
    case Kind::Add: return *a + *b;
    case Kind::Sub: return *a - *b;
    case Kind::Mul: return *a * *b;
    case Kind::FloorDiv:
    case Kind::CeilDiv: {
      // Integer operands only: the quotient of sizes, rounded; a divisor below 1 has none.
      if (*b < 1 || *a != std::floor(*a) || *b != std::floor(*b)) return std::nullopt;
      double q = std::floor(*a / *b);
      if (kind_ == Kind::CeilDiv && q * *b != *a) q += 1;
      return q;
    }
    case Kind::Leaf: break;
  }
  return std::nullopt;
}

std::vector<int> SizeFormula::axes() const {
  if (kind_ == Kind::Leaf) return poly_.axes();
  std::vector<int> out = lhs_->axes();
  for (int axis : rhs_->axes())
    if (std::find(out.begin(), out.end(), axis) == out.end()) out.push_back(axis);
  return out;
}

namespace {

// Binding strength for printing: sums 1, products and quotients 2, atoms 3.
int precedence(const SizeFormula &f) {
  switch (f.kind()) {
    case SizeFormula::Kind::Add:
    case SizeFormula::Kind::Sub: return 1;
    case SizeFormula::Kind::Mul:
    case SizeFormula::Kind::FloorDiv: return 2;
    case SizeFormula::Kind::CeilDiv: return 3;
    case SizeFormula::Kind::Leaf: break;
  }
  const auto &terms = f.poly().terms();
  if (terms.size() > 1) return 1;
  if (terms.empty()) return 3;
  const auto &[monomial, coefficient] = *terms.begin();
  size_t factors = (coefficient != 1 ? 1 : 0);
  for (const auto &[axis, power] : monomial) factors += static_cast<size_t>(power);
  return factors > 1 || coefficient < 0 ? 2 : 3;
}

}  // namespace

std::string SizeFormula::to_string(const std::function<std::string(const Poly &)> &poly_text) const {
  if (kind_ == Kind::Leaf) return poly_text(poly_);
  auto wrapped = [&](const SizeFormula &f, bool wrap) { return wrap ? "(" + f.to_string(poly_text) + ")" : f.to_string(poly_text); };
  const int mine = kind_ == Kind::CeilDiv ? 2 : precedence(*this);
  const std::string left = wrapped(*lhs_, precedence(*lhs_) < mine);
  // The right operand of - and // (not associative), or of another kind of the same strength, keeps its parentheses.
  const bool right_wrap = precedence(*rhs_) < mine ||
                          (precedence(*rhs_) == mine && (kind_ == Kind::Sub || kind_ == Kind::FloorDiv ||
                                                         kind_ == Kind::CeilDiv || rhs_->kind_ != kind_));
  const std::string right = wrapped(*rhs_, right_wrap);
  switch (kind_) {
    case Kind::Add: return left + " + " + right;
    case Kind::Sub: return left + " - " + right;
    case Kind::Mul: return left + " * " + right;
    case Kind::FloorDiv: return left + " // " + right;
    case Kind::CeilDiv: return "ceil(" + left + " / " + right + ")";
    case Kind::Leaf: break;
  }
  return "";
}

SizeFormula SizeFormula::substitute(const std::function<Poly(int)> &axis_value) const {
  SizeFormula out;
  out.kind_ = kind_;
  if (kind_ == Kind::Leaf) {
    out.poly_ = poly_.substitute(axis_value);
  } else {
    out.lhs_ = std::make_shared<SizeFormula>(lhs_->substitute(axis_value));
    out.rhs_ = std::make_shared<SizeFormula>(rhs_->substitute(axis_value));
  }
  return out;
}

}  // namespace ncd
