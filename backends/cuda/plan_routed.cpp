// The planner of routed contractions (ncd/routing.h; docs/CUDA.md, "Routed
// contractions"): `H[t, top, f] = X[t, d] * W[I[t, top], d, f]` as a grouped
// GEMM. It reads the pattern's runtime layouts into a RoutedPlan — the routes
// (the index's axes), the table's slice per expert with its axes renamed, the
// summed (K) and kept (N) axes, the operands read per route (their product is
// a row of A) — and picks tensor cores (a bf16 or f16 table) or the FMA
// kernel; or declines with the reason, and the gather is materialised as before.
#include "generator.h"

namespace ncd::cuda::detail {

std::optional<Sz> merged_stride(const Ten &t, const std::vector<int> &group, const std::vector<Sz> &sizes);

namespace {

bool contains(const std::vector<int> &list, int axis) {
  return std::find(list.begin(), list.end(), axis) != list.end();
}

}  // namespace

bool Generator::plan_routed(Frame &frame, const ir::Op &o, const ir::Routed &routed, RoutedPlan &p, std::string &why) {
  const ir::Diagram &diagram = *frame.diagram;
  const ir::Value &result = diagram.value(o.results.at(0));
  if (ir::is_integer(result.dtype) || result.dtype == DType::Bool) {
    why = "the result is an integer: exact sums run in the generic kernel";
    return false;
  }
  // The index: its positions are the routes.
  p.index = get(frame, routed.index);
  if (p.index.kind != Ten::Kind::Buffer) {
    why = "the routing index is not stored";
    return false;
  }
  // The table, its expert axis taken out and every other axis renamed to the axis it is read as.
  const ir::Value &table_value = diagram.value(routed.table);
  Ten table = get(frame, routed.table);
  if (table.kind != Ten::Kind::Buffer) {
    why = "the table is not stored";
    return false;
  }
  std::vector<int> positions;
  for (int axis : table_value.axes) positions.push_back(rt_axis(frame, axis));
  for (int a : table.axes)
    if (!contains(positions, a) && table.stride(a) != 0) {
      why = "the table '" + table_value.name + "' varies along '" + axis_names_[static_cast<size_t>(a)] +
            "', which it does not declare";
      return false;
    }
  const int expert_axis = positions[routed.expert];
  const Sz experts = size(expert_axis);
  if (!experts.known()) {
    why = "the expert axis '" + axis_names_[static_cast<size_t>(expert_axis)] + "' has no size";
    return false;
  }
  p.experts = *experts.constant();
  if (p.experts + 1 > kRouteMaxBuckets) {
    why = "more than " + str(kRouteMaxBuckets - 1) + " experts";
    return false;
  }
  p.expert_stride = table.stride(expert_axis);
  p.table.dtype = table.dtype;
  p.table.ptr = table.ptr;
  for (size_t position = 0; position < positions.size(); ++position) {
    if (position == routed.expert) continue;
    const int from = positions[position], to = rt_axis(frame, routed.renamed.at(position));
    if (size(from) != size(to) || p.index.has(to) || contains(p.table.axes, to) || to == expert_axis) {
      why = "the table's axis '" + axis_names_[static_cast<size_t>(from)] + "' is read as '" +
            axis_names_[static_cast<size_t>(to)] + "', an axis the routes or another position already have";
      return false;
    }
    p.table.axes.push_back(to);
    p.table.strides.push_back(table.stride(from));
  }
  std::vector<int> summed;
  for (int axis : o.axes) summed.push_back(rt_axis(frame, axis));
  for (int a : summed)
    if (!p.table.has(a)) {
      why = "the contraction sums over '" + axis_names_[static_cast<size_t>(a)] + "', which the table lacks";
      return false;
    }
  // The other operands: scalars scale the result; tensors are read per route, over the summed axes.
  std::vector<const Ten *> ptrs;
  Ten gathered = p.index;  // the gathered operand as the contraction sees it: the routes, then the table's axes
  gathered.axes.insert(gathered.axes.end(), p.table.axes.begin(), p.table.axes.end());
  gathered.strides.assign(gathered.axes.size(), Sz(0));
  std::vector<Ten> others;
  for (size_t k = 0; k < o.operands.size(); ++k) {
    if (k == routed.operand) continue;
    Ten t = get(frame, o.operands[k]);
    others.push_back(t);
    if (diagram.value(o.operands[k]).axes.empty()) {
      p.scalars.push_back(t);
      continue;
    }
    for (int a : t.axes) {
      if (t.kind == Ten::Kind::Buffer && t.stride(a) == 0) continue;
      if (contains(summed, a) || p.index.has(a)) continue;
      why = "an operand varies along '" + axis_names_[static_cast<size_t>(a)] +
            "', which is neither an axis of the routes nor summed";
      return false;
    }
    p.rows.push_back(t);
  }
  if (p.rows.empty()) {
    why = "no operand is read per route";
    return false;
  }
  ptrs.push_back(&gathered);
  for (const Ten &t : others) ptrs.push_back(&t);
  std::set<int> drop(summed.begin(), summed.end());
  std::vector<int> axes = result_axes(frame, result, ptrs, drop);
  for (int a : axes)
    if (!p.index.has(a) && !p.table.has(a)) {
      why = "the result has '" + axis_names_[static_cast<size_t>(a)] + "', which neither the routes nor the table have";
      return false;
    }
  // K: the summed axes in the table's order; N: its other axes.
  for (int a : p.table.axes) (contains(summed, a) ? p.k_axes : p.n_axes).push_back(a);
  p.routes = numel(p.index.axes);
  p.K = numel(p.k_axes);
  p.N = numel(p.n_axes);
  if (auto n = p.routes.constant(); n && *n > INT32_MAX) {
    why = "more than 2^31 - 1 routes";
    return false;
  }
  p.out = output(frame, o.results[0], result.dtype, axes);
  // The routing steps: up to 256 blocks, each over a contiguous range of routes.
  p.route_blocks = 256;
  if (auto n = p.routes.constant())
    p.route_blocks = std::clamp<int64_t>((*n + kRouteThreads - 1) / kRouteThreads, 1, 256);

  // Tensor cores for a 16-bit table: A's rows are the operand itself when it
  // is one tensor of the table's dtype, else their product in f32, split into
  // bf16 hi + lo planes beside a bf16 table (as the GEMM's f32 operands).
  const bool one_exact = p.rows.size() == 1 && p.rows[0].dtype == table.dtype;
  if (!is_16bit_float(table.dtype)) {
    p.fma_why = std::string("the table is ") + std::string(ir::dtype_name(table.dtype)) +
                "; tensor cores take a bf16 or f16 table";
  } else if (!one_exact && table.dtype == DType::F16) {
    p.fma_why = "the rows are not one f16 operand beside an f16 table";
  } else {
    std::vector<Sz> k_sizes, n_sizes;
    for (int a : p.k_axes) k_sizes.push_back(size(a));
    for (int a : p.n_axes) n_sizes.push_back(size(a));
    std::optional<Sz> sBk = merged_stride(p.table, p.k_axes, k_sizes), sBn = merged_stride(p.table, p.n_axes, n_sizes);
    if (!sBk || !sBn) {
      p.fma_why = "the table's summed or kept axes are not adjacent in memory";
    } else if (p.N.known() && *p.N.constant() / 64 > 65535) {
      p.fma_why = "the grid would be too large";
    } else {
      p.mma = true;
      p.sBk = *sBk;
      p.sBn = *sBn;
    }
  }
  if (p.mma) {
    p.split = !one_exact;
    p.a_dtype = one_exact ? table.dtype : DType::BF16;
    p.f16 = table.dtype == DType::F16;
    p.BN = p.N.known() && *p.N.constant() <= 64 ? 64 : 128;
    // A's planes are dense [routes, K]: staged by cp.async along K when its rows are 16-byte aligned.
    p.la = p.K.multiple_of(8) ? 1 : 0;
    const bool slices_aligned = p.expert_stride.multiple_of(8);
    if (p.sBk == 1 && p.sBn.multiple_of(8) && p.K.multiple_of(8) && slices_aligned)
      p.lb = 1;
    else if (p.sBn == 1 && p.sBk.multiple_of(8) && p.N.multiple_of(8) && slices_aligned)
      p.lb = 2;
  } else {
    p.a_dtype = DType::F32;
  }
  return true;
}

}  // namespace ncd::cuda::detail
