// The planner of the tensor-core GEMM: which axes of a two-operand
// contraction are M, N, K and batch, which operands must be packed (or split
// into bf16 hi + lo pairs) and whether the result goes through a packed tile,
// the merged strides, the block tiles (the schedule's for a fused kernel) and
// how each operand is staged, into a GemmPlan; or why tensor cores cannot
// take it. Layouts of packed operands are those alloc will give them.
#include "generator.h"

namespace ncd::cuda::detail {

// The axes of `group` as one dimension of `t`: they must be adjacent in
// memory, first outermost. Returns the stride of the merged dimension (0 when
// the group is empty or `t` lacks every axis of it), or nullopt when not
// mergeable for some runtime size.
std::optional<Sz> merged_stride(const Ten &t, const std::vector<int> &group, const std::vector<Sz> &sizes) {
  if (group.empty()) return Sz(0);
  for (size_t i = 0; i + 1 < group.size(); ++i)
    if (t.stride(group[i]) != t.stride(group[i + 1]) * sizes[i + 1]) return std::nullopt;
  return t.stride(group.back());
}

// 8-bit operands: two i8 (s32 accumulators: any result dtype, the exact sum
// converted once), or two fp8 of either kind (f32 accumulators). fp8 tensor
// cores are sm_89's and later: on a target whose profile has no f8 tensor
// rate the same kernel widens the fragments to f16 (gemm_q8.cuh), noted.
// False with `why` set when tensor cores cannot take them, with `why` empty
// when the operands are not 8-bit.
bool Generator::plan_q8(const std::string &result, DType a, DType b, GemmPlan &p, std::string &why) {
  auto kind = [](DType t) { return t == DType::I8 ? 0 : t == DType::F8E4M3 ? 1 : t == DType::F8E5M2 ? 2 : -1; };
  const int ta = kind(a), tb = kind(b);
  if (ta < 0 || tb < 0 || (ta == 0) != (tb == 0)) return false;
  const DType need = ta == 0 ? DType::I8 : DType::F8E4M3;
  if (!limits_.tensor.count(need)) {
    if (ta == 0 || !limits_.unknown.empty()) {
      why = !limits_.unknown.empty() ? limits_.unknown
                                     : "the hardware profile '" + limits_.profile + "' has no i8 tensor-core rate";
      return false;
    }
    p.q8_note = "fp8 contraction " + result + " on f16 tensor cores (the hardware profile '" + limits_.profile +
                "' has no f8 tensor rate: no fp8 tensor cores; the fp8 tiles are widened to f16 in registers, exact; "
                "built for sm_89 or later the same code runs fp8 mma.sync)";
  }
  p.q8 = true;
  p.integer = ta == 0;
  p.ta = ta;
  p.tb = tb;
  return true;
}

int64_t gemm_block_tile(std::optional<int64_t> asked, int64_t extent) {
  if (extent <= 64) return 64;
  if (!asked) return 128;
  return *asked <= 90 ? 64 : 128;
}

bool Generator::plan_gemm(Frame &frame, const ir::Op &o, const Ten &first, const Ten &second, const Ten &final_out,
                          const GemmEpilogue *epilogue, GemmPlan &p, std::string &why) {
  Ten a = first, b = second, out = final_out;
  // An f32 operand beside a bf16 one (a pairwise step of a longer product
  // keeps its partial products in f32) is split into bf16 hi + lo terms and
  // multiplied over twice the summed length, against the other operand
  // twice: the products are those of the f32 value to about 16 bits (exact
  // for a product of two bf16 values), still on tensor cores.
  const bool split =
      (a.dtype == DType::F32 && b.dtype == DType::BF16) || (a.dtype == DType::BF16 && b.dtype == DType::F32);
  // 8-bit operands (two i8, or two fp8 of either kind) take gemm_q8.cuh.
  const std::string what = "'" + frame.diagram->value(o.results[0]).name + "' in '" + frame.diagram->name + "'";
  if (!split && (!is_16bit_float(a.dtype) || a.dtype != b.dtype) && !plan_q8(what, a.dtype, b.dtype, p, why)) {
    if (why.empty())
      why = std::string("operands are ") + std::string(ir::dtype_name(a.dtype)) + " and " +
            std::string(ir::dtype_name(b.dtype)) +
            "; tensor cores take two bf16, two f16, f32 with bf16, two i8, or two f8e4m3/f8e5m2";
    return false;
  }
  if (split && (a.computed >= 0 || b.computed >= 0)) {
    why = "a prologue computes an operand beside an f32 one";
    return false;
  }
  if (a.kind != Ten::Kind::Buffer || b.kind != Ten::Kind::Buffer) {
    why = "an operand is not stored";
    return false;
  }
  std::vector<int> &summed = p.summed, &m_axes = p.m_axes, &n_axes = p.n_axes, &k_axes = p.k_axes, &batch = p.batch;
  for (int axis : o.axes) summed.push_back(rt_axis(frame, axis));
  for (int ax : a.axes) {
    bool in_b = b.has(ax), summed_ax = std::find(summed.begin(), summed.end(), ax) != summed.end();
    if (summed_ax && in_b)
      k_axes.push_back(ax);
    else if (summed_ax) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed in one operand only";
      return false;
    } else if (in_b)
      batch.push_back(ax);
    else
      m_axes.push_back(ax);
  }
  for (int ax : b.axes) {
    if (a.has(ax)) continue;
    if (std::find(summed.begin(), summed.end(), ax) != summed.end()) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed in one operand only";
      return false;
    }
    n_axes.push_back(ax);
  }
  for (int ax : out.axes)
    if (!a.has(ax) && !b.has(ax)) {
      why = "the result is broadcast along '" + axis_names_[static_cast<size_t>(ax)] + "'";
      return false;
    }
  for (int ax : summed)
    if (!a.has(ax)) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed but no operand has it";
      return false;
    }
  if (p.integer && !numel(k_axes).known()) {
    why = "the summed length is a runtime size; s32 accumulation of i8 products is exact only below " +
          str(kGemmMaxK_S8 + 1) + " terms";
    return false;
  }
  if (p.integer && numel(k_axes).hint() > kGemmMaxK_S8) {
    why = "the summed length " + str(numel(k_axes).hint()) +
          " would overflow s32 accumulators of i8 products (exact only below " + str(kGemmMaxK_S8 + 1) + " terms)";
    return false;
  }
  // Order each group by A's (M, K) or B's (N) layout, outermost first, so that contiguous groups merge.
  auto by_stride = [](const Ten &t, std::vector<int> &group) {
    std::stable_sort(group.begin(), group.end(), [&](int p, int q) { return t.stride(p).hint() > t.stride(q).hint(); });
  };
  by_stride(a, m_axes);
  by_stride(a, k_axes);
  by_stride(b, n_axes);
  auto sizes_of = [&](const std::vector<int> &group) {
    std::vector<Sz> s;
    for (int ax : group) s.push_back(size(ax));
    return s;
  };
  // Runtime sizes are checked against the grid's limits by the host code instead.
  auto over = [](const Sz &n, int64_t limit) { return n.known() && *n.constant() > limit; };
  if (over(numel(batch), 65535) || over(numel(m_axes), 65535 * 64)) {
    why = "the grid would be too large";
    return false;
  }
  std::optional<Sz> sAm = merged_stride(a, m_axes, sizes_of(m_axes)), sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  std::optional<Sz> sBk = merged_stride(b, k_axes, sizes_of(k_axes)), sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  std::optional<Sz> sCm = merged_stride(out, m_axes, sizes_of(m_axes)), sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  // Operands whose M, N or K axes are not adjacent in memory are packed first
  // (one copy), and such a result is written to a packed tile and copied out.
  auto concat = [](std::vector<int> x1, const std::vector<int> &x2, const std::vector<int> &x3) {
    x1.insert(x1.end(), x2.begin(), x2.end());
    x1.insert(x1.end(), x3.begin(), x3.end());
    return x1;
  };
  // A computed operand (a fused kernel's prologue) is laid out densely for
  // the planner: it is never packed, and staged by its functor.
  p.pack_a = a.computed < 0 && (!sAm || !sAk);
  if (p.pack_a) {
    a = dense(a.dtype, concat(batch, m_axes, k_axes), "");
    p.packed_a = a;
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));
    sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  }
  p.pack_b = b.computed < 0 && (!sBk || !sBn);
  if (p.pack_b) {
    b = dense(b.dtype, concat(batch, n_axes, k_axes), "");
    p.packed_b = b;
    sBk = merged_stride(b, k_axes, sizes_of(k_axes));
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  }
  if (split) {
    // Pairs interleaved along K: A'[.., m, 2k + s], B'[.., n, 2k + s].
    auto spaced = [&](const std::vector<int> &rows) {
      Ten t = dense(DType::BF16, concat(batch, rows, k_axes), "");
      for (Sz &stride : t.strides) stride *= 2;
      return t;
    };
    p.a_f32 = a.dtype == DType::F32;
    p.b_f32 = b.dtype == DType::F32;
    a = spaced(m_axes);
    b = spaced(n_axes);
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));  // 2K: one row of pairs
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
    sAk = sBk = Sz(1);
  }
  p.unpack = !epilogue && (!sCm || !sCn);
  if (p.unpack) {
    out = dense(out.dtype, concat(batch, m_axes, n_axes), "");
    sCm = merged_stride(out, m_axes, sizes_of(m_axes));
    sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  }
  // A fused epilogue computes the result in place: its strides are the epilogue's, not these.
  if (!sCm || !sCn) sCm = sCn = Sz(0);
  Sz M = numel(m_axes), N = numel(n_axes), K = numel(k_axes) * Sz(split ? 2 : 1), batches = numel(batch);
  // Block tiles: 128 x 128, or for a fused kernel the schedule's group tiles
  // of the innermost M and N axes, each the nearest of the supported 64 and 128.
  int64_t BM = 128, BN = 128;
  std::string &tiles = p.tiles;
  if (epilogue) {
    // The rows of the schedule's tile along a merged dimension: the innermost
    // axis's group, times the next one's while the inner group is the whole axis.
    auto pick = [&](const std::vector<int> &group, const Sz &extent_size, int64_t &tile, const char *what) {
      const int64_t extent = extent_size.hint();
      int64_t asked = 1;
      std::string said;
      for (size_t i = group.size(); i-- > 0;) {
        auto it = epilogue->groups.find(group[i]);
        if (it == epilogue->groups.end()) break;
        asked *= it->second;
        said = "group " + axis_names_[static_cast<size_t>(group[i])] + " by " + str(it->second) +
               (said.empty() ? "" : " x " + said);
        if (!size(group[i]).known() || it->second < *size(group[i]).constant()) break;
      }
      tile = gemm_block_tile(said.empty() ? std::nullopt : std::optional<int64_t>(asked), extent);
      if (extent <= 64) {
        said = "the dimension has " + str(extent) + (said.empty() ? "" : "; " + said);
      } else if (said.empty()) {
        said = "not grouped";
      } else {
        if (said.find(" x ") != std::string::npos) said += " = " + str(asked);
        if (asked != tile) said += ": the nearest supported tile";
      }
      tiles += std::string(tiles.empty() ? "" : ", ") + what + " " + str(tile) + " (" + said + ")";
    };
    pick(m_axes, numel(m_axes), BM, "BM");
    pick(n_axes, numel(n_axes), BN, "BN");
  }
  // How each operand is staged: cp.async along its contiguous dimension when rows are 16-byte aligned.
  // (16 bytes: 8 elements of 16 bits, 16 of 8 bits.)
  const int64_t vector = p.q8 ? 16 : 8;
  auto aligned = [&](const Ten &t, const Sz &other_stride, const Sz &extent) {
    if (!other_stride.multiple_of(vector) || !extent.multiple_of(vector)) return false;
    for (int ax : batch)
      if (!t.stride(ax).multiple_of(vector)) return false;
    return true;
  };
  int la = 0, lb = 0;
  if (a.computed >= 0)
    la = *sAk == 1 ? 3 : 4;  // computed in the order its dense layout (its inputs' order) runs
  else if (*sAk == 1 && aligned(a, *sAm, K))
    la = 1;
  else if (*sAm == 1 && aligned(a, *sAk, M))
    la = 2;
  if (b.computed >= 0)
    lb = *sBk == 1 ? 3 : 4;
  else if (*sBk == 1 && aligned(b, *sBn, K))
    lb = 1;
  else if (*sBn == 1 && aligned(b, *sBk, N))
    lb = 2;
  p.split = split;
  p.a = a;
  p.b = b;
  p.out = out;
  p.sAm = *sAm, p.sAk = *sAk, p.sBk = *sBk, p.sBn = *sBn, p.sCm = *sCm, p.sCn = *sCn;
  p.M = M, p.N = N, p.K = K, p.batches = batches;
  p.BM = BM, p.BN = BN;
  p.la = la, p.lb = lb;
  p.f16 = a.dtype == DType::F16;
  return true;
}

}  // namespace ncd::cuda::detail
