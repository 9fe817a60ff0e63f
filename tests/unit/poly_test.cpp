// Poly: symbolic sizes (core/include/ncd/poly.h).
#include "ncd/poly.h"

#include <gtest/gtest.h>

#include <map>

namespace ncd {
namespace {

// Axis ids 0.. are named q, k, d, h, m in printing.
std::string name(int id) {
  static const char *names[] = {"q", "k", "d", "h", "m"};
  return id >= 0 && id < 5 ? names[id] : "a" + std::to_string(id);
}
std::string str(const Poly &p) { return p.to_string(name); }

const Poly q = Poly::axis(0), k = Poly::axis(1), d = Poly::axis(2), h = Poly::axis(3);
Poly c(double value) { return Poly::constant(value); }

TEST(Poly, DefaultIsZero) {
  Poly zero;
  EXPECT_TRUE(zero.is_zero());
  EXPECT_EQ(str(zero), "0");
  EXPECT_EQ(zero.constant_value(), 0.0);
  EXPECT_TRUE(zero.axes().empty());
}

TEST(Poly, ConstantsAndAxes) {
  EXPECT_EQ(str(c(64)), "64");
  EXPECT_EQ(c(64).constant_value(), 64.0);
  EXPECT_TRUE(c(0).is_zero());
  EXPECT_EQ(str(q), "q");
  EXPECT_FALSE(q.constant_value().has_value());
  EXPECT_EQ(q.axes(), std::vector<int>{0});
}

TEST(Poly, AdditionCollectsLikeTerms) {
  EXPECT_EQ(str(q + q), "2*q");
  // Terms of one degree print in name order: a stable order, not the written one.
  EXPECT_EQ(str(q + k + q), "k + 2*q");
  EXPECT_EQ(str(c(1) + c(2)), "3");
  EXPECT_EQ(q + k, k + q);
}

TEST(Poly, SubtractionCancels) {
  EXPECT_TRUE((q - q).is_zero());
  EXPECT_EQ(str(k - q), "k - q");
  EXPECT_EQ(str(q - k), "-k + q");
  EXPECT_EQ(str(c(0) - c(3)), "-3");
  EXPECT_EQ(str(q - c(1)), "q - 1");
  EXPECT_EQ(str(c(4) - q - c(1)), "-q + 3");
}

TEST(Poly, MultiplicationDistributes) {
  // Factors print in axis-id order, which is declaration order: d (2) before h (3).
  EXPECT_EQ(str(h * d), "d*h");
  EXPECT_EQ(h * d, d * h);
  EXPECT_EQ(str(q * q), "q*q");
  EXPECT_EQ(str((q + c(1)) * (q - c(1))), "q*q - 1");
  EXPECT_EQ(str(c(2) * q * k), "2*q*k");
  EXPECT_EQ(str((q + k) * d), "k*d + q*d");
  EXPECT_TRUE((q * c(0)).is_zero());
}

TEST(Poly, PrintsHighestDegreeFirst) {
  // The napkin formula for attention: 4*q*k*d + 2*q*d.
  Poly napkin = c(2) * q * d + c(4) * q * k * d;
  EXPECT_EQ(str(napkin), "4*q*k*d + 2*q*d");
  EXPECT_EQ(str(c(7) + q * k + q), "q*k + q + 7");
}

TEST(Poly, PrintsFractionalCoefficients) {
  EXPECT_EQ(str(c(0.5) * d), "0.5*d");
  EXPECT_EQ(str(c(0.25)), "0.25");
  EXPECT_EQ(str(c(-1.5) * q), "-1.5*q");
}

TEST(Poly, DividesByConstants) {
  auto half = d.divide(c(2));
  ASSERT_TRUE(half.has_value());
  EXPECT_EQ(str(*half), "0.5*d");
  auto six = c(12).divide(c(2));
  ASSERT_TRUE(six.has_value());
  EXPECT_EQ(six->constant_value(), 6.0);
}

TEST(Poly, DividesByMonomials) {
  Poly model = h * d;
  auto quotient = model.divide(h);
  ASSERT_TRUE(quotient.has_value());
  EXPECT_EQ(*quotient, d);
  auto scaled = (c(6) * q * k + c(3) * q).divide(c(3) * q);
  ASSERT_TRUE(scaled.has_value());
  EXPECT_EQ(str(*scaled), "2*k + 1");
}

TEST(Poly, RefusesInexactDivision) {
  EXPECT_FALSE(h.divide(k).has_value());          // would leave k^-1
  EXPECT_FALSE((h * d + q).divide(d).has_value());  // q/d is not a polynomial
  EXPECT_FALSE(q.divide(q + c(1)).has_value());   // divisor is not a single term
  EXPECT_FALSE(q.divide(Poly()).has_value());     // division by zero
}

TEST(Poly, ListsAxesSorted) {
  Poly p = d * q + k + c(3);
  EXPECT_EQ(p.axes(), (std::vector<int>{0, 1, 2}));
}

TEST(Poly, SubstitutesAxes) {
  // model = h * d with h := 2*k and d := q + 1.
  Poly model = h * d;
  Poly result = model.substitute([](int id) {
    if (id == 3) return Poly::constant(2) * Poly::axis(1);
    if (id == 2) return Poly::axis(0) + Poly::constant(1);
    return Poly::axis(id);
  });
  EXPECT_EQ(str(result), "2*q*k + 2*k");
  // Substituting an axis by itself changes nothing.
  EXPECT_EQ(model.substitute([](int id) { return Poly::axis(id); }), model);
  // Powers are substituted once per factor.
  EXPECT_EQ(str((q * q).substitute([](int) { return Poly::constant(3); })), "9");
}

TEST(Poly, Evaluates) {
  std::map<int, double> sizes{{0, 4096}, {1, 4096}, {2, 64}};
  auto size = [&](int id) -> std::optional<double> {
    auto it = sizes.find(id);
    return it == sizes.end() ? std::nullopt : std::optional<double>(it->second);
  };
  EXPECT_EQ((c(4) * q * k * d + c(2) * q * d).evaluate(size), 4.0 * 4096 * 4096 * 64 + 2.0 * 4096 * 64);
  EXPECT_EQ(c(5).evaluate(size), 5.0);
  EXPECT_EQ(Poly().evaluate(size), 0.0);
  EXPECT_FALSE((q * h).evaluate(size).has_value());  // h has no size
}

TEST(Poly, EqualityIsStructural) {
  EXPECT_EQ(h * d, d * h);
  EXPECT_NE(h * d, h + d);
  EXPECT_EQ(q + k - k, q);
  EXPECT_NE(q, k);
  EXPECT_EQ(c(2) * q, q + q);
}

TEST(Poly, TermsAreExposed) {
  Poly p = c(3) * q * q + c(2);
  ASSERT_EQ(p.terms().size(), 2u);
  Poly::Monomial squared{{0, 2}};
  ASSERT_TRUE(p.terms().count(squared));
  EXPECT_EQ(p.terms().at(squared), 3.0);
  EXPECT_EQ(p.terms().at({}), 2.0);
}

}  // namespace
}  // namespace ncd
