// The CUDA backend's fixed device code: the files of device/, embedded at
// build time (cmake/NcdEmbedText.cmake) without their leading `//!` lines.
// A generated .cu file is the prelude, gemm, gemm_q8, routed, attention, grid and prelude_end texts
// in that order, then the kernels and host functions, then (with --harness)
// the harness text with the diagram tables inserted.
#pragma once

namespace ncd::cuda::device {

extern const char *const prelude;      // includes, dtypes, docs/RUN.md functions, warp and mma helpers
extern const char *const gemm;         // ncd_gemm_tile: the tensor-core GEMM main loop
extern const char *const gemm_q8;      // ncd_gemm_tile_q8: the same for 8-bit operands (int8, fp8)
extern const char *const routed;       // the routing steps and tile walk of routed contractions
extern const char *const attention;    // ncd_attention_block: the streamed attention block
extern const char *const grid;         // ncd_grid_block: the streamed grid block (attention's backward)
extern const char *const prelude_end;  // closes the prelude's namespace; the host macros
extern const char *const harness;      // the --harness main() and its .npy input and output
extern const char *const torch_runtime;  // the fixed Python of an `ncd emit --torch` package

}  // namespace ncd::cuda::device
