//! The end of the fixed device code: closes the namespace prelude.cuh opens
//! and defines the launch-checking macros of the host functions.
}  // namespace

#define NCD_TRY(expr)                              \
  do {                                             \
    const cudaError_t ncd_status_ = (expr);        \
    if (ncd_status_ != cudaSuccess) return ncd_status_; \
  } while (0)
#define NCD_LAUNCHED() NCD_TRY(cudaGetLastError())
