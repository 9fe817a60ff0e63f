//! The end of the fixed device code: closes the namespace prelude.cuh opens
//! and defines the launch-checking macros of the host functions.

// Launch shapes over runtime sizes (docs/CUDA.md, "Runtime sizes"): the
// blocks of a grid-stride kernel (at most 2^20) and the tiles along an extent.
inline unsigned ncd_grid(int64_t work, int threads) {
  const int64_t blocks = (work + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1 ? 1 : blocks > (int64_t{1} << 20) ? (int64_t{1} << 20) : blocks);
}
inline unsigned ncd_tiles(int64_t extent, int64_t tile) { return static_cast<unsigned>((extent + tile - 1) / tile); }

// Raises a kernel's dynamic shared-memory limit once per device (the
// attribute belongs to the device's context; `done` has a bit per device).
template <class Kernel>
inline cudaError_t ncd_smem_limit(Kernel kernel, int bytes, std::atomic<unsigned long long> &done) {
  int device = 0;
  cudaError_t status = cudaGetDevice(&device);
  if (status != cudaSuccess) return status;
  const unsigned long long bit = device >= 0 && device < 64 ? 1ull << device : 0ull;
  if (bit != 0 && (done.load(std::memory_order_acquire) & bit) != 0) return cudaSuccess;
  status = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes);
  if (status == cudaSuccess) done.fetch_or(bit, std::memory_order_release);
  return status;
}

// Every tensor and the workspace must be 16-byte aligned (cp.async and vector
// accesses assume it): checked before anything is launched.
inline bool ncd_aligned(std::initializer_list<const void *> pointers) {
  for (const void *p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

}  // namespace

#define NCD_TRY(expr)                              \
  do {                                             \
    const cudaError_t ncd_status_ = (expr);        \
    if (ncd_status_ != cudaSuccess) return ncd_status_; \
  } while (0)
#define NCD_LAUNCHED() NCD_TRY(cudaGetLastError())
