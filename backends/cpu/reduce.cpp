// Reductions and normalisations along named axes.
//
// The axes acted on are brought into one contiguous innermost run (a dense
// copy only when the input is not already laid out that way); each run is
// then reduced or normalised with float64 accumulation, runs in parallel.
// argmax and argmin scan their run in order and give i32 positions; topk
// and sort order each run's positions (values and positions as results).
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <vector>

#include "kernels.h"
#include "vmath.h"

namespace ncd::cpu {

namespace {

// t arranged so that `axes` form one contiguous innermost run of `length`
// elements; `kept` are t's other axes, in memory order.
struct Runs {
  RtTensor t;
  std::vector<int> kept;
  std::vector<int64_t> kept_sizes;
  std::vector<int> acted;  // the acted-on axes, outermost first, as laid out
  std::vector<int64_t> acted_sizes;
  int64_t length = 1;
};

Runs runs_of(const RtTensor &t, const std::vector<int> &axes) {
  Runs r;
  std::vector<int> acted_dims, kept_dims;
  for (int d = 0; d < t.rank(); ++d) {
    bool is_acted = std::find(axes.begin(), axes.end(), t.axes[static_cast<size_t>(d)]) != axes.end();
    (is_acted ? acted_dims : kept_dims).push_back(d);
  }
  auto by_stride = [&](int a, int b) { return t.strides[static_cast<size_t>(a)] > t.strides[static_cast<size_t>(b)]; };
  std::stable_sort(acted_dims.begin(), acted_dims.end(), by_stride);
  std::stable_sort(kept_dims.begin(), kept_dims.end(), by_stride);
  // Contiguous when the acted axes (size > 1) step 1, n1, n1*n2, ... from the inside out.
  bool contiguous = true;
  int64_t expected = 1;
  for (size_t i = acted_dims.size(); i-- > 0;) {
    int d = acted_dims[i];
    if (t.sizes[static_cast<size_t>(d)] == 1) continue;
    if (t.strides[static_cast<size_t>(d)] != expected) contiguous = false;
    expected *= t.sizes[static_cast<size_t>(d)];
  }
  for (int d : kept_dims) {
    r.kept.push_back(t.axes[static_cast<size_t>(d)]);
    r.kept_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
  }
  for (int d : acted_dims) {
    r.acted.push_back(t.axes[static_cast<size_t>(d)]);
    r.acted_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
    r.length *= t.sizes[static_cast<size_t>(d)];
  }
  if (contiguous) {
    r.t = t;
  } else {
    std::vector<int> order = r.kept;
    std::vector<int64_t> sizes = r.kept_sizes;
    order.insert(order.end(), r.acted.begin(), r.acted.end());
    sizes.insert(sizes.end(), r.acted_sizes.begin(), r.acted_sizes.end());
    r.t = materialize(t, order, sizes);
  }
  return r;
}

// Calls run(out_offset, in_pointer) for every position of the kept axes.
template <typename F>
void for_each_run(const Runs &r, const RtTensor &out, int64_t cost, F &&run) {
  Loop loop;
  loop.sizes = r.kept_sizes;
  loop.strides.assign(2, std::vector<int64_t>(r.kept.size(), 0));
  for (size_t d = 0; d < r.kept.size(); ++d) {
    loop.strides[0][d] = out.stride_of(r.kept[d]);
    loop.strides[1][d] = r.t.stride_of(r.kept[d]);
  }
  loop.collapse();
  const int64_t so = loop.inner_stride(0), si = loop.inner_stride(1);
  const float *in = r.t.fdata();
  loop.run(
      [&](const int64_t *off, int64_t n) {
        for (int64_t k = 0; k < n; ++k) run(off[0] + k * so, in + off[1] + k * si);
      },
      cost);
}

double sum_run(const float *x, int64_t n) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(x[i]);
  return acc;
}

float max_run(const float *x, int64_t n) {
  float m = -std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(max : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] > m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

float min_run(const float *x, int64_t n) {
  float m = std::numeric_limits<float>::infinity();
  int nan = 0;
#pragma omp simd reduction(min : m) reduction(| : nan)
  for (int64_t i = 0; i < n; ++i) {
    m = x[i] < m ? x[i] : m;
    nan |= x[i] != x[i];
  }
  return nan ? std::numeric_limits<float>::quiet_NaN() : m;
}

// Σ exp(x - m), summed in float64.
double sum_exp_run(const float *x, int64_t n, float m) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += static_cast<double>(exp_difference_f(x[i], m));
  return acc;
}

double logsumexp_run(const float *x, int64_t n) {
  float m = max_run(x, n);
  if (std::isnan(m)) return m;
  if (std::isinf(m)) return m;  // all -inf gives -inf; any +inf gives +inf
  return static_cast<double>(m) + std::log(sum_exp_run(x, n, m));
}

// The position of the largest (`greatest`) or smallest element, the first
// on ties; a NaN is the extreme and the first NaN wins (NumPy's argmax).
int32_t position_run(const float *x, int64_t n, bool greatest) {
  int64_t best = 0;
  float b = x[0];
  if (b != b) return 0;
  for (int64_t i = 1; i < n; ++i) {
    const float v = x[i];
    if (v != v) return static_cast<int32_t>(i);
    if (greatest ? v > b : v < b) {
      b = v;
      best = i;
    }
  }
  return static_cast<int32_t>(best);
}

}  // namespace

RtTensor reduce(ops::Fn fn, const RtTensor &input, const std::vector<int> &axes, int64_t missing) {
  RtTensor t = as_float(input);
  Runs r = runs_of(t, axes);
  if (ops::info(fn).position) {
    // One axis, which the operand has (sema and the verifier see to it); each run is scanned in order.
    if (axes.size() != 1 || r.length < 1) throw RunError("internal: a position along other than one axis");
    RtTensor out = make_tensor(ir::DType::I32, r.kept, r.kept_sizes);
    int32_t *o = out.idata();
    const int64_t n = r.length;
    const bool greatest = ops::info(fn).greatest;
    for_each_run(r, out, n, [&](int64_t k, const float *x) { o[k] = position_run(x, n, greatest); });
    return out;
  }
  RtTensor out = make_tensor(ir::DType::F32, r.kept, r.kept_sizes);
  float *o = out.fdata();
  const int64_t n = r.length;
  const double m = static_cast<double>(missing);
  switch (fn) {
    case ops::Fn::Sum:
      for_each_run(r, out, n, [&](int64_t k, const float *x) { o[k] = static_cast<float>(sum_run(x, n) * m); });
      break;
    case ops::Fn::Mean:
      for_each_run(r, out, n, [&](int64_t k, const float *x) {
        o[k] = static_cast<float>(sum_run(x, n) / static_cast<double>(n));
      });
      break;
    case ops::Fn::Max: for_each_run(r, out, n, [&](int64_t k, const float *x) { o[k] = max_run(x, n); }); break;
    case ops::Fn::Min: for_each_run(r, out, n, [&](int64_t k, const float *x) { o[k] = min_run(x, n); }); break;
    case ops::Fn::LogSumExp:
      for_each_run(r, out, 8 * n, [&](int64_t k, const float *x) {
        double v = logsumexp_run(x, n);
        if (missing > 1 && std::isfinite(v)) v += std::log(m);
        o[k] = static_cast<float>(v);
      });
      break;
    case ops::Fn::Prod:
      for_each_run(r, out, n, [&](int64_t k, const float *x) {
        double p = 1;
        for (int64_t i = 0; i < n; ++i) p *= static_cast<double>(x[i]);
        if (missing > 1) p = std::pow(p, m);
        o[k] = static_cast<float>(p);
      });
      break;
    default: throw RunError("the cpu backend has no reduction '" + std::string(ops::name(fn)) + "'");
  }
  return out;
}

void select(ops::Fn fn, const RtTensor &input, int along, int kept, int64_t count, RtTensor &values,
            RtTensor &positions) {
  RtTensor t = as_float(input);
  Runs r = runs_of(t, {along});
  std::vector<int> order = r.kept;
  std::vector<int64_t> sizes = r.kept_sizes;
  order.push_back(kept);
  sizes.push_back(count);
  // Runs are contiguous in the results as well: kept axes outermost, the selection innermost.
  values = make_tensor(ir::DType::F32, order, sizes);
  positions = make_tensor(ir::DType::I32, order, sizes);
  float *v = values.fdata();
  int32_t *p = positions.idata();
  const int64_t n = r.length;
  const bool greatest = ops::info(fn).greatest;
  const int64_t work = n * std::max<int64_t>(1, static_cast<int64_t>(std::log2(static_cast<double>(n) + 1)));
  for_each_run(r, values, work, [&](int64_t k, const float *x) {
    // A strict total order (NaN beyond every number, then the lower position first): partial_sort and sort
    // give the same answer as a stable sort, on any thread.
    auto before = [&](int32_t a, int32_t b) {
      const float xa = x[a], xb = x[b];
      const bool na = xa != xa, nb = xb != xb;
      if (na != nb) return greatest ? na : nb;
      if (!na && xa != xb) return greatest ? xa > xb : xa < xb;
      return a < b;
    };
    std::vector<int32_t> index(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) index[static_cast<size_t>(i)] = static_cast<int32_t>(i);
    if (count < n)
      std::partial_sort(index.begin(), index.begin() + count, index.end(), before);
    else
      std::sort(index.begin(), index.end(), before);
    for (int64_t j = 0; j < count; ++j) {
      p[k + j] = index[static_cast<size_t>(j)];
      v[k + j] = x[index[static_cast<size_t>(j)]];
    }
  });
}

RtTensor normalize(ops::Fn fn, const RtTensor &input, const std::vector<int> &axes, double eps) {
  RtTensor t = as_float(input);
  Runs r = runs_of(t, axes);
  std::vector<int> order = r.kept;
  std::vector<int64_t> sizes = r.kept_sizes;
  order.insert(order.end(), r.acted.begin(), r.acted.end());
  sizes.insert(sizes.end(), r.acted_sizes.begin(), r.acted_sizes.end());
  RtTensor out = make_tensor(ir::DType::F32, order, sizes);
  float *o = out.fdata();
  const int64_t n = r.length;
  // Runs are contiguous in `out` as well: kept axes outermost, acted innermost.
  switch (fn) {
    case ops::Fn::Softmax:
      for_each_run(r, out, 10 * n, [&](int64_t k, const float *x) {
        float *__restrict y = o + k;
        const float m = max_run(x, n);
        if (m == -std::numeric_limits<float>::infinity()) {
          // Masked everywhere: 0, not NaN (FlashAttention's convention; docs/LANGUAGE.md).
          std::fill(y, y + n, 0.f);
          return;
        }
        double s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; ++i) {
          y[i] = exp_difference_f(x[i], m);
          s += static_cast<double>(y[i]);
        }
        const double inv = 1.0 / s;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(y[i]) * inv);
      });
      break;
    case ops::Fn::LogSoftmax:
      for_each_run(r, out, 10 * n, [&](int64_t k, const float *x) {
        float *y = o + k;
        const double lse = logsumexp_run(x, n);
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(x[i]) - lse);
      });
      break;
    case ops::Fn::LayerNorm:
      for_each_run(r, out, 4 * n, [&](int64_t k, const float *x) {
        float *y = o + k;
        const double mean = sum_run(x, n) / static_cast<double>(n);
        double var = 0;
#pragma omp simd reduction(+ : var)
        for (int64_t i = 0; i < n; ++i) {
          double d = static_cast<double>(x[i]) - mean;
          var += d * d;
        }
        var /= static_cast<double>(n);
        const double inv = 1.0 / std::sqrt(var + eps);
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>((static_cast<double>(x[i]) - mean) * inv);
      });
      break;
    case ops::Fn::RMSNorm:
      for_each_run(r, out, 3 * n, [&](int64_t k, const float *x) {
        float *y = o + k;
        double ms = 0;
#pragma omp simd reduction(+ : ms)
        for (int64_t i = 0; i < n; ++i) ms += static_cast<double>(x[i]) * static_cast<double>(x[i]);
        ms /= static_cast<double>(n);
        const double inv = 1.0 / std::sqrt(ms + eps);
        for (int64_t i = 0; i < n; ++i) y[i] = static_cast<float>(static_cast<double>(x[i]) * inv);
      });
      break;
    default: throw RunError("the cpu backend has no normalisation '" + std::string(ops::name(fn)) + "'");
  }
  return out;
}

}  // namespace ncd::cpu
