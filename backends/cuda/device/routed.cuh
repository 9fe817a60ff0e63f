//! The routing steps and the tile walk of routed contractions (mixtures of
//! experts: docs/CUDA.md, "Routed contractions"), emitted after gemm.cuh.
// ---------------------------------------------------------------- routed contractions
// A routed contraction groups its routes (the positions of the routing index,
// in row-major order) by the expert each one names, then multiplies every
// expert's rows by that expert's slice of the table in one grouped launch.
// The grouping is a counting sort in three launches, with no atomics on
// global memory, so every run places the routes identically: each of the
// route blocks counts the buckets of its contiguous range of routes
// (ncd_route_count), one block turns the counts into per-bucket offsets and
// per-(block, bucket) bases (ncd_route_scan), and each block then writes its
// routes at base + running rank (ncd_route_place). Routes keep their
// ascending order within a bucket (stable, as the CPU backend's sort).
// Bucket kBuckets - 1 holds the routes whose position lies outside the table.

// The contiguous range of routes block `b` of `blocks` takes.
__device__ inline void ncd_route_range(int64_t routes, int64_t blocks, int64_t b, int64_t &begin, int64_t &end) {
  const int64_t per = (routes + blocks - 1) / blocks;
  begin = b * per < routes ? b * per : routes;
  end = begin + per < routes ? begin + per : routes;
}

// counts[b * kBuckets + g]: the routes of block b's range in bucket g.
// `bucket(p)` is the bucket of route p (generated per index layout).
template <int kBuckets, class Bucket>
__device__ void ncd_route_count(int64_t routes, Bucket bucket, int32_t *__restrict__ counts) {
  __shared__ int32_t n[kBuckets];
  for (int g = threadIdx.x; g < kBuckets; g += blockDim.x) n[g] = 0;
  __syncthreads();
  int64_t begin, end;
  ncd_route_range(routes, gridDim.x, blockIdx.x, begin, end);
  // Integer counts: the order of the shared-memory atomics does not matter.
  for (int64_t p = begin + threadIdx.x; p < end; p += blockDim.x) atomicAdd(&n[bucket(p)], 1);
  __syncthreads();
  for (int g = threadIdx.x; g < kBuckets; g += blockDim.x)
    counts[static_cast<int64_t>(blockIdx.x) * kBuckets + g] = n[g];
}

// One block: offsets[g] = the routes of the buckets before g (offsets[kBuckets]
// = all of them), and counts[b][g] becomes where block b's routes of bucket g
// start in the grouped order.
template <int kBuckets>
__device__ void ncd_route_scan(int blocks, int32_t *__restrict__ counts, int32_t *__restrict__ offsets) {
  __shared__ int32_t start[kBuckets + 1];
  for (int g = threadIdx.x; g < kBuckets; g += blockDim.x) {
    int32_t sum = 0;
    for (int b = 0; b < blocks; ++b) {
      const int32_t c = counts[static_cast<int64_t>(b) * kBuckets + g];
      counts[static_cast<int64_t>(b) * kBuckets + g] = sum;
      sum += c;
    }
    start[g + 1] = sum;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    start[0] = 0;
    for (int g = 0; g < kBuckets; ++g) start[g + 1] += start[g];
  }
  __syncthreads();
  for (int g = threadIdx.x; g <= kBuckets; g += blockDim.x) offsets[g] = start[g];
  for (int g = threadIdx.x; g < kBuckets; g += blockDim.x)
    for (int b = 0; b < blocks; ++b) counts[static_cast<int64_t>(b) * kBuckets + g] += start[g];
}

// order[i]: the route at place i of the grouped order. Each block walks its
// range in chunks of blockDim.x routes; a route's rank among the chunk's
// routes of its bucket is the number of earlier ones (a scan of at most
// blockDim.x buckets in shared memory), so the order within a bucket is
// ascending.
template <int kBuckets, int kThreads, class Bucket>
__device__ void ncd_route_place(int64_t routes, Bucket bucket, const int32_t *__restrict__ bases,
                                int32_t *__restrict__ order) {
  __shared__ int32_t next[kBuckets];
  __shared__ int32_t chunk[kThreads];
  for (int g = threadIdx.x; g < kBuckets; g += kThreads)
    next[g] = bases[static_cast<int64_t>(blockIdx.x) * kBuckets + g];
  __syncthreads();
  int64_t begin, end;
  ncd_route_range(routes, gridDim.x, blockIdx.x, begin, end);
  for (int64_t c0 = begin; c0 < end; c0 += kThreads) {
    const int64_t p = c0 + threadIdx.x;
    const int g = p < end ? bucket(p) : -1;
    chunk[threadIdx.x] = g;
    __syncthreads();
    if (g >= 0) {
      int rank = 0;
      for (int j = 0; j < static_cast<int>(threadIdx.x); ++j) rank += chunk[j] == g;
      order[next[g] + rank] = static_cast<int32_t>(p);
    }
    __syncthreads();
    if (g >= 0) atomicAdd(&next[g], 1);  // the chunk's routes move each bucket on (integers: order-free)
    __syncthreads();
  }
}

// The bucket and first row of tile `tile` of the grouped product, tiles of
// `rows_per_tile` numbered bucket by bucket; false past the last tile (the
// grid is sized for the most tiles any routing can need). A walk of the
// offsets: the number of experts is small.
__device__ inline bool ncd_route_tile(const int32_t *__restrict__ offsets, int buckets, int64_t rows_per_tile,
                                      int64_t tile, int &g, int64_t &m0) {
  int64_t before = 0;
  for (g = 0; g < buckets; ++g) {
    const int64_t tiles = (offsets[g + 1] - offsets[g] + rows_per_tile - 1) / rows_per_tile;
    if (tile < before + tiles) {
      m0 = (tile - before) * rows_per_tile;
      return true;
    }
    before += tiles;
  }
  return false;
}

// The bucket of row `row` of the grouped order: the last g with offsets[g] <= row (a binary search).
__device__ inline int ncd_route_bucket(const int32_t *__restrict__ offsets, int buckets, int64_t row) {
  int lo = 0, hi = buckets - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (offsets[mid] <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}
