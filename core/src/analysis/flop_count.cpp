// The FLOP count of a diagram without a hardware profile: the unfused
// baseline of `ncd cost` (every op priced once, repeats multiplied), for
// callers that report throughput but price nothing, such as the CUDA
// backend's --harness. It walks the same flattened graph as the cost model,
// so the two counts cannot disagree.
#include <cmath>

#include "cost_graph.h"
#include "ncd/cost.h"

namespace ncd {

std::optional<double> count_flops(const ir::Program &program, const ir::Diagram &diagram) {
  cost_graph::Graph graph(program);
  graph.build(diagram);
  for (const cost_graph::VValue &value : graph.values)
    for (int axis : value.axes)
      if (std::isnan(graph.vaxes[static_cast<size_t>(axis)].size.v)) return std::nullopt;
  // In the order of the cost report's rows (vops are laid out row by row), so
  // that the sum is the report's total to the last bit.
  double flops = 0;
  for (const cost_graph::VOp &op : graph.vops)
    if (!op.hidden()) flops += graph.flops(op, {}).scaled(op.repeat).v;
  return flops;
}

}  // namespace ncd
