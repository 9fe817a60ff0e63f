// The op table: every builtin function of the language and the IR, one row
// each. A row says what the function is called, how the language writes it,
// how many operands it takes, what kind of operation it is, what it costs,
// how it evaluates on scalars (the folding of constants) and how CUDA spells
// it. `ir::Op::function` holds the enum, so a function the table lacks cannot
// occur in the IR; sema, the verifier, the source writer, the cost model,
// schedule checks, passes, renderers and backends all look the rest up here.
//
// Adding a pointwise function is adding a row (docs/ARCHITECTURE.md, "Where a
// new builtin goes"): the row's `fold` is also the CPU backend's kernel for
// it unless the backend has a faster one of its own.
#pragma once

#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <string_view>

namespace ncd::ops {

// In the order of the rows of `kTable` below.
enum class Fn : uint8_t {
  None,  // ops that apply no function: constants, accesses, contractions, calls
  // Pointwise functions called by name.
  Exp, Log, Sqrt, Rsqrt, Tanh, Sigmoid, Relu, Gelu, GeluTanh, Silu, Abs, Sin, Cos, Erf, Recip, Square, Floor, Ceil, Round,
  Log1p, Expm1, Softplus, Pow, Minimum, Maximum, Where, Quantize, Dequantize,
  // Pointwise functions written as operators.
  Neg, Not, Add, Sub, Mul, Div, Lt, Le, Gt, Ge, Eq, Ne, And, Or,
  // Conversions to the result's dtype.
  Copy, Cast,
  // Reductions and normalisations over the axes in brackets.
  Sum, Max, Min, Mean, LogSumExp, Prod,
  // Reductions to the i32 position of the extreme along one axis.
  ArgMax, ArgMin,
  Softmax, LogSoftmax, LayerNorm, RMSNorm,
  // Inclusive scans along the axis in brackets.
  CumSum, CumProd, CumMax, CumMin, Scan,
  // Selections along one axis giving values and their positions.
  TopK, Sort,
};

enum class Kind : uint8_t {
  None,
  Elementwise,  // pointwise; operands broadcast by axis
  Cast,         // the operand converted to the result's dtype (a copy also broadcasts to the result's axes)
  Reduce,       // removes the axes in brackets (`position`: gives where along its one axis, as i32)
  Normalize,    // keeps its operand's axes, normalising along those in brackets
  Scan,         // an inclusive scan along the one axis in brackets; keeps its operands' (broadcast) axes
  Select,       // orders along one axis: two results, the values and their positions (i32)
};

// How the language writes a call of the function.
enum class Syntax : uint8_t {
  None,
  Call,    // `name(x, ...)`; reductions and normalisations `name[axes](x)`; the name is reserved
  Infix,   // `x symbol y`
  Prefix,  // `symbol x`
  Copy,    // the operand itself: a statement that reads a tensor
  DType,   // the result's dtype as the name: `bf16(x)`
};

// Whether a schedule may stream the axes the function acts on.
enum class Stream : uint8_t {
  None,
  Running,  // a running accumulator (sum, max, ...)
  Online,   // online-softmax rescaling, when its result feeds only contractions over the axis
};

// A function's value on scalars; unused operands are ignored. Every
// pointwise row has one, written once as a generic lambda so that the
// float32 and float64 versions cannot disagree.
struct Fold {
  float (*f32)(float, float, float) = nullptr;
  double (*f64)(double, double, double) = nullptr;
  // Whether the row has a fold, for `if constexpr`: comparing a function
  // pointer with null is not a constant expression under the sanitizers.
  bool defined = false;
};
template <typename F>
constexpr Fold fold(F f) {
  return {f, f, true};
}

struct Info {
  Fn fn = Fn::None;
  std::string_view name;  // in the IR (text, JSON) and, for Syntax::Call, in the language
  Kind kind = Kind::None;
  Syntax syntax = Syntax::None;
  std::string_view symbol;  // Infix, Prefix: the operator
  int arity = 0;            // operands
  // FLOPs (docs/COST.md): pointwise per result element; a reduction per
  // operand element plus `flops_out` per result element; a normalisation per
  // element plus `flops_out` per row; a scan per result element (the work of a
  // sequential scan: applications of `combine`).
  double flops = 0;
  double flops_out = 0;
  bool special = false;  // evaluated on special-function units (transcendentals per element)
  bool boolean = false;  // gives a bool (comparisons and logic)
  Stream stream = Stream::None;
  bool eps = false;  // a normalisation taking `eps = ...`
  double default_eps = 0;
  Fn pointwise = Fn::None;  // a reduction whose name without brackets is this pointwise function
  // A reduction over exactly one axis giving the i32 position of its
  // extreme (the first on ties; a NaN is the extreme, the first NaN wins, as
  // NumPy's argmax): `greatest` picks the largest, otherwise the smallest.
  bool position = false;
  bool greatest = false;  // also a selection's order: the largest first, otherwise the smallest
  // A selection keeping every position of its axis (sort) rather than as many
  // as its result axis has (topk).
  bool whole = false;
  Fold fold;                // pointwise: the value (float32 as the CPU reference computes it)
  // Scan: the step h = combine(h, x) of the recurrence (for `scan`, x is the
  // pair (a, b) and the step a·h + b is written by the backends), and the
  // state before the first element.
  Fn combine = Fn::None;
  double identity = 0;
  // CUDA: a float expression, $0 $1 $2 the operands (as floats). Empty for
  // reductions and normalisations, which the backend writes as kernels.
  std::string_view cuda;
  // The vector-Jacobian product (docs/AUTODIFF.md), per operand: the cotangent
  // reaching operand i, an expression in the language's operators and
  // pointwise functions of `a` `b` `c` (the operands), `r` (the result), `g`
  // (the result's cotangent) and, for functions over axes, `sum(x)` and
  // `mean(x)` over the function's axes, `rsum(x)` (x summed from each position
  // to the end of a scan's axis), `n` (the elements along the axes) and `eps`.
  // "0": piecewise constant; empty: no derivative (a condition, a boolean, or
  // a rule the op kind states, docs/AUTODIFF.md).
  std::array<std::string_view, 3> vjp{};
};

namespace detail {

// Helpers of the rows' folding, shared by both precisions.
template <typename T>
constexpr T truth(bool b) {
  return b ? T(1) : T(0);
}
template <typename T>
T sigmoid(T x) {
  // Overflow-free on both sides.
  if (x >= T(0)) return T(1) / (T(1) + std::exp(-x));
  const T e = std::exp(x);
  return e / (T(1) + e);
}

}  // namespace detail

// Rows name only the fields that differ from the defaults; GCC's -Wextra
// would ask for every field even of a designated initializer.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
// clang-format off
inline constexpr Info kTable[] = {
    {.fn = Fn::None},
    // ------------------------------------------------ pointwise, called by name
    {.fn = Fn::Exp, .name = "exp", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::exp(x); }), .cuda = "expf($0)",
     .vjp = {"g * r"}},
    {.fn = Fn::Log, .name = "log", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::log(x); }), .cuda = "logf($0)",
     .vjp = {"g / a"}},
    {.fn = Fn::Sqrt, .name = "sqrt", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::sqrt(x); }), .cuda = "sqrtf($0)",
     .vjp = {"g * 0.5 / r"}},
    // In float64, then rounded: the float32 result is the correctly rounded 1/√x.
    {.fn = Fn::Rsqrt, .name = "rsqrt", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return decltype(x)(1.0 / std::sqrt(double(x))); }), .cuda = "ncd_rsqrt($0)",
     .vjp = {"g * -0.5 * r / a"}},
    {.fn = Fn::Tanh, .name = "tanh", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::tanh(x); }), .cuda = "tanhf($0)",
     .vjp = {"g * (1 - r * r)"}},
    // neg, exp, add, recip
    {.fn = Fn::Sigmoid, .name = "sigmoid", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 4, .special = true,
     .fold = fold([](auto x, auto, auto) { return detail::sigmoid(x); }), .cuda = "ncd_sigmoid($0)",
     .vjp = {"g * r * (1 - r)"}},
    // NaN passes through.
    {.fn = Fn::Relu, .name = "relu", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return x < decltype(x)(0) ? decltype(x)(0) : x; }), .cuda = "ncd_relu($0)",
     .vjp = {"where(a > 0, g, 0)"}},
    // The exact gelu x·Φ(x), as x/2·erfc(−x/√2): no cancellation for negative x. Counted in its tanh form.
    {.fn = Fn::Gelu, .name = "gelu", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 8, .special = true,
     .fold = fold([](auto x, auto, auto) { using T = decltype(x); return T(0.5) * x * std::erfc(-x * T(0.70710678118654752)); }),
     .cuda = "ncd_gelu($0)",
     .vjp = {"g * (0.5 * (1 + erf(a * 0.70710678118654752)) + a * 0.39894228040143268 * exp(-0.5 * a * a))"}},
    // GPT-2's (and torch's approximate='tanh') gelu: x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))), in that order.
    {.fn = Fn::GeluTanh, .name = "gelu_tanh", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 8,
     .special = true,
     .fold = fold([](auto x, auto, auto) {
       using T = decltype(x);
       return T(0.5) * x * (T(1) + std::tanh(T(0.79788456080286536) * (x + T(0.044715) * (x * x * x))));
     }),
     .cuda = "ncd_gelu_tanh($0)",
     .vjp = {"g * (0.5 * (1 + tanh(0.79788456080286536 * (a + 0.044715 * a * a * a))) + 0.5 * a * (1 - square(tanh(0.79788456080286536 * (a + 0.044715 * a * a * a)))) * 0.79788456080286536 * (1 + 0.134145 * a * a))"}},
    {.fn = Fn::Silu, .name = "silu", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 5, .special = true,
     .fold = fold([](auto x, auto, auto) { return x * detail::sigmoid(x); }), .cuda = "ncd_silu($0)",
     .vjp = {"g * sigmoid(a) * (1 + a * (1 - sigmoid(a)))"}},
    {.fn = Fn::Abs, .name = "abs", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return std::fabs(x); }), .cuda = "fabsf($0)",
     .vjp = {"where(a > 0, g, where(a < 0, -g, 0))"}},
    {.fn = Fn::Sin, .name = "sin", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::sin(x); }), .cuda = "sinf($0)",
     .vjp = {"g * cos(a)"}},
    {.fn = Fn::Cos, .name = "cos", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::cos(x); }), .cuda = "cosf($0)",
     .vjp = {"-g * sin(a)"}},
    {.fn = Fn::Erf, .name = "erf", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::erf(x); }), .cuda = "erff($0)",
     .vjp = {"g * 1.1283791670955126 * exp(-a * a)"}},
    {.fn = Fn::Recip, .name = "recip", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return decltype(x)(1) / x; }), .cuda = "(1.f / $0)",
     .vjp = {"-g * r * r"}},
    {.fn = Fn::Square, .name = "square", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return x * x; }), .cuda = "($0 * $0)",
     .vjp = {"g * 2 * a"}},
    {.fn = Fn::Floor, .name = "floor", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return std::floor(x); }), .cuda = "floorf($0)",
     .vjp = {"0"}},
    {.fn = Fn::Ceil, .name = "ceil", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return std::ceil(x); }), .cuda = "ceilf($0)",
     .vjp = {"0"}},
    // To the nearest integer, halves to even (as torch.round): nearbyint under the default rounding mode.
    {.fn = Fn::Round, .name = "round", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return std::nearbyint(x); }), .cuda = "rintf($0)",
     .vjp = {"0"}},
    {.fn = Fn::Log1p, .name = "log1p", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::log1p(x); }), .cuda = "log1pf($0)",
     .vjp = {"g / (1 + a)"}},
    {.fn = Fn::Expm1, .name = "expm1", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 1, .special = true,
     .fold = fold([](auto x, auto, auto) { return std::expm1(x); }), .cuda = "expm1f($0)",
     .vjp = {"g * (r + 1)"}},
    // max(x, 0) + log1p(exp(−|x|)): exp, add, log
    {.fn = Fn::Softplus, .name = "softplus", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 1, .flops = 3, .special = true,
     .fold = fold([](auto x, auto, auto) { using T = decltype(x); return (x > T(0) ? x : T(0)) + std::log1p(std::exp(-std::fabs(x))); }),
     .cuda = "ncd_softplus($0)",
     .vjp = {"g * sigmoid(a)"}},
    {.fn = Fn::Pow, .name = "pow", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 2, .flops = 3, .special = true,
     .fold = fold([](auto x, auto y, auto) { return std::pow(x, y); }), .cuda = "powf($0, $1)",
     .vjp = {"g * b * pow(a, b - 1)", "g * r * log(a)"}},
    // NaN in either operand gives NaN (as torch.minimum).
    {.fn = Fn::Minimum, .name = "minimum", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return (x != x || x < y) ? x : y; }), .cuda = "ncd_min($0, $1)",
     .vjp = {"where(a < b, g, where(a == b, g * 0.5, 0))", "where(b < a, g, where(a == b, g * 0.5, 0))"}},
    {.fn = Fn::Maximum, .name = "maximum", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return (x != x || x > y) ? x : y; }), .cuda = "ncd_max($0, $1)",
     .vjp = {"where(a > b, g, where(a == b, g * 0.5, 0))", "where(b > a, g, where(a == b, g * 0.5, 0))"}},
    {.fn = Fn::Where, .name = "where", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 3, .flops = 1,
     .fold = fold([](auto c, auto x, auto y) { return c != decltype(c)(0) ? x : y; }), .cuda = "($0 != 0.f ? $1 : $2)",
     .vjp = {"", "where(a, g, 0)", "where(a, 0, g)"}},
    // Affine quantization (docs/SPARSE_AND_QUANTIZED.md): q = round(x / scale) + zero, halves to
    // even; the statement's integer dtype then saturates it. dequantize: x = (q - zero) * scale.
    {.fn = Fn::Quantize, .name = "quantize", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 3, .flops = 3,
     .fold = fold([](auto x, auto scale, auto zero) { return std::nearbyint(x / scale) + zero; }),
     .cuda = "(rintf($0 / $1) + $2)",
     .vjp = {"0", "0", "0"}},
    {.fn = Fn::Dequantize, .name = "dequantize", .kind = Kind::Elementwise, .syntax = Syntax::Call, .arity = 3, .flops = 2,
     .fold = fold([](auto q, auto scale, auto zero) { return (q - zero) * scale; }), .cuda = "(($0 - $2) * $1)",
     .vjp = {"g * b", "g * (a - c)", "-g * b"}},
    // ------------------------------------------------ pointwise, written as operators
    {.fn = Fn::Neg, .name = "neg", .kind = Kind::Elementwise, .syntax = Syntax::Prefix, .symbol = "-", .arity = 1, .flops = 1,
     .fold = fold([](auto x, auto, auto) { return -x; }), .cuda = "(-$0)",
     .vjp = {"-g"}},
    {.fn = Fn::Not, .name = "not", .kind = Kind::Elementwise, .syntax = Syntax::Prefix, .symbol = "!", .arity = 1, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto, auto) { return detail::truth<decltype(x)>(x == 0); }), .cuda = "($0 == 0.f ? 1.f : 0.f)"},
    {.fn = Fn::Add, .name = "add", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "+", .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return x + y; }), .cuda = "($0 + $1)",
     .vjp = {"g", "g"}},
    {.fn = Fn::Sub, .name = "sub", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "-", .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return x - y; }), .cuda = "($0 - $1)",
     .vjp = {"g", "-g"}},
    {.fn = Fn::Mul, .name = "mul", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "*", .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return x * y; }), .cuda = "($0 * $1)",
     .vjp = {"g * b", "g * a"}},
    {.fn = Fn::Div, .name = "div", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "/", .arity = 2, .flops = 1,
     .fold = fold([](auto x, auto y, auto) { return x / y; }), .cuda = "($0 / $1)",
     .vjp = {"g / b", "-g * r / b"}},
    {.fn = Fn::Lt, .name = "lt", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "<", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x < y); }), .cuda = "($0 < $1 ? 1.f : 0.f)"},
    {.fn = Fn::Le, .name = "le", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "<=", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x <= y); }), .cuda = "($0 <= $1 ? 1.f : 0.f)"},
    {.fn = Fn::Gt, .name = "gt", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = ">", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x > y); }), .cuda = "($0 > $1 ? 1.f : 0.f)"},
    {.fn = Fn::Ge, .name = "ge", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = ">=", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x >= y); }), .cuda = "($0 >= $1 ? 1.f : 0.f)"},
    {.fn = Fn::Eq, .name = "eq", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "==", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x == y); }), .cuda = "($0 == $1 ? 1.f : 0.f)"},
    {.fn = Fn::Ne, .name = "ne", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "!=", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x != y); }), .cuda = "($0 != $1 ? 1.f : 0.f)"},
    {.fn = Fn::And, .name = "and", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "&&", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x != 0 && y != 0); }),
     .cuda = "(($0 != 0.f && $1 != 0.f) ? 1.f : 0.f)"},
    {.fn = Fn::Or, .name = "or", .kind = Kind::Elementwise, .syntax = Syntax::Infix, .symbol = "||", .arity = 2, .flops = 1, .boolean = true,
     .fold = fold([](auto x, auto y, auto) { return detail::truth<decltype(x)>(x != 0 || y != 0); }),
     .cuda = "(($0 != 0.f || $1 != 0.f) ? 1.f : 0.f)"},
    // ------------------------------------------------ conversions: free (the store converts)
    {.fn = Fn::Copy, .name = "copy", .kind = Kind::Cast, .syntax = Syntax::Copy, .arity = 1,
     .fold = fold([](auto x, auto, auto) { return x; }), .cuda = "$0",
     .vjp = {"g"}},
    {.fn = Fn::Cast, .name = "cast", .kind = Kind::Cast, .syntax = Syntax::DType, .arity = 1,
     .fold = fold([](auto x, auto, auto) { return x; }), .cuda = "$0",
     .vjp = {"g"}},
    // ------------------------------------------------ reductions
    // `max`, `min` without brackets are the pointwise maximum and minimum.
    {.fn = Fn::Sum, .name = "sum", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .stream = Stream::Running,
     .vjp = {"g"}},
    {.fn = Fn::Max, .name = "max", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .stream = Stream::Running,
     .pointwise = Fn::Maximum,
     .vjp = {"where(a == r, g, 0)"}},
    {.fn = Fn::Min, .name = "min", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .stream = Stream::Running,
     .pointwise = Fn::Minimum,
     .vjp = {"where(a == r, g, 0)"}},
    {.fn = Fn::Mean, .name = "mean", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .flops_out = 1,
     .stream = Stream::Running,
     .vjp = {"g / n"}},
    // max, subtract, exp, add per element; log, add per result
    {.fn = Fn::LogSumExp, .name = "logsumexp", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 4, .flops_out = 2,
     .special = true, .stream = Stream::Running,
     .vjp = {"g * exp(a - r)"}},
    {.fn = Fn::Prod, .name = "prod", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .stream = Stream::Running,
     .vjp = {"g * r / a"}},
    // One comparison per element; not streamed (the position would need carrying across tiles).
    {.fn = Fn::ArgMax, .name = "argmax", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .position = true,
     .greatest = true},
    {.fn = Fn::ArgMin, .name = "argmin", .kind = Kind::Reduce, .syntax = Syntax::Call, .arity = 1, .flops = 1, .position = true},
    // ------------------------------------------------ normalisations
    // max, subtract, exp, sum, divide per element; one reciprocal per row
    {.fn = Fn::Softmax, .name = "softmax", .kind = Kind::Normalize, .syntax = Syntax::Call, .arity = 1, .flops = 5, .flops_out = 1,
     .special = true, .stream = Stream::Online,
     .vjp = {"r * (g - sum(g * r))"}},
    {.fn = Fn::LogSoftmax, .name = "logsoftmax", .kind = Kind::Normalize, .syntax = Syntax::Call, .arity = 1, .flops = 5, .flops_out = 1,
     .special = true,
     .vjp = {"g - exp(r) * sum(g)"}},
    // sum, centre, square, sum, scale per element; two divides, add eps, rsqrt per row
    {.fn = Fn::LayerNorm, .name = "layernorm", .kind = Kind::Normalize, .syntax = Syntax::Call, .arity = 1, .flops = 5, .flops_out = 4,
     .eps = true, .default_eps = 1e-5,
     .vjp = {"(g - mean(g) - r * mean(g * r)) * rsqrt(mean(square(a - mean(a))) + eps)"}},
    {.fn = Fn::RMSNorm, .name = "rmsnorm", .kind = Kind::Normalize, .syntax = Syntax::Call, .arity = 1, .flops = 3, .flops_out = 3,
     .eps = true, .default_eps = 1e-6,
     .vjp = {"(g - r * mean(g * r)) * rsqrt(mean(square(a)) + eps)"}},
    // ------------------------------------------------ scans
    // h_t = combine(h_{t-1}, x_t) from h_{-1} = identity; NaN propagates (as NumPy's accumulations).
    {.fn = Fn::CumSum, .name = "cumsum", .kind = Kind::Scan, .syntax = Syntax::Call, .arity = 1, .flops = 1, .combine = Fn::Add,
     .vjp = {"rsum(g)"}},
    {.fn = Fn::CumProd, .name = "cumprod", .kind = Kind::Scan, .syntax = Syntax::Call, .arity = 1, .flops = 1, .combine = Fn::Mul,
     .identity = 1,
     .vjp = {"rsum(g * r) / a"}},
    {.fn = Fn::CumMax, .name = "cummax", .kind = Kind::Scan, .syntax = Syntax::Call, .arity = 1, .flops = 1, .combine = Fn::Maximum,
     .identity = -std::numeric_limits<double>::infinity()},
    {.fn = Fn::CumMin, .name = "cummin", .kind = Kind::Scan, .syntax = Syntax::Call, .arity = 1, .flops = 1, .combine = Fn::Minimum,
     .identity = std::numeric_limits<double>::infinity()},
    // The linear recurrence h_t = a_t·h_{t-1} + b_t from h_{-1} = 0: a multiply and an add per element.
    {.fn = Fn::Scan, .name = "scan", .kind = Kind::Scan, .syntax = Syntax::Call, .arity = 2, .flops = 2},
    // ------------------------------------------------ selections (stable: ties keep their order; NaN above every number)
    // FLOPs: comparisons, ⌈log2 n⌉ per element of a row of n (docs/COST.md).
    {.fn = Fn::TopK, .name = "topk", .kind = Kind::Select, .syntax = Syntax::Call, .arity = 1, .flops = 1, .greatest = true},
    {.fn = Fn::Sort, .name = "sort", .kind = Kind::Select, .syntax = Syntax::Call, .arity = 1, .flops = 1, .whole = true},
};
// clang-format on
#pragma GCC diagnostic pop

constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < std::size(kTable); ++i)
    if (static_cast<size_t>(kTable[i].fn) != i) return false;
  return true;
}
static_assert(rows_in_enum_order(), "the rows of kTable follow the order of Fn");
static_assert(static_cast<size_t>(Fn::Sort) + 1 == std::size(kTable), "one row per Fn");

// Every row, Fn::None first.
constexpr std::span<const Info> all() { return kTable; }
constexpr const Info &info(Fn fn) { return kTable[static_cast<size_t>(fn)]; }
constexpr std::string_view name(Fn fn) { return info(fn).name; }

// The function the language calls `name` (Syntax::Call), or nullptr.
constexpr const Info *find(std::string_view name) {
  for (const Info &row : kTable)
    if (row.syntax == Syntax::Call && row.name == name) return &row;
  return nullptr;
}

// The operator `symbol` with `arity` operands (Syntax::Infix or Prefix), or nullptr.
constexpr const Info *find_operator(std::string_view symbol, int arity) {
  for (const Info &row : kTable)
    if ((row.syntax == Syntax::Infix || row.syntax == Syntax::Prefix) && row.symbol == symbol && row.arity == arity)
      return &row;
  return nullptr;
}

}  // namespace ncd::ops
