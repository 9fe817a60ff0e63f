// The Napkin model of schedules: the closed forms of the paper come out of the
// general model (reload multiplicities, square tiles of the best size), and
// illegal schedules are refused with located messages.
#include <gtest/gtest.h>

#include "cost_support.h"

namespace ncd {
namespace {

using cost_test::compile;

struct Kernel {
  std::unique_ptr<cost_test::Compiled> compiled;
  std::optional<HardwareProfile> hardware;
  std::optional<CostReport> report;
  std::string messages;
  std::string text(const Formula &f) const { return report->text(f); }
};

Kernel price_text(const std::string &text, const std::string &diagram, double smem_bytes) {
  Kernel out;
  out.compiled = compile(text);
  if (!out.compiled->ok) {
    out.messages = out.compiled->messages();
    return out;
  }
  out.hardware = cost_test::profile(*out.compiled, cost_test::gpu_yaml(smem_bytes));
  if (out.hardware)
    out.report = price(out.compiled->compilation->program, out.compiled->diagram(diagram), *out.hardware,
                       out.compiled->compilation->diagnostics);
  out.messages = out.compiled->messages();
  return out;
}


// -------------------------------------------------------------- matmul

struct MatmulCase {
  int64_t a, b, c, root_m;  // M = root_m^2 elements
};
const std::vector<MatmulCase> kMatmuls{
    {1024, 1024, 1024, 64}, {2048, 512, 4096, 128}, {4096, 4096, 4096, 256}, {768, 3072, 768, 64}, {1536, 1000, 2048, 32}, {512, 77, 256, 16}};

// The symbolic closed form: square tiles t = sqrt(M) give 2abc/sqrt(M) + ac.
TEST(CostNapkin, MatmulClosedFormIsDerivedFromTheModel) {
  for (const MatmulCase &m : kMatmuls) {
    double M = static_cast<double>(m.root_m * m.root_m);
    auto k = price_text(cost_test::matmul_source(m.a, m.b, m.c, "group a by 4\ngroup c by 4\nstream b by 1"), "MatMul", M * 2);
    ASSERT_TRUE(k.report) << k.messages;
    ASSERT_TRUE(k.report->kernel);
    const KernelCost &kernel = *k.report->kernel;
    ASSERT_TRUE(kernel.closed_form);
    EXPECT_EQ(k.text(*kernel.closed_form), "2*a*b*c/sqrt(M) + a*c");
    EXPECT_EQ(k.text(kernel.tile_for_m), "sqrt(M)");
    EXPECT_DOUBLE_EQ(kernel.capacity_elements, M);
    double closed = 2.0 * m.a * m.b * m.c / std::sqrt(M) + 1.0 * m.a * m.c;
    EXPECT_NEAR(kernel.closed_form_value, closed, 1e-9 * closed);
  }
}

// The model's traffic with square tiles of the best size for M is the closed form, exactly.
TEST(CostNapkin, MatmulTrafficWithSquareTilesOfTheBestSize) {
  for (const MatmulCase &m : kMatmuls) {
    double M = static_cast<double>(m.root_m * m.root_m);
    // Capacity for a t x t accumulator plus the two single-row chunks of A and B (bf16).
    double capacity = (M + 2.0 * m.root_m) * 2;
    auto k = price_text(cost_test::matmul_source(m.a, m.b, m.c, "group a by 8\ngroup c by 8\nstream b by 1"), "MatMul", capacity);
    ASSERT_TRUE(k.report) << k.messages;
    const KernelCost &kernel = *k.report->kernel;
    // The best square tiles that fit, minimising top-level traffic.
    auto best = best_tiles(kernel, *k.hardware, /*square=*/true, /*traffic=*/true);
    ASSERT_TRUE(best);
    ASSERT_EQ(best->tiles.size(), 2u);
    EXPECT_EQ(best->tiles[0].second, m.root_m) << m.a << "x" << m.b << "x" << m.c;
    EXPECT_EQ(best->tiles[1].second, m.root_m);
    double closed = 2.0 * m.a * m.b * m.c / std::sqrt(M) + 1.0 * m.a * m.c;
    EXPECT_DOUBLE_EQ(best->top_bytes / 2, closed);
    // And pricing that schedule directly gives the same traffic.
    std::string tiles = "group a by " + std::to_string(m.root_m) + "\ngroup c by " + std::to_string(m.root_m) + "\nstream b by 1";
    auto direct = price_text(cost_test::matmul_source(m.a, m.b, m.c, tiles), "MatMul", capacity);
    ASSERT_TRUE(direct.report) << direct.messages;
    EXPECT_DOUBLE_EQ(direct.report->kernel->top_elements.value, closed);
    EXPECT_EQ(direct.text(direct.report->kernel->top_elements.formula), "a*b*c/tile_a + a*b*c/tile_c + a*c");
  }
}

TEST(CostNapkin, MatmulReloadMultiplicities) {
  auto k = price_text(cost_test::matmul_source(1024, 512, 2048, "group a by 128\ngroup c by 64\nstream b by 32"), "MatMul", 228 * 1024);
  ASSERT_TRUE(k.report) << k.messages;
  const KernelCost &kernel = *k.report->kernel;
  ASSERT_EQ(kernel.transfers.size(), 2u);
  // A lacks c: loaded once per group of c (2048/64 = 32 times); B once per group of a (8 times).
  EXPECT_EQ(kernel.transfers[0].tensor, "A");
  EXPECT_DOUBLE_EQ(kernel.transfers[0].reloads.value, 32);
  EXPECT_EQ(kernel.transfers[0].why, "once per group of c");
  EXPECT_DOUBLE_EQ(kernel.transfers[1].reloads.value, 8);
  EXPECT_DOUBLE_EQ(kernel.blocks.value, 8 * 32);
  EXPECT_DOUBLE_EQ(kernel.traffic[0].write.value, 2.0 * 1024 * 2048);
  // Memory per block: A 128x32, B 32x64, C 128x64 (bf16).
  ASSERT_EQ(kernel.memory.size(), 1u);
  EXPECT_DOUBLE_EQ(kernel.memory[0].bytes.value, 2.0 * (128 * 32 + 32 * 64 + 128 * 64));
  EXPECT_EQ(k.text(kernel.memory[0].bytes.formula), "2*chunk_b*tile_c + 2*tile_a*chunk_b + 2*tile_a*tile_c");
  EXPECT_TRUE(kernel.fits);
  EXPECT_EQ(kernel.flops.value, 2.0 * 1024 * 512 * 2048);
}

// -------------------------------------------------------------- attention

struct AttentionCase {
  int64_t q, k, d, tile;  // M = 2 * d * tile elements
};
const std::vector<AttentionCase> kAttentions{
    {4096, 4096, 64, 128}, {2048, 8192, 128, 64}, {1024, 1024, 64, 256}, {8192, 2048, 64, 512}, {4096, 4096, 128, 32}, {1536, 3000, 96, 48}};

TEST(CostNapkin, AttentionClosedForm) {
  for (const AttentionCase &a : kAttentions) {
    double M = 2.0 * a.d * a.tile;
    auto k = price_text(cost_test::attention_source(a.q, a.k, a.d, "group q by " + std::to_string(a.tile) + "\nstream k by 1"),
                        "Attention", 1e9);
    ASSERT_TRUE(k.report) << k.messages;
    const KernelCost &kernel = *k.report->kernel;
    ASSERT_TRUE(kernel.closed_form);
    EXPECT_EQ(k.text(*kernel.closed_form), "4*q*k*d^2/M + 2*q*d");
    EXPECT_EQ(k.text(kernel.tile_for_m), "M/(2*d)");
    // With the tile that fills M (Q tile and O accumulator, t*d each), the model is the closed form exactly.
    double closed = 4.0 * a.q * a.k * a.d * a.d / M + 2.0 * a.q * a.d;
    EXPECT_DOUBLE_EQ(kernel.top_elements.value, closed) << a.q << " " << a.k << " " << a.d;
    EXPECT_EQ(k.text(kernel.top_elements.formula), "2*q*d + 2*q*k*d/tile_q");
  }
}

// With the best tile the capacity allows (a divisor of q), the traffic matches
// the closed form within the rounding of the tile size.
TEST(CostNapkin, AttentionBestTileMatchesWithinRounding) {
  for (const AttentionCase &a : kAttentions) {
    double M = 2.0 * a.d * a.tile;
    auto k = price_text(cost_test::attention_source(a.q, a.k, a.d, "group q by 16\nstream k by 1"), "Attention", M * 2);
    ASSERT_TRUE(k.report) << k.messages;
    const KernelCost &kernel = *k.report->kernel;
    EXPECT_DOUBLE_EQ(kernel.capacity_elements, M);
    auto best = best_tiles(kernel, *k.hardware, false, true);
    ASSERT_TRUE(best);
    double traffic = best->top_bytes / 2;
    double closed = 4.0 * a.q * a.k * a.d * a.d / M + 2.0 * a.q * a.d;
    double rounded = 4.0 * a.q * a.k * a.d * a.d / (M / 2) + 2.0 * a.q * a.d;  // the tile one halving smaller
    EXPECT_GE(traffic, closed * (1 - 1e-12));
    EXPECT_LE(traffic, rounded * (1 + 1e-12));
    // Exactly the model's formula at the chosen tile.
    double tile = static_cast<double>(best->tiles[0].second);
    EXPECT_DOUBLE_EQ(traffic, 2.0 * a.q * a.k * a.d / tile + 2.0 * a.q * a.d);
  }
}

TEST(CostNapkin, OnlineSoftmaxAccumulatorAndRescaling) {
  auto k = price_text(cost_test::attention_source(4096, 4096, 64, "group q by 128\nstream k by 64"), "Attention", 228 * 1024);
  ASSERT_TRUE(k.report) << k.messages;
  const KernelCost &kernel = *k.report->kernel;
  ASSERT_EQ(kernel.partitions.size(), 2u);
  EXPECT_EQ(kernel.partitions[1].accumulator, "online softmax, sum (contraction)");
  EXPECT_EQ(k.text(kernel.rescale_flops.formula), "q*k*d/chunk_k + 3*q*k/chunk_k");
  EXPECT_EQ(k.text(kernel.flops.formula), "4*q*k*d + 6*q*k + q*k*d/chunk_k + q + 3*q*k/chunk_k + 1");
  // The hbm traffic: Q and O once, K and V once per group of q.
  EXPECT_EQ(k.text(kernel.traffic[0].read.formula), "2*q*d + 4*q*k*d/tile_q");
  EXPECT_EQ(k.text(kernel.traffic[0].write.formula), "2*q*d");
  EXPECT_LT(kernel.time, k.report->total.time);
}

TEST(CostNapkin, LiftedCallOfAScheduledDiagramIsOneKernelPerHead) {
  const std::string text =
      "axis s = 1024, h = 8, d = 64\n"
      "default dtype bf16\n"
      "diagram Attention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {\n"
      "  axis q = 1024, k = 1024\n"
      "  S[q, k] = Q[q, d] * K[k, d]\n"
      "  O[q, d] = softmax[k](S[q, k]) * V[k, d]\n"
      "}\n"
      "schedule Attention {\n  group q by 128\n  stream k by 64\n}\n"
      "diagram Multi(Q[s, h, d], K[s, h, d], V[s, h, d]) -> O[s, h, d] {\n"
      "  O[s, h, d] = Attention[q = s, k = s](Q, K, V)\n"
      "}\n";
  auto k = price_text(text, "Multi", 228 * 1024);
  ASSERT_TRUE(k.report) << k.messages;
  ASSERT_EQ(k.report->ops.size(), 1u);
  const OpCost &call = k.report->ops[0];
  EXPECT_TRUE(call.kernel);
  // Per head: 2*s*d (Q) + 4*s*s*d/tile (K, V reloaded per group of queries); times h heads, 2 bytes.
  EXPECT_EQ(k.text(call.traffic[0].read.formula), "2*s*h*d + 4*s^2*h*d/tile_s");
  EXPECT_DOUBLE_EQ(call.traffic[0].read.value, 2.0 * 1024 * 8 * 64 + 4.0 * 1024 * 1024 * 8 * 64 / 128);
}

TEST(CostNapkin, AScheduledCallInsideARepeatRunsOncePerIteration) {
  const std::string callee =
      "axis s = 512, h = 4, d = 64\n"
      "default dtype bf16\n"
      "diagram Attention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {\n"
      "  axis q = 512, k = 512\n"
      "  S[q, k] = Q[q, d] * K[k, d]\n"
      "  O[q, d] = softmax[k](S[q, k]) * V[k, d]\n"
      "}\n"
      "schedule Attention {\n  group q by 64\n  stream k by 64\n}\n";
  auto once = price_text(callee +
                             "diagram Multi(Q[s, h, d], K[s, h, d], V[s, h, d]) -> O[s, h, d] {\n"
                             "  O[s, h, d] = Attention[q = s, k = s](Q, K, V)\n"
                             "}\n",
                         "Multi", 228 * 1024);
  auto thrice = price_text(callee +
                               "diagram Multi(Q[s, h, d], K[s, h, d], V[s, h, d]) -> O[s, h, d] {\n"
                               "  X[s, h, d] = Q[s, h, d]\n"
                               "  repeat 3 {\n"
                               "    X[s, h, d] = Attention[q = s, k = s](X, K, V)\n"
                               "  }\n"
                               "  O[s, h, d] = X[s, h, d]\n"
                               "}\n",
                           "Multi", 228 * 1024);
  ASSERT_TRUE(once.report) << once.messages;
  ASSERT_TRUE(thrice.report) << thrice.messages;
  const OpCost &single = once.report->ops[0];
  const OpCost *repeated = nullptr;
  for (const OpCost &op : thrice.report->ops)
    if (op.what == "repeat 3") repeated = &op.children.at(0);
  ASSERT_TRUE(repeated);
  EXPECT_TRUE(repeated->kernel);
  EXPECT_DOUBLE_EQ(repeated->flops.value, 3 * single.flops.value);
  EXPECT_DOUBLE_EQ(repeated->traffic[0].read.value, 3 * single.traffic[0].read.value);
  EXPECT_DOUBLE_EQ(repeated->time, 3 * single.time);
}

// The optimizer's use: price candidate schedules built in code, quietly.
TEST(CostNapkin, CandidateSchedulesFromCode) {
  auto compiled = compile(cost_test::matmul_source(1024, 1024, 1024, ""));
  ASSERT_TRUE(compiled->ok) << compiled->messages();
  auto hardware = cost_test::profile(*compiled, cost_test::gpu_yaml(228 * 1024));
  ASSERT_TRUE(hardware);
  const ir::Program &program = compiled->compilation->program;
  const ir::Diagram &diagram = compiled->diagram("MatMul");
  auto axis = [&](const std::string &name) {
    for (const ir::Axis &a : program.axes)
      if (a.name == name) return a.id;
    return -1;
  };
  auto candidate = [&](int64_t tile, int64_t chunk) {
    ir::Schedule schedule;
    schedule.directives.push_back({ir::ScheduleDirective::Kind::Group, axis("a"), tile, "", {}, {}});
    schedule.directives.push_back({ir::ScheduleDirective::Kind::Group, axis("c"), tile, "", {}, {}});
    schedule.directives.push_back({ir::ScheduleDirective::Kind::Stream, axis("b"), chunk, "", {}, {}});
    return schedule;
  };
  auto small = napkin(program, diagram, candidate(64, 32), *hardware);
  ASSERT_TRUE(small);
  EXPECT_DOUBLE_EQ(small->top_elements.value, 2.0 * 1024 * 1024 * 1024 / 64 + 1024.0 * 1024);
  auto large = napkin(program, diagram, candidate(128, 32), *hardware);
  ASSERT_TRUE(large);
  EXPECT_LT(large->traffic[0].read.value, small->traffic[0].read.value);
  auto best = best_tiles(*small, *hardware, true, true);
  ASSERT_TRUE(best);
  EXPECT_EQ(best->tiles.size(), 2u);
  EXPECT_FALSE(napkin(program, diagram, candidate(1024, 32), *hardware));  // over capacity
  EXPECT_FALSE(napkin(program, diagram, candidate(100, 32), *hardware));   // does not divide
  auto quiet = price(program, diagram, *hardware);
  ASSERT_TRUE(quiet);
  EXPECT_FALSE(quiet->kernel);
}

// -------------------------------------------------------------- legality

struct Refusal {
  std::string schedule;
  std::string expected;  // a piece of the message, with its location
};

TEST(CostNapkin, IllegalSchedulesAreRefusedWithLocatedMessages) {
  for (const Refusal &r : std::vector<Refusal>{
           {"stream q by 64", ":9:1: error: cannot stream 'q': no operation sums or reduces over it"},
           {"group q by 1024\nstream k by 64", ":9:1: error: tile over capacity: a block of this schedule keeps"},
           {"group k by 64", ":9:1: error: cannot group 'k': softmax[k] consumes it"},
           {"group q by 100", ":9:1: error: group q by 100: 100 does not divide the size of 'q' (4096)"},
           {"group q by 8192", ":9:1: error: group q by 8192: the tile is larger than the axis (size 4096)"},
           {"group q by 128\nstream d by 16", ":10:1: error: cannot stream 'd': the contraction over k combines a finished reduction"},
           {"group q by 128\nlevel shmem: Q", ":10:1: error: hardware profile 'test-gpu' has no memory level 'shmem'; did you mean 'smem'?"},
       }) {
    auto k = price_text(cost_test::attention_source(4096, 4096, 64, r.schedule), "Attention", 228 * 1024);
    EXPECT_FALSE(k.report) << r.schedule;
    EXPECT_NE(k.messages.find(r.expected), std::string::npos) << r.schedule << "\n---\n" << k.messages;
  }
}

TEST(CostNapkin, StreamingNeedsARunningAccumulator) {
  const std::string norm =
      "axis s = 64, m = 128\n"
      "diagram N(X[s, m]) -> Y[s, m] {\n"
      "  Y[s, m] = layernorm[m](X[s, m])\n"
      "}\n"
      "schedule N {\n  stream m by 16\n}\n";
  auto k = price_text(norm, "N", 228 * 1024);
  EXPECT_FALSE(k.report);
  EXPECT_NE(k.messages.find(":6:3: error: cannot stream 'm': layernorm over it needs the whole axis"), std::string::npos) << k.messages;

  // Softmax whose result is an output cannot use the online rescaling.
  const std::string softmax =
      "axis s = 64, m = 128\n"
      "diagram N(X[s, m]) -> Y[s, m] {\n"
      "  Y[s, m] = softmax[m](X[s, m])\n"
      "}\n"
      "schedule N {\n  stream m by 16\n}\n";
  k = price_text(softmax, "N", 228 * 1024);
  EXPECT_FALSE(k.report);
  EXPECT_NE(k.messages.find("cannot stream 'm': softmax over it can stream only through the online-softmax rescaling"),
            std::string::npos)
      << k.messages;

  // x - mean(x) needs two passes.
  const std::string centre =
      "axis s = 64, m = 128\n"
      "diagram N(X[s, m]) -> Y[s] {\n"
      "  C[s, m] = X[s, m] - mean[m](X[s, m])\n"
      "  Y[s] = sum[m](C[s, m] * C[s, m])\n"
      "}\n"
      "schedule N {\n  stream m by 16\n}\n";
  k = price_text(centre, "N", 228 * 1024);
  EXPECT_FALSE(k.report);
  EXPECT_NE(k.messages.find("combines a finished reduction over 'm' with values that still carry it"), std::string::npos)
      << k.messages;

  // A sum and a max are accumulators.
  const std::string reduce =
      "axis s = 64, m = 128\n"
      "diagram N(X[s, m]) -> (Y[s], Z[s]) {\n"
      "  Y[s] = sum[m](X[s, m])\n"
      "  Z[s] = max[m](X[s, m])\n"
      "}\n"
      "schedule N {\n  group s by 8\n  stream m by 16\n}\n";
  k = price_text(reduce, "N", 228 * 1024);
  ASSERT_TRUE(k.report) << k.messages;
  EXPECT_EQ(k.report->kernel->partitions[1].accumulator, "sum, max");
}

}  // namespace
}  // namespace ncd
