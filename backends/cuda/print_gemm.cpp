// The tensor-core GEMM: a two-operand 16-bit contraction (or f32 beside bf16,
// split into bf16 hi + lo pairs) as a batched C[m, n] = sum_k A[m, k] B[k, n]
// over merged M, N and K dimensions, instantiating ncd_gemm_tile
// (device/gemm.cuh) with the plan's sizes, strides, staging and tiles, with
// a plain store or a fused epilogue (print_fused.cpp) on the accumulators.
#include "generator.h"

namespace ncd::cuda::detail {

bool Generator::gemm(Frame &frame, const ir::Op &o, const std::vector<Ten> &tensors, const std::vector<Ten> &scalars,
                     const Ten &final_out, std::string &why, const GemmEpilogue *epilogue) {
  GemmPlan p;
  if (!plan_gemm(frame, o, tensors[0], tensors[1], final_out, epilogue, p, why)) return false;
  Ten a = tensors[0], b = tensors[1], out = final_out;
  const ir::Value &result_value = frame.diagram->value(o.results[0]);
  // The copies the plan asks for, in its order (the workspace is laid out as they come).
  if (p.pack_a) {
    Ten packed = alloc(a.dtype, p.packed_a.axes);
    copy(a, packed, "operand of " + result_value.name + ", packed for tensor cores");
    a = packed;
  }
  if (p.pack_b) {
    Ten packed = alloc(b.dtype, p.packed_b.axes);
    copy(b, packed, "operand of " + result_value.name + ", packed for tensor cores");
    b = packed;
  }
  if (p.split) {
    // Pairs interleaved along K: A'[.., m, 2k + s], B'[.., n, 2k + s].
    auto spaced = [&](const Ten &from, const Ten &layout, bool f32, const char *what) {
      Ten t = alloc(DType::BF16, layout.axes, 2);
      for (Sz &stride : t.strides) stride *= 2;
      split_copy(from, t, f32, std::string(what) + " of " + result_value.name + " for tensor cores");
      return t;
    };
    a = spaced(a, p.a, p.a_f32, p.a_f32 ? "f32 operand" : "operand");
    b = spaced(b, p.b, p.b_f32, p.b_f32 ? "f32 operand" : "operand");
  }
  const bool unpack = p.unpack;
  if (unpack) out = alloc(out.dtype, p.out.axes);
  const std::vector<int> &summed = p.summed, &m_axes = p.m_axes, &n_axes = p.n_axes, &k_axes = p.k_axes,
                         &batch = p.batch;
  const bool split = p.split;
  const Sz sAm = p.sAm, sAk = p.sAk, sBk = p.sBk, sBn = p.sBn, sCm = p.sCm, sCn = p.sCn;
  const Sz M = p.M, N = p.N, K = p.K, batches = p.batches;
  const int64_t BM = p.BM, BN = p.BN;
  const int la = p.la, lb = p.lb;
  const std::string &tiles = p.tiles;
  KernelArgs args;
  // A computed operand (a fused kernel's prologue) is staged by a functor of
  // (row, k) that computes its bits from the kernel's inputs.
  auto functor = [&](const Ten &t, const std::vector<int> &rows, const char *row, const char *name) {
    if (t.computed < 0) return std::string();
    const std::string pad = "    ", bits = p.q8 ? "uint8_t" : "uint16_t";
    return "  auto " + std::string(name) + " = [&](const int64_t " + row + ", const int64_t k) -> " + bits + " {\n" +
           decompose(rows, row, pad) + decompose(p.k_axes, "k", pad) + epilogue->prologue(args, t, pad) + "  };\n";
  };
  std::string pa = a.computed < 0 ? args.in(a) : std::string(), fa = functor(a, p.m_axes, "m", "fa");
  std::string pb = b.computed < 0 ? args.in(b) : std::string(), fb = functor(b, p.n_axes, "n", "fb");
  // Scalar factors: float, or double beside the exact s32 sum of i8 products.
  const bool integer = p.integer;
  std::string scale;
  for (const Ten &s : scalars)
    scale += " * " + std::string(integer ? "static_cast<double>(" : "") +
             load(args, s, [](int) { return std::string("0"); }) + (integer ? ")" : "");
  std::string r = epilogue ? std::string() : args.out(out);
  const bool f16 = p.f16;
  auto index = [](int ax) { return x(ax); };
  std::string k = "// GEMM " + axis_list(m_axes) + " x " + axis_list(n_axes) + ", summed " + axis_list(k_axes) +
                  (batch.empty() ? "" : ", batched over " + axis_list(batch)) + "; A staged " +
                  (la == 1   ? "by cp.async along K"
                   : la == 2 ? "by cp.async along M"
                   : la >= 3 ? "as its prologue computes it"
                             : "by element loads") +
                  ", B staged " +
                  (lb == 1   ? "by cp.async along K"
                   : lb == 2 ? "by cp.async along N"
                   : lb >= 3 ? "as its prologue computes it"
                             : "by element loads") +
                  (split ? "; the f32 operand split into bf16 hi + lo pairs along K" : "") +
                  (p.q8 ? std::string("; 8-bit operands (") + std::string(ir::dtype_name(a.dtype)) + " x " +
                              std::string(ir::dtype_name(b.dtype)) + "), " +
                              (integer ? "exact s32 accumulators" : "f32 accumulators")
                        : std::string()) +
                  "\n";
  if (epilogue) k += "// tiles: " + tiles + "\n";
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax) != 0) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  // The per-element code; an epilogue's reads and writes join args after A, B and the scalars.
  std::string store;
  const std::string pad = "        ";
  // The accumulator as the epilogue's f32, and as stored: an s32 sum is
  // stored as it is into i32 (exact), else converted once from float64.
  const std::string value = integer ? "static_cast<double>(acc[i][j][c]) * scale" : "acc[i][j][c] * scale";
  std::string stored = "ncd_to<" + element_type(out.dtype) + ">(" + value + ")";
  if (integer && out.dtype == DType::I32 && scalars.empty())
    stored = "acc[i][j][c]";
  else if (integer && ir::is_integer(out.dtype))
    stored = "ncd_to_int<" + element_type(out.dtype) + ">(" + value + ")";
  else if (integer)
    stored = "ncd_to<" + element_type(out.dtype) + ">(static_cast<float>(" + value + "))";
  if (epilogue) {
    store = decompose(m_axes, "m", pad) + decompose(n_axes, "n", pad);
    store += epilogue->body(args, integer ? "static_cast<float>(" + value + ")" : value, pad);
  } else {
    store = pad + r + "[m * " + str(sCm) + " + n * " + str(sCn) + batch_offset(out) + "] = " + stored + ";\n";
  }
  const bool default_tiles = BM == 128 && BN == 128;
  k += "__global__ void __launch_bounds__(" + str(kGemmThreads) + ") @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.z;\n" + decompose(batch, "b", "  ");
  const std::string bits = p.q8 ? "uint8_t" : "uint16_t";
  auto pointer = [&](const char *name, const std::string &ptr, const Ten &t) {
    return "  const " + bits + " *" + name + " = " +
           (t.computed >= 0 ? std::string("nullptr")
                            : "reinterpret_cast<const " + bits + " *>(" + ptr + batch_offset(t) + ")") +
           ";\n";
  };
  k += pointer("A", pa, a) + pointer("B", pb, b) + fa + fb;
  k += "  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * " + str(BM) +
       ", n0 = static_cast<int64_t>(blockIdx.x) * " + str(BN) + ";\n";
  k += std::string(integer ? "  int acc[" : "  float acc[") + str(BM / 32) + "][" + str(BN / 32) + "][4];\n";
  const std::string none = p.q8 ? "ncd_no_load_q8{}" : "ncd_no_load{}";
  const std::string functors = fa.empty() && fb.empty() ? std::string()
                                                        : ", " + (fa.empty() ? none : std::string("fa")) + ", " +
                                                              (fb.empty() ? none : std::string("fb"));
  const std::string tile = p.q8 ? "ncd_gemm_tile_q8<" + str(p.ta) + ", " + str(p.tb) + ", "
                                : "ncd_gemm_tile<" + std::string(f16 ? "true" : "false") + ", ";
  k += "  " + tile + str(la) + ", " + str(lb) + (default_tiles ? std::string() : ", " + str(BM) + ", " + str(BN)) +
       ">(A, B, " + str(M) + ", " + str(N) + ", " + str(K) + ", " + str(sAm) + ", " + str(sAk) + ", " + str(sBk) +
       ", " + str(sBn) + ", m0, n0, acc" + functors + ");\n";
  k += std::string(integer ? "  const double scale = 1.0" : "  const float scale = 1.f") + scale + ";\n";
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
  if (!p.q8_note.empty()) note(&o, p.q8_note);
  line("// " + result.name + axis_list(out.axes) + " = contract" + axis_list(summed) + " on tensor cores" +
       (epilogue ? " with its fused epilogue" : ""));
  grid_check({tiles_for(M, BM), str(batches)}, result.name);
  line(name + "<<<dim3(" + tiles_for(N, BN) + ", " + tiles_for(M, BM) + ", " + str(batches) + "), " +
       str(kGemmThreads) + ", 0, stream>>>(" + launch_args(name, args) + ");");
  line("NCD_LAUNCHED();");
  if (unpack) copy(out, final_out, result.name + " from its packed tile");
  return true;
}

// A GEMM whose epilogue computes the kernel's outputs from each accumulator;
// false, with gemm's reason, when the contraction is not one for tensor cores.
bool Generator::fused_gemm(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const FusedLayout &l,
                           FusedKernel &kernel, std::string &why) {
  auto identity = [](int a) { return x(a); };
  const ir::Op &c = *m.main;
  std::vector<Ten> tensors, scalars;
  for (int id : c.operands) {
    if (m.prologue.count(id)) {
      Ten t = dense(d.value(id).dtype, fused_axes(frame, id), "");
      t.computed = id;
      tensors.push_back(t);
      continue;
    }
    Ten t = get(frame, id);
    (d.value(id).axes.empty() ? scalars : tensors).push_back(t);
  }
  const ir::Value &cv = d.value(c.results.at(0));
  Ten cten;
  cten.dtype = cv.dtype;
  cten.axes = l.space;
  cten.strides.assign(l.space.size(), Sz(1));
  Sz stride = 1;
  for (size_t i = l.space.size(); i-- > 0;) {
    cten.strides[i] = stride;
    stride *= size(l.space[i]);
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
  epilogue.prologue = [&](KernelArgs &args, const Ten &operand, const std::string &pad) {
    ExprCtx ctx;
    ctx.pad = pad;
    ctx.counter = &kernel.counter;
    ctx.index = identity;
    std::string v = fexpr(frame, args, ctx, operand.computed);
    return ctx.code + pad + "return ncd_bits<" + element_type(operand.dtype) + ">(" + v + ");\n";
  };
  size_t mark = kernel_order_.size();
  if (!gemm(frame, c, tensors, scalars, cten, why, &epilogue)) return false;
  if (kernel_order_.size() > mark && kernel_order_.back().find("_gemm_fused_") != std::string::npos)
    kernel_order_.back() = kernel.header + kernel_order_.back();
  return true;
}

}  // namespace ncd::cuda::detail
