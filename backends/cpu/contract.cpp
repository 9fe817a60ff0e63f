// Contractions: the product of all operands summed over some axes.
//
// Scalars are folded into one factor; axes of size 1 or stride 0 are set aside
// (they carry nothing of their own and come back as broadcast axes); several
// operands are contracted pairwise, smallest intermediate first. A pair is a
// batched matrix product: batch axes (in both, kept), M (first only), N
// (second only), K (both, summed); axes summed but carried by one operand are
// summed out of it first. When each operand's M/K (K/N) axes form a strided
// matrix, OpenBLAS sgemm reads it in place; otherwise the operand is packed
// (permuted into a dense copy) first. Small problems and batched dot products
// use a loop kernel with float64 accumulation.
#include <cblas.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <vector>

#include "kernels.h"

namespace ncd::cpu {
namespace {

bool carries(const RtTensor &t, int axis) { return t.find(axis) >= 0; }
bool contains(const std::vector<int> &list, int axis) {
  return std::find(list.begin(), list.end(), axis) != list.end();
}

// t without its size-1 and stride-0 axes.
RtTensor squeeze(const RtTensor &t) {
  RtTensor s = t;
  s.axes.clear();
  s.sizes.clear();
  s.strides.clear();
  for (int d = 0; d < t.rank(); ++d) {
    if (t.sizes[static_cast<size_t>(d)] == 1 || t.strides[static_cast<size_t>(d)] == 0) continue;
    s.axes.push_back(t.axes[static_cast<size_t>(d)]);
    s.sizes.push_back(t.sizes[static_cast<size_t>(d)]);
    s.strides.push_back(t.strides[static_cast<size_t>(d)]);
  }
  return s;
}

std::vector<int> by_stride(const RtTensor &t, std::vector<int> axes) {
  std::stable_sort(axes.begin(), axes.end(), [&](int a, int b) { return t.stride_of(a) > t.stride_of(b); });
  return axes;
}

int64_t product(const RtTensor &t, const std::vector<int> &axes) {
  int64_t n = 1;
  for (int axis : axes) n *= t.sizes[static_cast<size_t>(t.find(axis))];
  return n;
}

// The axes (outermost first) as one strided dimension: size and stride, if they collapse.
struct Block {
  bool ok = true;
  int64_t size = 1, stride = 1;
};
Block block(const RtTensor &t, const std::vector<int> &axes) {
  Block b;
  if (axes.empty()) return b;
  b.stride = t.stride_of(axes.back());
  int64_t expected = b.stride;
  for (size_t i = axes.size(); i-- > 0;) {
    int d = t.find(axes[i]);
    if (t.strides[static_cast<size_t>(d)] != expected) b.ok = false;
    expected = t.strides[static_cast<size_t>(d)] * t.sizes[static_cast<size_t>(d)];
    b.size *= t.sizes[static_cast<size_t>(d)];
  }
  return b;
}

// `t` read as a row-major matrix [rows, cols] for sgemm.
struct Matrix {
  bool ok = false;
  bool trans = false;
  int64_t ld = 1;
};
Matrix as_matrix(const RtTensor &t, const std::vector<int> &rows, const std::vector<int> &cols) {
  Matrix m;
  Block r = block(t, rows), c = block(t, cols);
  if (!r.ok || !c.ok) return m;
  if ((c.size == 1 || c.stride == 1) && (r.size == 1 || r.stride >= c.size)) {
    m.ok = true;
    m.ld = r.size == 1 ? std::max<int64_t>(c.size, 1) : r.stride;
    return m;
  }
  if ((r.size == 1 || r.stride == 1) && (c.size == 1 || c.stride >= r.size)) {
    m.ok = true;
    m.trans = true;
    m.ld = c.size == 1 ? std::max<int64_t>(r.size, 1) : c.stride;
    return m;
  }
  return m;
}

RtTensor pack(const RtTensor &t, const std::vector<std::vector<int>> &groups) {
  std::vector<int> order;
  std::vector<int64_t> sizes;
  for (const auto &group : groups)
    for (int axis : group) {
      order.push_back(axis);
      sizes.push_back(t.sizes[static_cast<size_t>(t.find(axis))]);
    }
  return materialize(t, order, sizes);
}

// Iterates over the batch axes: f(offset in a, offset in b, index of the batch).
template <typename F>
void for_each_batch(const RtTensor &a, const RtTensor &b, const std::vector<int> &batch, F &&f) {
  std::vector<int64_t> sizes, sa, sb;
  int64_t count = 1;
  for (int axis : batch) {
    sizes.push_back(a.sizes[static_cast<size_t>(a.find(axis))]);
    sa.push_back(a.stride_of(axis));
    sb.push_back(b.stride_of(axis));
    count *= sizes.back();
  }
  std::vector<int64_t> index(batch.size(), 0);
  int64_t oa = 0, ob = 0;
  for (int64_t i = 0; i < count; ++i) {
    f(oa, ob, i);
    for (size_t d = batch.size(); d-- > 0;) {
      if (++index[d] < sizes[d]) {
        oa += sa[d];
        ob += sb[d];
        break;
      }
      oa -= (sizes[d] - 1) * sa[d];
      ob -= (sizes[d] - 1) * sb[d];
      index[d] = 0;
    }
  }
}

RtTensor output_tensor(const RtTensor &a, const RtTensor &b, const std::vector<int> &batch, const std::vector<int> &m,
                       const std::vector<int> &n) {
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  for (int axis : batch) {
    axes.push_back(axis);
    sizes.push_back(a.sizes[static_cast<size_t>(a.find(axis))]);
  }
  for (int axis : m) {
    axes.push_back(axis);
    sizes.push_back(a.sizes[static_cast<size_t>(a.find(axis))]);
  }
  for (int axis : n) {
    axes.push_back(axis);
    sizes.push_back(b.sizes[static_cast<size_t>(b.find(axis))]);
  }
  return make_tensor(ir::DType::F32, axes, sizes);
}

// C[batch, m, n] = alpha * sum_k A[batch, m, k] B[batch, k, n] with float64 accumulation.
RtTensor loop_product(const RtTensor &a0, const RtTensor &b0, const std::vector<int> &batch, const std::vector<int> &m,
                      const std::vector<int> &n, const std::vector<int> &k, float alpha) {
  RtTensor a = pack(a0, {batch, m, k});
  RtTensor b = pack(b0, {batch, n, k});
  RtTensor c = output_tensor(a, b, batch, m, n);
  const int64_t bt = product(a, batch), mt = product(a, m), nt = product(b, n), kt = product(a, k);
  const float *pa = a.fdata(), *pb = b.fdata();
  float *pc = c.fdata();
  parallel_for(bt * mt, nt * kt, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t batch_index = row / mt;
      const float *x = pa + row * kt;
      const float *yb = pb + batch_index * nt * kt;
      float *out = pc + row * nt;
      for (int64_t j = 0; j < nt; ++j) {
        const float *y = yb + j * kt;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < kt; ++i) acc += static_cast<double>(x[i]) * static_cast<double>(y[i]);
        out[j] = static_cast<float>(acc * static_cast<double>(alpha));
      }
    }
  });
  return c;
}

// Blocks of a product's result: about `target` rows (or columns), rounded so
// that the blocks are even and a multiple of 16 (the widest sgemm register
// tile). Fixed by the problem alone, never by the thread count.
constexpr int64_t kBlock = 384;

int64_t block_extent(int64_t extent, int64_t target) {
  if (extent <= target) return extent;
  const int64_t count = (extent + target - 1) / target;
  return (extent / count + 15) / 16 * 16;
}

// Two squeezed operands; `sum` holds axes carried by at least one of them.
// With an addend (contract_add), returns an empty tensor where the product is
// not one sgemm per batch into a result that can start as the addend.
RtTensor contract2(RtTensor a, RtTensor b, const std::vector<int> &sum, float alpha, const RtTensor *addend = nullptr) {
  std::vector<int> only_a, only_b;
  for (int axis : sum) {
    bool in_a = carries(a, axis), in_b = carries(b, axis);
    if (in_a && !in_b) only_a.push_back(axis);
    if (in_b && !in_a) only_b.push_back(axis);
  }
  if (!only_a.empty()) a = squeeze(reduce(ops::Fn::Sum, a, only_a));
  if (!only_b.empty()) b = squeeze(reduce(ops::Fn::Sum, b, only_b));
  std::vector<int> batch, m, n, k;
  for (int axis : a.axes) {
    if (!carries(b, axis))
      m.push_back(axis);
    else if (contains(sum, axis))
      k.push_back(axis);
    else
      batch.push_back(axis);
  }
  for (int axis : b.axes)
    if (!carries(a, axis)) n.push_back(axis);
  batch = by_stride(a, batch);
  m = by_stride(a, m);
  k = by_stride(a, k);
  n = by_stride(b, n);
  const int64_t mt = product(a, m), nt = product(b, n), kt = product(a, k);
  if (mt * nt * kt < 4096 || (mt == 1 && nt == 1)) {
    if (addend) return RtTensor{};
    return loop_product(a, b, batch, m, n, k, alpha);
  }

  Matrix ma = as_matrix(a, m, k);
  if (!ma.ok) {
    a = pack(a, {batch, m, k});
    ma = as_matrix(a, m, k);
  }
  Matrix mb = as_matrix(b, k, n);
  if (!mb.ok) {
    // Another order of K may suit both operands.
    std::vector<int> k_b = by_stride(b, k);
    Matrix ma2 = as_matrix(a, m, k_b), mb2 = as_matrix(b, k_b, n);
    if (ma2.ok && mb2.ok) {
      k = k_b;
      ma = ma2;
      mb = mb2;
    } else {
      b = pack(b, {batch, k, n});
      mb = as_matrix(b, k, n);
    }
  }
  RtTensor c = output_tensor(a, b, batch, m, n);
  float beta = 0.0f;
  if (addend) {
    for (int axis : addend->axes)
      if (addend->stride_of(axis) != 0 && c.find(axis) < 0) return RtTensor{};
    c = materialize(as_float(*addend), c.axes, c.sizes);
    beta = 1.0f;
  }
  const float *pa = a.fdata(), *pb = b.fdata();
  float *pc = c.fdata();
  // Determinism by construction: the result is cut into blocks whose shape
  // depends only on the problem (rows, or columns when there are few rows),
  // each block is one single-threaded sgemm over the whole summed dimension,
  // and threads only pick blocks. OpenBLAS's own threading is never used: how
  // it splits a product, and which kernels and K blocking it then runs,
  // depends on the thread count and on OPENBLAS_* settings, and so did the
  // bits of the result.
  int64_t batches = 1;
  for (int axis : batch) batches *= a.sizes[static_cast<size_t>(a.find(axis))];
  std::vector<std::array<int64_t, 3>> offsets;  // a, b, c per batch
  for_each_batch(a, b, batch, [&](int64_t oa, int64_t ob, int64_t index) {
    offsets.push_back({oa, ob, index * mt * nt});
  });
  // Each block's sgemm packs its own copy of the operand it shares with the
  // other blocks: cut the dimension whose shared operand is the smaller one.
  const bool by_rows = mt > nt;
  const int64_t along = by_rows ? mt : nt;
  const int64_t block = block_extent(along, kBlock);
  const int64_t blocks = (along + block - 1) / block;
  const auto multiply = [&](int64_t task) {
    const auto &[oa, ob, oc] = offsets[static_cast<size_t>(task / blocks)];
    const int64_t first = (task % blocks) * block, count = std::min(block, along - first);
    // Offsets of the block's first row of A / first column of B, per storage order.
    const int64_t da = by_rows ? first * (ma.trans ? 1 : ma.ld) : 0;
    const int64_t db = by_rows ? 0 : first * (mb.trans ? mb.ld : 1);
    const int64_t dc = by_rows ? first * nt : first;
    cblas_sgemm(CblasRowMajor, ma.trans ? CblasTrans : CblasNoTrans, mb.trans ? CblasTrans : CblasNoTrans,
                static_cast<int>(by_rows ? count : mt), static_cast<int>(by_rows ? nt : count), static_cast<int>(kt),
                alpha, pa + oa + da, static_cast<int>(ma.ld), pb + ob + db, static_cast<int>(mb.ld), beta,
                pc + oc + dc, static_cast<int>(nt));
  };
  const double flops = 2.0 * static_cast<double>(mt) * static_cast<double>(nt) * static_cast<double>(kt);
  const int64_t tasks = batches * blocks;
  if (thread_count() > 1 && tasks > 1 && flops * static_cast<double>(batches) >= 4e6 && !in_parallel_task())
    run_tasks(tasks, multiply);
  else
    for (int64_t i = 0; i < tasks; ++i) multiply(i);
  return c;
}

void scale_in_place(RtTensor &t, float factor) {
  if (factor == 1.0f) return;
  float *p = t.fdata();
  parallel_for(t.numel(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) p[i] *= factor;
  });
}

// A contraction's operands with scalars folded into one factor and axes of
// size 1 or stride 0 set aside: what is left to multiply, and the summed axes
// some operand carries.
struct Folded {
  double factor = 1;
  std::vector<RtTensor> list;
  std::vector<int> sum;
  std::vector<int> all_axes;  // every axis of the operands, first seen first
  std::vector<int64_t> all_sizes;
};

Folded fold(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
            const std::vector<int64_t> &axis_sizes) {
  Folded f;
  for (const RtTensor &operand : operands) {
    RtTensor t = as_float(operand);
    for (int d = 0; d < t.rank(); ++d)
      if (!contains(f.all_axes, t.axes[static_cast<size_t>(d)])) {
        f.all_axes.push_back(t.axes[static_cast<size_t>(d)]);
        f.all_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
      }
    RtTensor s = squeeze(t);
    if (s.rank() == 0)
      f.factor *= static_cast<double>(s.fdata()[0]);
    else
      f.list.push_back(s);
  }
  // Summed axes that no operand carries (broadcast or of size 1) multiply by their size.
  for (size_t i = 0; i < axes.size(); ++i) {
    bool carried = false;
    for (const RtTensor &t : f.list) carried = carried || carries(t, axes[i]);
    if (carried)
      f.sum.push_back(axes[i]);
    else
      f.factor *= static_cast<double>(axis_sizes[i]);
  }
  return f;
}

// Kept axes the arithmetic set aside come back as broadcast axes.
void restore_broadcast_axes(const Folded &f, const std::vector<int> &axes, RtTensor &result) {
  for (size_t i = 0; i < f.all_axes.size(); ++i) {
    if (contains(axes, f.all_axes[i]) || carries(result, f.all_axes[i])) continue;
    result.axes.push_back(f.all_axes[i]);
    result.sizes.push_back(f.all_sizes[i]);
    result.strides.push_back(0);
  }
}

}  // namespace

RtTensor contract_exact(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                        const std::vector<int64_t> &axis_sizes, ir::DType dtype) {
  std::vector<int> kept;
  std::vector<int64_t> kept_sizes;
  bool integral = true;
  for (const RtTensor &t : operands) {
    integral = integral && (t.is_int() || t.dtype == ir::DType::I8 || t.dtype == ir::DType::Bool);
    for (int d = 0; d < t.rank(); ++d) {
      const int axis = t.axes[static_cast<size_t>(d)];
      if (!contains(axes, axis) && !contains(kept, axis)) {
        kept.push_back(axis);
        kept_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
      }
    }
  }
  int64_t outputs = 1, terms = 1;
  for (int64_t size : kept_sizes) outputs *= size;
  for (int64_t size : axis_sizes) terms *= size;
  const size_t n = operands.size(), nk = kept.size(), ns = axes.size();
  // Strides per operand along the kept and the summed axes (0 where absent).
  std::vector<int64_t> kept_stride(n * nk), sum_stride(n * ns);
  for (size_t o = 0; o < n; ++o) {
    for (size_t i = 0; i < nk; ++i) kept_stride[o * nk + i] = operands[o].stride_of(kept[i]);
    for (size_t i = 0; i < ns; ++i) sum_stride[o * ns + i] = operands[o].stride_of(axes[i]);
  }
  RtTensor out = make_tensor(dtype == ir::DType::I32 ? ir::DType::I32 : ir::DType::F32, kept, kept_sizes);
  const double low = dtype == ir::DType::I32 ? -2147483648.0 : -128.0, high = dtype == ir::DType::I32 ? 2147483647.0 : 127.0;
  auto store = [&](int64_t at, double value) {  // truncate toward zero, saturate; NaN to 0
    value = std::isnan(value) ? 0.0 : std::trunc(std::min(std::max(value, low), high));
    if (out.is_int())
      out.idata()[at] = static_cast<int32_t>(value);
    else
      out.fdata()[at] = static_cast<float>(value);
  };
  parallel_for(outputs, std::max<int64_t>(terms, 1) * static_cast<int64_t>(n), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> base(n), offset(n), index(ns);
    for (int64_t e = begin; e < end; ++e) {
      std::fill(base.begin(), base.end(), 0);
      for (size_t i = nk, rest = static_cast<size_t>(e); i-- > 0;) {
        const int64_t position = static_cast<int64_t>(rest) % kept_sizes[i];
        rest /= static_cast<size_t>(kept_sizes[i]);
        for (size_t o = 0; o < n; ++o) base[o] += position * kept_stride[o * nk + i];
      }
      offset = base;
      std::fill(index.begin(), index.end(), 0);
      __int128 exact = 0;
      double approximate = 0;
      for (int64_t term = 0; term < terms; ++term) {
        // The product of the operands' values at their offsets, in T.
        auto product = [&](auto one) {
          using T = decltype(one);
          for (size_t o = 0; o < n; ++o) {
            const RtTensor &t = operands[o];
            const int64_t at = t.offset + offset[o];
            one *= t.is_int() ? static_cast<T>(static_cast<const int32_t *>(t.buffer->data)[at])
                              : static_cast<T>(static_cast<const float *>(t.buffer->data)[at]);
          }
          return one;
        };
        if (integral)
          exact += product(static_cast<__int128>(1));
        else
          approximate += product(1.0);
        for (size_t i = ns; i-- > 0;) {  // the next summed index, innermost first
          for (size_t o = 0; o < n; ++o) offset[o] += sum_stride[o * ns + i];
          if (++index[i] < axis_sizes[i]) break;
          for (size_t o = 0; o < n; ++o) offset[o] -= axis_sizes[i] * sum_stride[o * ns + i];
          index[i] = 0;
        }
      }
      if (integral)
        store(e, exact > static_cast<__int128>(high) ? high : exact < static_cast<__int128>(low) ? low
                                                                                                 : static_cast<double>(exact));
      else
        store(e, approximate);
    }
  });
  return out;
}

bool contract_add(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                  const std::vector<int64_t> &axis_sizes, const RtTensor &addend, RtTensor &result) {
  Folded f = fold(operands, axes, axis_sizes);
  if (f.list.size() != 2) return false;
  RtTensor c = contract2(f.list[0], f.list[1], f.sum, static_cast<float>(f.factor), &addend);
  if (!c.buffer) return false;
  restore_broadcast_axes(f, axes, c);
  result = std::move(c);
  return true;
}

RtTensor contract(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                  const std::vector<int64_t> &axis_sizes) {
  Folded folded = fold(operands, axes, axis_sizes);
  double factor = folded.factor;
  std::vector<RtTensor> list = folded.list;
  std::vector<int> sum = folded.sum;
  const float alpha = static_cast<float>(factor);
  RtTensor result;
  if (list.empty()) {
    result = make_scalar(alpha, ir::DType::F32);
  } else if (list.size() == 1) {
    result = sum.empty() ? materialize(list[0]) : reduce(ops::Fn::Sum, list[0], sum);
    scale_in_place(result, alpha);
  } else {
    while (list.size() > 2) {
      size_t best_i = 0, best_j = 1;
      double best = -1;
      for (size_t i = 0; i < list.size(); ++i)
        for (size_t j = i + 1; j < list.size(); ++j) {
          double size = 1;
          std::vector<int> seen;
          for (const RtTensor *t : {&list[i], &list[j]})
            for (int d = 0; d < t->rank(); ++d) {
              int axis = t->axes[static_cast<size_t>(d)];
              if (contains(seen, axis)) continue;
              seen.push_back(axis);
              bool summed_here = contains(sum, axis);
              for (size_t o = 0; o < list.size() && summed_here; ++o)
                if (o != i && o != j && carries(list[o], axis)) summed_here = false;
              if (!summed_here) size *= static_cast<double>(t->sizes[static_cast<size_t>(d)]);
            }
          if (best < 0 || size < best) {
            best = size;
            best_i = i;
            best_j = j;
          }
        }
      std::vector<int> now;
      for (int axis : sum) {
        if (!carries(list[best_i], axis) && !carries(list[best_j], axis)) continue;
        bool elsewhere = false;
        for (size_t o = 0; o < list.size(); ++o)
          if (o != best_i && o != best_j && carries(list[o], axis)) elsewhere = true;
        if (!elsewhere) now.push_back(axis);
      }
      RtTensor merged = squeeze(contract2(list[best_i], list[best_j], now, 1.0f));
      std::vector<int> rest;
      for (int axis : sum)
        if (!contains(now, axis)) rest.push_back(axis);
      sum = rest;
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(best_j));
      list[best_i] = merged;
      if (merged.rank() == 0) {
        // A full contraction of the pair: a scalar factor for the rest.
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(best_i));
        // Re-enter with the scalar folded in (rare: only when every axis of the pair is summed away).
        std::vector<RtTensor> again = list;
        RtTensor scalar = make_scalar(merged.fdata()[0] * alpha, ir::DType::F32);
        again.push_back(scalar);
        std::vector<int64_t> sizes;
        sizes.assign(sum.size(), 1);
        RtTensor inner = contract(again, sum, sizes);
        result = inner;
        list.clear();
        break;
      }
    }
    if (list.size() == 2)
      result = contract2(list[0], list[1], sum, alpha);
    else if (list.size() == 1) {
      result = sum.empty() ? materialize(list[0]) : reduce(ops::Fn::Sum, list[0], sum);
      scale_in_place(result, alpha);
    }
  }
  restore_broadcast_axes(folded, axes, result);
  return result;
}

}  // namespace ncd::cpu
