// The CPU backend's kernels, on runtime tensors (rt.h). Every kernel reads
// strided views and writes a fresh dense float32 result (int32 for i32);
// rounding to the result's dtype is the caller's job (executor.cpp), except
// where a kernel takes the dtype.
#pragma once

#include <string>
#include <vector>

#include "rt.h"

namespace ncd::cpu {

// ---------------------------------------------------------------- elementwise

// The pointwise function `fn` (an ops::Kind::Elementwise row of ncd/ops.h;
// copies and casts are not kernels: the executor converts) of the operands,
// broadcast by runtime axis id, with the result rounded/converted to `dtype`.
// `order` (the result's axes in its declared order) is the layout used when
// no operand carries every axis.
RtTensor elementwise(ops::Fn fn, const std::vector<RtTensor> &operands, ir::DType dtype, const std::vector<int> &order);

// ---------------------------------------------------------------- reductions

// Reduces `axes` of t by `fn` (an ops::Kind::Reduce row; float64 accumulation
// for sums). `missing` is the number of positions of reduced axes that t does
// not carry (1 when it has them all).
RtTensor reduce(ops::Fn fn, const RtTensor &t, const std::vector<int> &axes, int64_t missing = 1);
// topk and sort of `t` along runtime axis `along`: `count` positions each
// (sort: all of them), the results laid along runtime axis `kept`; the values
// in float32 and their positions in i32. Stable: ties keep their order, NaN
// lies above every number.
void select(ops::Fn fn, const RtTensor &t, int along, int kept, int64_t count, RtTensor &values, RtTensor &positions);

// Normalises t by `fn` (an ops::Kind::Normalize row) along `axes`,
// independently for every position of its other axes.
RtTensor normalize(ops::Fn fn, const RtTensor &t, const std::vector<int> &axes, double eps);

// ---------------------------------------------------------------- scans

// The inclusive scan `fn` (an ops::Kind::Scan row) of the operands along the
// runtime axis `axis`, operands broadcast by runtime axis id into a result
// with the axes `order` (sizes `sizes`, `axis` among them); float64 state,
// float32 result. Every position of the other axes independently (scan.cpp).
RtTensor scan(ops::Fn fn, const std::vector<RtTensor> &operands, int axis, const std::vector<int> &order,
              const std::vector<int64_t> &sizes);

// ---------------------------------------------------------------- contraction

// The product of all operands summed over `axes` (runtime ids). `axis_sizes`
// gives the size of every summed axis (for axes no operand carries), indexed
// like `axes`. float32 result; BLAS sgemm where the contraction is a (batched)
// matrix product, loops otherwise.
RtTensor contract(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                  const std::vector<int64_t> &axis_sizes);
// The contraction into an integer dtype (i32, i8), exactly: operands of
// integer dtypes multiply and add in 128-bit integers, others in float64; the
// sum then truncates toward zero and saturates to `dtype` (NaN gives 0). A
// loop over the result, each element summed in one fixed order.
RtTensor contract_exact(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                        const std::vector<int64_t> &axis_sizes, ir::DType dtype);
// The same contraction plus `addend` (a bias: its axes among the result's),
// accumulated by the matrix product itself (sgemm with beta = 1, the addend
// broadcast into the result first) to save a pass over the result. Returns
// false, computing nothing, when the contraction is not one matrix product
// into which the addend fits; the caller then contracts and adds.
bool contract_add(const std::vector<RtTensor> &operands, const std::vector<int> &axes,
                  const std::vector<int64_t> &axis_sizes, const RtTensor &addend, RtTensor &result);

// A routed read (ncd/routing.h) in runtime terms: `table` (its positions other
// than the expert axis already renamed to the result's runtime axes) read at
// position index[...] along its runtime axis `expert`.
struct RoutedRead {
  RtTensor table;
  int expert = -1;
  RtTensor index;  // integer positions over some of the result's axes: the routes
};
// The contraction of `operands` over `axes` (as `contract`) where operand
// `routed` is `read` (its entry in `operands` is ignored): a grouped matrix
// product, one per expert that has routes, never materialising the gathered
// table (routed.cpp). `row_axis` is a runtime axis id no tensor uses (the
// gathered rows). `dtype` an integer: exact, as `contract_exact`.
RtTensor routed_contract(std::vector<RtTensor> operands, size_t routed, const RoutedRead &read,
                         const std::vector<int> &axes, const std::vector<int64_t> &axis_sizes, int row_axis,
                         ir::DType dtype);

// ---------------------------------------------------------------- data movement

// One position of an accessed tensor, in runtime terms: an affine form of the
// result's axes (splits are affine too), or a gather through an index tensor.
struct RtIndex {
  bool gather = false;
  std::vector<std::pair<int, int64_t>> terms;  // (runtime axis, coefficient)
  int64_t offset = 0;
  RtTensor index;  // gather: integer positions over some of the result's axes
};
// Reads `source` through one index per `positions` axis; positions out of range
// read zero. The result has the axes `axes` (sizes `sizes`); the source's
// other axes must be among them. A strided view when nothing can fall out of
// range and no gather is involved; a dense copy otherwise.
RtTensor access(const RtTensor &source, const std::vector<int> &positions, const std::vector<RtIndex> &indices,
                const std::vector<int> &axes, const std::vector<int64_t> &sizes);

// Merges groups of axes of `source` into single axes: group g (outermost first)
// becomes axis `merged[g]`. The other axes pass through. A view when each group
// is laid out contiguously, a dense copy otherwise.
RtTensor merge(const RtTensor &source, const std::vector<std::vector<int>> &groups, const std::vector<int> &merged);

}  // namespace ncd::cpu
