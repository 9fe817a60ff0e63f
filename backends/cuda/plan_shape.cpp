// The shape of the kernel the CUDA backend builds for a scheduled diagram
// where it is called (ncd/kernel_plan.h): the family (plan_match.cpp), the
// tiles the templates take (fit_attention_tiles, gemm_block_tile, the fixed
// block sizes of the row and pointwise kernels), and how many positions of the
// call's lifted axes one block covers. The generator builds kernels with the
// same functions, so what `tile` and `ncd cost` see is what `emit` writes.
// Routed contractions (plan_routed.cpp) are no scheduled kernel and have no
// shape here: the cost model prices their routed work itself (ncd/routing.h).
#include <algorithm>
#include <functional>

#include "codegen.h"
#include "generator.h"
#include "ncd/ir_edit.h"

namespace ncd::cuda::detail {

namespace {

// Covers `rows` consecutive positions of a merged dimension, innermost axis
// first: an axis is covered whole before the next outer one takes the rest.
// Axes are (size, tile out) pairs, outermost first.
void spread(int64_t rows, std::vector<std::pair<int64_t, int64_t *>> axes) {
  for (size_t i = axes.size(); i-- > 0;) {
    int64_t size = std::max<int64_t>(1, axes[i].first);
    int64_t take = std::min(rows, size);
    *axes[i].second = take;
    rows = take == size ? std::max<int64_t>(1, rows / size) : 1;
  }
}

bool has(const ir::Diagram &d, int value, int axis) {
  const auto &axes = d.value(value).axes;
  return std::find(axes.begin(), axes.end(), axis) != axes.end();
}

}  // namespace

std::optional<KernelShape> kernel_shape(const KernelQuery &query, const Limits &limits, std::string &why) {
  const ir::Diagram &d = *query.kernel;
  const ir::Schedule &schedule = *query.schedule;
  ScheduledPlan plan = plan_scheduled(d, schedule);
  if (plan.kind == ScheduledPlan::Kind::Decline) {
    why = plan.reason;
    return std::nullopt;
  }
  auto size = [&](int axis) { return query.size ? query.size(axis).value_or(1) : int64_t{1}; };
  KernelShape shape;
  std::vector<int64_t> lifted_tiles(query.lifted.size(), 1);
  auto asked = [&](int axis) -> std::optional<int64_t> {
    for (const ir::ScheduleDirective &dir : schedule.directives)
      if (dir.kind == ir::ScheduleDirective::Kind::Group && dir.axis == axis) return dir.amount;
    return std::nullopt;
  };
  // Grouped axes the family does not tile lie on the grid, one position a block.
  auto grid_rest = [&]() {
    for (const ir::ScheduleDirective &dir : schedule.directives)
      if (dir.kind == ir::ScheduleDirective::Kind::Group && !shape.groups.count(dir.axis)) shape.groups[dir.axis] = 1;
  };
  auto note_changes = [&]() {
    std::string changed;
    for (const ir::ScheduleDirective &dir : schedule.directives) {
      if (dir.kind == ir::ScheduleDirective::Kind::Level) continue;
      const auto &built = dir.kind == ir::ScheduleDirective::Kind::Group ? shape.groups : shape.streams;
      auto it = built.find(dir.axis);
      if (it != built.end() && it->second != dir.amount)
        changed += (changed.empty() ? "" : ", ") + query.program->axis(dir.axis).name + " " + std::to_string(dir.amount) + " -> " +
                   std::to_string(it->second);
    }
    shape.adjusted = changed;
  };
  if (plan.kind == ScheduledPlan::Kind::Attention) {
    const AttentionMatch &m = plan.attention;
    const int64_t D = size(m.d_axis), E = size(m.e_axis);
    if (D % 16 != 0 || E % 16 != 0 || D > 256 || E > 256) {
      why = "head widths " + std::to_string(D) + " and " + std::to_string(E) +
            " must be multiples of 16 up to 256 for the attention kernel";
      return std::nullopt;
    }
    if (limits.block_smem <= 0) {
      why = limits.unknown;
      return std::nullopt;
    }
    AttentionTiles tiles = fit_attention_tiles(m.bq, m.bk, D, E, limits.block_smem);
    shape.family = "attention";
    shape.groups[m.q_axis] = std::min(tiles.bq, size(m.q_axis));
    shape.streams[m.k_axis] = std::min(tiles.bk, size(m.k_axis));
    shape.threads = tiles.threads;
    shape.smem = tiles.smem;
  } else if (plan.kind == ScheduledPlan::Kind::Grid) {
    const GridMatch &m = plan.grid;  // lifted axes: one position a block, on the grid's x
    std::vector<int64_t> c_widths, e_widths;
    for (const auto &p : m.producers) c_widths.push_back(size(p.c_axis));
    for (const auto &c : m.consumers) e_widths.push_back(size(c.e_axis));
    for (const std::vector<int64_t> *widths : {&c_widths, &e_widths})
      for (int64_t w : *widths)
        if (!grid_width_fits(w)) {
          why = "the grid kernel's widths must be multiples of 16 up to 128";
          return std::nullopt;
        }
    if (limits.block_smem <= 0) {
      why = limits.unknown;
      return std::nullopt;
    }
    GridTiles tiles = fit_grid_tiles(m.bg, m.bs, c_widths, e_widths, limits.block_smem);
    shape.family = "grid";
    shape.groups[m.g_axis] = std::min(tiles.bg, size(m.g_axis));
    shape.streams[m.s_axis] = std::min(tiles.bs, size(m.s_axis));
    shape.threads = tiles.threads;
    shape.smem = tiles.smem;
  } else if (plan.fused.kind == FusedMatch::Kind::Gemm) {
    const ir::Op &main = *plan.fused.main;
    std::vector<int> factors;
    for (int operand : main.operands) {
      bool summed = false;
      for (int axis : main.axes) summed = summed || has(d, operand, axis);
      if (summed) factors.push_back(operand);
    }
    if (factors.size() != 2) {
      why = "the contraction has " + std::to_string(factors.size()) + " factors that carry its summed axes";
      return std::nullopt;
    }
    // Which values carry the lifted axes: those computed from an input that does.
    const ir::ProducerIndex index(d);
    std::function<bool(int)> lifted = [&](int value) -> bool {
      for (size_t i = 0; i < d.inputs.size(); ++i)
        if (d.inputs[i] == value) return i < query.lifted_inputs.size() && query.lifted_inputs[i];
      const ir::Op *op = index.producer(value);
      if (!op) return false;
      for (int operand : op->operands)
        if (lifted(operand)) return true;
      return false;
    };
    const int a = factors[0], b = factors[1];
    const bool a_lifted = !query.lifted.empty() && lifted(a), b_lifted = !query.lifted.empty() && lifted(b);
    auto summed = [&](int axis) { return std::find(main.axes.begin(), main.axes.end(), axis) != main.axes.end(); };
    std::vector<int> m_axes, n_axes;
    for (int axis : d.value(a).axes)
      if (!summed(axis) && !has(d, b, axis)) m_axes.push_back(axis);
    for (int axis : d.value(b).axes)
      if (!summed(axis) && !has(d, a, axis)) n_axes.push_back(axis);
    // The schedule's ask along a merged dimension: the innermost axis's group,
    // times the next one's while the inner group is the whole axis.
    auto ask = [&](const std::vector<int> &axes) -> std::optional<int64_t> {
      std::optional<int64_t> out;
      for (size_t i = axes.size(); i-- > 0;) {
        auto group = asked(axes[i]);
        if (!group) break;
        out = out.value_or(1) * *group;
        if (*group < size(axes[i])) break;
      }
      return out;
    };
    auto tile_dimension = [&](const std::vector<int> &axes, bool with_lifted) {
      int64_t extent = 1;
      for (int axis : axes) extent *= size(axis);
      if (with_lifted)
        for (int64_t s : query.lifted) extent *= s;
      int64_t tile = gemm_block_tile(ask(axes), extent);
      std::vector<std::pair<int64_t, int64_t *>> merged;
      if (with_lifted)
        for (size_t i = 0; i < query.lifted.size(); ++i) merged.push_back({query.lifted[i], &lifted_tiles[i]});
      for (int axis : axes) merged.push_back({size(axis), &shape.groups[axis]});
      spread(tile, merged);
      return tile;
    };
    int64_t bm = tile_dimension(m_axes, a_lifted && !b_lifted);
    int64_t bn = tile_dimension(n_axes, b_lifted && !a_lifted);
    // 8-bit operands (gemm_q8.cuh): chunks of 64 one-byte elements, rows padded by 16 bytes.
    const bool q8 = is_8bit(d.value(a).dtype);
    const int64_t chunk = q8 ? kGemmChunkQ8 : kGemmChunk, bytes = q8 ? 1 : 2, pad = q8 ? 16 : 8;
    std::vector<int> k_axes(main.axes.begin(), main.axes.end());
    for (size_t i = 0; i < k_axes.size(); ++i)
      shape.streams[k_axes[i]] = i + 1 == k_axes.size() ? std::min(chunk, size(k_axes[i])) : 1;
    shape.family = "gemm";
    shape.threads = kGemmThreads;
    shape.smem = 2 * (bm + bn) * (chunk + pad) * bytes;  // two stages of A and B tiles, padded rows
  } else {
    // Row kernels: a warp per row, kRowThreads / 32 rows a block; pointwise
    // kernels: a thread per element. Both cover their positions innermost first.
    const bool row = plan.fused.kind == FusedMatch::Kind::Row;
    shape.family = row ? "row" : "pointwise";
    shape.threads = row ? kRowThreads : kPointwiseThreads;
    std::vector<int> space;
    if (!d.outputs.empty())
      for (int axis : d.value(d.outputs[0]).axes)
        if (!row || std::find(plan.fused.main->axes.begin(), plan.fused.main->axes.end(), axis) == plan.fused.main->axes.end())
          space.push_back(axis);
    std::vector<std::pair<int64_t, int64_t *>> merged;
    for (size_t i = 0; i < query.lifted.size(); ++i) merged.push_back({query.lifted[i], &lifted_tiles[i]});
    for (int axis : space) merged.push_back({size(axis), &shape.groups[axis]});
    spread(row ? kRowThreads / 32 : kPointwiseThreads, merged);
  }
  grid_rest();
  note_changes();
  shape.lifted = lifted_tiles;
  // Every family keeps what it computes in registers (scores and the output
  // accumulator of attention, the GEMM's accumulator and epilogue, a row's
  // values) and writes only its outputs; shared memory holds input tiles.
  for (const auto &op : d.body.ops)
    if (!ir::is_data_free(d, *op))
      for (int value : op->results) shape.registers.push_back(value);
  return shape;
}

}  // namespace ncd::cuda::detail
