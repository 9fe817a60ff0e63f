// `ncd cost --sweep devices=FROM..TO`: how a sharded diagram scales with the
// number of devices, and which mesh serves each count best.
//
// The diagram's shard lines say which axes may be split and how they group
// into mesh dimensions; the sweep chooses how many devices each dimension
// gets. At every count it prices each ordered factorisation of the count
// over the lines (a line with one device is not split), skipping those that
// do not divide a line's axis sizes, and keeps the fastest with
// communication overlapped. The one-device time is the cost report's; each
// mesh goes through plan_sharding and price_sharding, so the sweep says
// nothing the single report would not.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <sstream>

#include "cost_format.h"
#include "ncd/sharding.h"

namespace ncd {
namespace {

std::string mesh_text(const std::vector<int64_t> &mesh) {
  std::string out;
  for (int64_t n : mesh) out += (out.empty() ? "" : " x ") + std::to_string(n);
  return out;
}

}  // namespace

std::string shard_refusal(const ir::Program &program, const ir::ShardDirective &shard, int64_t devices) {
  for (int axis : shard.axes)
    if (auto size = program.axis(axis).size; size && *size % devices != 0)
      return std::to_string(devices) + " does not divide the size of '" + program.axis(axis).name + "' (" +
             std::to_string(*size) + ")";
  return "";
}

std::vector<DeviceSweepPoint> sweep_devices(const ir::Program &program, const ir::Diagram &diagram,
                                            const HardwareProfile &hardware, double one_device_time,
                                            const std::vector<int64_t> &counts) {
  std::vector<DeviceSweepPoint> points;
  const size_t lines = diagram.shards.size();
  for (int64_t count : counts) {
    DeviceSweepPoint point;
    point.devices = count;
    std::vector<int64_t> mesh(lines, 1);
    std::string first_refusal;
    // Ordered factorisations of `count` over the lines, outer lines taking the larger factors first.
    std::function<void(size_t, int64_t)> place = [&](size_t line, int64_t left) {
      if (line + 1 == lines) {
        mesh[line] = left;
      } else {
        for (int64_t n = left; n >= 1; --n)
          if (left % n == 0) {
            mesh[line] = n;
            place(line + 1, left / n);
          }
        return;
      }
      for (size_t m = 0; m < lines; ++m)
        if (std::string why = shard_refusal(program, diagram.shards[m], mesh[m]); !why.empty()) {
          if (first_refusal.empty()) first_refusal = why;
          return;
        }
      ShardingPlan plan = plan_sharding(program, diagram, &mesh);
      ShardedCost cost = price_sharding(plan, hardware, one_device_time);
      char line_text[160];
      std::snprintf(line_text, sizeof line_text, "%lld devices, mesh %s: %s with communication overlapped",
                    static_cast<long long>(count), mesh_text(mesh).c_str(),
                    costfmt::seconds(cost.overlap_time).c_str());
      point.tried.push_back(line_text);
      if (!point.best || cost.overlap_time < point.best->overlap_time) point.best = std::move(cost);
    };
    if (lines > 0) place(0, count);
    if (!point.best)
      point.why = first_refusal.empty() ? "no mesh of " + std::to_string(count) + " devices" : first_refusal;
    points.push_back(std::move(point));
  }
  return points;
}

std::string format_device_sweep(const std::vector<DeviceSweepPoint> &points, const std::string &diagram,
                                const std::string &hardware) {
  using namespace costfmt;
  std::ostringstream out;
  out << "Device sweep of " << diagram << " on " << hardware << " (the fastest mesh at each count, forward):\n";
  char row[256];
  std::snprintf(row, sizeof row, "  %7s  %-9s %10s %10s %10s %10s %8s %7s %11s %11s\n", "devices", "mesh", "time",
                "serial", "compute", "comm.", "speedup", "effic.", "params/dev", "activ./dev");
  out << row;
  const DeviceSweepPoint *best = nullptr;
  for (const DeviceSweepPoint &point : points) {
    if (!point.best) {
      std::snprintf(row, sizeof row, "  %7lld  no mesh: %s\n", static_cast<long long>(point.devices),
                    point.why.c_str());
      out << row;
      continue;
    }
    const ShardedCost &c = *point.best;
    char speedup[32], efficiency[32];
    std::snprintf(speedup, sizeof speedup, "%.2fx", c.speedup);
    std::snprintf(efficiency, sizeof efficiency, "%.0f%%", c.efficiency * 100);
    std::snprintf(row, sizeof row, "  %7lld  %-9s %10s %10s %10s %10s %8s %7s %11s %11s\n",
                  static_cast<long long>(point.devices), mesh_text(c.mesh).c_str(), seconds(c.overlap_time).c_str(),
                  seconds(c.serial_time).c_str(), seconds(c.compute_time).c_str(),
                  seconds(c.communication_time).c_str(), speedup, efficiency, bytes(c.rank_param_bytes).c_str(),
                  bytes(c.rank_activation_peak).c_str());
    out << row;
    if (!best || c.overlap_time < best->best->overlap_time) best = &point;
  }
  if (best) {
    char speedup[64];
    std::snprintf(speedup, sizeof speedup, "%.2fx, efficiency %.0f%%", best->best->speedup,
                  best->best->efficiency * 100);
    out << "  fastest: " << best->devices << " devices, mesh " << mesh_text(best->best->mesh) << ", "
        << seconds(best->best->overlap_time) << " (speedup " << speedup << ")\n";
  }
  return out.str();
}

}  // namespace ncd
