// The scan kernel of one op (cumsum, cumprod, cummax, cummin and the linear
// recurrence `scan`), as planned by plan_scan.cpp: a warp per lifted row, the
// row walked in chunks of 32 × per_lane elements. Per chunk each lane scans
// its consecutive elements in registers, the warp scans the lanes' totals
// with __shfl_up_sync, and the carry from the previous chunks is applied.
//
// The state is float32 whatever the dtype (bf16 accumulates in float32). For
// `scan` the elements are pairs (a, b) standing for h ↦ a·h + b, combined
// by (a1, b1) ∘ (a2, b2) = (a1·a2, a2·b1 + b2) (apply the first, then the
// second); the carry is h itself. The others combine values with the row's
// `combine` function from its `identity`.
#include <cmath>

#include "generator.h"

namespace ncd::cuda::detail {

Ten Generator::scan(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  const ops::Fn f = o.function;
  const ops::Info &row = ops::info(f);
  const std::string fn(row.name);
  if (row.kind != ops::Kind::Scan) throw GenError("the cuda backend has no scan '" + fn + "'");
  const bool pair = f == ops::Fn::Scan;
  std::vector<Ten> in;
  for (int operand : o.operands) in.push_back(get(frame, operand));
  std::vector<const Ten *> operands;
  for (const Ten &t : in) operands.push_back(&t);
  const int along = rt_axis(frame, o.axes.at(0));
  std::vector<int> axes = result_axes(frame, result, operands, {});
  if (std::find(axes.begin(), axes.end(), along) == axes.end()) axes.push_back(along);
  std::vector<int> row_axes;
  for (int a : axes)
    if (a != along) row_axes.push_back(a);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<std::string> loads;
  for (const Ten &t : in) loads.push_back(load(args, t, index));
  std::string r = args.out(out);
  const Sz rows = numel(row_axes), extent = size(along);
  const ScanPlan plan = plan_scan(extent.constant());
  const std::string per = str(plan.per_lane), chunk = str(32 * plan.per_lane);
  // The monoid's combine as device code (NaN propagates through ncd_max/ncd_min as through NumPy's).
  auto combine = [&](const std::string &h, const std::string &v) { return function_expr(row.combine, {h, v}); };
  const std::string identity = pair                       ? "0.f"
                               : std::isinf(row.identity) ? (row.identity < 0 ? "-INFINITY" : "INFINITY")
                                                          : flit(row.identity);
  const std::string full = "0xffffffffu";
  std::string k = "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(row_axes, "row", "    ");
  k += "    float carry = " + identity + ";  // the state after the previous chunks\n";
  k += "    for (int64_t base = 0; base < " + str(extent) + "; base += " + chunk + ") {\n";
  // 1. Each lane's elements, scanned in registers (positions past the end are the identity).
  k += std::string("      float ") + (pair ? "pa[" + per + "], " : "") + "pv[" + per + "];\n";
  k += std::string("      float ") + (pair ? "ta = 1.f, " : "") + "tv = " + identity + ";\n";
  k += "#pragma unroll\n      for (int e = 0; e < " + per + "; ++e) {\n";
  k += "        const int64_t j = base + lane * " + per + " + e;\n";
  k += std::string("        float ") + (pair ? "a = 1.f, " : "") + "v = " + identity + ";\n";
  k += "        if (j < " + str(extent) + ") {\n" + decompose({along}, "j", "          ");
  if (pair)
    k += "          a = " + loads[0] + ";\n          v = " + loads[1] + ";\n";
  else
    k += "          v = " + loads[0] + ";\n";
  k += "        }\n";
  if (pair)
    k += "        tv = a * tv + v;\n        ta = ta * a;\n        pa[e] = ta;\n        pv[e] = tv;\n";
  else
    k += "        tv = " + combine("tv", "v") + ";\n        pv[e] = tv;\n";
  k += "      }\n";
  // 2. The lanes' totals, scanned across the warp (inclusive).
  k += "#pragma unroll\n      for (int d = 1; d < 32; d *= 2) {\n";
  if (pair) {
    k += "        const float qa = __shfl_up_sync(" + full + ", ta, d), qv = __shfl_up_sync(" + full + ", tv, d);\n";
    k += "        if (lane >= d) {\n          tv = ta * qv + tv;\n          ta = qa * ta;\n        }\n";
  } else {
    k += "        const float qv = __shfl_up_sync(" + full + ", tv, d);\n";
    k += "        if (lane >= d) tv = " + combine("qv", "tv") + ";\n";
  }
  k += "      }\n";
  // 3. The state before this lane's elements: the carry through the lanes before it.
  if (pair) {
    k += "      float ea = __shfl_up_sync(" + full + ", ta, 1), ev = __shfl_up_sync(" + full + ", tv, 1);\n";
    k += "      if (lane == 0) {\n        ea = 1.f;\n        ev = 0.f;\n      }\n";
    k += "      const float h = ea * carry + ev;\n";
  } else {
    k += "      float ev = __shfl_up_sync(" + full + ", tv, 1);\n";
    k += "      if (lane == 0) ev = " + identity + ";\n";
    k += "      const float h = " + combine("carry", "ev") + ";\n";
  }
  // 4. Each element's state stored; the chunk's total carried on.
  k += "#pragma unroll\n      for (int e = 0; e < " + per + "; ++e) {\n";
  k += "        const int64_t j = base + lane * " + per + " + e;\n";
  k += "        if (j < " + str(extent) + ") {\n" + decompose({along}, "j", "          ");
  std::string value = pair ? "pa[e] * h + pv[e]" : combine("h", "pv[e]");
  k += "          " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + value + ");\n";
  k += "        }\n      }\n";
  if (pair) {
    k += "      const float la = __shfl_sync(" + full + ", ta, 31), lv = __shfl_sync(" + full + ", tv, 31);\n";
    k += "      carry = la * carry + lv;\n";
  } else {
    k += "      carry = " + combine("carry", "__shfl_sync(" + full + ", tv, 31)") + ";\n";
  }
  k += "    }\n  }\n}\n";
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(rows * Sz(32), static_cast<int>(plan.threads)), static_cast<int>(plan.threads), args,
         result.name + axis_list(axes) + " = " + fn + axis_list({along}));
  return out;
}

}  // namespace ncd::cuda::detail
