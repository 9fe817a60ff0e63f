// Elementwise kernels: one dense result, operands broadcast by axis id.
//
// The result is laid out like its largest operand (so that operand streams),
// dimensions that every operand walks contiguously are merged, and the
// innermost loop is specialised for contiguous and broadcast operands so that
// the compiler vectorises it. The function is chosen once per op, never per
// element: a switch on the op table's enum (ncd/ops.h) selects the kernels
// that use this backend's vectorised math (vmath.h); every other function runs
// its row's float32 fold, a compile-time function pointer that inlines into the
// row loop.
#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>
#include <utility>

#include "kernels.h"
#include "ncd/tensor.h"
#include "vmath.h"

namespace ncd::cpu {

namespace {

// How an operand steps along the innermost loop: not at all (broadcast), by 1, or by its stride.
enum Step { kBroadcast, kUnit, kStrided };
Step step_of(int64_t stride) { return stride == 0 ? kBroadcast : (stride == 1 ? kUnit : kStrided); }

template <Step S>
inline float at(const float *__restrict p, int64_t k, int64_t stride) {
  if constexpr (S == kBroadcast)
    return p[0];
  else if constexpr (S == kUnit)
    return p[k];
  else
    return p[k * stride];
}

// One innermost row, each operand's step known at compile time. Kept out of
// line (one small function per combination) so that the vectoriser sees the
// bare loop, whatever it is inlined into.
template <Step A, typename F>
__attribute__((noinline)) void row1(float *__restrict o, const float *__restrict x, int64_t sx, int64_t n, F f) {
  for (int64_t k = 0; k < n; ++k) o[k] = f(at<A>(x, k, sx));
}
template <Step A, Step B, typename F>
__attribute__((noinline)) void row2(float *__restrict o, const float *__restrict x, int64_t sx,
                                    const float *__restrict y, int64_t sy, int64_t n, F f) {
  for (int64_t k = 0; k < n; ++k) o[k] = f(at<A>(x, k, sx), at<B>(y, k, sy));
}
template <Step A, Step B, Step C, typename F>
__attribute__((noinline)) void row3(float *__restrict o, const float *__restrict x, int64_t sx,
                                    const float *__restrict y, int64_t sy, const float *__restrict z, int64_t sz,
                                    int64_t n, F f) {
  for (int64_t k = 0; k < n; ++k) o[k] = f(at<A>(x, k, sx), at<B>(y, k, sy), at<C>(z, k, sz));
}

// Calls body(std::integral_constant<Step, s>) for the runtime step s.
template <typename Body>
void with_step(Step s, Body &&body) {
  switch (s) {
    case kBroadcast: return body(std::integral_constant<Step, kBroadcast>{});
    case kUnit: return body(std::integral_constant<Step, kUnit>{});
    case kStrided: return body(std::integral_constant<Step, kStrided>{});
  }
}

// The steps of several operands: broadcast and unit steps get their own rows
// when every operand has one of them; otherwise all operands take the general
// strided row (a stride of 0 or 1 is a stride too), which keeps the number of
// instantiations down.
Step common_step(const std::vector<int64_t> &strides, size_t operand) {
  for (int64_t s : strides)
    if (step_of(s) == kStrided) return kStrided;
  return step_of(strides[operand]);
}

template <typename F>
void unary(const Loop &loop, float *out, const float *a, F f, int64_t cost) {
  const int64_t sa = loop.inner_stride(1);
  if (sa == 0) {  // a broadcast operand: one value per row
    loop.run([&](const int64_t *off, int64_t n) { std::fill_n(out + off[0], n, f(a[off[1]])); }, cost);
    return;
  }
  with_step(step_of(sa), [&](auto A) {
    loop.run([&](const int64_t *off, int64_t n) { row1<A.value>(out + off[0], a + off[1], sa, n, f); }, cost);
  });
}

template <typename F>
void binary(const Loop &loop, float *out, const float *a, const float *b, F f, int64_t cost) {
  const int64_t sa = loop.inner_stride(1), sb = loop.inner_stride(2);
  const std::vector<int64_t> steps = {sa, sb};
  with_step(common_step(steps, 0), [&](auto A) {
    with_step(common_step(steps, 1), [&](auto B) {
      if constexpr ((A.value == kStrided) == (B.value == kStrided))
        loop.run([&](const int64_t *off,
                     int64_t n) { row2<A.value, B.value>(out + off[0], a + off[1], sa, b + off[2], sb, n, f); },
                 cost);
    });
  });
}

template <typename F>
void ternary(const Loop &loop, float *out, const float *a, const float *b, const float *c, F f, int64_t cost) {
  const int64_t sa = loop.inner_stride(1), sb = loop.inner_stride(2), sc = loop.inner_stride(3);
  const std::vector<int64_t> steps = {sa, sb, sc};
  with_step(common_step(steps, 0), [&](auto A) {
    with_step(common_step(steps, 1), [&](auto B) {
      with_step(common_step(steps, 2), [&](auto C) {
        constexpr int strided = (A.value == kStrided) + (B.value == kStrided) + (C.value == kStrided);
        if constexpr (strided == 0 || strided == 3)
          loop.run(
              [&](const int64_t *off, int64_t n) {
                row3<A.value, B.value, C.value>(out + off[0], a + off[1], sa, b + off[2], sb, c + off[3], sc, n, f);
              },
              cost);
      });
    });
  });
}

constexpr int64_t kCheap = 1, kMath = 8;  // work per element, for splitting loops across threads

// The kernel of row F: its float32 fold, known at compile time.
template <ops::Fn F>
void table_kernel(const Loop &loop, float *o, const float *x, const float *y, const float *z) {
  constexpr const ops::Info &row = ops::info(F);
  constexpr auto f = row.fold.f32;
  constexpr int64_t cost = row.special ? kMath : kCheap;
  if constexpr (!row.fold.defined || row.kind != ops::Kind::Elementwise) {
    throw RunError("the cpu backend has no elementwise function '" + std::string(row.name) + "'");
  } else if constexpr (row.arity == 1) {
    unary(loop, o, x, [](float a) { return f(a, 0.0f, 0.0f); }, cost);
  } else if constexpr (row.arity == 2) {
    binary(loop, o, x, y, [](float a, float b) { return f(a, b, 0.0f); }, cost);
  } else {
    ternary(loop, o, x, y, z, [](float a, float b, float c) { return f(a, b, c); }, cost);
  }
}

template <size_t... I>
void by_table(ops::Fn fn, const Loop &loop, float *o, const float *x, const float *y, const float *z,
              std::index_sequence<I...>) {
  (void)((fn == static_cast<ops::Fn>(I) && (table_kernel<static_cast<ops::Fn>(I)>(loop, o, x, y, z), true)) || ...);
}

}  // namespace

RtTensor elementwise(ops::Fn fn, const std::vector<RtTensor> &operands, ir::DType dtype, const std::vector<int> &order) {
  std::vector<RtTensor> in;
  in.reserve(operands.size());
  for (const RtTensor &t : operands) in.push_back(as_float(t));
  // Layout: the largest operand's memory order when it carries every axis of the
  // result (it then streams); otherwise the result's own order (`order`).
  size_t big = 0;
  for (size_t i = 1; i < in.size(); ++i)
    if (in[i].numel() > in[big].numel()) big = i;
  std::vector<int> all;
  std::vector<int64_t> all_sizes;
  for (const RtTensor &t : in)
    for (int d = 0; d < t.rank(); ++d)
      if (std::find(all.begin(), all.end(), t.axes[static_cast<size_t>(d)]) == all.end()) {
        all.push_back(t.axes[static_cast<size_t>(d)]);
        all_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
      }
  const RtTensor &b = in[big];
  bool covers = true;
  for (int axis : all) covers = covers && b.stride_of(axis) != 0;
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  auto add = [&](int axis) {
    if (std::find(axes.begin(), axes.end(), axis) != axes.end()) return;
    size_t at = static_cast<size_t>(std::find(all.begin(), all.end(), axis) - all.begin());
    if (at == all.size()) return;
    axes.push_back(axis);
    sizes.push_back(all_sizes[at]);
  };
  if (covers) {
    std::vector<int> dims;
    for (int d = 0; d < b.rank(); ++d) dims.push_back(d);
    std::stable_sort(dims.begin(), dims.end(), [&](int x, int y) {
      return b.strides[static_cast<size_t>(x)] > b.strides[static_cast<size_t>(y)];
    });
    for (int d : dims) add(b.axes[static_cast<size_t>(d)]);
  } else {
    // Axes outside `order` (lifted batch axes) outermost, then the result's order.
    for (int axis : all)
      if (std::find(order.begin(), order.end(), axis) == order.end()) add(axis);
    for (int axis : order) add(axis);
  }
  const bool int_result = dtype == ir::DType::I32;
  RtTensor out = make_tensor(int_result ? ir::DType::F32 : dtype, axes, sizes);
  Loop loop;
  loop.sizes = sizes;
  loop.strides.assign(1 + in.size(), std::vector<int64_t>(axes.size(), 0));
  for (size_t d = 0; d < axes.size(); ++d) {
    loop.strides[0][d] = out.strides[d];
    for (size_t i = 0; i < in.size(); ++i) loop.strides[1 + i][d] = in[i].stride_of(axes[d]);
  }
  loop.collapse();
  float *o = out.fdata();
  const float *x = in[0].fdata();
  const float *y = in.size() > 1 ? in[1].fdata() : nullptr;
  const float *z = in.size() > 2 ? in[2].fdata() : nullptr;
  if (in.size() != static_cast<size_t>(ops::info(fn).arity))
    throw RunError("elementwise '" + std::string(ops::name(fn)) + "' takes " + std::to_string(ops::info(fn).arity) +
                   " operands");
  switch (fn) {
    case ops::Fn::Exp: unary(loop, o, x, [](float v) { return exp_f(v); }, kMath); break;
    case ops::Fn::Tanh: unary(loop, o, x, [](float v) { return tanh_f(v); }, kMath); break;
    case ops::Fn::Sigmoid: unary(loop, o, x, [](float v) { return sigmoid_f(v); }, kMath); break;
    case ops::Fn::Gelu: unary(loop, o, x, [](float v) { return gelu_f(v); }, kMath); break;
    case ops::Fn::Silu: unary(loop, o, x, [](float v) { return silu_f(v); }, kMath); break;
    case ops::Fn::Erf: unary(loop, o, x, [](float v) { return erf_f(v); }, kMath); break;
    default: by_table(fn, loop, o, x, y, z, std::make_index_sequence<ops::all().size()>{});
  }
  if (int_result) return convert(out, ir::DType::I32);
  round_in_place(out);
  return out;
}

}  // namespace ncd::cpu
