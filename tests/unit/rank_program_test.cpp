// The cut of a tensor into one rank's slice (ncd/rank_program.h), against the rule the sharding
// plan states (ncd/sharding.h, AxisSplit): position i along a split axis belongs to the device
// ((i / stride) % extent) / (extent / devices), and a rank keeps its positions in order.
#include "ncd/rank_program.h"

#include <gtest/gtest.h>

#include <numeric>

namespace ncd {
namespace {

// The whole tensor's flat indices that rank `rank` holds, in row-major order: the oracle.
std::vector<int64_t> held(const std::vector<int64_t> &shape, int dim, const AxisSplit &split, int64_t devices,
                          int64_t rank) {
  int64_t total = 1;
  for (int64_t s : shape) total *= s;
  std::vector<int64_t> out;
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t rest = flat, position = 0;
    for (int d = static_cast<int>(shape.size()) - 1; d >= 0; --d) {
      if (d == dim) position = rest % shape[static_cast<size_t>(d)];
      rest /= shape[static_cast<size_t>(d)];
    }
    if (((position / split.stride) % split.extent) / (split.extent / devices) == rank) out.push_back(flat);
  }
  return out;
}

struct Case {
  std::vector<int64_t> shape;
  int dim;
  int64_t stride, extent, devices;
};

TEST(RankCut, KeepsExactlyTheRanksPositionsInOrder) {
  const std::vector<Case> cases = {
      {{8, 12}, 0, 1, 8, 4},      // a plain split of the first axis (data parallel)
      {{64, 192}, 1, 8, 8, 8},    // GPT-2's c_attn weight: (three, heads, d) split by heads
      {{3, 24, 5}, 1, 4, 3, 3},   // a middle axis: a factor with an outer part (2) and an inner (4)
      {{1024}, 0, 1, 1024, 2},    // a vector
      {{2, 16, 3}, 1, 1, 16, 1},  // one rank holds everything
      {{6, 4, 10}, 2, 5, 2, 2}};  // the last axis, stride beyond one run
  for (const Case &c : cases) {
    const AxisSplit split{0, 0, c.stride, c.extent};
    int64_t total = 1;
    for (int64_t s : c.shape) total *= s;
    std::vector<float> values(static_cast<size_t>(total));
    std::iota(values.begin(), values.end(), 0.0f);
    Tensor whole = Tensor::zeros(ir::DType::F32, c.shape);
    whole.values = values;
    std::vector<Tensor> slices;
    for (int64_t rank = 0; rank < c.devices; ++rank) {
      const std::vector<int64_t> want = held(c.shape, c.dim, split, c.devices, rank);
      const RankCut cut = rank_cut(c.shape, c.dim, split, c.devices, rank);
      std::vector<int64_t> got;
      for (int64_t r = 0; r < cut.rows; ++r)
        for (int64_t i = 0; i < cut.run; ++i) got.push_back(r * cut.row + cut.offset + i);
      EXPECT_EQ(got, want) << "dim " << c.dim << ", rank " << rank;
      Tensor slice = cut_for_rank(whole, c.dim, split, c.devices, rank);
      EXPECT_EQ(slice.shape[static_cast<size_t>(c.dim)], c.shape[static_cast<size_t>(c.dim)] / c.devices);
      ASSERT_EQ(slice.values.size(), want.size());
      for (size_t k = 0; k < want.size(); ++k) EXPECT_EQ(slice.values[k], static_cast<float>(want[k]));
      slices.push_back(slice);
    }
    const Tensor again = assemble_ranks(slices, c.shape, c.dim, split);
    EXPECT_EQ(again.values, values);
  }
}

TEST(RankCut, CutsIntegersToo) {
  Tensor whole = Tensor::zeros(ir::DType::I32, {4, 6});
  std::iota(whole.ints.begin(), whole.ints.end(), 0);
  const AxisSplit split{0, 0, 1, 6};
  const Tensor slice = cut_for_rank(whole, 1, split, 3, 2);
  EXPECT_EQ(slice.ints, (std::vector<int32_t>{4, 5, 10, 11, 16, 17, 22, 23}));
  EXPECT_EQ(assemble_ranks({cut_for_rank(whole, 1, split, 3, 0), cut_for_rank(whole, 1, split, 3, 1), slice},
                           whole.shape, 1, split)
                .ints,
            whole.ints);
}

}  // namespace
}  // namespace ncd
