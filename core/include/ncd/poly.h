// Symbolic sizes: polynomials in axis sizes with rational coefficients.
//
// Axis sizes stay symbolic until a verb needs numbers, so that shape checks can
// compare `heads * d` with `model`, and the cost model can state its figures as
// formulas in the axis sizes (4·q·k·d, …). A polynomial is a sum of monomials;
// a monomial is a product of axis ids raised to integer powers.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ncd {

class Poly {
 public:
  using Monomial = std::vector<std::pair<int, int>>;  // (axis id, power), sorted by id

  Poly() = default;
  static Poly constant(double value);
  static Poly axis(int id);

  Poly operator+(const Poly &other) const;
  Poly operator-(const Poly &other) const;
  Poly operator*(const Poly &other) const;
  // Exact division by a constant or a single monomial; nullopt when not exact.
  std::optional<Poly> divide(const Poly &divisor) const;

  bool operator==(const Poly &other) const { return terms_ == other.terms_; }
  bool operator!=(const Poly &other) const { return !(*this == other); }
  bool is_zero() const { return terms_.empty(); }
  std::optional<double> constant_value() const;
  // The axis ids that appear in the polynomial.
  std::vector<int> axes() const;
  // Substitutes each axis by a polynomial (for derived axes and call bindings).
  Poly substitute(const std::function<Poly(int)> &axis_value) const;
  // Evaluates with concrete sizes; nullopt when some axis has no size.
  std::optional<double> evaluate(const std::function<std::optional<double>(int)> &size) const;
  // "heads*d", "4*q*k*d + 2*q*d" with names from `name`; terms in a stable order.
  std::string to_string(const std::function<std::string(int)> &name) const;

  const std::map<Monomial, double> &terms() const { return terms_; }

 private:
  void add_term(const Monomial &monomial, double coefficient);
  std::map<Monomial, double> terms_;
};

// A size that no polynomial states: a quotient rounded down (`(t - kw) // stride
// + 1`, `floor(a / b)`) or up (`ceil(a / b)`), and sums and products with it.
// An axis with a formula is its own symbol to every polynomial (its size is not
// a polynomial of the others); the formula gives its size wherever the sizes it
// reads are known: after -D, and inside a call at the sizes bound there.
class SizeFormula {
 public:
  enum class Kind { Leaf, Add, Sub, Mul, FloorDiv, CeilDiv };
  static std::shared_ptr<const SizeFormula> leaf(Poly poly);
  static std::shared_ptr<const SizeFormula> node(Kind kind, std::shared_ptr<const SizeFormula> lhs,
                                                 std::shared_ptr<const SizeFormula> rhs);
  Kind kind() const { return kind_; }
  const Poly &poly() const { return poly_; }
  // nullopt when some size is unknown or a divisor is not a positive integer.
  std::optional<double> evaluate(const std::function<std::optional<double>(int)> &size) const;
  std::vector<int> axes() const;
  // Source text (`(t - kw) // stride + 1`, `ceil(n / block)`), each polynomial printed by `poly_text`;
  // parentheses where precedence needs them.
  std::string to_string(const std::function<std::string(const Poly &)> &poly_text) const;
  SizeFormula substitute(const std::function<Poly(int)> &axis_value) const;

 private:
  Kind kind_ = Kind::Leaf;
  Poly poly_;
  std::shared_ptr<const SizeFormula> lhs_, rhs_;
};

}  // namespace ncd
