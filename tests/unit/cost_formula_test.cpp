// Formula: the symbolic figures of the cost model.
#include <gtest/gtest.h>

#include "ncd/formula.h"

namespace ncd {
namespace {

// Symbols: axes in declaration order (0 q, 1 k, 2 d, 3 a, 4 b, 5 c); -1 M.
enum { q, k, d, a, b, c };
std::string name(int symbol) {
  static const char *names[] = {"q", "k", "d", "a", "b", "c"};
  if (symbol == -1) return "M";
  if (symbol == -7) return "tile_q";
  return names[symbol];
}

Formula s(int id) { return Formula::symbol(id); }

TEST(CostFormula, PrintsPowersRootsAndDenominators) {
  Formula matmul = (s(a) * s(b) * s(c)).scaled(2) * *s(-1).power(Rational(-1, 2)) + s(a) * s(c);
  EXPECT_EQ(matmul.to_string(name), "2*a*b*c/sqrt(M) + a*c");
  Formula attention = (s(q) * s(k) * s(d) * s(d)).scaled(4) * *s(-1).power(Rational(-1)) + (s(q) * s(d)).scaled(2);
  EXPECT_EQ(attention.to_string(name), "4*q*k*d^2/M + 2*q*d");
  EXPECT_EQ(s(-1).scaled(0.5).divide(s(d))->to_string(name), "M/(2*d)");
  EXPECT_EQ(s(-1).power(Rational(1, 3))->to_string(name), "M^(1/3)");
  EXPECT_EQ((s(q) * s(k)).divide(s(-7) * s(d))->to_string(name), "q*k/(d*tile_q)");
  EXPECT_EQ(Formula().to_string(name), "0");
  EXPECT_EQ((s(a) - s(a)).to_string(name), "0");
  EXPECT_EQ((s(a).scaled(-3) + Formula::constant(1)).to_string(name), "-3*a + 1");
}

TEST(CostFormula, EvaluatesAndSubstitutes) {
  Formula f = (s(a) * s(b)).scaled(2) * *s(-1).power(Rational(-1, 2));
  auto value = f.evaluate([](int symbol) -> std::optional<double> { return symbol == -1 ? 16.0 : 3.0; });
  ASSERT_TRUE(value);
  EXPECT_DOUBLE_EQ(*value, 2 * 3 * 3 / 4.0);
  // A root of a single term substitutes; a root of a sum does not.
  auto square = f.substitute([](int symbol) { return symbol == -1 ? Formula::symbol(c) * Formula::symbol(c) : Formula::symbol(symbol); });
  ASSERT_TRUE(square);
  EXPECT_EQ(square->to_string(name), "2*a*b/c");
  EXPECT_FALSE(f.substitute([](int symbol) { return symbol == -1 ? s(c) + s(d) : s(symbol); }));
  EXPECT_FALSE((s(a) + s(b)).power(Rational(1, 2)));
}

TEST(CostFormula, FromPolyKeepsTerms) {
  Poly poly = Poly::axis(a) * Poly::axis(b) * Poly::constant(4) + Poly::constant(1);
  EXPECT_EQ(Formula::from_poly(poly).to_string(name), "4*a*b + 1");
  EXPECT_EQ(Formula::from_poly(poly), s(a) * s(b) * Formula::constant(4) + Formula::constant(1));
}

TEST(CostFormula, RationalArithmetic) {
  EXPECT_EQ(Rational(2, 4), Rational(1, 2));
  EXPECT_EQ(Rational(1, 2) + Rational(1, 3), Rational(5, 6));
  EXPECT_EQ(Rational(-2, -4), Rational(1, 2));
  EXPECT_TRUE(Rational(1, 3) < Rational(1, 2));
}

}  // namespace
}  // namespace ncd
