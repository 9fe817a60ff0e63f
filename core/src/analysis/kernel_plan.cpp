// Kernel plans in the cost model: the schedule the backend that builds the
// kernels answers for a written one (ncd/kernel_plan.h), as the Napkin model
// prices it. Part of the pricer (pricer.h); docs/COST.md, "Kernel plans".
#include <algorithm>
#include <cmath>
#include <set>

#include "pricer.h"

namespace ncd::cost_graph {

std::optional<Pricer::Planned> Pricer::plan(const ir::Diagram &kernel, const ir::Schedule &schedule, int instance) {
  Planned planned{schedule, std::nullopt};
  if (!options_.planner) return planned;
  auto size = [&](int axis) -> std::optional<int64_t> {
    double v = g_.vaxes[static_cast<size_t>(g_.vaxis_of(instance, axis))].size.v;
    if (std::isnan(v)) return std::nullopt;
    return static_cast<int64_t>(std::llround(v));
  };
  const std::vector<int> &lifted = g_.instances[static_cast<size_t>(instance)].lifted;
  KernelQuery query;
  query.program = &p_;
  query.kernel = &kernel;
  query.schedule = &schedule;
  query.size = size;
  query.hardware = &hw_;
  for (int axis : lifted) query.lifted.push_back(static_cast<int64_t>(std::llround(g_.full(axis).v)));
  for (int input : kernel.inputs) {
    bool carries = false;
    for (int axis : lifted) carries = carries || contains(g_.values[static_cast<size_t>(g_.value_of(instance, input))].axes, axis);
    query.lifted_inputs.push_back(carries);
  }
  std::string why;
  planned.shape = options_.planner->plan_kernel(query, why);
  if (!planned.shape) {
    declined_ = why.empty() ? "the backend declines it" : why;
    return std::nullopt;
  }
  // The schedule as built. Partial edge tiles are priced as the largest tile
  // that divides the axis (the model counts whole tiles).
  auto largest_dividing = [](int64_t n, int64_t tile) {
    tile = std::clamp<int64_t>(tile, 1, std::max<int64_t>(1, n));
    while (n % tile != 0) --tile;
    return tile;
  };
  auto dividing = [&](int axis, int64_t tile) { return largest_dividing(size(axis).value_or(tile), tile); };
  std::vector<ir::ScheduleDirective> directives;
  for (const auto &[axis, tile] : planned.shape->groups)
    directives.push_back({ir::ScheduleDirective::Kind::Group, axis, dividing(axis, tile), {}, {}, schedule.location});
  for (const auto &[axis, chunk] : planned.shape->streams)
    directives.push_back({ir::ScheduleDirective::Kind::Stream, axis, dividing(axis, chunk), {}, {}, schedule.location});
  for (const ir::ScheduleDirective &directive : schedule.directives) {
    if (directive.kind == ir::ScheduleDirective::Kind::Level) {
      directives.push_back(directive);
      continue;
    }
    for (ir::ScheduleDirective &built : directives)
      if (built.axis == directive.axis && built.kind == directive.kind) built.location = directive.location;
  }
  // What the block keeps in registers, unless the schedule placed it: a
  // `level` line for the tile level (so that it stays the tile level) and one
  // for the registers.
  int registers = hw_.level_index("registers");
  int tile_level = hw_.tile_level_index();
  if (registers > tile_level && tile_level > 0 && !planned.shape->registers.empty()) {
    std::set<int> placed;
    bool named = false;
    for (const ir::ScheduleDirective &directive : directives)
      if (directive.kind == ir::ScheduleDirective::Kind::Level) {
        named = true;
        placed.insert(directive.values.begin(), directive.values.end());
      }
    ir::ScheduleDirective kept{ir::ScheduleDirective::Kind::Level, -1, 0, "registers", {}, schedule.location};
    for (int value : planned.shape->registers)
      if (!placed.count(value)) kept.values.push_back(value);
    if (!kept.values.empty()) {
      if (!named)
        directives.push_back({ir::ScheduleDirective::Kind::Level, -1, 0, hw_.levels[static_cast<size_t>(tile_level)].name, {},
                              schedule.location});
      directives.push_back(kept);
    }
  }
  planned.schedule.directives = directives;
  for (size_t i = 0; i < lifted.size() && i < planned.shape->lifted.size(); ++i) {
    planned.shape->lifted[i] = largest_dividing(static_cast<int64_t>(std::llround(g_.full(lifted[i]).v)), planned.shape->lifted[i]);
  }
  return planned;
}

}  // namespace ncd::cost_graph
