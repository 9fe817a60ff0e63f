// Contractions: the choice between the tensor-core GEMM (print_gemm.cpp) and
// the generic loop kernel, which computes any contraction one output element
// per thread (exact float64 sums for integer results) and is reported as a
// fallback when a GEMM was possible in form but declined.
#include "generator.h"

namespace ncd::cuda::detail {

Ten Generator::contract(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::vector<Ten> operands, tensors, scalars;
  for (int id : o.operands) {
    operands.push_back(get(frame, id));
    (operands.back().axes.empty() ? scalars : tensors).push_back(operands.back());
  }
  std::vector<int> summed;
  std::set<int> drop;
  for (int axis : o.axes) {
    summed.push_back(rt_axis(frame, axis));
    drop.insert(summed.back());
  }
  std::vector<const Ten *> ptrs;
  for (const Ten &t : operands) ptrs.push_back(&t);
  std::vector<int> axes = result_axes(frame, result, ptrs, drop);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  std::string why;
  if (tensors.size() == 2 && !summed.empty()) {
    if (gemm(frame, o, tensors, scalars, out, why)) return out;
    note(&o, "generic kernel for contraction '" + result.name + "' in '" + frame.diagram->name + "' (" + why + ")");
  }
  generic_contract(frame, o, operands, summed, out);
  return out;
}

void Generator::generic_contract(Frame &frame, const ir::Op &o, const std::vector<Ten> &operands,
                                 const std::vector<int> &summed, const Ten &out) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<int> loops;
  Sz factor = 1;
  for (int a : summed) {
    bool used = false;
    for (const Ten &t : operands) used = used || t.has(a);
    if (used)
      loops.push_back(a);
    else
      factor *= size(a);
  }
  std::string product;
  for (const Ten &t : operands) product += (product.empty() ? "" : " * ") + load(args, t, index);
  if (product.empty()) product = "1.f";
  std::string r = args.out(out);
  Sz n = numel(out.axes);
  std::string k = grid_stride_kernel(args, n, out.axes);
  // An integer result is summed in float64 (exact for i8 operands and values
  // below 2^24; docs/CUDA.md), then truncated and saturated once.
  const bool integer = ir::is_integer(out.dtype);
  k += integer ? "    double acc = 0.0;\n" : "    float acc = 0.f;\n";
  std::string pad = "    ";
  for (int a : loops) {
    k += pad + "for (int64_t " + x(a) + " = 0; " + x(a) + " < " + str(size(a)) + "; ++" + x(a) + ")\n";
    pad += "  ";
  }
  if (integer) {
    std::string factors;
    for (const Ten &t : operands)
      factors += (factors.empty() ? "" : " * ") + std::string("static_cast<double>(") + load(args, t, index) + ")";
    k += pad + "acc += " + (factors.empty() ? std::string("1.0") : factors) + ";\n";
  } else {
    k += pad + "acc += " + product + ";\n";
  }
  std::string value = factor == 1 ? "acc" : "acc * " + fsize(factor);
  k += "    " + r + "[" + offset(out, index) + "] = " + (integer ? "ncd_to_int<" : "ncd_to<") +
       element_type(out.dtype) + ">(" + value + ");\n  }\n}\n";
  std::string name = add_kernel("contract_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(out.axes) + " = contract" + axis_list(summed));
}

}  // namespace ncd::cuda::detail
