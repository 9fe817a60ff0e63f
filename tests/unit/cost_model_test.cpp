// The unfused baseline: FLOPs, bytes, roofline, energy, calls and repeats.
#include <gtest/gtest.h>

#include "cost_support.h"

namespace ncd {
namespace {

using cost_test::compile;

struct Priced {
  std::unique_ptr<cost_test::Compiled> compiled;
  std::optional<HardwareProfile> hardware;
  std::optional<CostReport> report;
  std::string messages;
};

Priced price_text(const std::string &text, const std::string &diagram, const std::string &yaml = cost_test::gpu_yaml(228 * 1024),
                  CostOptions options = {}) {
  Priced out;
  out.compiled = compile(text);
  if (!out.compiled->ok) {
    out.messages = out.compiled->messages();
    return out;
  }
  out.hardware = cost_test::profile(*out.compiled, yaml);
  if (out.hardware)
    out.report = price(out.compiled->compilation->program, out.compiled->diagram(diagram), *out.hardware,
                       out.compiled->compilation->diagnostics, options);
  out.messages = out.compiled->messages();
  return out;
}

TEST(CostModel, MatmulFlopsAreExactly2abc) {
  for (auto [a, b, c] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {3, 5, 7}, {128, 256, 512}, {4096, 4096, 4096}, {1000, 3, 77}}) {
    auto priced = price_text(cost_test::matmul_source(a, b, c, ""), "MatMul");
    ASSERT_TRUE(priced.report) << priced.messages;
    EXPECT_EQ(priced.report->total.flops.value, 2.0 * a * b * c);
    EXPECT_EQ(priced.report->text(priced.report->total.flops.formula), "2*a*b*c");
    // Unfused: read A and B, write C, 2 bytes each (bf16).
    EXPECT_EQ(priced.report->total.traffic[0].read.value, 2.0 * (a * b + b * c));
    EXPECT_EQ(priced.report->total.traffic[0].write.value, 2.0 * a * c);
    EXPECT_EQ(priced.report->text(priced.report->total.traffic[0].read.formula), "2*a*b + 2*b*c");
  }
}

TEST(CostModel, AttentionFlopsFollowTheDocumentedFormula) {
  auto priced = price_text(cost_test::attention_source(4096, 4096, 64, ""), "Attention");
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  // QK^T: 2qkd + qk (the scale); softmax: 5 per element + 1 per row; PV: 2qkd; rsqrt of #d: 1.
  EXPECT_EQ(r.text(r.total.flops.formula), "4*q*k*d + 6*q*k + q + 1");
  EXPECT_EQ(r.total.flops.value, 4.0 * 4096 * 4096 * 64 + 6.0 * 4096 * 4096 + 4096 + 1);
  ASSERT_EQ(r.ops.size(), 4u);
  EXPECT_EQ(r.text(r.ops[1].flops.formula), "2*q*k*d + q*k");
  EXPECT_EQ(r.text(r.ops[2].flops.formula), "5*q*k + q");
  EXPECT_EQ(r.text(r.ops[3].flops.formula), "2*q*k*d");
  // S is f32 (4 bytes), P bf16.
  EXPECT_EQ(r.text(r.ops[1].traffic[0].write.formula), "4*q*k");
  EXPECT_EQ(r.text(r.ops[2].traffic[0].read.formula), "4*q*k");
  EXPECT_EQ(r.text(r.ops[2].traffic[0].write.formula), "2*q*k");
  EXPECT_EQ(r.ops[1].unit, "tensor bf16");
  EXPECT_EQ(r.ops[2].unit, "vector f32");
}

TEST(CostModel, ElementwiseReductionAndNormalisationCosts) {
  const std::string text =
      "axis s = 8, m = 16\n"
      "diagram F(X[s, m]) -> (A[s, m], B[s], C[s], D[s, m], E[s, m], G[s]) {\n"
      "  A[s, m] = gelu(X[s, m])\n"
      "  B[s] = sum[m](X[s, m])\n"
      "  C[s] = mean[m](X[s, m])\n"
      "  D[s, m] = layernorm[m](X[s, m])\n"
      "  E[s, m] = rmsnorm[m](X[s, m])\n"
      "  G[s] = logsumexp[m](X[s, m])\n"
      "}\n";
  auto priced = price_text(text, "F");
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  std::map<std::string, std::string> flops;
  for (const OpCost &op : r.ops) flops[op.name] = r.text(op.flops.formula);
  EXPECT_EQ(flops["A"], "8*s*m");
  EXPECT_EQ(flops["B"], "s*m");
  EXPECT_EQ(flops["C"], "s*m + s");
  EXPECT_EQ(flops["D"], "5*s*m + 4*s");
  EXPECT_EQ(flops["E"], "3*s*m + 3*s");
  EXPECT_EQ(flops["G"], "4*s*m + 2*s");
}

// Every pointwise function the language calls by name costs its op table
// row's FLOPs per element: a new row is priced with no change here.
// A scan costs its row's FLOPs per result element: the sequential recurrence's work.
TEST(CostModel, ScanFlopsArePerResultElement) {
  auto priced = price_text(
      "axis l = 8, d = 16\ndiagram F(X[l, d], A[l]) -> (C[l, d], M[l, d], H[l, d]) {\n"
      "  C[l, d] = cumsum[l](X)\n  M[l, d] = cummax[l](X)\n  H[l, d] = scan[l](A, X)\n}\n",
      "F");
  ASSERT_TRUE(priced.report) << priced.messages;
  std::map<std::string, double> flops;
  for (const OpCost &op : priced.report->ops) flops[op.name] = op.flops.value;
  EXPECT_EQ(flops["C"], ops::info(ops::Fn::CumSum).flops * 8 * 16);
  EXPECT_EQ(flops["M"], 8.0 * 16);
  EXPECT_EQ(flops["H"], 2.0 * 8 * 16);
}

TEST(CostModel, PointwiseFlopsComeFromTheOpTable) {
  std::string outputs, body;
  std::map<std::string, double> expected;
  for (const ops::Info &row : ops::all()) {
    if (row.kind != ops::Kind::Elementwise || row.syntax != ops::Syntax::Call) continue;
    std::string name = "O_" + std::string(row.name);
    const char *arguments = row.arity == 1 ? "X" : row.arity == 2 ? "X, P" : "X > P, X, P";
    // quantize belongs in an integer statement (its saturation): computed into an f32 temporary, then converted.
    const bool integer = row.fn == ops::Fn::Quantize;
    outputs += (outputs.empty() ? "" : ", ") + name + "[s, m]" + (integer ? ": i32" : "");
    body += "  " + name + "[s, m] = " + std::string(row.name) + "(" + arguments + ")\n";
    expected[name] = row.flops * 8 * 16;
  }
  ASSERT_TRUE(expected.count("O_round"));
  auto priced = price_text("axis s = 8, m = 16\ndiagram F(X[s, m], P[s, m]) -> (" + outputs + ") {\n" + body + "}\n", "F");
  ASSERT_TRUE(priced.report) << priced.messages;
  std::map<std::string, double> flops;
  double quantize = 0;
  for (const OpCost &op : priced.report->ops) {
    flops[op.name] = op.flops.value;
    if (op.what == "elementwise quantize") quantize = op.flops.value;
  }
  flops["O_quantize"] = quantize;
  for (const auto &[name, value] : expected) EXPECT_EQ(flops[name], value) << name;
  EXPECT_EQ(flops["O_round"], 8.0 * 16);
  EXPECT_EQ(flops["O_quantize"], 3.0 * 8 * 16);
}

TEST(CostModel, RooflineBoundAndEnergy) {
  auto priced = price_text(cost_test::matmul_source(4096, 4096, 4096, ""), "MatMul");
  ASSERT_TRUE(priced.report) << priced.messages;
  const OpCost &op = priced.report->ops[0];
  double flops = 2.0 * 4096 * 4096 * 4096, bytes = 3.0 * 2 * 4096 * 4096;
  EXPECT_DOUBLE_EQ(op.intensity, flops / bytes);
  EXPECT_EQ(op.bound, "compute");
  EXPECT_DOUBLE_EQ(op.time, flops / 1e15);
  // Energy: FLOPs at 0.2 pJ, and the bytes at each level (30 pJ/B hbm, 1 pJ/B smem).
  EXPECT_NEAR(priced.report->energy.total, flops * 0.2e-12 + bytes * 31e-12, 1e-9);
  const Energy &e = priced.report->energy;
  EXPECT_NEAR(e.erased_bits, flops * 16, 1);
  EXPECT_NEAR(e.landauer, flops * 16 * 1.380649e-23 * 300 * std::log(2.0), 1e-15);
  EXPECT_NEAR(e.ratio, e.total / e.landauer, 1e-6 * e.ratio);
  // A small matmul is memory-bound.
  auto small = price_text(cost_test::matmul_source(64, 64, 64, ""), "MatMul");
  ASSERT_TRUE(small.report);
  EXPECT_EQ(small.report->ops[0].bound, "hbm");
}

TEST(CostModel, CallsPriceTheCalleeWithItsBindingsAndLiftedAxes) {
  const std::string text =
      "axis s = 256, h = 4, d = 32\n"
      "default dtype bf16\n"
      "diagram Attention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {\n"
      "  axis q = 128, k = 128\n"
      "  S[q, k] = Q[q, d] * K[k, d]\n"
      "  O[q, d] = softmax[k](S[q, k]) * V[k, d]\n"
      "}\n"
      "diagram Multi(Q[s, h, d], K[s, h, d], V[s, h, d]) -> O[s, h, d] {\n"
      "  O[s, h, d] = Attention[q = s, k = s](Q, K, V)\n"
      "}\n";
  auto priced = price_text(text, "Multi", cost_test::gpu_yaml(228 * 1024), CostOptions{});
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  ASSERT_EQ(r.ops.size(), 1u);
  // The callee's q and k both take s's size; the call is lifted over h.
  EXPECT_EQ(r.text(r.total.flops.formula), "4*s^2*h*d + 5*s^2*h + s*h");
  EXPECT_EQ(r.total.flops.value, 4.0 * 256 * 256 * 4 * 32 + 5.0 * 256 * 256 * 4 + 256 * 4);
  EXPECT_EQ(r.ops[0].what, "call Attention[q = s, k = s] over h");
  EXPECT_EQ(r.ops[0].children.size(), 3u);
}

TEST(CostModel, RepeatMultipliesItsBody) {
  const std::string text =
      "axis s = 64, m = 32\n"
      "diagram R(X[s, m]) -> Y[s, m] {\n"
      "  H[s, m] = X[s, m]\n"
      "  repeat 12 {\n"
      "    param W[m, n]\n"
      "    axis n = 32\n"
      "    H[s, m] = H[s, n] * W[n, m]\n"
      "  }\n"
      "  Y[s, m] = H[s, m]\n"
      "}\n";
  auto priced = price_text(text, "R");
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  const OpCost *repeat = nullptr;
  for (const OpCost &op : r.ops)
    if (op.what == "repeat 12") repeat = &op;
  ASSERT_TRUE(repeat) << format_report(r, priced.compiled->compilation->sources);
  EXPECT_EQ(repeat->flops.value, 12.0 * 2 * 64 * 32 * 32);
}

TEST(CostModel, ConvolutionReadsItsInputOnce) {
  const std::string text =
      "axis x = 30, i = 3, c = 8, o = 16\n"
      "axis h = x + i - 1\n"
      "diagram Conv(X[h, c]) -> Y[x, o] {\n"
      "  param W[i, c, o]\n"
      "  Y[x, o] = X[x + i, c] * W[i, c, o]\n"
      "}\n";
  auto priced = price_text(text, "Conv");
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  EXPECT_EQ(r.text(r.total.flops.formula), "2*x*i*c*o");
  // The sliding window touches all of X (h*c), not x*i*c elements.
  EXPECT_EQ(r.text(r.total.traffic[0].read.formula), "4*i*c*o + 4*c*h");
}

TEST(CostModel, GatherReadsOnlyTheRowsItIndexes) {
  const std::string text =
      "axis s = 16, vocab = 50000, m = 64\n"
      "diagram E(tokens[s]: i32) -> Y[s, m] {\n"
      "  param table[vocab, m]\n"
      "  Y[s, m] = table[tokens[s], m] * 2\n"
      "}\n";
  auto priced = price_text(text, "E");
  ASSERT_TRUE(priced.report) << priced.messages;
  const CostReport &r = *priced.report;
  EXPECT_EQ(r.text(r.total.traffic[0].read.formula), "4*s*m + 4*s");
}

TEST(CostModel, MissingSizeIsALocatedError) {
  auto priced = price_text("axis a, b = 4\ndiagram D(X[a, b]) -> Y[a] {\n  Y[a] = sum[b](X[a, b])\n}\n", "D");
  EXPECT_FALSE(priced.report);
  EXPECT_NE(priced.messages.find(":1:6: error: axis 'a' has no size; ncd cost needs every size: give one with -D a=N"),
            std::string::npos)
      << priced.messages;
}

}  // namespace
}  // namespace ncd
