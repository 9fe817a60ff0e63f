//! The streamed-attention block (FlashAttention-2 style) that every attention
//! kernel instantiates (emitted after gemm.cuh).
// ---------------------------------------------------------------- streamed attention
// FlashAttention-2 style: a block of BQ/16 warps owns BQ queries (16 per warp,
// Q resident in registers), streams keys and values through shared memory in
// chunks of BK (double-buffered with cp.async when rows are contiguous and
// aligned), and keeps the online-softmax state (row max, row sum, output
// accumulator) in registers. Scores are in log2 units (scale_log2 includes
// log2 e). With kScore, `score(s, q, k)` modifies each scaled score first (a
// softcap, a bias, a mask read from tensors: FlexAttention's score_mod). Key tiles the mask rules out for the whole block are skipped; tiles
// it keeps entirely skip the per-element test. A row with no kept key gives
// 0, as the reference softmax does (FlashAttention's convention). With kLse,
// `store_lse(q, v)` also writes each row's logsumexp of the scores (natural
// units; -inf for a row with no kept key), what the backward pass keeps.
// Sizes and strides are arguments (literals the inlined body folds, or runtime sizes).
template <bool kF16, int D, int E, int BQ, int BK, bool kAsync, bool kScore, bool kLse, class Mask, class Score,
          class Store, class StoreLse>
__device__ __forceinline__ void ncd_attention_block(const uint16_t *__restrict__ Q, const uint16_t *__restrict__ K,
                                                    const uint16_t *__restrict__ V, const int64_t NQ, const int64_t NK,
                                                    const int64_t sQq, const int64_t sQd, const int64_t sKk,
                                                    const int64_t sKd, const int64_t sVk, const int64_t sVe, int64_t q0,
                                                    float scale_log2, const Mask &mask, const Score &score,
                                                    const Store &store, const StoreLse &store_lse) {
  constexpr int THREADS = BQ / 16 * 32;
  constexpr int QS = D + 8, KS = D + 8, VS = E + 8;
  extern __shared__ __align__(16) uint16_t ncd_smem[];
  uint16_t *sQ = ncd_smem;
  uint16_t *sK = sQ + BQ * QS;
  uint16_t *sV = sK + 2 * BK * KS;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;

  auto load_rows = [&](uint16_t *dst, int ds, const uint16_t *src, int64_t sr, int64_t sc, int64_t r0, int64_t nr,
                       int rows, int cols) {
    if constexpr (kAsync) {
      for (int c = tid; c < rows * cols / 8; c += THREADS) {
        const int r = c / (cols / 8), cc = (c % (cols / 8)) * 8;
        const bool ok = r0 + r < nr;
        ncd_cp_async16(dst + r * ds + cc, ok ? src + (r0 + r) * sr + cc : src, ok);
      }
    } else {
      for (int e = tid; e < rows * cols; e += THREADS) {
        const int r = e / cols, cc = e % cols;
        dst[r * ds + cc] = r0 + r < nr ? src[(r0 + r) * sr + cc * sc] : uint16_t(0);
      }
    }
  };

  const int64_t q_last = (q0 + BQ < NQ ? q0 + BQ : NQ) - 1;
  const int64_t KT = (NK + BK - 1) / BK;
  auto k_last = [&](int64_t kt) { return ((kt + 1) * BK < NK ? (kt + 1) * BK : NK) - 1; };
  int64_t kt_begin = 0, kt_end = KT;
  while (kt_begin < KT && !mask.live(q0, q_last, kt_begin * BK, k_last(kt_begin))) ++kt_begin;
  while (kt_end > kt_begin && !mask.live(q0, q_last, (kt_end - 1) * BK, k_last(kt_end - 1))) --kt_end;

  load_rows(sQ, QS, Q, sQq, sQd, q0, NQ, BQ, D);
  if (kt_begin < kt_end) {
    load_rows(sK, KS, K, sKk, sKd, kt_begin * BK, NK, BK, D);
    load_rows(sV, VS, V, sVk, sVe, kt_begin * BK, NK, BK, E);
  }
  ncd_cp_async_commit();

  uint32_t qf[D / 16][4];
  float o[E / 8][4];
  for (int n = 0; n < E / 8; ++n)
    for (int c = 0; c < 4; ++c) o[n][c] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY}, row_sum[2] = {0.f, 0.f};
  const int64_t qa = q0 + warp * 16 + g;

  if (kt_begin >= kt_end) {
    ncd_cp_async_wait<0>();
    __syncthreads();
  }
  for (int64_t kt = kt_begin; kt < kt_end; ++kt) {
    const int s = static_cast<int>((kt - kt_begin) & 1);
    if (kt + 1 < kt_end) {
      load_rows(sK + (s ^ 1) * BK * KS, KS, K, sKk, sKd, (kt + 1) * BK, NK, BK, D);
      load_rows(sV + (s ^ 1) * BK * VS, VS, V, sVk, sVe, (kt + 1) * BK, NK, BK, E);
      ncd_cp_async_commit();
      ncd_cp_async_wait<1>();
    } else {
      ncd_cp_async_wait<0>();
    }
    __syncthreads();
    if (kt == kt_begin) {
#pragma unroll
      for (int kk = 0; kk < D / 16; ++kk) {
        const uint16_t *p = sQ + (warp * 16 + g) * QS + kk * 16 + 2 * t;
        qf[kk][0] = ncd_ld32(p);
        qf[kk][1] = ncd_ld32(p + 8 * QS);
        qf[kk][2] = ncd_ld32(p + 8);
        qf[kk][3] = ncd_ld32(p + 8 * QS + 8);
      }
    }
    // A tile the mask keeps nothing of between live ones (a predicate with a
    // hole, `k < 64 || q - k < 256`) is loaded but not computed.
    if (kt != kt_begin && !mask.live(q0, q_last, kt * BK, k_last(kt))) {
      __syncthreads();
      continue;
    }
    const uint16_t *k_tile = sK + s * BK * KS;
    const uint16_t *v_tile = sV + s * BK * VS;
    float sc[BK / 8][4];
#pragma unroll
    for (int j = 0; j < BK / 8; ++j)
      for (int c = 0; c < 4; ++c) sc[j][c] = 0.f;
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk)
#pragma unroll
      for (int j = 0; j < BK / 8; ++j) {
        const uint16_t *p = k_tile + (j * 8 + g) * KS + kk * 16 + 2 * t;
        const uint32_t b[2] = {ncd_ld32(p), ncd_ld32(p + 8)};
        ncd_mma<kF16>(sc[j], qf[kk], b);
      }
    const int64_t k0 = kt * BK;
    const bool whole = k0 + BK <= NK && mask.full(q0, q_last, k0, k_last(kt));
#pragma unroll
    for (int j = 0; j < BK / 8; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t kq = k0 + j * 8 + 2 * t + (c & 1), qq = qa + (c >= 2 ? 8 : 0);
        if constexpr (kScore) {
          // The score modification sees the scaled score in natural units and
          // its positions (only real ones: it may read tensors at q and k).
          sc[j][c] = kq < NK && qq < NQ ? score(sc[j][c] * (scale_log2 * 0.6931471805599453f), qq, kq) * 1.4426950408889634f
                                        : -INFINITY;
        } else {
          sc[j][c] *= scale_log2;
        }
        if (!whole && (kq >= NK || !mask.keep(qq, kq))) sc[j][c] = -INFINITY;
      }
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = -INFINITY;
      for (int j = 0; j < BK / 8; ++j) mx = fmaxf(mx, fmaxf(sc[j][2 * h], sc[j][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float m_new = fmaxf(row_max[h], mx);
      const float m_use = m_new == -INFINITY ? 0.f : m_new;
      const float alpha = exp2f(row_max[h] - m_use);
      row_max[h] = m_new;
      row_sum[h] *= alpha;
      for (int n = 0; n < E / 8; ++n) {
        o[n][2 * h] *= alpha;
        o[n][2 * h + 1] *= alpha;
      }
      float sum = 0.f;
      for (int j = 0; j < BK / 8; ++j) {
        sc[j][2 * h] = exp2f(sc[j][2 * h] - m_use);
        sc[j][2 * h + 1] = exp2f(sc[j][2 * h + 1] - m_use);
        sum += sc[j][2 * h] + sc[j][2 * h + 1];
      }
      row_sum[h] += sum;
    }
#pragma unroll
    for (int jj = 0; jj < BK / 16; ++jj) {
      const uint32_t a[4] = {ncd_pack_floats<kF16>(sc[2 * jj][0], sc[2 * jj][1]),
                             ncd_pack_floats<kF16>(sc[2 * jj][2], sc[2 * jj][3]),
                             ncd_pack_floats<kF16>(sc[2 * jj + 1][0], sc[2 * jj + 1][1]),
                             ncd_pack_floats<kF16>(sc[2 * jj + 1][2], sc[2 * jj + 1][3])};
#pragma unroll
      for (int n = 0; n < E / 8; ++n) {
        const uint16_t *p = v_tile + (jj * 16 + 2 * t) * VS + n * 8 + g;
        const uint32_t b[2] = {ncd_pack(p[0], p[VS]), ncd_pack(p[8 * VS], p[9 * VS])};
        ncd_mma<kF16>(o[n], a, b);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float l = row_sum[h];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int64_t q = qa + 8 * h;
    // A query the mask keeps no key of has l = 0: its output is 0, not NaN.
    const float inv = l > 0.f ? 1.f / l : 0.f;
    if constexpr (kLse)
      if (t == 0 && q < NQ) store_lse(q, l > 0.f ? (row_max[h] + log2f(l)) * 0.6931471805599453f : -INFINITY);
    if (q < NQ)
      for (int n = 0; n < E / 8; ++n) {
        store(q, n * 8 + 2 * t, o[n][2 * h] * inv);
        store(q, n * 8 + 2 * t + 1, o[n][2 * h + 1] * inv);
      }
  }
}

