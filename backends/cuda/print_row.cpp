// Row kernels, one warp per row: reductions (sum, mean, prod, max, min,
// logsumexp; a summed axis no operand has scales the result; argmax and
// argmin carrying (value, position)), normalisations (softmax, log-softmax,
// layernorm, rmsnorm) and selections (topk, sort, by rank) of one op. The
// fused row kernels of a schedule are print_fused.cpp.
#include "generator.h"

namespace ncd::cuda::detail {

Ten Generator::reduce(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten in = get(frame, o.operands.at(0));
  std::vector<int> present;
  Sz missing = 1;
  std::set<int> drop;
  for (int axis : o.axes) {
    int r = rt_axis(frame, axis);
    drop.insert(r);
    if (in.has(r))
      present.push_back(r);
    else
      missing *= size(r);
  }
  std::vector<int> axes = result_axes(frame, result, {&in}, drop);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, in, index);
  std::string r = args.out(out);
  Sz rows = numel(axes), extent = numel(present);
  const ops::Fn f = o.function;
  const std::string fn(ops::name(f));
  std::string k = "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(axes, "row", "    ");
  std::string loop =
      "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(present, "j", "      ");
  std::string value;
  if (f == ops::Fn::Sum || f == ops::Fn::Mean) {
    k += "    float acc = 0.f;\n" + loop + "      acc += " + v + ";\n    }\n    acc = ncd_warp_sum(acc);\n";
    value = f == ops::Fn::Sum ? (missing == 1 ? "acc" : "acc * " + fsize(missing))
                              : "acc / " + fsize(extent);
  } else if (f == ops::Fn::Prod) {
    k += "    float acc = 1.f;\n" + loop + "      acc *= " + v + ";\n    }\n    acc = ncd_warp_prod(acc);\n";
    value = missing == 1 ? "acc" : "powf(acc, " + fsize(missing) + ")";
  } else if (f == ops::Fn::Max || f == ops::Fn::Min) {
    k += "    float acc = " + std::string(f == ops::Fn::Max ? "-INFINITY" : "INFINITY") + ";\n" + loop +
         "      acc = ncd_" + fn + "(acc, " + v + ");\n    }\n    acc = ncd_warp_" + fn + "(acc);\n";
    value = "acc";
  } else if (f == ops::Fn::LogSumExp) {
    k += "    float m = -INFINITY;\n" + loop + "      m = ncd_max(m, " + v + ");\n    }\n    m = ncd_warp_max(m);\n";
    k += "    const float mu = m == -INFINITY ? 0.f : m;\n";
    k += "    float acc = 0.f;\n" + loop + "      acc += expf(" + v + " - mu);\n    }\n    acc = ncd_warp_sum(acc);\n";
    value = "mu + logf(acc)" + log_term(missing);
  } else if (ops::info(f).position) {
    // Each lane keeps its best (value, position) over its strided share of
    // the row, then the warp combines them; ties go to the lower position.
    const std::string g = ops::info(f).greatest ? "true" : "false";
    k += "    float acc = 0.f;\n    long long at = -1;\n" + loop + "      const float e = " + v +
         ";\n      if (ncd_position_better<" + g +
         ">(e, j, acc, at)) {\n        acc = e;\n        at = j;\n      }\n    }\n";
    k += "    ncd_warp_position<" + g + ">(acc, at);\n";
    value = "at";
  } else {
    throw GenError("the cuda backend has no reduction '" + fn + "'");
  }
  const std::string stored = ops::info(f).position ? "static_cast<" + element_type(out.dtype) + ">(" + value + ")"
                                                   : "ncd_to<" + element_type(out.dtype) + ">(" + value + ")";
  k += "    if (lane == 0) " + r + "[" + offset(out, index) + "] = " + stored + ";\n  }\n}\n";
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(rows * Sz(32), kRowThreads), kRowThreads, args, result.name + axis_list(axes) + " = " + fn + axis_list(present));
  return out;
}

Ten Generator::normalize(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten in = get(frame, o.operands.at(0));
  std::vector<int> along;
  for (int axis : o.axes) along.push_back(rt_axis(frame, axis));
  std::vector<int> axes = result_axes(frame, result, {&in}, {});
  for (int a : along)
    if (std::find(axes.begin(), axes.end(), a) == axes.end()) axes.push_back(a);
  std::vector<int> row_axes;
  for (int a : axes)
    if (std::find(along.begin(), along.end(), a) == along.end()) row_axes.push_back(a);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, in, index);
  std::string r = args.out(out);
  Sz rows = numel(row_axes), extent = numel(along);
  const ops::Fn f = o.function;
  const std::string fn(ops::name(f));
  double eps = o.options.count("eps") ? o.options.at("eps") : ops::info(f).default_eps;
  std::string k = "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(row_axes, "row", "    ");
  std::string loop =
      "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(along, "j", "      ");
  std::string store = "      " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(";
  std::string n = fsize(extent);
  if (f == ops::Fn::Softmax || f == ops::Fn::LogSoftmax) {
    k += "    float m = -INFINITY;\n" + loop + "      m = ncd_max(m, " + v + ");\n    }\n    m = ncd_warp_max(m);\n";
    // A row masked everywhere (all -inf) is 0 after softmax, not NaN (docs/LANGUAGE.md).
    if (f == ops::Fn::Softmax) k += "    if (m == -INFINITY) m = 0.f;\n";
    k += "    float s = 0.f;\n" + loop + "      s += expf(" + v + " - m);\n    }\n    s = ncd_warp_sum(s);\n";
    k += loop + store + (f == ops::Fn::Softmax ? "s > 0.f ? expf(" + v + " - m) / s : 0.f" : v + " - m - logf(s)") + ");\n    }\n";
  } else if (f == ops::Fn::LayerNorm) {
    k += "    float s = 0.f;\n" + loop + "      s += " + v + ";\n    }\n    const float mean = ncd_warp_sum(s) / " + n +
         ";\n";
    k += "    float q = 0.f;\n" + loop + "      const float c = " + v +
         " - mean;\n      q += c * c;\n    }\n    const float var = ncd_warp_sum(q) / " + n + ";\n";
    k += "    const float denom = sqrtf(var + " + flit(eps) + ");\n";
    k += loop + store + "(" + v + " - mean) / denom);\n    }\n";
  } else if (f == ops::Fn::RMSNorm) {
    k += "    float q = 0.f;\n" + loop + "      const float c = " + v +
         ";\n      q += c * c;\n    }\n    const float denom = sqrtf(ncd_warp_sum(q) / " + n + " + " + flit(eps) +
         ");\n";
    k += loop + store + v + " / denom);\n    }\n";
  } else {
    throw GenError("the cuda backend has no normalisation '" + fn + "'");
  }
  k += "  }\n}\n";
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(rows * Sz(32), kRowThreads), kRowThreads, args, result.name + axis_list(axes) + " = " + fn + axis_list(along));
  return out;
}

// topk and sort, one thread per element of each row: the element's rank is
// the number of the row's elements ordered before it (NaN beyond every
// number, ties by position, so ranks are distinct and the order stable), and
// an element ranked within the count stores itself and its position there.
// n comparisons per element: for the rows of a few thousand this is written for.
void Generator::select(Frame &frame, const ir::Op &o) {
  const ir::Value &values = frame.diagram->value(o.results.at(0));
  const ir::Value &positions = frame.diagram->value(o.results.at(1));
  Ten in = get(frame, o.operands.at(0));
  const int along = rt_axis(frame, o.axes.at(0)), kept = rt_axis(frame, o.axes.at(1));
  std::vector<int> axes = result_axes(frame, values, {&in}, {along});
  std::vector<int> row_axes;
  for (int a : axes)
    if (a != kept) row_axes.push_back(a);
  Ten v_out = output(frame, o.results[0], values.dtype, axes);
  Ten i_out = output(frame, o.results[1], positions.dtype, axes);
  KernelArgs args;
  const std::string e = load(args, in, [](int a) { return x(a); });
  const std::string other = load(args, in, [&](int a) { return a == along ? std::string("j") : x(a); });
  const std::string v = args.out(v_out), i = args.out(i_out);
  auto at_rank = [&](int a) { return a == kept ? std::string("rank") : x(a); };
  const Sz rows = numel(row_axes), n = size(along), count = size(kept);
  const std::string g = ops::info(o.function).greatest ? "true" : "false";
  std::vector<int> walk = row_axes;
  walk.push_back(along);
  std::string k = grid_stride_kernel(args, rows * n, walk);
  k += "    const float e = " + e + ";\n    int64_t rank = 0;\n";
  k += "    for (int64_t j = 0; j < " + str(n) + "; ++j) rank += ncd_select_before<" + g + ">(" + other + ", j, e, " +
       x(along) + ") ? 1 : 0;\n";
  k += "    if (rank < " + str(count) + ") {\n";
  k += "      " + v + "[" + offset(v_out, at_rank) + "] = ncd_to<" + element_type(v_out.dtype) + ">(e);\n";
  k += "      " + i + "[" + offset(i_out, at_rank) + "] = static_cast<int32_t>(" + x(along) + ");\n";
  k += "    }\n  }\n}\n";
  const std::string fn(ops::name(o.function));
  std::string name = add_kernel(fn + "_" + values.name, k);
  launch(name, grid_for(rows * n, kRowThreads), kRowThreads, args,
         values.name + ", " + positions.name + axis_list(axes) + " = " + fn + axis_list({along}));
  frame.values[o.results[0]] = v_out;
  frame.values[o.results[1]] = i_out;
}

// The body of a fused row kernel: passes over each row for the statistics
// of the main op, inputs computed inline, outputs stored per element (a
// normalisation) or once per row (a reduction).
std::string Generator::fused_row(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const FusedLayout &l,
                                 FusedKernel &kernel, KernelArgs &args, Sz &work, std::string &launch_what) {
  auto identity = [](int a) { return x(a); };
  std::string k;
  const ir::Op &o = *m.main;
  const ir::Value &result = d.value(o.results.at(0));
  Sz rows = numel(l.row_axes), extent = numel(l.loop_axes);
  auto pass = [&](const std::function<std::string(ExprCtx &, const std::string &)> &f) {
    ExprCtx c;
    c.pad = "      ";
    c.counter = &kernel.counter;
    c.index = identity;
    std::string in = fexpr(frame, args, c, o.operands.at(0));
    std::string stmt = f(c, in);
    return "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(l.loop_axes, "j", "      ") +
           c.code + stmt + "    }\n";
  };
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(l.row_axes, "row", "    ");
  const ops::Fn f = o.function;
  const std::string fn(ops::name(f));
  std::string n = fsize(extent);
  // The final value of the main op, from the statistics; per element for a normalisation.
  std::string value;
  if (o.kind == OpKind::Normalize) {
    double eps = o.options.count("eps") ? o.options.at("eps") : ops::info(f).default_eps;
    if (f == ops::Fn::Softmax || f == ops::Fn::LogSoftmax) {
      k += "    float m = -INFINITY;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
           "    m = ncd_warp_max(m);\n";
      if (f == ops::Fn::Softmax) k += "    if (m == -INFINITY) m = 0.f;\n";
      k += "    float s = 0.f;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      s += expf(" + v + " - m);\n"; }) +
           "    s = ncd_warp_sum(s);\n";
    } else if (f == ops::Fn::LayerNorm) {
      k += "    float s = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      s += " + v + ";\n"; }) +
           "    const float mean = ncd_warp_sum(s) / " + n + ";\n";
      k += "    float q = 0.f;\n" + pass([](ExprCtx &, const std::string &v) {
             return "      const float e_c = " + v + " - mean;\n      q += e_c * e_c;\n";
           }) +
           "    const float var = ncd_warp_sum(q) / " + n + ";\n";
      k += "    const float denom = sqrtf(var + " + flit(eps) + ");\n";
    } else {  // rmsnorm
      k += "    float q = 0.f;\n" + pass([](ExprCtx &, const std::string &v) {
             return "      const float e_c = " + v + ";\n      q += e_c * e_c;\n";
           }) +
           "    const float denom = sqrtf(ncd_warp_sum(q) / " + n + " + " + flit(eps) + ");\n";
    }
    k += pass([&](ExprCtx &c, const std::string &v) {
      std::string e = f == ops::Fn::Softmax      ? "(s > 0.f ? expf(" + v + " - m) / s : 0.f)"
                      : f == ops::Fn::LogSoftmax ? v + " - m - logf(s)"
                      : f == ops::Fn::LayerNorm  ? "(" + v + " - mean) / denom"
                                                 : v + " / denom";
      c.code += c.pad + "const float e_n = " + rounded(result.dtype, e) + ";  // " + result.name + "\n";
      c.special[o.results[0]] = "e_n";
      fused_stores(frame, d, kernel, args, c);
      return std::string();
    });
  } else {
    if (f == ops::Fn::Sum || f == ops::Fn::Mean) {
      k += "    float acc = 0.f;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      acc += " + v + ";\n"; }) +
           "    acc = ncd_warp_sum(acc);\n";
      value = f == ops::Fn::Sum ? (l.missing == 1 ? "acc" : "acc * " + fsize(l.missing))
                                : "acc / " + fsize(extent);
    } else if (f == ops::Fn::Prod) {
      k += "    float acc = 1.f;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      acc *= " + v + ";\n"; }) +
           "    acc = ncd_warp_prod(acc);\n";
      value = l.missing == 1 ? "acc" : "powf(acc, " + fsize(l.missing) + ")";
    } else if (f == ops::Fn::Max || f == ops::Fn::Min) {
      k += "    float acc = " + std::string(f == ops::Fn::Max ? "-INFINITY" : "INFINITY") + ";\n" +
           pass([&](ExprCtx &, const std::string &v) { return "      acc = ncd_" + fn + "(acc, " + v + ");\n"; }) +
           "    acc = ncd_warp_" + fn + "(acc);\n";
      value = "acc";
    } else {  // logsumexp
      k += "    float m = -INFINITY;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
           "    m = ncd_warp_max(m);\n    const float mu = m == -INFINITY ? 0.f : m;\n";
      k += "    float acc = 0.f;\n" +
           pass([](ExprCtx &, const std::string &v) { return "      acc += expf(" + v + " - mu);\n"; }) +
           "    acc = ncd_warp_sum(acc);\n";
      value = "mu + logf(acc)" + log_term(l.missing);
    }
    ExprCtx c;
    c.pad = "      ";
    c.counter = &kernel.counter;
    c.index = identity;
    c.code += c.pad + "const float e_n = " + rounded(result.dtype, value) + ";  // " + result.name + "\n";
    c.special[o.results[0]] = "e_n";
    fused_stores(frame, d, kernel, args, c);
    k += "    if (lane == 0) {\n" + c.code + "    }\n";
  }
  k += "  }\n}\n";
  work = rows * Sz(32);
  launch_what = fn + " rows";
  return k;
}

}  // namespace ncd::cuda::detail
