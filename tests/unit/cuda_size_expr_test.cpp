// Sz: the sizes and strides of generated CUDA code (backends/cuda/size_expr.h),
// constants or polynomials in runtime sizes. Facts the code relies on must be
// exact for every runtime size; only hint() may use the planning value.
#include <gtest/gtest.h>

#include "size_expr.h"

namespace ncd::cuda::detail {
namespace {

const Sz seq = Sz::symbol("ncd_n.seq", 2048), batch = Sz::symbol("ncd_n.batch", 8);

TEST(CudaSizeExpr, ConstantsPrintAsDigits) {
  EXPECT_EQ(Sz(128).code(), "128");
  EXPECT_EQ(Sz().code(), "0");
  EXPECT_EQ(Sz(-3).code(), "-3");
  EXPECT_TRUE(Sz(5).known());
  EXPECT_EQ(*Sz(5).constant(), 5);
  EXPECT_EQ(*(Sz(6) * Sz(7) + Sz(1)).constant(), 43);
}

TEST(CudaSizeExpr, RuntimeSizesPrintAsExpressions) {
  EXPECT_EQ(seq.code(), "ncd_n.seq");
  EXPECT_FALSE(seq.known());
  EXPECT_FALSE(seq.constant().has_value());
  EXPECT_EQ((seq * Sz(64)).code(), "(64 * ncd_n.seq)");
  // Factors are ordered, so the same product prints the same whatever the order it was built in.
  EXPECT_EQ((seq * batch * Sz(2)).code(), (Sz(2) * batch * seq).code());
  EXPECT_EQ((seq * batch * Sz(2)).code(), "(2 * ncd_n.batch * ncd_n.seq)");
  EXPECT_EQ((seq + Sz(1)).code(), "(1 + ncd_n.seq)");
  EXPECT_EQ((seq - Sz(1)).code(), "(-1 + ncd_n.seq)");
  EXPECT_EQ((seq * seq).code(), "(ncd_n.seq * ncd_n.seq)");
}

TEST(CudaSizeExpr, EqualityIsExact) {
  EXPECT_EQ(seq * Sz(64), Sz(64) * seq);
  EXPECT_NE(seq, Sz(2048));  // the planning value is not the size
  EXPECT_NE(seq * Sz(1), Sz(1) * batch);
  EXPECT_EQ(seq - seq, Sz(0));
  EXPECT_TRUE((seq - seq).known());
  EXPECT_NE(seq, Sz(0));  // a runtime size is at least 1: a stride over it is never 0
}

TEST(CudaSizeExpr, MultipleOfHoldsForEverySize) {
  EXPECT_TRUE((seq * Sz(64)).multiple_of(8));
  EXPECT_TRUE((seq * Sz(64) + Sz(128)).multiple_of(8));
  EXPECT_FALSE(seq.multiple_of(8));  // true for seq = 2048, not for seq = 1000 + 1
  EXPECT_FALSE((seq * Sz(64) + Sz(4)).multiple_of(8));
  EXPECT_TRUE(Sz(0).multiple_of(8));
  EXPECT_TRUE(Sz(256).multiple_of(256));
}

TEST(CudaSizeExpr, HintIsThePlanningValue) {
  EXPECT_EQ(seq.hint(), 2048);
  EXPECT_EQ((seq * batch + Sz(3)).hint(), 2048 * 8 + 3);
  EXPECT_EQ(Sz(42).hint(), 42);
}

}  // namespace
}  // namespace ncd::cuda::detail
