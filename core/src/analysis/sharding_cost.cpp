// The price of a sharding plan (ncd/sharding.h, docs/SHARDING.md "Cost"):
// collectives by the ring formulas on the profile's interconnect, compute per
// rank, overlap, and the report; and `ncd cost --sweep devices=FROM..TO`: how
// a sharded diagram scales with the number of devices, and which mesh serves
// each count best.
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
#include <map>
#include <sstream>

#include "cost_format.h"
#include "ncd/sharding.h"

namespace ncd {

std::string_view collective_name(Collective::Kind kind) {
  switch (kind) {
    case Collective::Kind::AllReduce: return "all-reduce";
    case Collective::Kind::ReduceScatter: return "reduce-scatter";
    case Collective::Kind::AllGather: return "all-gather";
    case Collective::Kind::AllToAll: return "all-to-all";
  }
  return "collective";
}

double collective_wire_bytes(const Collective &c) {
  double p = static_cast<double>(c.group);
  if (p <= 1) return 0;
  double n = c.bytes();
  double once = (p - 1) / p * n;
  return c.kind == Collective::Kind::AllReduce ? 2 * once : once;
}

double collective_time(const Collective &c, double bandwidth, double latency) {
  double p = static_cast<double>(c.group);
  if (p <= 1) return 0;
  double steps = c.kind == Collective::Kind::AllReduce ? 2 * (p - 1) : p - 1;
  return (bandwidth > 0 ? collective_wire_bytes(c) / bandwidth : 0) + steps * latency;
}

ShardedCost price_sharding(const ShardingPlan &plan, const HardwareProfile &hardware, double one_device_time) {
  ShardedCost out;
  out.mesh = plan.mesh;
  out.devices = plan.devices;
  // A mesh dimension's groups are its devices with the inner dimensions' coordinates
  // fixed, so the outer dimension's rings stride across nodes first: a group
  // spans nodes when its size times the inner dimensions' exceeds a node.
  for (const Collective &c : plan.collectives) {
    ShardedCost::Row row;
    row.collective = c;
    int64_t span = c.group;
    for (size_t m = static_cast<size_t>(c.mesh_dim) + 1; m < plan.mesh.size(); ++m) span *= plan.mesh[m];
    const Link &link = hardware.interconnect.link_for(span);
    row.link = link.name;
    row.bandwidth = link.bandwidth;
    row.latency = link.latency;
    row.wire_bytes = collective_wire_bytes(c);
    row.time = collective_time(c, link.bandwidth, link.latency);
    out.communication_time += row.time * c.count;
    out.rows.push_back(std::move(row));
  }
  out.one_device_time = one_device_time;
  out.rank_share = plan.work > 0 ? plan.rank_work / plan.work : 1;
  out.compute_time = one_device_time * out.rank_share;
  out.serial_time = out.compute_time + out.communication_time;
  out.overlap_time = std::max(out.compute_time, out.communication_time);
  out.speedup = out.overlap_time > 0 ? one_device_time / out.overlap_time : 1;
  out.efficiency = out.speedup / static_cast<double>(std::max<int64_t>(1, out.devices));
  out.param_bytes = plan.param_bytes;
  out.rank_param_bytes = plan.rank_param_bytes;
  out.activation_peak = plan.activation_peak;
  out.rank_activation_peak = plan.rank_activation_peak;
  return out;
}

std::string format_sharded_cost(const ShardedCost &cost) {
  using namespace costfmt;
  std::ostringstream out;
  std::string mesh;
  for (int64_t n : cost.mesh) mesh += (mesh.empty() ? "" : " x ") + std::to_string(n);
  out << "Sharded across " << cost.devices << " device" << (cost.devices == 1 ? "" : "s") << " (mesh " << mesh
      << "):\n";
  if (cost.rows.empty()) out << "  no collectives: every device computes its slice alone\n";
  std::map<std::string, std::pair<double, double>> totals;  // kind → (count, bytes)
  for (const auto &row : cost.rows) {
    const Collective &c = row.collective;
    char count[32];
    std::snprintf(count, sizeof count, "%g", c.count);
    out << "  " << collective_name(c.kind) << " over " << c.group << " of " << c.value << " at " << c.site << ": "
        << static_cast<int64_t>(c.elements) << " elements, " << bytes(c.bytes()) << " (" << bytes(row.wire_bytes)
        << " sent per device) on " << row.link << ", " << seconds(row.time) << " x" << count << "\n";
    auto &total = totals[std::string(collective_name(c.kind))];
    total.first += c.count;
    total.second += c.bytes() * c.count;
  }
  for (auto &[kind, total] : totals) {
    char count[32];
    std::snprintf(count, sizeof count, "%g", total.first);
    out << "  total " << kind << ": " << count << " per run, " << bytes(total.second) << "\n";
  }
  char share[32];
  std::snprintf(share, sizeof share, "%.4g", cost.rank_share);
  out << "  communication: " << seconds(cost.communication_time) << "\n";
  out << "  compute per rank: " << seconds(cost.compute_time) << " (" << share << " of one device's "
      << seconds(cost.one_device_time) << ")\n";
  char speed[64];
  std::snprintf(speed, sizeof speed, "%.2fx, efficiency %.0f%%", cost.speedup, cost.efficiency * 100);
  out << "  time: " << seconds(cost.overlap_time) << " with communication overlapped, " << seconds(cost.serial_time)
      << " without; speedup " << speed << "\n";
  out << "  memory per device: params " << bytes(cost.rank_param_bytes) << " (of " << bytes(cost.param_bytes)
      << "), activations at peak " << bytes(cost.rank_activation_peak) << " (of " << bytes(cost.activation_peak)
      << "), forward\n";
  return out.str();
}

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
