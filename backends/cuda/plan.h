// The CUDA backend's kernel plans: what is decided about a kernel before any
// of its text exists. The planner (plan_match.cpp for the patterns of a
// scheduled diagram; plan_attention.cpp, plan_gemm.cpp and plan_fused.cpp for
// the layouts, tiles and launch shapes) fills these, or declines with a reason
// that the next family or the separate kernels take; the printers
// (print_*.cpp) turn a plan into text. Plans are made kernel by kernel as
// frame.cpp walks the IR, since runtime axes and workspace offsets are
// numbered in that order. GemmPlan, which holds runtime layouts, is in
// generator.h beside Ten.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ncd/hardware.h"
#include "ncd/ir.h"
#include "ncd/kernel_plan.h"
#include "size_expr.h"

namespace ncd::cuda::detail {

// What a target offers the kernels: taken from the hardware profile of the
// architecture (targets.cpp), never written into the generator.
struct Limits {
  int64_t block_smem = 0;  // bytes of shared memory one block may opt in to; 0: unknown
  std::string unknown;     // why block_smem is unknown (a profile that could not be read)
  std::string profile;     // the hardware profile's name
  // The dtypes the profile gives a tensor-core rate for (`compute: tensor:`):
  // whether int8 and fp8 contractions have tensor cores on this target.
  std::set<ir::DType> tensor;
};

// ---------------------------------------------------------------- patterns (IR only)

// Attention pattern found in a scheduled diagram (IR value ids of its diagram).
struct AttentionMatch {
  int q_input = -1, k_input = -1, v_input = -1, output = -1;
  // A second output: the rows' logsumexp[k] of the softmax's operand (kept for
  // the backward pass), maybe through elementwise row work (a guard against
  // -inf); -1: none. lse_raw is the logsumexp's value.
  int lse = -1, lse_raw = -1;
  int q_axis = -1, k_axis = -1, d_axis = -1, e_axis = -1;  // IR axes
  std::vector<int> scale_values;                           // scalar factors of the scores
  std::vector<int> out_scale_values;                       // scalar factors of the P.V contraction
  int mask = -1;                                           // condition value, -1: none
  const ir::Op *mask_op = nullptr;                         // the where(mask, ., -inf) feeding the softmax
  // The score modification: the raw scores (the contraction's result), the
  // elementwise ops from them to the softmax's operand (softmax side first)
  // and that operand without the final mask; none when raw == score_value.
  int raw_scores = -1, score_value = -1;
  std::vector<const ir::Op *> score_ops;
  int64_t bq = 0, bk = 0;
};

// A scheduled diagram that is a fused GEMM + epilogue, a row kernel
// (normalisation or reduction with elementwise work around it) or a pointwise
// chain (elementwise and access ops): docs/CUDA.md, "Fused kernels".
struct FusedMatch {
  enum class Kind { Gemm, Row, Pointwise };
  Kind kind = Kind::Pointwise;
  const ir::Op *main = nullptr;        // the contraction, normalisation or reduction
  std::vector<const ir::Op *> before;  // scalar arithmetic computed first (folded or tiny kernels)
  std::set<int> after;                 // values computed from main's result
  // Gemm: values the GEMM computes as it stages an operand (a quantization
  // prologue: the operand's elementwise chain from the kernel's inputs).
  std::set<int> prologue;
};

// A streamed grid (docs/CUDA.md, "Grid kernels"; FlashAttention-2's backward
// kernels as `fuse` forms them): a block owns `bg` positions of the grouped
// axis g and streams the axis s in chunks of `bs`. The grid's values at
// (g, s) come from one or two producer contractions of inputs over an axis c
// (x[g, c] · y[s, c]: the scores Q·K, dP = dO·V) through elementwise work
// (per element: row and column vectors, positions, masks); one or two
// consumer contractions sum a grid value times an input over s
// (grid[g, s] · z[s, e]: dV, dK, dQ), each into an output, maybe through a copy.
struct GridMatch {
  struct Producer {
    int value = -1, x = -1, y = -1, c_axis = -1;
    std::vector<int> scales;  // scalar factors
  };
  struct Consumer {
    int value = -1, grid = -1, z = -1, e_axis = -1, output = -1;
    std::vector<int> scales;
  };
  int g_axis = -1, s_axis = -1;
  std::vector<Producer> producers;
  std::vector<Consumer> consumers;
  int mask = -1;  // the condition of a where(mask, ., -inf) on the grid, -1: none
  int64_t bg = 0, bs = 0;
};

// The tiles of a grid kernel: `bg` rows of g (16 per warp, 64 or 128), chunks
// of `bs` along s (16, 32 or 64: fewer when the widths would need more
// registers), halved until the block fits `smem_limit`.
struct GridTiles {
  int64_t bg = 0, bs = 0, smem = 0, threads = 0;
};
// The widths c and e a grid kernel takes (its fragments are compile-time).
inline bool grid_width_fits(int64_t width) { return width > 0 && width % 16 == 0 && width <= 128; }
GridTiles fit_grid_tiles(int64_t asked_g, int64_t asked_s, const std::vector<int64_t> &c_widths,
                         const std::vector<int64_t> &e_widths, int64_t smem_limit);

// The kernel family a scheduled diagram is, or why it is none (then its
// operations run as separate kernels). Attention is tried first, then the
// fused families; the reason is that of the matcher that got further.
struct ScheduledPlan {
  enum class Kind { Attention, Grid, Fused, Decline };
  Kind kind = Kind::Decline;
  AttentionMatch attention;
  GridMatch grid;
  FusedMatch fused;
  std::string reason;  // Decline
};

ScheduledPlan plan_scheduled(const ir::Diagram &diagram, const ir::Schedule &schedule);
bool match_attention(const ir::Diagram &diagram, const ir::Schedule &schedule, AttentionMatch &m, std::string &why);
bool match_fused(const ir::Diagram &diagram, FusedMatch &m, std::string &why);
bool match_grid(const ir::Diagram &diagram, const ir::Schedule &schedule, GridMatch &m, std::string &why);

// ---------------------------------------------------------------- layouts (runtime axes)

// A streamed-attention kernel: runtime axes, sizes, tiles fitted to the
// target's shared memory, staging and the mask as device expressions.
struct AttentionPlan {
  int rq = -1, rk = -1, rd = -1, re = -1;  // runtime axes of q, k, d (scores), e (values)
  std::vector<int> batch;                  // runtime axes every block of the grid's y covers
  Sz nq, nk, batches;  // may be runtime sizes
  int64_t d = 0, e = 0;  // head widths: compile-time (the tiles' fragments)
  int64_t bq = 0, bk = 0;  // tiles after rounding and fitting
  int64_t smem = 0;        // dynamic shared memory per block, bytes
  int64_t threads = 0;
  std::string tiles;                                        // the tiles in words, for the kernel's comment
  bool async = false;                                       // K and V staged by cp.async
  bool f16 = false;                                         // f16 operands (else bf16)
  std::string keep = "true", live = "true", full = "true";  // the mask's device expressions
  bool score = false;          // a score modification (AttentionMatch::score_ops) runs per element
  bool mask_in_score = false;  // the mask reads tensors: the score modification applies it
  bool tiles_skipped = false;  // the mask rules out tiles: query tiles differ in work (the longest start first)
};

// Shared memory of a streamed-attention block: Q, and K and V double-buffered, padded rows.
inline int64_t attention_smem(int64_t bq, int64_t bk, int64_t d, int64_t e) {
  return (bq * (d + 8) + 2 * bk * (d + 8) + 2 * bk * (e + 8)) * 2;
}

// The streamed-attention tiles the kernel template builds for the schedule's
// group of queries and stream of keys: multiples of 16 up to 128, halved
// (keys first) until the block fits `smem_limit`; 32 threads per 16 queries.
struct AttentionTiles {
  int64_t bq = 0, bk = 0, smem = 0, threads = 0;
};
AttentionTiles fit_attention_tiles(int64_t asked_q, int64_t asked_k, int64_t d, int64_t e, int64_t smem_limit);

// The tensor-core GEMM's block tile along a merged M or N dimension of
// `extent` positions when the schedule asks for `asked` of them (nullopt:
// not grouped): 64 or 128, the template's two sizes.
int64_t gemm_block_tile(std::optional<int64_t> asked, int64_t extent);
inline constexpr int64_t kGemmChunk = 32;    // the template's BK
inline constexpr int64_t kGemmChunkQ8 = 64;  // gemm_q8.cuh's BK: 64 one-byte elements
// s8 x s8 products are at most 2^14 in magnitude: an s32 sum of fewer than
// 2^31 / 2^14 = 131,072 of them is exact (docs/CUDA.md, "Quantized contractions").
inline constexpr int64_t kGemmMaxK_S8 = 131071;
inline constexpr int64_t kGemmThreads = 256;  // 8 warps
inline constexpr int64_t kRowThreads = 256;   // row kernels: a warp per row, 8 rows a block
inline constexpr int64_t kPointwiseThreads = 256;
// Routed contractions (plan_routed.cpp, device/routed.cuh): the threads of a
// routing step's block, and the most buckets (experts + the bucket outside
// the table) it keeps in shared memory.
inline constexpr int64_t kRouteThreads = 256;
inline constexpr int64_t kRouteMaxBuckets = 4096;

// A scan's kernel (plan_scan.cpp, print_scan.cpp): a warp per lifted row,
// walking the scanned axis in chunks of 32 × `per_lane` elements. Each lane
// scans its `per_lane` consecutive elements in registers, the warp scans the
// lanes' totals with __shfl_up_sync (5 steps, Hillis–Steele), and the chunk's
// total carries into the next chunk: work about 2n + 10·n/(32·per_lane)
// combines per row of n, depth per_lane + 5 per chunk (docs/COST.md).
struct ScanPlan {
  int64_t per_lane = 1;           // elements a lane scans in registers per chunk
  int64_t threads = kRowThreads;  // 8 warps, a row each
};
// `extent` positions along the scanned axis (nullopt: a runtime size).
ScanPlan plan_scan(std::optional<int64_t> extent);

// The kernel the generator builds for a scheduled diagram where it is called
// (plan_shape.cpp), or nullopt with the reason it runs the operations apart.
std::optional<KernelShape> kernel_shape(const KernelQuery &query, const Limits &limits, std::string &why);

// A fused row or pointwise kernel's iteration space (runtime axes).
struct FusedLayout {
  std::vector<int> space;                // the axes of the kernel's result
  std::vector<int> row_axes, loop_axes;  // Row: the rows, and the axes a warp walks
  Sz missing = 1;                        // Row reductions: the size of summed axes no operand has
};

}  // namespace ncd::cuda::detail
