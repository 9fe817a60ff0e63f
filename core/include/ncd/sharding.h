// Collective inference: from a diagram's `shard` directives (its device mesh),
// which collectives its sharded execution needs, where, and how large they are.
//
// One entry point, plan_sharding, used by `ncd cost --devices` (pricing),
// `ncd cost --explain` (the decisions), and whatever runs or emits the sharded
// program. docs/SHARDING.md states the rules; in short, every value's axes are
// either whole on every device (replicated) or split over one mesh dimension:
//   - an operation's result is split along each of its axes that a shard
//     names (or that a later split access of a sharded axis asks for: the
//     column-parallel projection in front of attention heads); its operands
//     are then needed only in that slice, which a replicated operand (a
//     weight) gives locally, with no communication;
//   - a contraction or reduction over an axis held split sums partial results:
//     an all-reduce over that mesh dimension (row-parallel), or a
//     reduce-scatter where the result stays split along another axis of the
//     same mesh dimension;
//   - an operand held split along an axis the operation needs whole (a
//     normalisation along it, an elementwise partner that is whole, a shifted
//     read) is first all-gathered;
//   - a gather through a routing index into a table whose expert axis is
//     split (expert parallelism) sends each token to its expert's device and
//     back: one all-to-all each way.
// Calls are analysed at each call site with their bindings, so one callee
// (a Linear) can be column-parallel at one site and row-parallel at the next.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "ncd/hardware.h"
#include "ncd/ir.h"
#include "ncd/source.h"

namespace ncd {

using CallChain = std::vector<const ir::Op *>;  // call sites from the root diagram, outermost first

struct Collective {
  enum class Kind { AllReduce, ReduceScatter, AllGather, AllToAll };
  Kind kind = Kind::AllReduce;
  int mesh_dim = 0;    // index into the diagram's shards
  int64_t group = 1;   // devices taking part (that mesh dimension's size)
  std::string value;   // the tensor communicated, by name ("%5" for temporaries)
  std::string site;    // call path from the root: "h.attn.c_proj"
  CallChain chain;     // ... as call sites
  const ir::Op *op = nullptr;  // the op it belongs to in the diagram at the end of `chain` (none: an output's)
  std::string reason;  // why, for people
  SourceLocation location;
  // Elements of the whole tensor one group communicates (for an all-gather
  // its gathered result, for a reduction its full sum); 0 when a size is unknown.
  double elements = 0;
  int element_bytes = 4;
  double count = 1;  // times per run of the root (repeat counts multiplied)
  double bytes() const { return elements * element_bytes; }
};
std::string_view collective_name(Collective::Kind kind);  // "all-reduce", ...

// How the plan runs, for whatever executes it (`ncd run --devices`, the CPU
// reference): per operation, reached through a chain of call sites from the
// root, what is communicated and how its results are split.
struct AxisSplit {
  int axis = -1;  // an axis of the value (in the diagram that holds it)
  int mesh = 0;   // the mesh dimension
  // Position i along the axis is held by the device at coordinate
  // ((i / stride) % extent) / (extent / devices) of that dimension: a merged
  // axis `(three, heads, d)` split by heads has stride d and extent heads.
  int64_t stride = 1, extent = 1;
};
struct ShardStep {
  std::vector<std::pair<int, AxisSplit>> gathers;        // before it: operands made whole along an axis
  std::vector<AxisSplit> partial;                         // summed axes held split: each device sums its slice,
                                                          // then all-reduce (or reduce-scatter: see results)
  std::vector<std::pair<int, AxisSplit>> yield_gathers;  // a repeat: yields made whole after each iteration
  std::map<int, std::vector<AxisSplit>> results;          // after it: each result's splits
  // Expert parallelism. A gather from an expert-split table keeps its routing
  // index (`keep`: the runner needs it at the combine); a contraction with
  // its rows sends its other operands to the experts' devices (`dispatch`);
  // where routed rows meet tokens, each comes back from the device of its
  // expert (`combines`: the index's value at the row gives the expert).
  struct Route {
    int value = -1;     // the routed value (at a combine)
    int index = -1;     // the routing index it was gathered through
    AxisSplit experts;  // the table's expert axis, as split
  };
  std::vector<int> keep, dispatch;
  std::vector<Route> combines;
  std::vector<Route> routed;     // results right only on the devices of their rows' experts
  bool undecided_route = false;  // a combine of a value whose route was lost (through a call): not runnable
};
struct ShardingPlan {
  std::vector<int64_t> mesh;  // devices per mesh dimension, outermost first
  int64_t devices = 1;        // their product
  std::vector<Collective> collectives;
  // Work (multiply-adds count 2, other ops 1 per result element), all ranks
  // together and on the busiest rank, for scaling a one-device time.
  double work = 0, rank_work = 0;
  // Memory, forward only, in bytes: params (every instance; each device holds
  // the slices its operations read, whole where one reads it whole) and the
  // peak of live activations (values freed after their last use, a call's
  // inside counted at its peak), on one device and on the busiest rank.
  double param_bytes = 0, rank_param_bytes = 0;
  double activation_peak = 0, rank_activation_peak = 0;
  // One line per decision, in program order, for --explain.
  std::vector<std::string> explain;
  // The plan by operation (ShardStep): keyed by the call chain of its frame and the op.
  std::map<std::pair<CallChain, const ir::Op *>, ShardStep> steps;
  // Params held in slices (an expert table's expert axis left out: the rows
  // routed through it are cut to their experts' devices instead, ShardStep::routed).
  std::map<std::pair<CallChain, int>, std::vector<AxisSplit>> params;
  std::map<int, std::vector<AxisSplit>> inputs, outputs;               // the root's, as they arrive and end
};

// `diagram` is a root diagram of `program` (sizes known); its `shards` give
// the mesh (none: one device, no collectives). `mesh`, when given, replaces
// the devices of its shard lines, one count per line.
ShardingPlan plan_sharding(const ir::Program &program, const ir::Diagram &diagram,
                           const std::vector<int64_t> *mesh = nullptr);

// The standard ring-algorithm time of a collective over `group` devices on
// links of `bandwidth` bytes/s each way and `latency` seconds per step
// (docs/SHARDING.md, "Cost"): all-reduce 2(p-1)/p·n/bw + 2(p-1)·α,
// all-gather and reduce-scatter (p-1)/p·n/bw + (p-1)·α, all-to-all
// (p-1)/p·n/bw + (p-1)·α (pairwise exchange).
double collective_time(const Collective &collective, double bandwidth, double latency);
// Bytes each device sends for one collective under the ring algorithm.
double collective_wire_bytes(const Collective &collective);

// A sharded diagram priced on a profile's interconnect (`ncd cost --devices`).
struct ShardedCost {
  std::vector<int64_t> mesh;
  int64_t devices = 1;
  struct Row {
    Collective collective;
    std::string link;  // the link it runs at ("nvlink", "infiniband")
    double bandwidth = 0, latency = 0;
    double wire_bytes = 0;  // bytes each device sends, once
    double time = 0;        // seconds, once
  };
  std::vector<Row> rows;
  double communication_time = 0;  // all collectives, each times its count
  double one_device_time = 0;     // the diagram's time on one device (the cost report's)
  double rank_share = 1;          // the busiest rank's share of the work (rank_work / work)
  double compute_time = 0;        // one_device_time x rank_share
  double serial_time = 0;         // compute + communication, nothing overlapped
  double overlap_time = 0;        // max(compute, communication): communication hidden behind compute
  double speedup = 1;             // one_device_time / overlap_time
  double efficiency = 1;          // speedup / devices
  // From the plan: bytes of params and of peak activations, one device and per rank.
  double param_bytes = 0, rank_param_bytes = 0, activation_peak = 0, rank_activation_peak = 0;
};
ShardedCost price_sharding(const ShardingPlan &plan, const HardwareProfile &hardware, double one_device_time);
std::string format_sharded_cost(const ShardedCost &cost);

// Why `devices` cannot split a shard line's axes ("4 does not divide the size
// of 'heads' (12)"), or "" when they can.
std::string shard_refusal(const ir::Program &program, const ir::ShardDirective &shard, int64_t devices);

// `ncd cost --sweep devices=FROM..TO`: at each device count, every mesh over
// the diagram's shard lines (devices per line, their product the count, each
// dividing the sizes of the line's axes) is priced, and the fastest kept
// (ties: the first, outer lines taking devices first).
struct DeviceSweepPoint {
  int64_t devices = 1;
  std::optional<ShardedCost> best;  // none when no mesh of this many devices divides the sharded axes
  std::string why;                  // ... and why
  std::vector<std::string> tried;   // each mesh priced, for --explain
};
std::vector<DeviceSweepPoint> sweep_devices(const ir::Program &program, const ir::Diagram &diagram,
                                            const HardwareProfile &hardware, double one_device_time,
                                            const std::vector<int64_t> &counts);
std::string format_device_sweep(const std::vector<DeviceSweepPoint> &points, const std::string &diagram,
                                const std::string &hardware);
// Time (with and without overlap, compute, communication), efficiency and
// memory per device against devices, as an SVG (deterministic, valid XML).
std::string plot_devices_svg(const std::vector<DeviceSweepPoint> &points, const std::string &diagram,
                             const std::string &hardware);

}  // namespace ncd
