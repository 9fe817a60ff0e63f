// Routed contractions (mixtures of experts; docs/CUDA.md, "Routed
// contractions") as printed from a RoutedPlan (plan_routed.cpp): the gathered
// operand `W[I[t, top], d, f]` is never materialised. Instead
//   1. the routing: three small kernels group the routes by expert
//      (device/routed.cuh: per-expert offsets and a stable order), once per
//      routing index in a host function — Mixtral's w1, w3 and w2 share one;
//   2. the rows: one kernel writes, in grouped order, each route's row of A
//      (the product of the operands read per route, over the summed axes),
//      dense [routes, K], as bf16 hi + lo planes when that product is f32;
//   3. the grouped GEMM: one launch; each block finds its expert's tile
//      (ncd_route_tile), runs the tensor-core tile of gemm.cuh on that
//      expert's rows and table slice, and writes each result row to its
//      route's place. A table that is not 16-bit takes an FMA kernel.
// Routings and rows of A are written once per host function and reused by
// every routed contraction that reads the same index and operands.
// A route whose position lies outside the table reads zeros in the language:
// its result row is written as exact zeros (0 times finite operands; NaN or
// infinity in the other operands is not propagated there).
#include "generator.h"

namespace ncd::cuda::detail {

bool Generator::routed(Frame &frame, const ir::Op &o, const ir::Routed &r) {
  const ir::Value &result = frame.diagram->value(o.results.at(0));
  RoutedPlan p;
  std::string why;
  if (!plan_routed(frame, o, r, p, why)) {
    note(&o, "the gathered table of routed contraction '" + result.name + "' in '" + frame.diagram->name +
                 "' is materialised (" + why + ")");
    return false;
  }
  if (!p.mma)
    note(&o, "FMA kernel for routed contraction '" + result.name + "' in '" + frame.diagram->name + "' (" + p.fma_why +
                 ")");
  if (!p.routes.known())
    line("if (" + p.routes.code() + " > 2147483647) return cudaErrorInvalidValue;  // " + result.name +
         ": routes are numbered in int32");
  Routing &routes = routing(p);
  // What the rows of A hold: the operands read per route, over the summed axes, in this dtype.
  std::string what = element_type(p.a_dtype) + (p.split ? "|split" : "");
  for (int a : p.k_axes) what += "|k" + str(a);
  for (const Ten &t : p.rows) {
    what += "|" + t.ptr + ":" + element_type(t.dtype) + ":" + str(static_cast<int64_t>(t.kind));
    for (size_t i = 0; i < t.axes.size(); ++i)
      what += "," + str(t.axes[i]) + "*" + (i < t.strides.size() ? t.strides[i].code() : "");
  }
  auto known = routes.planes.find(what);
  if (known == routes.planes.end()) {
    std::vector<Ten> planes;
    for (int k = 0; k < (p.split ? 2 : 1); ++k) planes.push_back(alloc_elements(p.a_dtype, p.routes * p.K));
    routed_rows(result.name, p, routes, planes);
    known = routes.planes.emplace(what, planes).first;
  } else {
    line("// the rows of A for " + result.name + ": those written above");
  }
  routed_gemm(result.name, p, routes, known->second);
  frame.values[o.results[0]] = p.out;
  return true;
}

Routing &Generator::routing(const RoutedPlan &p) {
  const Ten &index = p.index;
  std::string key = index.ptr + "|" + element_type(index.dtype) + "|" + str(p.experts);
  for (size_t i = 0; i < index.axes.size(); ++i) key += "|" + str(index.axes[i]) + ":" + index.strides[i].code();
  if (auto it = routings_.find(key); it != routings_.end()) return it->second;
  Routing r;
  const int64_t buckets = p.experts + 1;
  Ten counts = alloc_elements(DType::I32, Sz(p.route_blocks * buckets));
  r.offsets = alloc_elements(DType::I32, Sz(buckets + 1));
  r.order = alloc_elements(DType::I32, p.routes);
  const std::string name = axis_list(index.axes);
  // The bucket of route p: its expert, or the last bucket outside the table.
  auto bucket = [&](KernelArgs &args) {
    std::string e = load_int(args, index, [](int a) { return x(a); });
    return "[&](int64_t p) -> int {\n" + decompose(index.axes, "p", "    ") + "    const int64_t e = " + e +
           ";\n    return e >= 0 && e < " + str(p.experts) + " ? static_cast<int>(e) : " + str(p.experts) + ";\n  }";
  };
  const std::string b = str(buckets), threads = str(kRouteThreads);
  {
    KernelArgs args;
    std::string lambda = bucket(args);
    std::string out = args.out(counts);
    std::string k = "// routing: the routes of each block's range per expert\n__global__ void __launch_bounds__(" +
                    threads + ") @NAME@(" + args.param_list() + ") {\n  ncd_route_count<" + b + ">(" + str(p.routes) +
                    ", " + lambda + ", " + out + ");\n}\n";
    launch(add_kernel("route_count", k), str(p.route_blocks), static_cast<int>(kRouteThreads), args,
           "routing by " + name + ": routes per expert");
  }
  {
    KernelArgs args;
    std::string c = args.out(counts), offsets = args.out(r.offsets);
    std::string k =
        "// routing: per-expert offsets (exclusive scan) and each block's bases\n__global__ void "
        "__launch_bounds__(" +
        threads + ") @NAME@(" + args.param_list() + ") {\n  ncd_route_scan<" + b + ">(" + str(p.route_blocks) + ", " +
        c + ", " + offsets + ");\n}\n";
    launch(add_kernel("route_scan", k), "1", static_cast<int>(kRouteThreads), args,
           "routing by " + name + ": offsets per expert");
  }
  {
    KernelArgs args;
    std::string lambda = bucket(args);
    std::string bases = args.in(counts), order = args.out(r.order);
    std::string k =
        "// routing: the routes grouped by expert, ascending within each (stable)\n__global__ void "
        "__launch_bounds__(" +
        threads + ") @NAME@(" + args.param_list() + ") {\n  ncd_route_place<" + b + ", " + threads + ">(" +
        str(p.routes) + ", " + lambda + ", " + bases + ", " + order + ");\n}\n";
    launch(add_kernel("route_place", k), str(p.route_blocks), static_cast<int>(kRouteThreads), args,
           "routing by " + name + ": routes grouped by expert");
  }
  return routings_.emplace(key, r).first->second;
}

void Generator::routed_rows(const std::string &name, const RoutedPlan &p, const Routing &r,
                            const std::vector<Ten> &planes) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string order = args.in(r.order), offsets = args.in(r.offsets);
  std::string product;
  for (const Ten &t : p.rows) product += (product.empty() ? "" : " * ") + load(args, t, index);
  std::vector<std::string> outs;
  for (const Ten &plane : planes) outs.push_back(args.out(plane));
  const Sz n = p.routes * p.K;
  std::string k = "// the rows of A in grouped order: row i is route order[i]";
  k += p.split ? "; the f32 product as bf16 hi + lo planes\n" : "\n";
  k += "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int64_t placed = " + offsets + "[" + str(p.experts) + "];  // rows outside the table are not read\n";
  k += "  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < " + str(n) +
       "; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n";
  k += "    if (i / " + str(p.K) + " >= placed) continue;\n";
  k += "    const int64_t p = " + order + "[i / " + str(p.K) + "], k = i % " + str(p.K) + ";\n";
  k += decompose(p.index.axes, "p", "    ") + decompose(p.k_axes, "k", "    ");
  k += "    const float v = " + product + ";\n";
  if (p.split) {
    k += "    const __nv_bfloat16 hi = __float2bfloat16_rn(v);\n";
    k += "    " + outs[0] + "[i] = hi;\n";
    k += "    " + outs[1] + "[i] = __float2bfloat16_rn(v - __bfloat162float(hi));\n";
  } else {
    k += "    " + outs[0] + "[i] = ncd_to<" + element_type(p.a_dtype) + ">(v);\n";
  }
  k += "  }\n}\n";
  launch(add_kernel("routed_rows_" + name, k), grid_for(n, 256), 256, args,
         "the rows of A for " + name + ", grouped by expert");
}

void Generator::routed_gemm(const std::string &name, const RoutedPlan &p, const Routing &r,
                            const std::vector<Ten> &planes) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<std::string> a;
  for (const Ten &plane : planes) a.push_back(args.in(plane));
  std::string table = args.in(p.table), offsets = args.in(r.offsets), order = args.in(r.order);
  std::string scale;
  for (const Ten &s : p.scalars) scale += " * " + load(args, s, [](int) { return std::string("0"); });
  std::string out = args.out(p.out);
  const int64_t buckets = p.experts + 1;
  const std::string T = element_type(p.out.dtype);
  // Where route p's row goes: its positions, then those of the kept axes.
  auto store = [&](const std::string &pad, const std::string &value) {
    return decompose(p.index.axes, "p", pad) + decompose(p.n_axes, "n", pad) + pad + out + "[" + offset(p.out, index) +
           "] = ncd_to<" + T + ">(" + value + ");\n";
  };
  std::string k = "// routed GEMM " + axis_list(p.index.axes) + " x " + axis_list(p.n_axes) + ", summed " +
                  axis_list(p.k_axes) + ", " + str(p.experts) + " experts: ";
  std::string blocks;
  int threads = 256;
  if (p.mma) {
    const int64_t BM = p.BM, BN = p.BN;
    k += "one launch, a block per " + str(BM) + " x " + str(BN) + " tile of one expert's routes; A staged " +
         (p.la == 1 ? "by cp.async along K" : "by element loads") + ", B staged " +
         (p.lb == 1   ? "by cp.async along K"
          : p.lb == 2 ? "by cp.async along N"
                      : "by element loads") +
         (p.split ? "; A as bf16 hi + lo planes, two products summed" : "") + "\n";
    k += "__global__ void __launch_bounds__(" + str(kGemmThreads) + ") @NAME@(" + args.param_list() + ") {\n";
    k += "  int g;\n  int64_t m0;\n";
    k += "  if (!ncd_route_tile(" + offsets + ", " + str(buckets) + ", " + str(BM) + ", blockIdx.x, g, m0)) return;\n";
    k += "  const int64_t first = " + offsets + "[g], rows = " + offsets +
         "[g + 1] - first, n0 = static_cast<int64_t>(blockIdx.y) * " + str(BN) + ";\n";
    k += "  float acc[" + str(BM / 32) + "][" + str(BN / 32) + "][4];\n";
    const std::string tile = "ncd_gemm_tile<" + std::string(p.f16 ? "true" : "false") + ", " + str(p.la) + ", " +
                             str(p.lb) + ", " + str(BM) + ", " + str(BN) + ">";
    const std::string B = "reinterpret_cast<const uint16_t *>(" + table + ") + g * " + str(p.expert_stride);
    auto call = [&](const std::string &plane, const std::string &into) {
      return tile + "(reinterpret_cast<const uint16_t *>(" + plane + ") + first * " + str(p.K) + ", " + B + ", rows, " +
             str(p.N) + ", " + str(p.K) + ", " + str(p.K) + ", 1, " + str(p.sBk) + ", " + str(p.sBn) + ", m0, n0, " +
             into + ");\n";
    };
    k += "  if (g < " + str(p.experts) + ") {\n    " + call(a[0], "acc");
    if (p.split) {
      k += "    float lo[" + str(BM / 32) + "][" + str(BN / 32) + "][4];\n    " + call(a[1], "lo");
      k += "    for (int i = 0; i < " + str(BM / 32) + "; ++i)\n      for (int j = 0; j < " + str(BN / 32) +
           "; ++j)\n        for (int c = 0; c < 4; ++c) acc[i][j][c] += lo[i][j][c];\n";
    }
    k += "  } else {  // routes outside the table: exact zeros\n";
    k += "    for (int i = 0; i < " + str(BM / 32) + "; ++i)\n      for (int j = 0; j < " + str(BN / 32) +
         "; ++j)\n        for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.f;\n  }\n";
    k += "  const float scale = 1.f" + scale + ";\n";
    k += "  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;\n";
    k += "  for (int i = 0; i < " + str(BM / 32) + "; ++i)\n    for (int j = 0; j < " + str(BN / 32) +
         "; ++j)\n      for (int c = 0; c < 4; ++c) {\n";
    k += "        const int64_t m = m0 + (warp / 4) * " + str(BM / 2) + " + i * 16 + lane / 4 + (c >= 2 ? 8 : 0);\n";
    k += "        const int64_t n = n0 + (warp % 4) * " + str(BN / 4) + " + j * 8 + (lane % 4) * 2 + (c & 1);\n";
    k += "        if (m >= rows || n >= " + str(p.N) + ") continue;\n";
    k += "        const int64_t p = " + order + "[first + m];\n";
    k += store("        ", "acc[i][j][c] * scale");
    k += "      }\n}\n";
    // Tiles: each expert's routes round up to whole tiles, so the grid has room for one partial tile per bucket.
    Sz most = p.routes + Sz(buckets * (BM - 1));
    blocks = "dim3(" + tiles_for(most, BM) + ", " + tiles_for(p.N, BN) + ")";
    threads = static_cast<int>(kGemmThreads);
    // (Fewer than 2^31 routes, checked above, keep the grid's x below CUDA's limit.)
  } else {
    k += "an FMA kernel, a thread per routed row and kept position\n";
    std::string load_b;
    k += "__global__ void @NAME@(" + args.param_list() + ") {\n";
    k += "  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < " + str(p.routes * p.N) +
         "; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n";
    k += "    const int64_t row = i / " + str(p.N) + ", n = i % " + str(p.N) + ";\n";
    k += "    if (row >= " + offsets + "[" + str(buckets) + "]) continue;\n";
    k += "    const int g = ncd_route_bucket(" + offsets + ", " + str(buckets) + ", row);\n";
    k += "    float acc = 0.f;\n";
    k += "    if (g < " + str(p.experts) + ") {\n";
    k += decompose(p.n_axes, "n", "      ");
    k += "      for (int64_t k = 0; k < " + str(p.K) + "; ++k) {\n";
    k += decompose(p.k_axes, "k", "        ");
    k += "        acc += " + a[0] + "[row * " + str(p.K) + " + k] * ncd_f(" + table + "[g * " + str(p.expert_stride) +
         " + " + offset(p.table, index) + "]);\n";
    k += "      }\n    }\n";
    k += "    const int64_t p = " + order + "[row];\n";
    k += "    const float scale = 1.f" + scale + ";\n";
    k += store("    ", "acc * scale");
    k += "  }\n}\n";
    blocks = grid_for(p.routes * p.N, 256);
  }
  launch(add_kernel("routed_gemm_" + name, k), blocks, threads, args,
         name + axis_list(p.out.axes) + " = routed contract" + axis_list(p.k_axes) + " (grouped by expert)");
}

}  // namespace ncd::cuda::detail
