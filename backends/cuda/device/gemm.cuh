//! The tiled tensor-core GEMM main loop that every GEMM kernel instantiates
//! (emitted after prelude.cuh).
// ---------------------------------------------------------------- tensor-core GEMM
// One BM x BN output tile (64 or 128 each; 128 x 128 by default) of
// C[m, n] = sum_k A[m, k] B[k, n] for a block of 256 threads (8 warps as
// 2 x 4, each BM/2 x BN/4: acc[BM/32][BN/32][4] per thread). Operands are 16-bit (bf16 or f16).
// Sizes and strides are arguments: the kernels pass literals, which the
// inlined body folds as constants, or runtime sizes. kLA / kLB say how a K-chunk of BK is
// staged through shared memory: 1 = cp.async along the contiguous K (tile kept
// [row][k]), 2 = cp.async along the contiguous M / N (tile kept [k][row]),
// 0 = element loads (any strides), 3 / 4 = computed (a fused kernel's
// prologue: the functor fa / fb gives the bits of element (row, k), K fastest
// for 3, rows fastest for 4, as the operand's inputs lie; tile kept [row][k]).
// Two stages: the next chunk loads while the current one is multiplied.
struct ncd_no_load {
  __device__ uint16_t operator()(int64_t, int64_t) const { return 0; }
};
template <bool kF16, int kLA, int kLB, int BM = 128, int BN = 128, class FA = ncd_no_load, class FB = ncd_no_load>
__device__ __forceinline__ void ncd_gemm_tile(const uint16_t *__restrict__ A, const uint16_t *__restrict__ B,
                                              const int64_t M, const int64_t N, const int64_t K, const int64_t sAm,
                                              const int64_t sAk, const int64_t sBk, const int64_t sBn, int64_t m0,
                                              int64_t n0, float (&acc)[BM / 32][BN / 32][4], FA fa = {}, FB fb = {}) {
  static_assert((BM == 64 || BM == 128) && (BN == 64 || BN == 128), "block tiles are 64 or 128");
  constexpr int BK = 32, PAD = 8, THREADS = 256;
  constexpr int MI = BM / 32, NJ = BN / 32, WM = BM / 2, WN = BN / 4;  // fragments and extent per warp
  constexpr int AS = kLA == 2 ? BM + PAD : BK + PAD;  // row stride of the staged A tile
  constexpr int BS = kLB == 2 ? BN + PAD : BK + PAD;
  constexpr int A_ELEMS = kLA == 2 ? BK * AS : BM * AS;
  constexpr int B_ELEMS = kLB == 2 ? BK * BS : BN * BS;
  __shared__ __align__(16) uint16_t sA[2][A_ELEMS];
  __shared__ __align__(16) uint16_t sB[2][B_ELEMS];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;
  const int wm = warp / 4, wn = warp % 4;
  for (int i = 0; i < MI; ++i)
    for (int j = 0; j < NJ; ++j)
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.f;

  auto load = [&](int stage, int64_t k0) {
    if constexpr (kLA == 1) {
      for (int c = tid; c < BM * BK / 8; c += THREADS) {
        const int r = c / (BK / 8), kc = (c % (BK / 8)) * 8;
        const int64_t m = m0 + r, k = k0 + kc;
        const bool ok = m < M && k < K;
        ncd_cp_async16(&sA[stage][r * AS + kc], ok ? A + m * sAm + k : A, ok);
      }
    } else if constexpr (kLA == 2) {
      for (int c = tid; c < BM * BK / 8; c += THREADS) {
        const int r = c / (BM / 8), mc = (c % (BM / 8)) * 8;
        const int64_t m = m0 + mc, k = k0 + r;
        const bool ok = m < M && k < K;
        ncd_cp_async16(&sA[stage][r * AS + mc], ok ? A + m + k * sAk : A, ok);
      }
    } else if constexpr (kLA >= 3) {
      for (int e = tid; e < BM * BK; e += THREADS) {
        const int r = kLA == 3 ? e / BK : e % BM, kk = kLA == 3 ? e % BK : e / BM;
        const int64_t m = m0 + r, k = k0 + kk;
        sA[stage][r * AS + kk] = (m < M && k < K) ? fa(m, k) : uint16_t(0);
      }
    } else {
      for (int e = tid; e < BM * BK; e += THREADS) {
        const int r = e / BK, kk = e % BK;
        const int64_t m = m0 + r, k = k0 + kk;
        sA[stage][r * AS + kk] = (m < M && k < K) ? A[m * sAm + k * sAk] : uint16_t(0);
      }
    }
    if constexpr (kLB == 1) {
      for (int c = tid; c < BN * BK / 8; c += THREADS) {
        const int r = c / (BK / 8), kc = (c % (BK / 8)) * 8;
        const int64_t n = n0 + r, k = k0 + kc;
        const bool ok = n < N && k < K;
        ncd_cp_async16(&sB[stage][r * BS + kc], ok ? B + n * sBn + k : B, ok);
      }
    } else if constexpr (kLB == 2) {
      for (int c = tid; c < BN * BK / 8; c += THREADS) {
        const int r = c / (BN / 8), nc = (c % (BN / 8)) * 8;
        const int64_t n = n0 + nc, k = k0 + r;
        const bool ok = n < N && k < K;
        ncd_cp_async16(&sB[stage][r * BS + nc], ok ? B + n + k * sBk : B, ok);
      }
    } else if constexpr (kLB >= 3) {
      for (int e = tid; e < BN * BK; e += THREADS) {
        const int r = kLB == 3 ? e / BK : e % BN, kk = kLB == 3 ? e % BK : e / BN;
        const int64_t n = n0 + r, k = k0 + kk;
        sB[stage][r * BS + kk] = (n < N && k < K) ? fb(n, k) : uint16_t(0);
      }
    } else {
      for (int e = tid; e < BN * BK; e += THREADS) {
        const int r = e / BK, kk = e % BK;
        const int64_t n = n0 + r, k = k0 + kk;
        sB[stage][r * BS + kk] = (n < N && k < K) ? B[k * sBk + n * sBn] : uint16_t(0);
      }
    }
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
    const uint16_t *a_tile = sA[s];
    const uint16_t *b_tile = sB[s];
#pragma unroll
    for (int kk = 0; kk < BK; kk += 16) {
      uint32_t af[MI][4], bf[NJ][2];
#pragma unroll
      for (int i = 0; i < MI; ++i) {
        const int r = wm * WM + i * 16 + g;
        if constexpr (kLA == 2) {
          const uint16_t *p = a_tile + (kk + 2 * t) * AS + r;
          af[i][0] = ncd_pack(p[0], p[AS]);
          af[i][1] = ncd_pack(p[8], p[AS + 8]);
          af[i][2] = ncd_pack(p[8 * AS], p[9 * AS]);
          af[i][3] = ncd_pack(p[8 * AS + 8], p[9 * AS + 8]);
        } else {
          const uint16_t *p = a_tile + r * AS + kk + 2 * t;
          af[i][0] = ncd_ld32(p);
          af[i][1] = ncd_ld32(p + 8 * AS);
          af[i][2] = ncd_ld32(p + 8);
          af[i][3] = ncd_ld32(p + 8 * AS + 8);
        }
      }
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const int c = wn * WN + j * 8 + g;
        if constexpr (kLB == 2) {
          const uint16_t *p = b_tile + (kk + 2 * t) * BS + c;
          bf[j][0] = ncd_pack(p[0], p[BS]);
          bf[j][1] = ncd_pack(p[8 * BS], p[9 * BS]);
        } else {
          const uint16_t *p = b_tile + c * BS + kk + 2 * t;
          bf[j][0] = ncd_ld32(p);
          bf[j][1] = ncd_ld32(p + 8);
        }
      }
#pragma unroll
      for (int i = 0; i < MI; ++i)
#pragma unroll
        for (int j = 0; j < NJ; ++j) ncd_mma<kF16>(acc[i][j], af[i], bf[j]);
    }
    __syncthreads();
  }
}

