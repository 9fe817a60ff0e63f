// Data movement: reads through affine, split and gather indices; merges.
//
// Renaming, diagonals, constant positions, splits and affine windows that
// stay in range are strided views (no copy). Positions that may fall out of
// range (zero padding) and gathers produce a dense copy.
#include <algorithm>
#include <cmath>

#include "kernels.h"

namespace ncd::cpu {
namespace {

template <typename T>
void gather_copy(const RtTensor &source, const std::vector<int> &positions, const std::vector<RtIndex> &indices,
                 const RtTensor &out) {
  const size_t rank = out.axes.size();
  const size_t npos = positions.size();
  // Per position: coefficient per result dimension, offset, extent and the source stride.
  std::vector<std::vector<int64_t>> coef(npos, std::vector<int64_t>(rank, 0));
  std::vector<std::vector<int64_t>> gather_stride(npos, std::vector<int64_t>(rank, 0));
  std::vector<int64_t> extent(npos), stride(npos), offset(npos);
  std::vector<const void *> gather_data(npos, nullptr);
  std::vector<bool> gather_int(npos, false);
  for (size_t i = 0; i < npos; ++i) {
    int d = source.find(positions[i]);
    extent[i] = source.sizes[static_cast<size_t>(d)];
    stride[i] = source.strides[static_cast<size_t>(d)];
    offset[i] = indices[i].offset;
    for (size_t r = 0; r < rank; ++r) {
      for (auto [axis, c] : indices[i].terms)
        if (axis == out.axes[r]) coef[i][r] += c;
      if (indices[i].gather) gather_stride[i][r] = indices[i].index.stride_of(out.axes[r]);
    }
    if (indices[i].gather) {
      gather_int[i] = indices[i].index.is_int();
      gather_data[i] = indices[i].index.is_int() ? static_cast<const void *>(indices[i].index.idata())
                                                 : static_cast<const void *>(indices[i].index.fdata());
    }
  }
  // The source's own axes that are not read through positions pass through.
  std::vector<int64_t> pass(rank, 0);
  for (size_t r = 0; r < rank; ++r)
    if (std::find(positions.begin(), positions.end(), out.axes[r]) == positions.end()) pass[r] = source.stride_of(out.axes[r]);
  const T *src = static_cast<const T *>(source.buffer->data) + source.offset;
  T *dst = static_cast<T *>(out.buffer->data) + out.offset;
  const int64_t inner = rank ? out.sizes[rank - 1] : 1;
  int64_t rows = 1;
  for (size_t r = 0; r + 1 < rank; ++r) rows *= out.sizes[r];
  parallel_for(rows, inner * static_cast<int64_t>(npos + 1), [&](int64_t begin, int64_t end) {
    std::vector<int64_t> idx(rank, 0), base(npos), gbase(npos);
    for (int64_t row = begin; row < end; ++row) {
      int64_t rest = row;
      if (rank >= 2)
        for (size_t r = rank - 1; r-- > 0;) {
          idx[r] = rest % out.sizes[r];
          rest /= out.sizes[r];
        }
      int64_t pass_base = 0;
      for (size_t r = 0; r + 1 < rank; ++r) pass_base += idx[r] * pass[r];
      for (size_t i = 0; i < npos; ++i) {
        base[i] = offset[i];
        gbase[i] = 0;
        for (size_t r = 0; r + 1 < rank; ++r) {
          base[i] += coef[i][r] * idx[r];
          gbase[i] += gather_stride[i][r] * idx[r];
        }
      }
      T *o = dst + row * inner;
      for (int64_t k = 0; k < inner; ++k) {
        int64_t at = pass_base + (rank ? k * pass[rank - 1] : 0);
        bool valid = true;
        for (size_t i = 0; i < npos && valid; ++i) {
          int64_t j;
          if (gather_data[i]) {
            int64_t g = gbase[i] + (rank ? k * gather_stride[i][rank - 1] : 0);
            if (gather_int[i]) {
              j = static_cast<const int32_t *>(gather_data[i])[g];
            } else {
              float v = static_cast<const float *>(gather_data[i])[g];
              j = std::isfinite(v) ? static_cast<int64_t>(std::trunc(v)) : -1;
            }
          } else {
            j = base[i] + (rank ? k * coef[i][rank - 1] : 0);
          }
          if (j < 0 || j >= extent[i]) valid = false;
          at += j * stride[i];
        }
        o[k] = valid ? src[at] : T(0);
      }
    }
  });
}

}  // namespace

RtTensor access(const RtTensor &source, const std::vector<int> &positions, const std::vector<RtIndex> &indices,
                const std::vector<int> &axes, const std::vector<int64_t> &sizes) {
  auto size_of = [&](int axis) {
    for (size_t r = 0; r < axes.size(); ++r)
      if (axes[r] == axis) return sizes[r];
    return int64_t{1};
  };
  bool view = true;
  for (size_t i = 0; i < positions.size(); ++i) {
    if (indices[i].gather) {
      view = false;
      break;
    }
    int64_t lo = indices[i].offset, hi = indices[i].offset;
    for (auto [axis, c] : indices[i].terms) {
      int64_t span = c * (size_of(axis) - 1);
      (span < 0 ? lo : hi) += span;
    }
    int d = source.find(positions[i]);
    if (lo < 0 || hi >= source.sizes[static_cast<size_t>(d)]) view = false;
  }
  if (view) {
    RtTensor out = source;
    out.axes = axes;
    out.sizes = sizes;
    out.strides.assign(axes.size(), 0);
    for (size_t r = 0; r < axes.size(); ++r)
      if (std::find(positions.begin(), positions.end(), axes[r]) == positions.end()) out.strides[r] = source.stride_of(axes[r]);
    for (size_t i = 0; i < positions.size(); ++i) {
      int64_t s = source.stride_of(positions[i]);
      out.offset += indices[i].offset * s;
      for (auto [axis, c] : indices[i].terms)
        for (size_t r = 0; r < axes.size(); ++r)
          if (axes[r] == axis) out.strides[r] += c * s;
    }
    return out;
  }
  RtTensor out = make_tensor(source.dtype, axes, sizes);
  if (source.is_int())
    gather_copy<int32_t>(source, positions, indices, out);
  else
    gather_copy<float>(source, positions, indices, out);
  return out;
}

RtTensor merge(const RtTensor &source, const std::vector<std::vector<int>> &groups, const std::vector<int> &merged) {
  // Size-1 axes of a group take no room: leave them out of the layout checks.
  auto effective = [](const RtTensor &t, const std::vector<int> &group) {
    std::vector<int> axes;
    for (int axis : group)
      if (t.sizes[static_cast<size_t>(t.find(axis))] != 1) axes.push_back(axis);
    return axes;
  };
  auto collapsible = [&](const RtTensor &t, const std::vector<int> &group) {
    std::vector<int> axes = effective(t, group);
    for (size_t l = 0; l + 1 < axes.size(); ++l) {
      int d = t.find(axes[l]), e = t.find(axes[l + 1]);
      if (t.strides[static_cast<size_t>(d)] != t.strides[static_cast<size_t>(e)] * t.sizes[static_cast<size_t>(e)]) return false;
    }
    return true;
  };
  RtTensor t = source;
  bool ok = true;
  for (const auto &group : groups) ok = ok && collapsible(t, group);
  if (!ok) {
    // Lay the groups out contiguously (passing axes first), then view.
    std::vector<int> order;
    std::vector<int64_t> sizes;
    for (int d = 0; d < t.rank(); ++d) {
      bool grouped = false;
      for (const auto &group : groups)
        grouped = grouped || std::find(group.begin(), group.end(), t.axes[static_cast<size_t>(d)]) != group.end();
      if (!grouped) {
        order.push_back(t.axes[static_cast<size_t>(d)]);
        sizes.push_back(t.sizes[static_cast<size_t>(d)]);
      }
    }
    for (const auto &group : groups)
      for (int axis : group) {
        order.push_back(axis);
        sizes.push_back(t.sizes[static_cast<size_t>(t.find(axis))]);
      }
    t = materialize(t, order, sizes);
  }
  RtTensor out = t;
  out.axes.clear();
  out.sizes.clear();
  out.strides.clear();
  for (int d = 0; d < t.rank(); ++d) {
    bool grouped = false;
    for (const auto &group : groups)
      grouped = grouped || std::find(group.begin(), group.end(), t.axes[static_cast<size_t>(d)]) != group.end();
    if (grouped) continue;
    out.axes.push_back(t.axes[static_cast<size_t>(d)]);
    out.sizes.push_back(t.sizes[static_cast<size_t>(d)]);
    out.strides.push_back(t.strides[static_cast<size_t>(d)]);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    int64_t size = 1;
    for (int axis : groups[g]) size *= t.sizes[static_cast<size_t>(t.find(axis))];
    out.axes.push_back(merged[g]);
    out.sizes.push_back(size);
    std::vector<int> axes = effective(t, groups[g]);
    out.strides.push_back(axes.empty() ? 1 : t.stride_of(axes.back()));
  }
  return out;
}

}  // namespace ncd::cpu
