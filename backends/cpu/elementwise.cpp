// Elementwise kernels: one dense result, operands broadcast by axis id.
//
// The result is laid out like its largest operand (so that operand streams),
// dimensions that every operand walks contiguously are merged, and the
// innermost loop is specialised for contiguous and broadcast operands so that
// the compiler vectorises it. The function is chosen once per op, never per
// element.
#include <algorithm>
#include <cmath>
#include <map>
#include <type_traits>

#include "kernels.h"
#include "ncd/tensor.h"
#include "vmath.h"

namespace ncd::cpu {

bool parse_fn(const std::string &name, Fn &fn) {
  static const std::map<std::string, Fn> kNames = {
      {"exp", Fn::Exp},         {"log", Fn::Log},         {"sqrt", Fn::Sqrt},     {"rsqrt", Fn::Rsqrt},
      {"tanh", Fn::Tanh},       {"sigmoid", Fn::Sigmoid}, {"relu", Fn::Relu},     {"gelu", Fn::Gelu},
      {"silu", Fn::Silu},       {"abs", Fn::Abs},         {"sin", Fn::Sin},       {"cos", Fn::Cos},
      {"erf", Fn::Erf},         {"recip", Fn::Recip},     {"square", Fn::Square}, {"floor", Fn::Floor},
      {"ceil", Fn::Ceil},       {"log1p", Fn::Log1p},     {"expm1", Fn::Expm1},   {"softplus", Fn::Softplus},
      {"neg", Fn::Neg},         {"not", Fn::Not},         {"pow", Fn::Pow},       {"minimum", Fn::Minimum},
      {"maximum", Fn::Maximum}, {"min", Fn::Minimum},     {"max", Fn::Maximum},   {"add", Fn::Add},
      {"sub", Fn::Sub},         {"mul", Fn::Mul},         {"div", Fn::Div},       {"lt", Fn::Lt},
      {"le", Fn::Le},           {"gt", Fn::Gt},           {"ge", Fn::Ge},         {"eq", Fn::Eq},
      {"ne", Fn::Ne},           {"and", Fn::And},         {"or", Fn::Or},         {"where", Fn::Where}};
  auto it = kNames.find(name);
  if (it == kNames.end()) return false;
  fn = it->second;
  return true;
}

int fn_arity(Fn fn) {
  if (fn == Fn::Where) return 3;
  if (fn >= Fn::Pow) return 2;
  return 1;
}

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

}  // namespace

RtTensor elementwise(Fn fn, const std::vector<RtTensor> &operands, ir::DType dtype, const std::vector<int> &order) {
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
  constexpr int64_t kCheap = 1, kMath = 8;
  switch (fn) {
    case Fn::Exp:
      unary(
          loop, o, x, [](float v) { return exp_f(v); }, kMath);
      break;
    case Fn::Log:
      unary(
          loop, o, x, [](float v) { return std::log(v); }, kMath);
      break;
    case Fn::Sqrt:
      unary(
          loop, o, x, [](float v) { return std::sqrt(v); }, kCheap);
      break;
    case Fn::Rsqrt:
      unary(
          loop, o, x, [](float v) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(v))); }, kMath);
      break;
    case Fn::Tanh:
      unary(
          loop, o, x, [](float v) { return tanh_f(v); }, kMath);
      break;
    case Fn::Sigmoid:
      unary(
          loop, o, x, [](float v) { return sigmoid_f(v); }, kMath);
      break;
    case Fn::Relu:
      unary(
          loop, o, x, [](float v) { return v < 0.0f ? 0.0f : v; }, kCheap);
      break;
    case Fn::Gelu:
      unary(
          loop, o, x, [](float v) { return gelu_f(v); }, kMath);
      break;
    case Fn::Silu:
      unary(
          loop, o, x, [](float v) { return silu_f(v); }, kMath);
      break;
    case Fn::Abs:
      unary(
          loop, o, x, [](float v) { return std::fabs(v); }, kCheap);
      break;
    case Fn::Sin:
      unary(
          loop, o, x, [](float v) { return std::sin(v); }, kMath);
      break;
    case Fn::Cos:
      unary(
          loop, o, x, [](float v) { return std::cos(v); }, kMath);
      break;
    case Fn::Erf:
      unary(
          loop, o, x, [](float v) { return erf_f(v); }, kMath);
      break;
    case Fn::Recip:
      unary(
          loop, o, x, [](float v) { return 1.0f / v; }, kCheap);
      break;
    case Fn::Square:
      unary(
          loop, o, x, [](float v) { return v * v; }, kCheap);
      break;
    case Fn::Floor:
      unary(
          loop, o, x, [](float v) { return std::floor(v); }, kCheap);
      break;
    case Fn::Ceil:
      unary(
          loop, o, x, [](float v) { return std::ceil(v); }, kCheap);
      break;
    case Fn::Log1p:
      unary(
          loop, o, x, [](float v) { return std::log1p(v); }, kMath);
      break;
    case Fn::Expm1:
      unary(
          loop, o, x, [](float v) { return std::expm1(v); }, kMath);
      break;
    case Fn::Softplus:
      unary(
          loop, o, x, [](float v) { return (v > 0.0f ? v : 0.0f) + std::log1p(std::exp(-std::fabs(v))); }, kMath);
      break;
    case Fn::Neg:
      unary(
          loop, o, x, [](float v) { return -v; }, kCheap);
      break;
    case Fn::Not:
      unary(
          loop, o, x, [](float v) { return v == 0.0f ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Pow:
      binary(
          loop, o, x, y, [](float a, float b) { return std::pow(a, b); }, kMath);
      break;
    case Fn::Minimum:
      binary(
          loop, o, x, y, [](float a, float b) { return (a != a || a < b) ? a : b; }, kCheap);
      break;
    case Fn::Maximum:
      binary(
          loop, o, x, y, [](float a, float b) { return (a != a || a > b) ? a : b; }, kCheap);
      break;
    case Fn::Add:
      binary(
          loop, o, x, y, [](float a, float b) { return a + b; }, kCheap);
      break;
    case Fn::Sub:
      binary(
          loop, o, x, y, [](float a, float b) { return a - b; }, kCheap);
      break;
    case Fn::Mul:
      binary(
          loop, o, x, y, [](float a, float b) { return a * b; }, kCheap);
      break;
    case Fn::Div:
      binary(
          loop, o, x, y, [](float a, float b) { return a / b; }, kCheap);
      break;
    case Fn::Lt:
      binary(
          loop, o, x, y, [](float a, float b) { return a < b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Le:
      binary(
          loop, o, x, y, [](float a, float b) { return a <= b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Gt:
      binary(
          loop, o, x, y, [](float a, float b) { return a > b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Ge:
      binary(
          loop, o, x, y, [](float a, float b) { return a >= b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Eq:
      binary(
          loop, o, x, y, [](float a, float b) { return a == b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Ne:
      binary(
          loop, o, x, y, [](float a, float b) { return a != b ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::And:
      binary(
          loop, o, x, y, [](float a, float b) { return (a != 0.0f && b != 0.0f) ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Or:
      binary(
          loop, o, x, y, [](float a, float b) { return (a != 0.0f || b != 0.0f) ? 1.0f : 0.0f; }, kCheap);
      break;
    case Fn::Where:
      ternary(
          loop, o, x, y, z, [](float c, float a, float b) { return c != 0.0f ? a : b; }, kCheap);
      break;
  }
  if (int_result) return convert(out, ir::DType::I32);
  round_in_place(out);
  return out;
}

}  // namespace ncd::cpu
