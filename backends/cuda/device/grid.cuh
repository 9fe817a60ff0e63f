//! The streamed grid block (FlashAttention-2's backward kernels as `fuse`
//! forms them) that every grid kernel instantiates (emitted after attention.cuh).
// ---------------------------------------------------------------- streamed grids
// A block of BG/16 warps owns BG positions g of the grouped axis (16 per
// warp) and streams the axis s in chunks of BS. Per chunk, tensor cores
// compute one or two producers raw_p[g, s] = Σ_c X_p[g, c] · Y_p[s, c] (X_p
// resident in registers, Y_p staged in shared memory); `elem(raw0, raw1, g,
// s, out0, out1)` turns them into one or two grid values per element (the
// elementwise work: masks, exp(S - L), P·(dP - D)); tensor cores then add
// Σ_s grid_j[g, s] · Z_j[s, e] into the accumulators, rounded to 16 bits as
// FlashAttention-2 rounds P and dS. Chunks `live` rules out are skipped (the
// grid values are 0 there: the planner checked it). Elements outside the
// axes add nothing. C1 = 0 or E1 = 0: one producer or one consumer.
// `store(j, g, e, v)` writes consumer j's sum.
template <int C>
struct NcdGridWidth {
  static constexpr int kC = C > 0 ? C : 16;  // arrays of an absent operand keep a nominal size
};

template <bool kF16, int BG, int BS, int C0, int C1, int E0, int E1, class Live, class Elem, class Store>
__device__ __forceinline__ void ncd_grid_block(
    const uint16_t *__restrict__ X0, int64_t sX0g, int64_t sX0c, const uint16_t *__restrict__ Y0, int64_t sY0s,
    int64_t sY0c, const uint16_t *__restrict__ X1, int64_t sX1g, int64_t sX1c, const uint16_t *__restrict__ Y1,
    int64_t sY1s, int64_t sY1c, const uint16_t *__restrict__ Z0, int64_t sZ0s, int64_t sZ0e,
    const uint16_t *__restrict__ Z1, int64_t sZ1s, int64_t sZ1e, const int64_t NG, const int64_t NS, const int64_t g0,
    const Live &live, const Elem &elem, const Store &store) {
  constexpr int THREADS = BG / 16 * 32;
  constexpr int W0 = NcdGridWidth<C0>::kC, W1 = NcdGridWidth<C1>::kC, V0 = NcdGridWidth<E0>::kC,
                V1 = NcdGridWidth<E1>::kC;
  constexpr int XS0 = W0 + 8, XS1 = W1 + 8, ZS0 = V0 + 8, ZS1 = V1 + 8;  // padded rows
  extern __shared__ __align__(16) uint16_t ncd_smem[];
  uint16_t *sX0 = ncd_smem;
  uint16_t *sX1 = sX0 + BG * XS0;
  uint16_t *sY0 = sX1 + (C1 > 0 ? BG * XS1 : 0);
  uint16_t *sY1 = sY0 + BS * XS0;
  uint16_t *sZ0 = sY1 + (C1 > 0 ? BS * XS1 : 0);
  uint16_t *sZ1 = sZ0 + BS * ZS0;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32, g = lane / 4, t = lane % 4;

  auto load_rows = [&](uint16_t *dst, int ds, const uint16_t *src, int64_t sr, int64_t sc, int64_t r0, int64_t nr,
                       int rows, int cols) {
    for (int e = tid; e < rows * cols; e += THREADS) {
      const int r = e / cols, cc = e % cols;
      dst[r * ds + cc] = r0 + r < nr ? src[(r0 + r) * sr + cc * sc] : uint16_t(0);
    }
  };

  // X_p: the block's rows, in registers as A fragments for the whole stream.
  load_rows(sX0, XS0, X0, sX0g, sX0c, g0, NG, BG, C0);
  if constexpr (C1 > 0) load_rows(sX1, XS1, X1, sX1g, sX1c, g0, NG, BG, C1);
  __syncthreads();
  uint32_t xf0[W0 / 16][4], xf1[W1 / 16][4];
  auto fragments = [&](uint32_t (*f)[4], const uint16_t *s, int stride, int width) {
    for (int kk = 0; kk < width / 16; ++kk) {
      const uint16_t *p = s + (warp * 16 + g) * stride + kk * 16 + 2 * t;
      f[kk][0] = ncd_ld32(p);
      f[kk][1] = ncd_ld32(p + 8 * stride);
      f[kk][2] = ncd_ld32(p + 8);
      f[kk][3] = ncd_ld32(p + 8 * stride + 8);
    }
  };
  fragments(xf0, sX0, XS0, C0);
  if constexpr (C1 > 0) fragments(xf1, sX1, XS1, C1);

  float acc0[V0 / 8][4], acc1[V1 / 8][4];
  for (int n = 0; n < V0 / 8; ++n)
    for (int c = 0; c < 4; ++c) acc0[n][c] = 0.f;
  for (int n = 0; n < V1 / 8; ++n)
    for (int c = 0; c < 4; ++c) acc1[n][c] = 0.f;

  const int64_t g_last = (g0 + BG < NG ? g0 + BG : NG) - 1;
  const int64_t ga = g0 + warp * 16 + g;  // this thread's rows: ga and ga + 8
  for (int64_t s0 = 0; s0 < NS; s0 += BS) {
    const int64_t s_last = (s0 + BS < NS ? s0 + BS : NS) - 1;
    if (!live(g0, g_last, s0, s_last)) continue;  // the same for every thread of the block
    __syncthreads();                              // the previous chunk is consumed
    load_rows(sY0, XS0, Y0, sY0s, sY0c, s0, NS, BS, C0);
    if constexpr (C1 > 0) load_rows(sY1, XS1, Y1, sY1s, sY1c, s0, NS, BS, C1);
    load_rows(sZ0, ZS0, Z0, sZ0s, sZ0e, s0, NS, BS, E0);
    if constexpr (E1 > 0) load_rows(sZ1, ZS1, Z1, sZ1s, sZ1e, s0, NS, BS, E1);
    __syncthreads();
    float r0[BS / 8][4], r1[BS / 8][4];
#pragma unroll
    for (int j = 0; j < BS / 8; ++j)
      for (int c = 0; c < 4; ++c) r0[j][c] = r1[j][c] = 0.f;
    auto produce = [&](float (*r)[4], uint32_t (*xf)[4], const uint16_t *y, int ys, int width) {
#pragma unroll
      for (int kk = 0; kk < width / 16; ++kk)
#pragma unroll
        for (int j = 0; j < BS / 8; ++j) {
          const uint16_t *p = y + (j * 8 + g) * ys + kk * 16 + 2 * t;
          const uint32_t b[2] = {ncd_ld32(p), ncd_ld32(p + 8)};
          ncd_mma<kF16>(r[j], xf[kk], b);
        }
    };
    produce(r0, xf0, sY0, XS0, C0);
    if constexpr (C1 > 0) produce(r1, xf1, sY1, XS1, C1);
    // The grid values, in place of the raw ones: out0 into r0, out1 into r1.
#pragma unroll
    for (int j = 0; j < BS / 8; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int64_t gg = ga + (c >= 2 ? 8 : 0), ss = s0 + j * 8 + 2 * t + (c & 1);
        float o0 = 0.f, o1 = 0.f;
        if (gg < NG && ss < NS) elem(r0[j][c], r1[j][c], gg, ss, o0, o1);
        r0[j][c] = o0;
        r1[j][c] = o1;
      }
    auto consume = [&](float (*v)[4], float (*acc)[4], const uint16_t *z, int zs, int width) {
#pragma unroll
      for (int jj = 0; jj < BS / 16; ++jj) {
        const uint32_t a[4] = {ncd_pack_floats<kF16>(v[2 * jj][0], v[2 * jj][1]),
                               ncd_pack_floats<kF16>(v[2 * jj][2], v[2 * jj][3]),
                               ncd_pack_floats<kF16>(v[2 * jj + 1][0], v[2 * jj + 1][1]),
                               ncd_pack_floats<kF16>(v[2 * jj + 1][2], v[2 * jj + 1][3])};
        for (int n = 0; n < width / 8; ++n) {
          const uint16_t *p = z + (jj * 16 + 2 * t) * zs + n * 8 + g;
          const uint32_t b[2] = {ncd_pack(p[0], p[zs]), ncd_pack(p[8 * zs], p[9 * zs])};
          ncd_mma<kF16>(acc[n], a, b);
        }
      }
    };
    consume(r0, acc0, sZ0, ZS0, E0);
    if constexpr (E1 > 0) consume(r1, acc1, sZ1, ZS1, E1);
  }
  for (int h = 0; h < 2; ++h) {
    const int64_t gg = ga + 8 * h;
    if (gg >= NG) continue;
    for (int n = 0; n < E0 / 8; ++n) {
      store(0, gg, n * 8 + 2 * t, acc0[n][2 * h]);
      store(0, gg, n * 8 + 2 * t + 1, acc0[n][2 * h + 1]);
    }
    if constexpr (E1 > 0)
      for (int n = 0; n < E1 / 8; ++n) {
        store(1, gg, n * 8 + 2 * t, acc1[n][2 * h]);
        store(1, gg, n * 8 + 2 * t + 1, acc1[n][2 * h + 1]);
      }
  }
}
