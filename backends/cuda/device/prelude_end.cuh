//! The end of the fixed device code: closes the namespace prelude.cuh opens
//! and defines the launch-checking macros of the host functions.

// Launch shapes over runtime sizes (docs/CUDA.md, "Runtime sizes"): the
// blocks of a grid-stride kernel (at most 2^20) and the tiles along an extent.
inline unsigned ncd_grid(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > (int64_t{1} << 20) ? (int64_t{1} << 20) : blocks);
}
inline unsigned ncd_tiles(int64_t extent, int64_t tile) { return static_cast<unsigned>((extent + tile - 1) / tile); }

}  // namespace

#define NCD_TRY(expr)                              \
  do {                                             \
    const cudaError_t ncd_status_ = (expr);        \
    if (ncd_status_ != cudaSuccess) return ncd_status_; \
  } while (0)
#define NCD_LAUNCHED() NCD_TRY(cudaGetLastError())
