// Runtime tensors of the CPU backend: strided views over shared buffers.
//
// A runtime tensor names its axes by *runtime axis ids*: every diagram
// instance (the root, each call) gets fresh ids for the IR axes it uses, so a
// callee's axes never collide with the caller's lifted axes. Elements are 4
// bytes: float32 for every dtype but i32 (values already rounded to the
// dtype), int32 for i32. Strides are in elements and may be 0 (broadcast) or
// overlap (a sliding-window view); kernels never write through a view.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd::cpu {

// An error in the request or the program (reported to the user, exit 1).
struct RunError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// The memory a buffer needs is not available (a RunError the backend reports as such).
struct OutOfMemory : RunError {
  using RunError::RunError;
};

struct Buffer {
  void *data = nullptr;
  int64_t count = 0;
  size_t bytes = 0;  // allocated size (owned buffers)
  bool owned = true;
  Buffer() = default;
  Buffer(const Buffer &) = delete;
  Buffer &operator=(const Buffer &) = delete;
  ~Buffer();
  // `count` uninitialised 4-byte elements, 64-byte aligned. Freed buffers
  // are kept for reuse by size (fresh memory costs a page fault per 4 KiB),
  // up to a bound; release_cached_buffers() returns them.
  static std::shared_ptr<Buffer> allocate(int64_t count);
  // A view of memory owned elsewhere (it must outlive the run).
  static std::shared_ptr<Buffer> wrap(const void *data, int64_t count);
};

struct RtTensor {
  ir::DType dtype = ir::DType::F32;
  std::shared_ptr<Buffer> buffer;
  int64_t offset = 0;
  std::vector<int> axes;         // runtime axis ids
  std::vector<int64_t> sizes;    // per axis
  std::vector<int64_t> strides;  // per axis, in elements

  int rank() const { return static_cast<int>(axes.size()); }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : sizes) n *= s;
    return n;
  }
  int find(int axis) const {
    for (int i = 0; i < rank(); ++i)
      if (axes[static_cast<size_t>(i)] == axis) return i;
    return -1;
  }
  bool is_int() const { return dtype == ir::DType::I32; }
  float *fdata() const { return static_cast<float *>(buffer->data) + offset; }
  int32_t *idata() const { return static_cast<int32_t *>(buffer->data) + offset; }
  // Row-major dense in its own axis order, starting at its offset.
  bool is_contiguous() const;
  // The stride of `axis`, 0 when absent.
  int64_t stride_of(int axis) const {
    int i = find(axis);
    return i < 0 ? 0 : strides[static_cast<size_t>(i)];
  }
};

void release_cached_buffers();

// A fresh dense tensor (uninitialised) with these axes, row-major.
RtTensor make_tensor(ir::DType dtype, const std::vector<int> &axes, const std::vector<int64_t> &sizes);
RtTensor make_scalar(float value, ir::DType dtype);

// The element count at which loops are split across threads.
constexpr int64_t kParallelGrain = 32768;

int thread_count();
void set_thread_count(int threads);

// Runs task(i) for i in [0, tasks) on the worker pool and the calling thread,
// and returns when all are done. Workers take tasks in order as they become
// free (so a late worker on a loaded machine delays nothing); between jobs
// they spin briefly, then sleep (they never spin for long: on a shared
// machine a spinning thread takes the core from the one doing the work).
// Called from inside a task, it runs the tasks serially.
void run_tasks(int64_t tasks, const std::function<void(int64_t)> &task);
// Whether the calling thread is running one of run_tasks' tasks.
bool in_parallel_task();

// Runs f(begin, end) over [0, n) in contiguous chunks on up to
// thread_count() threads when n * cost_per_item is large enough.
template <typename F>
void parallel_for(int64_t n, int64_t cost_per_item, F &&f) {
  const int threads = thread_count();
  const int64_t work = n * (cost_per_item < 1 ? 1 : cost_per_item);
  if (threads <= 1 || n < 2 || work < 2 * kParallelGrain) {
    f(int64_t{0}, n);
    return;
  }
  // A few chunks per thread, so that the work balances when a thread is late.
  int64_t chunks = std::min<int64_t>(work / kParallelGrain, 4 * static_cast<int64_t>(threads));
  if (chunks > n) chunks = n;
  run_tasks(chunks, [&](int64_t i) {
    const int64_t begin = n * i / chunks, end = n * (i + 1) / chunks;
    if (begin < end) f(begin, end);
  });
}

// Iteration over a dense index space with several strided operands: the
// innermost dimension is handed to a row function with each operand's offset.
constexpr int kMaxOperands = 5;
struct Loop {
  std::vector<int64_t> sizes;                 // outermost first
  std::vector<std::vector<int64_t>> strides;  // per operand, per dimension
  // Drops size-1 dimensions and merges adjacent ones that every operand walks contiguously.
  void collapse();
  int64_t inner() const { return sizes.empty() ? 1 : sizes.back(); }
  int64_t inner_stride(size_t operand) const { return sizes.empty() ? 0 : strides[operand].back(); }
  int64_t total() const {
    int64_t n = 1;
    for (int64_t s : sizes) n *= s;
    return n;
  }
  // row(const int64_t *offsets, int64_t n) for every innermost row; parallel when large.
  // Rows are split among threads; when there are fewer rows than pieces of work
  // (a contiguous loop collapses into one row), rows are cut into blocks of
  // columns (multiples of 16 elements, so that blocks start vector-aligned).
  template <typename F>
  void run(F &&row, int64_t cost_per_element = 1) const {
    const size_t dims = sizes.size();
    if (dims == 0) {
      int64_t offsets[kMaxOperands] = {0};
      row(static_cast<const int64_t *>(offsets), int64_t{1});
      return;
    }
    const int64_t n = inner();
    int64_t rows = 1;
    for (size_t d = 0; d + 1 < dims; ++d) rows *= sizes[d];
    const int threads = thread_count();
    const int64_t work = rows * n * (cost_per_element < 1 ? 1 : cost_per_element);
    const int64_t pieces =
        threads <= 1 ? 1 : std::min<int64_t>(work / kParallelGrain, 4 * static_cast<int64_t>(threads));
    if (pieces >= 2 && rows < pieces && n >= 128) {
      const int64_t wanted = std::min<int64_t>((pieces + rows - 1) / rows, n / 64);
      const int64_t block = ((n + wanted - 1) / wanted + 15) / 16 * 16;
      const int64_t per_row = (n + block - 1) / block;
      run_tasks(rows * per_row, [&](int64_t task) {
        const int64_t column = task % per_row * block;
        int64_t offsets[kMaxOperands] = {0};
        first_offsets(task / per_row, offsets);
        for (size_t o = 0; o < strides.size(); ++o) offsets[o] += column * strides[o].back();
        row(static_cast<const int64_t *>(offsets), std::min(block, n - column));
      });
      return;
    }
    parallel_for(rows, n * cost_per_element, [&](int64_t begin, int64_t end) {
      std::vector<int64_t> idx(dims, 0);
      int64_t offsets[kMaxOperands] = {0};
      first_offsets(begin, offsets, idx.data());
      const size_t ops = strides.size();
      for (int64_t r = begin; r < end; ++r) {
        row(static_cast<const int64_t *>(offsets), n);
        for (size_t d = dims - 1; d-- > 0;) {
          if (++idx[d] < sizes[d]) {
            for (size_t o = 0; o < ops; ++o) offsets[o] += strides[o][d];
            break;
          }
          for (size_t o = 0; o < ops; ++o) offsets[o] -= (sizes[d] - 1) * strides[o][d];
          idx[d] = 0;
        }
      }
    });
  }

 private:
  // Each operand's offset of the first element of row `r` (outer dimensions in
  // row-major order), and the row's index per outer dimension when asked.
  void first_offsets(int64_t r, int64_t *offsets, int64_t *index = nullptr) const {
    for (size_t d = sizes.size() - 1; d-- > 0;) {
      const int64_t position = r % sizes[d];
      r /= sizes[d];
      if (index) index[d] = position;
      for (size_t o = 0; o < strides.size(); ++o) offsets[o] += position * strides[o][d];
    }
  }
};

// A dense copy of `t` with the axes `axes` (of sizes `sizes`) in this order:
// every axis of t must be among them; the others are broadcast. Same dtype.
RtTensor materialize(const RtTensor &t, const std::vector<int> &axes, const std::vector<int64_t> &sizes);
// A dense copy in t's own axis order.
RtTensor materialize(const RtTensor &t);
// t as float32 data (a converted dense copy when t is i32; t itself otherwise).
RtTensor as_float(const RtTensor &t);
// t converted to `dtype` (rounded, truncated or 0/1); a view when nothing changes.
RtTensor convert(const RtTensor &t, ir::DType dtype);
// Rounds a freshly computed float tensor in place to its dtype (for non-float
// dtypes other than i32: truncation/0-1; i32 needs convert()).
void round_in_place(RtTensor &t);

}  // namespace ncd::cpu
