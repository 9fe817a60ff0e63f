// The planner of the scan kernel (print_scan.cpp): how many elements each
// lane scans in registers per chunk. More per lane means fewer warp-level
// steps per element (the shuffles are the kernel's overhead over a
// sequential scan) but more registers and a longer serial part per chunk.
#include "plan.h"

namespace ncd::cuda::detail {

ScanPlan plan_scan(std::optional<int64_t> extent) {
  ScanPlan plan;
  // A runtime size: 4 per lane, the middle of the range below.
  if (!extent) {
    plan.per_lane = 4;
    return plan;
  }
  // Enough per lane that a short row is one chunk, at most 8 (the registers
  // of the pair form: two arrays of per_lane floats).
  const int64_t wanted = (*extent + 31) / 32;
  while (plan.per_lane < wanted && plan.per_lane < 8) plan.per_lane *= 2;
  return plan;
}

}  // namespace ncd::cuda::detail
