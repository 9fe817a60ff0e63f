// Scans along one named axis: cumsum, cumprod, cummax, cummin and the linear
// recurrence `scan` (h = a·h + b), lifted over every other axis of the result.
//
// Each lifted position runs the recurrence in order along the scanned axis,
// with its state in float64 (the sums of reduce.cpp accumulate the same way;
// a bf16 or f32 result is rounded from it element by element), so the bits do
// not depend on how positions are split among threads. Positions are handed
// out in blocks along the innermost lifted axis: one block steps through the
// scanned axis once, updating the states of all its positions at each step,
// which walks memory contiguously when the scanned axis is not innermost.
#include <vector>

#include "kernels.h"

namespace ncd::cpu {

namespace {

// One step of the recurrence: the row's `combine` fold, or a·h + b for `scan`.
template <ops::Fn F>
inline double step(double h, double x, double b) {
  if constexpr (F == ops::Fn::Scan) {
    return x * h + b;
  } else {
    constexpr auto combine = ops::info(ops::info(F).combine).fold.f64;
    return combine(h, x, 0);
  }
}

template <ops::Fn F>
void scan_rows(const Loop &loop, int64_t length, const int64_t *along, const float *const *data, float *out) {
  const double identity = ops::info(F).identity;
  const bool pair = ops::info(F).arity == 2;
  const int64_t so = loop.inner_stride(0), s0 = loop.inner_stride(1), s1 = pair ? loop.inner_stride(2) : 0;
  loop.run(
      [&](const int64_t *off, int64_t n) {
        std::vector<double> h(static_cast<size_t>(n), identity);
        for (int64_t t = 0; t < length; ++t) {
          float *y = out + off[0] + t * along[0];
          const float *x = data[0] + off[1] + t * along[1];
          const float *b = pair ? data[1] + off[2] + t * along[2] : nullptr;
          for (int64_t k = 0; k < n; ++k) {
            double &state = h[static_cast<size_t>(k)];
            state = step<F>(state, static_cast<double>(x[k * s0]), pair ? static_cast<double>(b[k * s1]) : 0.0);
            y[k * so] = static_cast<float>(state);
          }
        }
      },
      length * (pair ? 2 : 1));
}

}  // namespace

RtTensor scan(ops::Fn fn, const std::vector<RtTensor> &operands, int axis, const std::vector<int> &order,
              const std::vector<int64_t> &sizes) {
  if (static_cast<int>(operands.size()) != ops::info(fn).arity || ops::info(fn).kind != ops::Kind::Scan)
    throw RunError("the cpu backend has no scan '" + std::string(ops::name(fn)) + "'");
  std::vector<RtTensor> in;
  for (const RtTensor &t : operands) in.push_back(as_float(t));
  RtTensor out = make_tensor(ir::DType::F32, order, sizes);
  // The lifted positions: every result axis but the scanned one, walked by a
  // Loop over the output and the operands (stride 0 where an operand lacks an axis).
  Loop loop;
  loop.strides.assign(1 + in.size(), {});
  int64_t length = 1;
  int64_t along[kMaxOperands] = {0};
  for (size_t d = 0; d < order.size(); ++d) {
    if (order[d] == axis) {
      length = sizes[d];
      along[0] = out.stride_of(axis);
      for (size_t i = 0; i < in.size(); ++i) along[i + 1] = in[i].stride_of(axis);
      continue;
    }
    loop.sizes.push_back(sizes[d]);
    loop.strides[0].push_back(out.stride_of(order[d]));
    for (size_t i = 0; i < in.size(); ++i) loop.strides[i + 1].push_back(in[i].stride_of(order[d]));
  }
  if (out.numel() == 0) return out;
  loop.collapse();
  std::vector<const float *> data;
  for (const RtTensor &t : in) data.push_back(t.fdata());
  float *o = out.fdata();
  switch (fn) {
    case ops::Fn::CumSum: scan_rows<ops::Fn::CumSum>(loop, length, along, data.data(), o); break;
    case ops::Fn::CumProd: scan_rows<ops::Fn::CumProd>(loop, length, along, data.data(), o); break;
    case ops::Fn::CumMax: scan_rows<ops::Fn::CumMax>(loop, length, along, data.data(), o); break;
    case ops::Fn::CumMin: scan_rows<ops::Fn::CumMin>(loop, length, along, data.data(), o); break;
    case ops::Fn::Scan: scan_rows<ops::Fn::Scan>(loop, length, along, data.data(), o); break;
    default: throw RunError("the cpu backend has no scan '" + std::string(ops::name(fn)) + "'");
  }
  return out;
}

}  // namespace ncd::cpu
