// The routed contraction (ncd/routing.h) on the CPU: a grouped matrix product.
//
// The routes (positions of the index tensor, in row-major order) are bucketed
// by the expert they name with a counting sort, so every expert's routes stay
// in ascending order. For each expert that has routes, the rows of the other
// operands that vary with the routes are gathered into a dense block (a new
// runtime axis, one row per route), the expert's slice of the table is a view,
// and the ordinary contraction kernel (sgemm) multiplies them; its rows are
// then written back to their routes. Only routed work is done: #routes rows in
// all, whatever the number of experts. A position outside the table reads
// zero, as the gather it replaces: those routes are multiplied by a zero table
// (so NaN and infinity propagate as in the dense reference).
//
// Each route is written by exactly one group and the groups run one after the
// other, each through the deterministic contraction kernel, so the bits do
// not depend on the thread count.
#include <cstring>

#include "kernels.h"

namespace ncd::cpu {
namespace {

bool has(const std::vector<int> &list, int axis) { return std::find(list.begin(), list.end(), axis) != list.end(); }

// Walks the index space `sizes` in row-major order, calling f(flat, coords).
template <typename F>
void for_each_position(const std::vector<int64_t> &sizes, F &&f) {
  int64_t total = 1;
  for (int64_t s : sizes) total *= s;
  std::vector<int64_t> coords(sizes.size(), 0);
  for (int64_t flat = 0; flat < total; ++flat) {
    f(flat, coords);
    for (size_t d = sizes.size(); d-- > 0;) {
      if (++coords[d] < sizes[d]) break;
      coords[d] = 0;
    }
  }
}

// Copies the elements of `src` over the axes `axes` (sizes `sizes`) from
// src_offset (strides by axis from src, 0 when absent) into dst at dst_offset
// (strides `dst_strides`). 4-byte elements.
void copy_block(const RtTensor &src, int64_t src_offset, const std::vector<int> &axes,
                const std::vector<int64_t> &sizes, uint32_t *dst, int64_t dst_offset,
                const std::vector<int64_t> &dst_strides) {
  const auto *s = static_cast<const uint32_t *>(src.buffer->data) + src.offset;
  std::vector<int64_t> src_strides;
  for (int axis : axes) src_strides.push_back(src.stride_of(axis));
  if (sizes.empty()) {
    dst[dst_offset] = s[src_offset];
    return;
  }
  // The innermost axis as a tight loop (a memcpy when both sides are contiguous there).
  const size_t last = sizes.size() - 1;
  const int64_t n = sizes[last], from_stride = src_strides[last], to_stride = dst_strides[last];
  const std::vector<int64_t> outer(sizes.begin(), sizes.end() - 1);
  for_each_position(outer, [&](int64_t, const std::vector<int64_t> &c) {
    int64_t from = src_offset, to = dst_offset;
    for (size_t d = 0; d < c.size(); ++d) {
      from += c[d] * src_strides[d];
      to += c[d] * dst_strides[d];
    }
    if (from_stride == 1 && to_stride == 1) {
      std::memcpy(dst + to, s + from, static_cast<size_t>(n) * sizeof(uint32_t));
      return;
    }
    for (int64_t i = 0; i < n; ++i) dst[to + i * to_stride] = s[from + i * from_stride];
  });
}

std::vector<int64_t> dense_strides(const std::vector<int64_t> &sizes) {
  std::vector<int64_t> strides(sizes.size(), 1);
  int64_t stride = 1;
  for (size_t i = sizes.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= sizes[i];
  }
  return strides;
}

}  // namespace

RtTensor routed_contract(std::vector<RtTensor> operands, size_t routed, const RoutedRead &read,
                         const std::vector<int> &axes, const std::vector<int64_t> &axis_sizes, int row_axis,
                         ir::DType dtype) {
  const RtTensor &index = read.index;
  const int e = read.table.find(read.expert);
  if (e < 0) throw RunError("internal: the routed table lacks its expert axis");
  const int64_t experts = read.table.sizes[static_cast<size_t>(e)];
  const int64_t expert_stride = read.table.strides[static_cast<size_t>(e)];
  // The table without its expert axis: every expert's slice is this view at an offset.
  RtTensor slice = read.table;
  slice.axes.erase(slice.axes.begin() + e);
  slice.sizes.erase(slice.sizes.begin() + e);
  slice.strides.erase(slice.strides.begin() + e);

  // The result's axes: every axis of the operands that is not summed, routes first.
  std::vector<int> out_axes;
  std::vector<int64_t> out_sizes;
  auto add_axes = [&](const RtTensor &t) {
    for (int d = 0; d < t.rank(); ++d) {
      int axis = t.axes[static_cast<size_t>(d)];
      if (has(axes, axis) || has(out_axes, axis)) continue;
      out_axes.push_back(axis);
      out_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
    }
  };
  add_axes(index);
  for (size_t k = 0; k < operands.size(); ++k) add_axes(k == routed ? slice : operands[k]);
  const std::vector<int64_t> out_strides = dense_strides(out_sizes);
  RtTensor out = make_tensor(ir::is_integer(dtype) ? ir::DType::I32 : ir::DType::F32, out_axes, out_sizes);
  auto *dst = static_cast<uint32_t *>(out.buffer->data) + out.offset;

  // The routes: their expert, and their offset in the result.
  const size_t route_rank = index.axes.size();
  std::vector<int64_t> route_sizes(index.sizes.begin(), index.sizes.end());
  int64_t routes = 1;
  for (int64_t s : route_sizes) routes *= s;
  std::vector<int64_t> expert_of(static_cast<size_t>(routes)), count(static_cast<size_t>(experts) + 1, 0);
  std::vector<std::vector<int64_t>> coords_of(static_cast<size_t>(routes));
  for_each_position(route_sizes, [&](int64_t p, const std::vector<int64_t> &c) {
    int64_t at = 0;
    for (size_t d = 0; d < route_rank; ++d) at += c[d] * index.strides[d];
    int64_t g = index.is_int() ? index.idata()[at] : static_cast<int64_t>(index.fdata()[at]);
    if (g < 0 || g >= experts) g = experts;  // out of range: the zero table
    expert_of[static_cast<size_t>(p)] = g;
    coords_of[static_cast<size_t>(p)] = c;
    ++count[static_cast<size_t>(g)];
  });
  std::vector<int64_t> start(static_cast<size_t>(experts) + 2, 0);
  for (int64_t g = 0; g <= experts; ++g) start[static_cast<size_t>(g) + 1] = start[static_cast<size_t>(g)] + count[static_cast<size_t>(g)];
  std::vector<int64_t> order(static_cast<size_t>(routes));
  {
    std::vector<int64_t> next(start.begin(), start.end() - 1);
    for (int64_t p = 0; p < routes; ++p) order[static_cast<size_t>(next[static_cast<size_t>(expert_of[static_cast<size_t>(p)])]++)] = p;
  }
  auto offset_in = [&](const std::vector<int64_t> &c, auto stride_of) {
    int64_t at = 0;
    for (size_t d = 0; d < route_rank; ++d) at += c[d] * stride_of(index.axes[d]);
    return at;
  };

  // The result's axes other than the routes: what each route's row holds.
  std::vector<int> out_rest;
  std::vector<int64_t> out_rest_sizes, out_rest_strides;
  for (size_t d = 0; d < out_axes.size(); ++d)
    if (!has(index.axes, out_axes[d])) {
      out_rest.push_back(out_axes[d]);
      out_rest_sizes.push_back(out_sizes[d]);
      out_rest_strides.push_back(out_strides[d]);
    }
  // Each route axis's stride in the result.
  std::vector<int64_t> route_out_strides;
  for (int axis : index.axes)
    route_out_strides.push_back(out_strides[static_cast<size_t>(std::find(out_axes.begin(), out_axes.end(), axis) -
                                                                out_axes.begin())]);

  // One contraction per expert that has routes.
  for (int64_t g = 0; g <= experts; ++g) {
    const int64_t first = start[static_cast<size_t>(g)], rows = count[static_cast<size_t>(g)];
    if (rows == 0) continue;
    std::vector<RtTensor> group(operands.size());
    for (size_t k = 0; k < operands.size(); ++k) {
      if (k == routed) {
        if (g < experts) {
          group[k] = slice;
          group[k].offset += g * expert_stride;
        } else {  // routes outside the table read zeros
          group[k] = make_tensor(slice.dtype, {}, {});
          std::memset(group[k].buffer->data, 0, 4);
          group[k].axes = slice.axes;
          group[k].sizes = slice.sizes;
          group[k].strides.assign(slice.axes.size(), 0);
        }
        continue;
      }
      const RtTensor &t = operands[k];
      bool varies = false;
      for (int axis : index.axes)
        if (t.find(axis) >= 0 && t.stride_of(axis) != 0) varies = true;
      if (!varies) {
        group[k] = t;
        continue;
      }
      // Gather the rows of the routes: [row, the operand's other axes].
      std::vector<int> rest;
      std::vector<int64_t> rest_sizes;
      for (int d = 0; d < t.rank(); ++d)
        if (!has(index.axes, t.axes[static_cast<size_t>(d)])) {
          rest.push_back(t.axes[static_cast<size_t>(d)]);
          rest_sizes.push_back(t.sizes[static_cast<size_t>(d)]);
        }
      std::vector<int> g_axes{row_axis};
      std::vector<int64_t> g_sizes{rows};
      g_axes.insert(g_axes.end(), rest.begin(), rest.end());
      g_sizes.insert(g_sizes.end(), rest_sizes.begin(), rest_sizes.end());
      RtTensor gathered = make_tensor(t.dtype, g_axes, g_sizes);
      const std::vector<int64_t> g_strides = dense_strides(g_sizes);
      const std::vector<int64_t> rest_strides(g_strides.begin() + 1, g_strides.end());
      auto *to = static_cast<uint32_t *>(gathered.buffer->data) + gathered.offset;
      parallel_for(rows, static_cast<int64_t>(gathered.numel() / std::max<int64_t>(rows, 1)), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const auto &c = coords_of[static_cast<size_t>(order[static_cast<size_t>(first + r)])];
          copy_block(t, offset_in(c, [&](int axis) { return t.stride_of(axis); }), rest, rest_sizes, to,
                     r * g_strides[0], rest_strides);
        }
      });
      group[k] = std::move(gathered);
    }
    RtTensor part = ir::is_integer(dtype) ? contract_exact(group, axes, axis_sizes, dtype)
                                          : contract(group, axes, axis_sizes);
    // Write the rows back to their routes.
    const int64_t row_stride = part.stride_of(row_axis);
    parallel_for(rows, static_cast<int64_t>(out.numel() / std::max<int64_t>(routes, 1)), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const auto &c = coords_of[static_cast<size_t>(order[static_cast<size_t>(first + r)])];
        int64_t at = 0;
        for (size_t d = 0; d < route_rank; ++d) at += c[d] * route_out_strides[d];
        copy_block(part, r * row_stride, out_rest, out_rest_sizes, dst, at, out_rest_strides);
      }
    });
  }
  return out;
}

}  // namespace ncd::cpu
