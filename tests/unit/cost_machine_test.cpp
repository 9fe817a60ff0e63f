// The machine model of `ncd cost` (docs/COST.md, "The machine"): special-
// function units, overlapping compute units, waves and idle instances, warp
// schedulers, launch overhead, reuse of reloads in L2 and masked tiles
// skipped. Each figure is checked against the arithmetic the docs state,
// on a profile written here, so that the stdlib's numbers can change.
#include <gtest/gtest.h>

#include "cost_support.h"

namespace ncd {
namespace {

using cost_test::compile;

// An H100-like profile: 132 instances, special units, a launch cost, an L2 of `l2` bytes.
std::string machine_yaml(double l2 = 50e6) {
  std::ostringstream out;
  out.precision(17);
  out << "name: machine\n"
         "tile_level: smem\n"
         "launch: 2 us\n"
         "occupancy: {blocks: 32, threads: 2048, schedulers: 4}\n"
         "levels:\n"
         "  - {name: hbm, capacity: 80 GB, bandwidth: 3 TB/s}\n"
         "  - {name: l2, capacity: "
      << l2
      << ", bandwidth: 6 TB/s}\n"
         "  - {name: smem, capacity: 228 KiB, fanout: 132, bandwidth: 30 TB/s}\n"
         "compute:\n"
         "  tensor:\n"
         "    bf16: {peak: 1000 TFLOP/s}\n"
         "  vector:\n"
         "    f32: {peak: 64 TFLOP/s}\n"
         "  special: {peak: 4 TOP/s}\n";
  return out.str();
}

struct Priced {
  std::unique_ptr<cost_test::Compiled> compiled;
  std::optional<CostReport> report;
  std::string messages;
};

Priced price_text(const std::string &text, const std::string &yaml = machine_yaml()) {
  Priced out;
  out.compiled = compile(text);
  if (!out.compiled->ok) {
    out.messages = out.compiled->messages();
    return out;
  }
  auto hardware = cost_test::profile(*out.compiled, yaml);
  if (hardware)
    out.report = price(out.compiled->compilation->program, *out.compiled->compilation->program.diagrams.back(), *hardware,
                       out.compiled->compilation->diagnostics);
  out.messages = out.compiled->messages();
  return out;
}

std::string causal_source(int64_t n, const std::string &mask, const std::string &schedule) {
  return "axis q = " + std::to_string(n) + ", k = " + std::to_string(n) +
         ", d = 64\ndefault dtype bf16\n"
         "diagram Attention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {\n"
         "  S[q, k]: f32 = " + (mask.empty() ? "Q[q, d] * K[k, d]" : "where(" + mask + ", Q[q, d] * K[k, d], -inf)") +
         "\n  P[q, k] = softmax[k](S[q, k])\n"
         "  O[q, d] = P[q, k] * V[k, d]\n}\n"
         "schedule Attention {\n" + schedule + "\n}\n";
}

TEST(CostMachine, ProfileReadsTheMachineFields) {
  auto compiled = compile("axis a = 4\ndiagram F(X[a]) -> Y[a] {\n  Y[a] = exp(X[a])\n}\n");
  ASSERT_TRUE(compiled->ok);
  auto hardware = cost_test::profile(*compiled, machine_yaml());
  ASSERT_TRUE(hardware) << compiled->messages();
  EXPECT_DOUBLE_EQ(hardware->launch, 2e-6);
  EXPECT_DOUBLE_EQ(hardware->special.peak, 4e12);
  EXPECT_EQ(hardware->max_blocks, 32);
  EXPECT_EQ(hardware->max_threads, 2048);
  EXPECT_EQ(hardware->schedulers, 4);
  for (const char *bad : {"launch: -1 us\n", "launch: 3 parsecs\n", "occupancy: {blocks: 0}\n", "occupancy: {warps: 4}\n"}) {
    auto again = compile("axis a = 4\ndiagram F(X[a]) -> Y[a] {\n  Y[a] = exp(X[a])\n}\n");
    std::string yaml = machine_yaml();
    const std::string line = std::string(bad).substr(0, std::string(bad).find(':'));
    size_t at = yaml.find(line + ":");
    yaml.erase(at, yaml.find('\n', at) + 1 - at);
    yaml.insert(yaml.find("levels:"), bad);
    EXPECT_FALSE(cost_test::profile(*again, yaml)) << bad;
  }
}

// exp runs on the special-function units, the rest of softmax on the vector
// units; units overlap, so the compute time is the larger.
TEST(CostMachine, SpecialFunctionsHaveTheirOwnUnits) {
  auto p = price_text("axis r = 1024, c = 4096\ndiagram F(X[r, c]) -> Y[r, c] {\n  Y[r, c] = softmax[c](X[r, c])\n}\n");
  ASSERT_TRUE(p.report) << p.messages;
  const OpCost &op = p.report->ops.at(0);
  const double n = 1024.0 * 4096;
  double special = n / 4e12, vector = (5 * n + 1024 - n) / 64e12;
  EXPECT_NEAR(op.compute_time, std::max(special, vector), 1e-18);
  // A separate kernel pays its launch.
  double bytes = n * 2 * 4;  // f32 in and out
  EXPECT_NEAR(op.time, std::max({special, vector, bytes / 3e12}) + 2e-6, 1e-15);
}

// One block per 256 queries of one head: 32 blocks on 132 instances keep
// 32/132 of the machine busy, and the time grows by that factor.
TEST(CostMachine, FewBlocksLeaveInstancesIdle) {
  auto few = price_text(causal_source(8192, "", "group q by 256\nstream k by 64"));
  ASSERT_TRUE(few.report && few.report->kernel) << few.messages;
  const KernelCost &k = *few.report->kernel;
  EXPECT_DOUBLE_EQ(k.blocks.value, 32);
  EXPECT_EQ(k.instances, 132);
  EXPECT_NEAR(k.efficiency, 32.0 / 132, 1e-12);
  double roofline = k.compute_seconds;
  for (const auto &[unit, seconds] : k.unit_times) roofline = std::max(roofline, seconds.value);
  EXPECT_GE(k.time, roofline / k.efficiency + 2e-6 - 1e-12);
  // 200 blocks: the busiest instance runs 2, so 200 / 264 of the machine works.
  auto tail = price_text(causal_source(6400, "", "group q by 32\nstream k by 64"));
  ASSERT_TRUE(tail.report && tail.report->kernel) << tail.messages;
  EXPECT_NEAR(tail.report->kernel->efficiency, 200.0 / 264, 1e-12);
  EXPECT_GE(tail.report->kernel->occupancy, 2);
  // The search for the best tiles sees the same term: it does not keep 32 blocks.
  ASSERT_TRUE(few.report->best_tiles);
  EXPECT_LT(few.report->best_tiles->at(0).second, 256);
}

// K and V are reloaded once per query tile; one copy of each fits in L2, so
// HBM reads them once and L2 serves every reload. A small L2 serves none.
TEST(CostMachine, L2ServesReloadsThatFit) {
  auto cached = price_text(causal_source(8192, "", "group q by 128\nstream k by 64"));
  ASSERT_TRUE(cached.report && cached.report->kernel) << cached.messages;
  const KernelCost &k = *cached.report->kernel;
  const double once = 8192.0 * 64 * 2;  // one of K or V, bf16
  const double q = 8192.0 * 64 * 2;
  EXPECT_NEAR(k.traffic[0].read.value, q + 2 * once, 1);
  EXPECT_NEAR(k.traffic[1].read.value, q + 2 * once * 64, 1);  // 64 query tiles
  auto small = price_text(causal_source(8192, "", "group q by 128\nstream k by 64"), machine_yaml(1e6));
  ASSERT_TRUE(small.report && small.report->kernel) << small.messages;
  EXPECT_NEAR(small.report->kernel->traffic[0].read.value, q + 2 * once * 64, 1);
}

// A causal mask keeps nothing of the (query tile, key chunk) pairs above the
// diagonal; the kernel skips them and costs about half the full one. A
// sliding window keeps a band.
TEST(CostMachine, MaskedTilesAreSkipped) {
  const std::string schedule = "group q by 128\nstream k by 128";
  // The same kernel with a mask that keeps every pair (nothing to skip).
  auto full = price_text(causal_source(8192, "q + k >= 0", schedule));
  auto causal = price_text(causal_source(8192, "q >= k", schedule));
  auto window = price_text(causal_source(8192, "q >= k && q - k < 512", schedule));
  ASSERT_TRUE(full.report && causal.report && window.report) << causal.messages << window.messages;
  const KernelCost &f = *full.report->kernel, &c = *causal.report->kernel, &w = *window.report->kernel;
  EXPECT_EQ(f.skipped_tiles, 0);
  const double tiles = 64.0 * 64;
  EXPECT_DOUBLE_EQ(c.mask_tiles, tiles);
  EXPECT_DOUBLE_EQ(c.skipped_tiles, tiles - 64 * 65 / 2);
  EXPECT_NEAR(c.flops.value / f.flops.value, (64.0 * 65 / 2) / tiles, 0.02);
  EXPECT_GT(c.time / f.time, 0.45);
  EXPECT_LT(c.time / f.time, 0.6);
  // A 512 window over 8192: each query tile meets at most 5 key chunks.
  EXPECT_LE(w.mask_tiles - w.skipped_tiles, 64 * 5);
  EXPECT_LT(w.flops.value / f.flops.value, 5.0 / 64 + 0.02);  // row-wise work is not along k
}

// An `or` of comparisons (prefix-LM: the first 128 keys for every query, the
// rest causally) keeps a pair when either side may; a part that is not a
// comparison of positions keeps everything (nothing is skipped).
TEST(CostMachine, DisjunctiveMasksSkipWhatNoClauseKeeps) {
  const std::string schedule = "group q by 128\nstream k by 128";
  auto causal = price_text(causal_source(8192, "q >= k", schedule));
  auto prefix = price_text(causal_source(8192, "k < 128 || q >= k", schedule));
  auto banded = price_text(causal_source(8192, "(k < 128 || q >= k) && q - k < 1024", schedule));
  auto opaque = price_text(causal_source(8192, "k < 128 || exp(q) > k", schedule));
  ASSERT_TRUE(causal.report && prefix.report && banded.report && opaque.report) << prefix.messages << opaque.messages;
  const double tiles = 64.0 * 64, causal_kept = 64.0 * 65 / 2;
  // The prefix is the first chunk, which causal attention keeps anyway for every query tile.
  EXPECT_DOUBLE_EQ(prefix.report->kernel->skipped_tiles, tiles - causal_kept);
  EXPECT_DOUBLE_EQ(causal.report->kernel->skipped_tiles, tiles - causal_kept);
  // (prefix or causal) and a band of 1024 = 8 chunks: the diagonal band plus the first chunk.
  const KernelCost &b = *banded.report->kernel;
  EXPECT_GT(b.skipped_tiles, tiles - 64 * 10);
  EXPECT_LT(b.skipped_tiles, tiles - 64 * 8);
  EXPECT_EQ(opaque.report->kernel->skipped_tiles, 0);
}

// A kernel with few warps per busy instance leaves schedulers idle; the
// backend's shape says how many threads a block has (here: none, so 1).
TEST(CostMachine, WithoutAShapeTheWarpShareIsOne) {
  auto p = price_text(causal_source(8192, "", "group q by 64\nstream k by 64"));
  ASSERT_TRUE(p.report && p.report->kernel) << p.messages;
  EXPECT_DOUBLE_EQ(p.report->kernel->warp_share, 1);
}

}  // namespace
}  // namespace ncd
