//! The tensor-core GEMM main loop for 8-bit operands (int8 and fp8; emitted
//! after gemm.cuh): docs/CUDA.md, "Quantized contractions".
// ---------------------------------------------------------------- 8-bit tensor-core GEMM
// One BM x BN output tile of C[m, n] = sum_k A[m, k] B[k, n] over 8-bit
// operands, for a block of 256 threads (8 warps as 2 x 4), as ncd_gemm_tile
// but on m16n8k32 tiles: a K-chunk is 64 elements (64 bytes, the 16-bit
// template's 32 elements), and each warp step multiplies 32 of them.
// kTA / kTB: 0 = s8, 1 = f8e4m3, 2 = f8e5m2 (both s8, or both fp8).
//   s8 x s8: mma.sync m16n8k32 .s32.s8.s8.s32, exact s32 accumulators (Acc =
//     int); exact while K * 2^14 < 2^31, which the planner checks.
//   fp8: mma.sync m16n8k32 .f32.e4m3/.e5m2 on sm_89 and later (Acc = float);
//     sm_80 has no fp8 tensor cores, so there each 8-bit fragment is widened to
//     f16 (exact: every e4m3 and e5m2 value is an f16) and multiplied by two
//     m16n8k16 f16 steps. The products are the same exact values either way.
// The fragment layouts of m16n8k32 8-bit operands are those of m16n8k16 16-bit
// ones with element pairs replaced by quadruples, so a [row][k] tile (kL 1 or
// 0) gives each register as one 32-bit shared-memory load; a [k][row] tile
// (kL 2: the operand is contiguous along M or N, staged as it lies) is
// transposed when the fragments are built, four byte loads per register.
// kLA / kLB: 1 = cp.async along the contiguous K, 2 = cp.async along the
// contiguous M / N, 0 = element loads (any strides), 3 / 4 = computed by the
// functor fa / fb (a fused kernel's prologue, e.g. the quantization of the
// activations: K fastest for 3, rows fastest for 4). Two stages.
template <int kT>
__device__ __forceinline__ void ncd_f8x4_to_f16(uint32_t v, uint32_t &lo, uint32_t &hi) {
  constexpr __nv_fp8_interpretation_t kind = kT == 1 ? __NV_E4M3 : __NV_E5M2;
  const __half2_raw l = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v & 0xffffu), kind);
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v >> 16), kind);
  lo = static_cast<uint32_t>(l.x) | (static_cast<uint32_t>(l.y) << 16);
  hi = static_cast<uint32_t>(h.x) | (static_cast<uint32_t>(h.y) << 16);
}

// D = A * B + D on one m16n8k32 tile of 8-bit operands (A row-major 16x32, B "col" 32x8).
template <int kTA, int kTB>
__device__ __forceinline__ void ncd_mma_q8(int *c, const uint32_t *a, const uint32_t *b) {
  static_assert(kTA == 0 && kTB == 0, "integer accumulators take s8 operands");
  asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
               : "+r"(c[0]), "+r"(c[1]), "+r"(c[2]), "+r"(c[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}
template <int kTA, int kTB>
__device__ __forceinline__ void ncd_mma_q8(float *c, const uint32_t *a, const uint32_t *b) {
  static_assert(kTA > 0 && kTB > 0, "f32 accumulators take fp8 operands");
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
#define NCD_MMA_F8(TA, TB)                                                    \
  asm volatile("mma.sync.aligned.m16n8k32.row.col.f32." TA "." TB             \
               ".f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n" \
               : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])               \
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
  if constexpr (kTA == 1 && kTB == 1)
    NCD_MMA_F8("e4m3", "e4m3");
  else if constexpr (kTA == 1)
    NCD_MMA_F8("e4m3", "e5m2");
  else if constexpr (kTB == 1)
    NCD_MMA_F8("e5m2", "e4m3");
  else
    NCD_MMA_F8("e5m2", "e5m2");
#undef NCD_MMA_F8
#else
  // Register r of an 8-bit fragment holds k = 4t..4t+3 (+16 for the second
  // half); its low pair and high pair become two f16x2 registers that the
  // m16n8k16 layout reads as k = 2t, 2t+1 and 8+2t, 9+2t. A and B are
  // permuted alike, so each product is still summed exactly once.
  uint32_t a16[2][4], b16[2][2];
  ncd_f8x4_to_f16<kTA>(a[0], a16[0][0], a16[0][2]);
  ncd_f8x4_to_f16<kTA>(a[1], a16[0][1], a16[0][3]);
  ncd_f8x4_to_f16<kTA>(a[2], a16[1][0], a16[1][2]);
  ncd_f8x4_to_f16<kTA>(a[3], a16[1][1], a16[1][3]);
  ncd_f8x4_to_f16<kTB>(b[0], b16[0][0], b16[0][1]);
  ncd_f8x4_to_f16<kTB>(b[1], b16[1][0], b16[1][1]);
  ncd_mma<true>(c, a16[0], b16[0]);
  ncd_mma<true>(c, a16[1], b16[1]);
#endif
}

__device__ __forceinline__ uint32_t ncd_pack4(uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3) {
  return static_cast<uint32_t>(b0) | (static_cast<uint32_t>(b1) << 8) | (static_cast<uint32_t>(b2) << 16) |
         (static_cast<uint32_t>(b3) << 24);
}

struct ncd_no_load_q8 {
  __device__ uint8_t operator()(int64_t, int64_t) const { return 0; }
};

template <int kTA, int kTB, int kLA, int kLB, int BM = 128, int BN = 128, class Acc = float, class FA = ncd_no_load_q8,
          class FB = ncd_no_load_q8>
__device__ __forceinline__ void ncd_gemm_tile_q8(const uint8_t *__restrict__ A, const uint8_t *__restrict__ B,
                                                 const int64_t M, const int64_t N, const int64_t K, const int64_t sAm,
                                                 const int64_t sAk, const int64_t sBk, const int64_t sBn, int64_t m0,
                                                 int64_t n0, Acc (&acc)[BM / 32][BN / 32][4], FA fa = {}, FB fb = {}) {
  static_assert((BM == 64 || BM == 128) && (BN == 64 || BN == 128), "block tiles are 64 or 128");
  constexpr int BK = 64, PAD = 16, THREADS = 256;  // bytes: PAD keeps staged rows 16-byte aligned
  constexpr int MI = BM / 32, NJ = BN / 32, WM = BM / 2, WN = BN / 4;
  constexpr int AS = kLA == 2 ? BM + PAD : BK + PAD;
  constexpr int BS = kLB == 2 ? BN + PAD : BK + PAD;
  constexpr int A_ELEMS = kLA == 2 ? BK * AS : BM * AS;
  constexpr int B_ELEMS = kLB == 2 ? BK * BS : BN * BS;
  __shared__ __align__(16) uint8_t sA[2][A_ELEMS];
  __shared__ __align__(16) uint8_t sB[2][B_ELEMS];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / 4, wn = warp % 4;
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j)
      for (int c = 0; c < 4; ++c) acc[i][j][c] = Acc(0);

  // One operand's K-chunk: R rows (M or N) of a [row][k] or [k][row] tile.
  auto stage = [&](uint8_t *tile, const uint8_t *X, auto layout, int R, int S, int64_t r0, int64_t rows, int64_t sr,
                   int64_t sk, int64_t k0, auto f) {
    constexpr int kL = decltype(layout)::value;
    if constexpr (kL >= 3) {
      for (int e = tid; e < R * BK; e += THREADS) {
        const int r = kL == 3 ? e / BK : e % R, kk = kL == 3 ? e % BK : e / R;
        const int64_t row = r0 + r, k = k0 + kk;
        tile[r * S + kk] = (row < rows && k < K) ? f(row, k) : uint8_t(0);
      }
    } else if constexpr (kL == 1) {
      for (int c = tid; c < R * BK / 16; c += THREADS) {
        const int r = c / (BK / 16), kc = (c % (BK / 16)) * 16;
        const int64_t row = r0 + r, k = k0 + kc;
        const bool ok = row < rows && k < K;
        ncd_cp_async16(&tile[r * S + kc], ok ? X + row * sr + k : X, ok);
      }
    } else if constexpr (kL == 2) {
      for (int c = tid; c < R * BK / 16; c += THREADS) {
        const int r = c / (R / 16), rc = (c % (R / 16)) * 16;
        const int64_t row = r0 + rc, k = k0 + r;
        const bool ok = row < rows && k < K;
        ncd_cp_async16(&tile[r * S + rc], ok ? X + row + k * sk : X, ok);
      }
    } else {
      for (int e = tid; e < R * BK; e += THREADS) {
        const int r = e / BK, kk = e % BK;
        const int64_t row = r0 + r, k = k0 + kk;
        tile[r * S + kk] = (row < rows && k < K) ? X[row * sr + k * sk] : uint8_t(0);
      }
    }
  };
  auto load = [&](int s, int64_t k0) {
    stage(sA[s], A, std::integral_constant<int, kLA>(), BM, AS, m0, M, sAm, sAk, k0, fa);
    stage(sB[s], B, std::integral_constant<int, kLB>(), BN, BS, n0, N, sBn, sBk, k0, fb);
  };
  // The four bytes at k = k, k+1, k+2, k+3 of row r of a staged tile.
  auto quad = [](const uint8_t *tile, auto layout, int S, int r, int k) -> uint32_t {
    if constexpr (decltype(layout)::value == 2)
      return ncd_pack4(tile[k * S + r], tile[(k + 1) * S + r], tile[(k + 2) * S + r], tile[(k + 3) * S + r]);
    else
      return *reinterpret_cast<const uint32_t *>(tile + r * S + k);
  };

  const int64_t KT = (K + BK - 1) / BK;
  load(0, 0);
  ncd_cp_async_commit();
  for (int64_t kt = 0; kt < KT; ++kt) {
    const int s = static_cast<int>(kt & 1);
    if (kt + 1 < KT) {
      load(s ^ 1, (kt + 1) * BK);
      ncd_cp_async_commit();
      ncd_cp_async_wait<1>();
    } else {
      ncd_cp_async_wait<0>();
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += 32) {
      uint32_t af[MI][4], bf[NJ][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int r = wm * WM + i * 16 + g;
        af[i][0] = quad(sA[s], std::integral_constant<int, kLA>(), AS, r, kk + 4 * t);
        af[i][1] = quad(sA[s], std::integral_constant<int, kLA>(), AS, r + 8, kk + 4 * t);
        af[i][2] = quad(sA[s], std::integral_constant<int, kLA>(), AS, r, kk + 16 + 4 * t);
        af[i][3] = quad(sA[s], std::integral_constant<int, kLA>(), AS, r + 8, kk + 16 + 4 * t);
      }
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const int c = wn * WN + j * 8 + g;
        bf[j][0] = quad(sB[s], std::integral_constant<int, kLB>(), BS, c, kk + 4 * t);
        bf[j][1] = quad(sB[s], std::integral_constant<int, kLB>(), BS, c, kk + 16 + 4 * t);
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) ncd_mma_q8<kTA, kTB>(acc[i][j], af[i], bf[j]);
    }
    __syncthreads();
  }
}
