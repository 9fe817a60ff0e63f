// Runtime tensors: allocation, strided copies and dtype conversions.
#include "rt.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "ncd/tensor.h"

namespace ncd::cpu {

namespace {

int g_threads = 0;

int default_threads() {
  unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

thread_local bool t_in_task = false;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#else
  std::this_thread::yield();
#endif
}

// One call of run_tasks. Helpers keep it alive while they look at it; the
// caller returns once every task has completed, without waiting for helpers
// that woke too late to take one.
struct Job {
  const std::function<void(int64_t)> *task = nullptr;
  int64_t tasks = 0;
  std::atomic<int64_t> next{0}, completed{0};
  std::mutex error_mutex;
  std::exception_ptr error;
};

class Pool {
 public:
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto &worker : workers_) worker.join();
  }

  void run(int64_t tasks, const std::function<void(int64_t)> &task, int threads) {
    const int helpers = static_cast<int>(std::min<int64_t>(threads - 1, tasks - 1));
    auto job = std::make_shared<Job>();
    job->task = &task;
    job->tasks = tasks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      while (static_cast<int>(workers_.size()) < helpers) workers_.emplace_back([this] { loop(); });
      current_ = job;
      wanted_ = helpers;
      generation_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    work(*job);
    {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return job->completed.load() == tasks; });
      current_.reset();
      wanted_ = 0;
    }
    if (job->error) std::rethrow_exception(job->error);
  }

 private:
  void work(Job &job) {
    const bool was = t_in_task;
    t_in_task = true;
    int64_t finished = 0;
    for (int64_t i = job.next.fetch_add(1); i < job.tasks; i = job.next.fetch_add(1)) {
      try {
        (*job.task)(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(job.error_mutex);
        if (!job.error) job.error = std::current_exception();
      }
      ++finished;
    }
    t_in_task = was;
    if (finished && job.completed.fetch_add(finished) + finished == job.tasks) {
      std::lock_guard<std::mutex> lock(mutex_);
      done_.notify_all();
    }
  }

  void loop() {
    uint64_t seen = generation_.load();
    while (true) {
      // A short spin catches back-to-back jobs; then sleep until the next one.
      for (int spin = 0; spin < 256 && generation_.load(std::memory_order_acquire) == seen; ++spin) relax();
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_.load() != seen; });
        if (stop_) return;
        seen = generation_.load();
        if (!current_ || wanted_ == 0) continue;
        --wanted_;
        job = current_;
      }
      work(*job);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::shared_ptr<Job> current_;
  std::atomic<uint64_t> generation_{0};
  int wanted_ = 0;
  bool stop_ = false;
};

Pool &pool() {
  static Pool instance;
  return instance;
}

}  // namespace

int thread_count() {
  if (g_threads <= 0) g_threads = default_threads();
  return g_threads;
}

void set_thread_count(int threads) { g_threads = threads > 0 ? threads : default_threads(); }

bool in_parallel_task() { return t_in_task; }

void run_tasks(int64_t tasks, const std::function<void(int64_t)> &task) {
  if (tasks <= 0) return;
  if (t_in_task || thread_count() <= 1 || tasks == 1) {
    for (int64_t i = 0; i < tasks; ++i) task(i);
    return;
  }
  pool().run(tasks, task, thread_count());
}

namespace {

// Buffers freed during a run, by size, for the next allocations of that size.
class BufferCache {
 public:
  ~BufferCache() { clear(); }
  void *take(size_t bytes) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = free_.find(bytes);
    if (it == free_.end()) return nullptr;
    void *data = it->second;
    free_.erase(it);
    cached_ -= bytes;
    return data;
  }
  void give(void *data, size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + bytes <= kLimit) {
        free_.emplace(bytes, data);
        cached_ += bytes;
        return;
      }
    }
    std::free(data);
  }
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto &[bytes, data] : free_) std::free(data);
    free_.clear();
    cached_ = 0;
  }

 private:
  static constexpr size_t kLimit = size_t{1} << 30;
  std::mutex mutex_;
  std::multimap<size_t, void *> free_;
  size_t cached_ = 0;
};

BufferCache &cache() {
  static BufferCache instance;
  return instance;
}

}  // namespace

Buffer::~Buffer() {
  if (owned && data) cache().give(data, bytes);
}

void release_cached_buffers() { cache().clear(); }

std::shared_ptr<Buffer> Buffer::allocate(int64_t count) {
  auto buffer = std::make_shared<Buffer>();
  size_t bytes = static_cast<size_t>(std::max<int64_t>(count, 1)) * 4;
  bytes = bytes >= 65536 ? (bytes + 4095) / 4096 * 4096 : (bytes + 63) / 64 * 64;
  buffer->data = cache().take(bytes);
  if (!buffer->data && bytes >= (size_t{64} << 20)) {
    // Large: refuse what the system cannot give, rather than be killed
    // touching pages that memory overcommit promised.
    const uint64_t available = available_memory();
    if (available && bytes > available)
      throw OutOfMemory("out of memory: an intermediate needs " + bytes_text(static_cast<double>(bytes)) + ", " +
                     bytes_text(static_cast<double>(available)) + " is available");
  }
  if (!buffer->data) buffer->data = std::aligned_alloc(64, bytes);
  if (!buffer->data) throw OutOfMemory("out of memory allocating " + std::to_string(bytes) + " bytes");
  buffer->bytes = bytes;
  buffer->count = count;
  return buffer;
}

std::shared_ptr<Buffer> Buffer::wrap(const void *data, int64_t count) {
  auto buffer = std::make_shared<Buffer>();
  buffer->data = const_cast<void *>(data);
  buffer->count = count;
  buffer->owned = false;
  return buffer;
}

bool RtTensor::is_contiguous() const {
  int64_t expected = 1;
  for (int i = rank(); i-- > 0;) {
    if (sizes[static_cast<size_t>(i)] != 1 && strides[static_cast<size_t>(i)] != expected) return false;
    expected *= sizes[static_cast<size_t>(i)];
  }
  return true;
}

RtTensor make_tensor(ir::DType dtype, const std::vector<int> &axes, const std::vector<int64_t> &sizes) {
  RtTensor t;
  t.dtype = dtype;
  t.axes = axes;
  t.sizes = sizes;
  t.strides.assign(axes.size(), 1);
  int64_t stride = 1;
  for (size_t i = axes.size(); i-- > 0;) {
    t.strides[i] = stride;
    stride *= sizes[i];
  }
  t.buffer = Buffer::allocate(stride);
  return t;
}

RtTensor make_scalar(float value, ir::DType dtype) {
  RtTensor t = make_tensor(dtype == ir::DType::I32 ? ir::DType::F32 : dtype, {}, {});
  t.fdata()[0] = convert_float(value, dtype);
  if (dtype == ir::DType::I32) {
    t.dtype = ir::DType::I32;
    int32_t v = float_to_i32(value);
    std::memcpy(t.buffer->data, &v, 4);
  }
  return t;
}

void Loop::collapse() {
  // Drop size-1 dimensions.
  std::vector<int64_t> s;
  std::vector<std::vector<int64_t>> st(strides.size());
  for (size_t d = 0; d < sizes.size(); ++d) {
    if (sizes[d] == 1) continue;
    s.push_back(sizes[d]);
    for (size_t o = 0; o < strides.size(); ++o) st[o].push_back(strides[o][d]);
  }
  // Merge dimension d into d + 1 where every operand steps contiguously across them.
  std::vector<int64_t> out_sizes;
  std::vector<std::vector<int64_t>> out_strides(strides.size());
  for (size_t d = 0; d < s.size(); ++d) {
    if (!out_sizes.empty()) {
      bool mergeable = true;
      for (size_t o = 0; o < st.size(); ++o)
        if (out_strides[o].back() != st[o][d] * s[d]) mergeable = false;
      if (mergeable) {
        out_sizes.back() *= s[d];
        for (size_t o = 0; o < st.size(); ++o) out_strides[o].back() = st[o][d];
        continue;
      }
    }
    out_sizes.push_back(s[d]);
    for (size_t o = 0; o < st.size(); ++o) out_strides[o].push_back(st[o][d]);
  }
  sizes = std::move(out_sizes);
  strides = std::move(out_strides);
}

namespace {

template <typename T>
void copy_rows(const Loop &loop, T *out, const T *in) {
  const int64_t so = loop.inner_stride(0), si = loop.inner_stride(1);
  loop.run([&](const int64_t *off, int64_t n) {
    T *o = out + off[0];
    const T *i = in + off[1];
    if (so == 1 && si == 1) {
      std::memcpy(o, i, static_cast<size_t>(n) * sizeof(T));
    } else if (so == 1 && si == 0) {
      T v = i[0];
      for (int64_t k = 0; k < n; ++k) o[k] = v;
    } else {
      for (int64_t k = 0; k < n; ++k) o[k * so] = i[k * si];
    }
  });
}

}  // namespace

RtTensor materialize(const RtTensor &t, const std::vector<int> &axes, const std::vector<int64_t> &sizes) {
  RtTensor out = make_tensor(t.dtype, axes, sizes);
  Loop loop;
  loop.sizes = sizes;
  loop.strides.assign(2, std::vector<int64_t>(axes.size(), 0));
  for (size_t d = 0; d < axes.size(); ++d) {
    loop.strides[0][d] = out.strides[d];
    loop.strides[1][d] = t.stride_of(axes[d]);
  }
  for (int i = 0; i < t.rank(); ++i)
    if (std::find(axes.begin(), axes.end(), t.axes[static_cast<size_t>(i)]) == axes.end() && t.sizes[static_cast<size_t>(i)] != 1)
      throw std::logic_error("materialize drops an axis");
  loop.collapse();
  if (t.is_int())
    copy_rows<int32_t>(loop, out.idata(), t.idata());
  else
    copy_rows<float>(loop, out.fdata(), t.fdata());
  return out;
}

RtTensor materialize(const RtTensor &t) { return materialize(t, t.axes, t.sizes); }

RtTensor as_float(const RtTensor &t) {
  if (!t.is_int()) return t;
  RtTensor dense = t.is_contiguous() ? t : materialize(t);
  RtTensor out = make_tensor(ir::DType::F32, dense.axes, dense.sizes);
  const int32_t *in = dense.idata();
  float *o = out.fdata();
  parallel_for(out.numel(), 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) o[i] = static_cast<float>(in[i]);
  });
  return out;
}

namespace {

// Whether every value of `from` is exactly a value of `to`.
bool exact_subset(ir::DType from, ir::DType to) {
  using D = ir::DType;
  if (from == to) return true;
  switch (to) {
    case D::F32: return from != D::I32;
    case D::F16: return from == D::F8E4M3 || from == D::F8E5M2 || from == D::Bool || from == D::I8;
    case D::BF16: return from == D::F8E4M3 || from == D::F8E5M2 || from == D::Bool || from == D::I8;
    case D::F8E4M3: return from == D::Bool;
    case D::F8E5M2: return from == D::Bool;
    case D::I8: return from == D::Bool;
    case D::I32: return false;  // different storage
    case D::Bool: return false;
  }
  return false;
}

}  // namespace

RtTensor convert(const RtTensor &t, ir::DType dtype) {
  if (t.dtype == dtype) return t;
  if (exact_subset(t.dtype, dtype)) {
    RtTensor view = t;
    view.dtype = dtype;
    return view;
  }
  RtTensor dense = t.is_contiguous() ? t : materialize(t);
  RtTensor out = make_tensor(dtype, dense.axes, dense.sizes);
  const int64_t n = out.numel();
  if (dtype == ir::DType::I32) {
    const float *in = dense.fdata();
    int32_t *o = out.idata();
    parallel_for(n, 2, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = float_to_i32(in[i]);
    });
    return out;
  }
  float *o = out.fdata();
  if (dense.is_int()) {
    const int32_t *in = dense.idata();
    parallel_for(n, 2, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) o[i] = convert_float(static_cast<float>(in[i]), dtype);
    });
    return out;
  }
  const float *in = dense.fdata();
  parallel_for(n, 4, [&](int64_t b, int64_t e) {
    std::memcpy(o + b, in + b, static_cast<size_t>(e - b) * 4);
    convert_floats(o + b, e - b, dtype);
  });
  return out;
}

void round_in_place(RtTensor &t) {
  if (t.dtype == ir::DType::F32 || t.dtype == ir::DType::I32) return;
  float *data = t.fdata();
  const ir::DType dtype = t.dtype;
  parallel_for(t.numel(), 4, [&](int64_t b, int64_t e) { convert_floats(data + b, e - b, dtype); });
}

}  // namespace ncd::cpu
