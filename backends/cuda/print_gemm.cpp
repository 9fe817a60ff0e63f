// The tensor-core GEMM: a two-operand 16-bit contraction (or f32 beside bf16,
// split into bf16 hi + lo pairs) as a batched C[m, n] = sum_k A[m, k] B[k, n]
// over merged M, N and K dimensions, instantiating ncd_gemm_tile
// (device/gemm.cuh) with compile-time sizes, strides, staging and tiles, with
// a plain store or a fused epilogue (print_fused.cpp) on the accumulators.
#include "generator.h"

namespace ncd::cuda::detail {

// The axes of `group` as one dimension of `t`: they must be adjacent in
// memory, first outermost. Returns the stride of the merged dimension (0 when
// the group is empty or `t` lacks every axis of it), or -1 when not mergeable.
int64_t merged_stride(const Ten &t, const std::vector<int> &group, const std::vector<int64_t> &sizes) {
  if (group.empty()) return 0;
  for (size_t i = 0; i + 1 < group.size(); ++i)
    if (t.stride(group[i]) != t.stride(group[i + 1]) * sizes[i + 1]) return -1;
  return t.stride(group.back());
}

bool Generator::gemm(Frame &frame, const ir::Op &o, const std::vector<Ten> &tensors, const std::vector<Ten> &scalars,
                     const Ten &final_out, std::string &why, const GemmEpilogue *epilogue) {
  Ten a = tensors[0], b = tensors[1], out = final_out;
  // An f32 operand beside a bf16 one (a pairwise step of a longer product
  // keeps its partial products in f32) is split into bf16 hi + lo terms and
  // multiplied over twice the summed length, against the other operand
  // twice: the products are those of the f32 value to about 16 bits (exact
  // for a product of two bf16 values), still on tensor cores.
  const bool split = (a.dtype == DType::F32 && b.dtype == DType::BF16) || (a.dtype == DType::BF16 && b.dtype == DType::F32);
  if (!split && (!is_16bit_float(a.dtype) || a.dtype != b.dtype)) {
    why = std::string("operands are ") + std::string(ir::dtype_name(a.dtype)) + " and " +
          std::string(ir::dtype_name(b.dtype)) + "; tensor cores take two bf16, two f16, or f32 with bf16";
    return false;
  }
  if (a.kind != Ten::Kind::Buffer || b.kind != Ten::Kind::Buffer) {
    why = "an operand is not stored";
    return false;
  }
  std::vector<int> summed;
  for (int axis : o.axes) summed.push_back(rt_axis(frame, axis));
  std::vector<int> m_axes, n_axes, k_axes, batch;
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
  // Order each group by A's (M, K) or B's (N) layout, outermost first, so that contiguous groups merge.
  auto by_stride = [](const Ten &t, std::vector<int> &group) {
    std::stable_sort(group.begin(), group.end(), [&](int p, int q) { return t.stride(p) > t.stride(q); });
  };
  by_stride(a, m_axes);
  by_stride(a, k_axes);
  by_stride(b, n_axes);
  auto sizes_of = [&](const std::vector<int> &group) {
    std::vector<int64_t> s;
    for (int ax : group) s.push_back(size(ax));
    return s;
  };
  if (numel(batch) > 65535 || (numel(m_axes) + 63) / 64 > 65535) {
    why = "the grid would be too large";
    return false;
  }
  int64_t sAm = merged_stride(a, m_axes, sizes_of(m_axes)), sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  int64_t sBk = merged_stride(b, k_axes, sizes_of(k_axes)), sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  int64_t sCm = merged_stride(out, m_axes, sizes_of(m_axes)), sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  // Operands whose M, N or K axes are not adjacent in memory are packed first
  // (one copy), and such a result is written to a packed tile and copied out.
  auto concat = [](std::vector<int> x1, const std::vector<int> &x2, const std::vector<int> &x3) {
    x1.insert(x1.end(), x2.begin(), x2.end());
    x1.insert(x1.end(), x3.begin(), x3.end());
    return x1;
  };
  const ir::Value &result_value = frame.diagram->value(o.results[0]);
  if (sAm < 0 || sAk < 0) {
    Ten packed = alloc(a.dtype, concat(batch, m_axes, k_axes));
    copy(a, packed, "operand of " + result_value.name + ", packed for tensor cores");
    a = packed;
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));
    sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  }
  if (sBk < 0 || sBn < 0) {
    Ten packed = alloc(b.dtype, concat(batch, n_axes, k_axes));
    copy(b, packed, "operand of " + result_value.name + ", packed for tensor cores");
    b = packed;
    sBk = merged_stride(b, k_axes, sizes_of(k_axes));
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  }
  if (split) {
    // Pairs interleaved along K: A'[.., m, 2k + s], B'[.., n, 2k + s].
    auto spaced = [&](const Ten &from, const std::vector<int> &rows, bool f32, const char *what) {
      Ten t = alloc(DType::BF16, concat(batch, rows, k_axes), 2);
      for (int64_t &stride : t.strides) stride *= 2;
      split_copy(from, t, f32, std::string(what) + " of " + result_value.name + " for tensor cores");
      return t;
    };
    a = spaced(a, m_axes, a.dtype == DType::F32, a.dtype == DType::F32 ? "f32 operand" : "operand");
    b = spaced(b, n_axes, b.dtype == DType::F32, b.dtype == DType::F32 ? "f32 operand" : "operand");
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));  // 2K: one row of pairs
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
    sAk = sBk = 1;
  }
  bool unpack = !epilogue && (sCm < 0 || sCn < 0);
  if (unpack) {
    out = alloc(out.dtype, concat(batch, m_axes, n_axes));
    sCm = merged_stride(out, m_axes, sizes_of(m_axes));
    sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  }
  int64_t M = numel(m_axes), N = numel(n_axes), K = numel(k_axes) * (split ? 2 : 1), batches = numel(batch);
  // Block tiles: 128 x 128, or for a fused kernel the schedule's group tiles
  // of the innermost M and N axes, each the nearest of the supported 64 and 128.
  int64_t BM = 128, BN = 128;
  std::string tiles;
  if (epilogue) {
    // The rows of the schedule's tile along a merged dimension: the innermost
    // axis's group, times the next one's while the inner group is the whole axis.
    auto pick = [&](const std::vector<int> &group, int64_t extent, int64_t &tile, const char *what) {
      int64_t asked = 1;
      std::string said;
      for (size_t i = group.size(); i-- > 0;) {
        auto it = epilogue->groups.find(group[i]);
        if (it == epilogue->groups.end()) break;
        asked *= it->second;
        said = "group " + axis_names_[static_cast<size_t>(group[i])] + " by " + str(it->second) +
               (said.empty() ? "" : " x " + said);
        if (it->second < size(group[i])) break;
      }
      if (extent <= 64) {
        tile = 64;
        said = "the dimension has " + str(extent) + (said.empty() ? "" : "; " + said);
      } else if (said.empty()) {
        tile = 128;
        said = "not grouped";
      } else {
        tile = asked <= 90 ? 64 : 128;
        if (said.find(" x ") != std::string::npos) said += " = " + str(asked);
        if (asked != tile) said += ": the nearest supported tile";
      }
      tiles += std::string(tiles.empty() ? "" : ", ") + what + " " + str(tile) + " (" + said + ")";
    };
    pick(m_axes, numel(m_axes), BM, "BM");
    pick(n_axes, numel(n_axes), BN, "BN");
  }
  // How each operand is staged: cp.async along its contiguous dimension when rows are 16-byte aligned.
  auto aligned = [&](const Ten &t, int64_t other_stride, int64_t extent) {
    if (other_stride % 8 != 0 || extent % 8 != 0) return false;
    for (int ax : batch)
      if (t.stride(ax) % 8 != 0) return false;
    return true;
  };
  int la = 0, lb = 0;
  if (sAk == 1 && aligned(a, sAm, K))
    la = 1;
  else if (sAm == 1 && aligned(a, sAk, M))
    la = 2;
  if (sBk == 1 && aligned(b, sBn, K))
    lb = 1;
  else if (sBn == 1 && aligned(b, sBk, N))
    lb = 2;

  KernelArgs args;
  std::string pa = args.in(a), pb = args.in(b);
  std::string scale;
  for (const Ten &s : scalars) scale += " * " + load(args, s, [](int) { return std::string("0"); });
  std::string r = epilogue ? std::string() : args.out(out);
  bool f16 = a.dtype == DType::F16;
  auto index = [](int ax) { return x(ax); };
  std::string k = "// GEMM " + axis_list(m_axes) + " x " + axis_list(n_axes) + ", summed " + axis_list(k_axes) +
                  (batch.empty() ? "" : ", batched over " + axis_list(batch)) + "; A staged " +
                  (la == 1 ? "by cp.async along K" : la == 2 ? "by cp.async along M" : "by element loads") +
                  ", B staged " + (lb == 1 ? "by cp.async along K" : lb == 2 ? "by cp.async along N" : "by element loads") +
                  (split ? "; the f32 operand split into bf16 hi + lo pairs along K" : "") + "\n";
  if (epilogue) k += "// tiles: " + tiles + "\n";
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax)) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  // The per-element code; an epilogue's reads and writes join args after A, B and the scalars.
  std::string store;
  const std::string pad = "        ";
  if (epilogue) {
    store = decompose(m_axes, "m", pad) + decompose(n_axes, "n", pad);
    store += epilogue->body(args, "acc[i][j][c] * scale", pad);
  } else {
    store = pad + r + "[m * " + str(sCm) + " + n * " + str(sCn) + batch_offset(out) + "] = ncd_to<" +
            element_type(out.dtype) + ">(acc[i][j][c] * scale);\n";
  }
  const bool default_tiles = BM == 128 && BN == 128;
  k += "__global__ void __launch_bounds__(256) @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.z;\n" + decompose(batch, "b", "  ");
  k += "  const uint16_t *A = reinterpret_cast<const uint16_t *>(" + pa + batch_offset(a) + ");\n";
  k += "  const uint16_t *B = reinterpret_cast<const uint16_t *>(" + pb + batch_offset(b) + ");\n";
  k += "  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * " + str(BM) + ", n0 = static_cast<int64_t>(blockIdx.x) * " +
       str(BN) + ";\n";
  k += "  float acc[" + str(BM / 32) + "][" + str(BN / 32) + "][4];\n";
  k += "  ncd_gemm_tile<" + std::string(f16 ? "true" : "false") + ", " + str(M) + ", " + str(N) + ", " + str(K) + ", " +
       str(sAm) + ", " + str(sAk) + ", " + str(sBk) + ", " + str(sBn) + ", " + str(la) + ", " + str(lb) +
       (default_tiles ? std::string() : ", " + str(BM) + ", " + str(BN)) + ">(A, B, m0, n0, acc);\n";
  k += "  const float scale = 1.f" + scale + ";\n";
  k += "  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;\n";
  k += "  for (int i = 0; i < " + str(BM / 32) + "; ++i)\n    for (int j = 0; j < " + str(BN / 32) +
       "; ++j)\n      for (int c = 0; c < 4; ++c) {\n";
  k += "        const int64_t m = m0 + (warp / 4) * " + str(BM / 2) + " + i * 16 + lane / 4 + (c >= 2 ? 8 : 0);\n";
  k += "        const int64_t n = n0 + (warp % 4) * " + str(BN / 4) + " + j * 8 + (lane % 4) * 2 + (c & 1);\n";
  k += "        if (m >= " + str(M) + " || n >= " + str(N) + ") continue;\n";
  k += store;
  k += "      }\n}\n";
  (void)index;
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::string name = add_kernel((epilogue ? "gemm_fused_" : "gemm_") + result.name, k);
  line("// " + result.name + axis_list(out.axes) + " = contract" + axis_list(summed) + " on tensor cores" +
       (epilogue ? " with its fused epilogue" : ""));
  line(name + "<<<dim3(" + str((N + BN - 1) / BN) + ", " + str((M + BM - 1) / BM) + ", " + str(batches) +
       "), 256, 0, stream>>>(" + args.arg_list() + ");");
  line("NCD_LAUNCHED();");
  if (unpack) copy(out, final_out, result.name + " from its packed tile");
  return true;
}

// A GEMM whose epilogue computes the kernel's outputs from each accumulator;
// false, with gemm's reason, when the contraction is not one for tensor cores.
bool Generator::fused_gemm(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const FusedLayout &l, FusedKernel &kernel,
                           std::string &why) {
  auto identity = [](int a) { return x(a); };
  const ir::Op &c = *m.main;
  std::vector<Ten> tensors, scalars;
  for (int id : c.operands) {
    Ten t = get(frame, id);
    (d.value(id).axes.empty() ? scalars : tensors).push_back(t);
  }
  const ir::Value &cv = d.value(c.results.at(0));
  Ten cten;
  cten.dtype = cv.dtype;
  cten.axes = l.space;
  cten.strides.assign(l.space.size(), 1);
  for (size_t i = l.space.size(), stride = 1; i-- > 0;) {
    cten.strides[i] = static_cast<int64_t>(stride);
    stride *= static_cast<size_t>(size(l.space[i]));
  }
  GemmEpilogue epilogue;
  epilogue.groups = kernel.groups;
  epilogue.body = [&](KernelArgs &args, const std::string &acc, const std::string &pad) {
    ExprCtx ctx;
    ctx.pad = pad;
    ctx.counter = &kernel.counter;
    ctx.index = identity;
    ctx.code += pad + "const float e_acc = " + rounded(cv.dtype, acc) + ";  // " + cv.name + "\n";
    ctx.special[c.results[0]] = "e_acc";
    fused_stores(frame, d, kernel, args, ctx);
    return ctx.code;
  };
  size_t mark = kernel_order_.size();
  if (!gemm(frame, c, tensors, scalars, cten, why, &epilogue)) return false;
  if (kernel_order_.size() > mark && kernel_order_.back().find("_gemm_fused_") != std::string::npos)
    kernel_order_.back() = kernel.header + kernel_order_.back();
  return true;
}

}  // namespace ncd::cuda::detail
