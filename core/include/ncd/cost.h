// The cost model: FLOPs, bytes per memory level, roofline time and energy of a
// diagram on a hardware profile, as numbers and as formulas in the axis sizes.
//
// Two models (docs/COST.md states both with their assumptions):
//   - unfused baseline: every operation reads its inputs from the top level
//     (HBM, DRAM) and writes its outputs there, each its own kernel;
//   - Napkin model of a schedule (Abbott & Zardini, "FlashAttention on a
//     Napkin", TMLR 2025): the diagram is one fused kernel; group partitions
//     give each block a tile of the grouped axes, stream partitions make it loop
//     over chunks of a consumed axis with an accumulator; each input crosses
//     into the tile level once per block that needs it (its size times its
//     reload multiplicity: the number of groups of the grouped axes it lacks),
//     outputs are written once, and a block's memory is the sum of its tiles.
//
// This is the SDK the optimizer's tile pass calls: `napkin` prices a candidate
// schedule and `best_tiles` searches tile sizes with the same formulas.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ncd/diagnostics.h"
#include "ncd/formula.h"
#include "ncd/hardware.h"
#include "ncd/ir.h"
#include "ncd/registry.h"

namespace ncd {

// A figure: its value for the current sizes and its formula in the axis sizes
// (and, under a schedule, the tile sizes).
struct Figure {
  double value = 0;
  Formula formula;
};

// Bytes read from and written to one memory level.
struct Traffic {
  Figure read, write;
};

// A routed contraction (ncd/routing.h: a mixture of experts): the rows its
// experts multiply and how routing can spread them (docs/COST.md, "Mixtures
// of experts"). The operation's FLOPs are the routed work; its weight bytes
// are those of every expert that can receive a row, min(routes, experts).
struct Routing {
  std::string table, index;  // the experts' table and the routing index, by name
  Figure routes;             // positions of the index: the rows multiplied in all
  Figure experts;            // positions of the table's expert axis
  Figure rows_uniform;       // rows per expert when routing is uniform: routes / experts
  // Rows of the busiest expert when routing is as skewed as it can be: every
  // token choosing it (routes / choices per token for a top-k index, all routes otherwise).
  Figure rows_skewed;
  double experts_touched = 0;  // expected experts receiving a row at uniform routing (their weights are read)
  Figure expert_bytes;         // one expert's slice of the table: weights read per expert reached
  // The same contraction computing every expert for every token, when the
  // index is a top-k selection (the dense equivalent); value 0 otherwise.
  Figure dense_flops;
};

struct OpCost {
  std::string name;      // the result's name ("S", "%5"), or the callee / "repeat"
  std::string what;      // "contract sum[d]", "call Attention[q = s] over heads", "repeat 12"
  SourceLocation location;
  Figure flops;
  std::vector<Traffic> traffic;  // one per level of the profile, top first
  double intensity = 0;          // FLOP per byte at the top level (0 when there is no traffic)
  std::string unit;              // "tensor bf16", "vector f32", "mixed", "" (no arithmetic)
  std::string bound;             // "compute" or a level's name
  double compute_time = 0;       // seconds: FLOPs / peak
  double time = 0;               // seconds: the roofline, max(compute, each level's bytes / bandwidth)
  double energy = 0;             // joules
  double erased_bits = 0;        // for the Landauer bound
  bool kernel = false;           // a call priced as its callee's scheduled kernel
  std::vector<OpCost> children;  // a call's callee ops, a repeat's body ops
  // The roofline's terms in seconds, as formulas: each compute unit's, then
  // each level with a bandwidth (time = their max / efficiency + launch).
  // Empty for sums of operations (their time is the sum of the children's).
  std::vector<Formula> roofline;
  double efficiency = 1;  // the share of the machine a kernel's blocks keep busy (docs/COST.md, "Parallelism")
  double launch = 0;      // seconds of launch overhead included in `time`
  std::optional<Routing> routing;  // a routed contraction
};

struct TileTransfer {  // one tensor entering the tile level from the top level
  std::string tensor;
  std::string shape;   // "[k, d] bf16"
  Figure bytes;        // over all blocks
  Figure reloads;      // its reload multiplicity
  std::string why;     // "once per group of q" / "once"
};

struct LevelMemory {  // what one block keeps at one level
  int level = -1;
  Figure bytes;                 // per block (per instance of the level)
  Figure elements;
  double capacity = 0;          // bytes per instance
  bool fits = true;
  std::vector<std::pair<std::string, Figure>> tiles;  // "Q [q:128, d:64] bf16" → bytes
};

struct Partition {
  std::string axis;
  bool stream = false;
  int64_t amount = 0;
  Figure count;             // groups (group) or steps per block (stream)
  std::string accumulator;  // stream: "online softmax", "sum (contraction)", …
  SourceLocation location;
  bool implicit = false;    // a lifted axis of a called kernel, grouped by 1 (no directive)
  int symbol = 0;           // the formula symbol of its tile (group) or chunk (stream)
  int program_axis = -1;    // the IR axis (ir::Program::axes) it partitions, -1 for none
  double size = 0;          // the axis size
};

struct KernelCost {
  std::string diagram;
  SourceLocation location;      // the schedule block
  std::string target;           // its `for "..."`
  std::vector<Partition> partitions;
  Figure blocks;                // number of blocks (thread blocks, cores' work items)
  int tile_level = -1;
  std::vector<TileTransfer> transfers;
  std::vector<Traffic> traffic;      // per level, top first
  std::vector<LevelMemory> memory;   // levels that hold tiles
  bool fits = true;
  Figure flops;
  Figure rescale_flops;              // online-softmax rescaling (included in flops)
  // Seconds on each compute unit ("tensor bf16", "vector f32", "special"),
  // as formulas and numbers; units overlap, so compute_seconds is the largest.
  std::vector<std::pair<std::string, Figure>> unit_times;
  double compute_seconds = 0;
  // Parallelism (docs/COST.md): blocks resident per instance of the tile level
  // (from its capacity and the profile's occupancy limits), waves of them, and
  // the efficiency: the busiest instance's share of the work against an even
  // spread, blocks / (instances x ceil(blocks / instances)).
  int64_t instances = 1;             // of the tile level (SMs, cores)
  int64_t occupancy = 0;
  double waves = 0;
  double efficiency = 1;
  // Of the efficiency: the share of an instance's warp schedulers the
  // resident warps of the backend's blocks occupy (1 when not known).
  double warp_share = 1;
  double launch = 0;                 // seconds per run
  double time = 0;                   // max(compute, levels) / efficiency + launch
  // (group tile, stream chunk) pairs of a masked kernel, and those its mask
  // keeps nothing of (skipped; 0 and 0 without a mask of axis indices).
  double mask_tiles = 0, skipped_tiles = 0;
  std::string bound;
  double intensity = 0;
  double energy = 0;
  double erased_bits = 0;
  Figure top_elements;               // top-level traffic in elements, as the Napkin model counts it (every reload, before reuse in a cache)
  // The Napkin closed form: top-level traffic (elements) with square tiles of
  // the best size for M, the tile level's capacity in elements.
  std::optional<Formula> closed_form;
  Formula tile_for_m;                // the square tile as a formula in M
  double capacity_elements = 0;      // M
  int element_bytes = 2;             // bytes per element used for M
  double closed_form_value = 0;
  // Symbol values (axis sizes, tiles, chunks, M) and names, for evaluating the formulas.
  std::map<int, double> values;
  std::vector<std::string> notes;    // caveats worth reading next to the figures
};

struct Energy {
  double compute = 0;           // joules
  std::vector<double> levels;   // joules per level, top first
  double total = 0;
  Formula formula;              // joules, in the axis sizes
  double erased_bits = 0;       // bits the computation erases (docs/COST.md)
  Formula erased_bits_formula;
  double landauer = 0;          // joules: erased_bits · k·T·ln 2
  double ratio = 0;             // total / landauer
  double temperature = 300;
};

struct CostReport {
  std::string diagram;
  std::string module;
  SourceLocation location;
  std::string hardware;                 // profile name
  std::string hardware_description;
  std::vector<std::string> levels;      // level names, top first
  std::vector<double> bandwidths;       // bytes/s per level (0: not a bound)
  std::vector<std::pair<std::string, int64_t>> sizes;  // the axes the diagram uses
  std::vector<OpCost> ops;              // the unfused baseline, one per operation
  OpCost total;                         // baseline totals
  // The part of the totals that reads params and no input (a weight's
  // quantization, a transposed copy): work a deployment does once, when it
  // loads the params; its operations as children. Absent when there is none.
  std::optional<OpCost> params_only;
  Energy energy;                        // baseline energy
  std::optional<KernelCost> kernel;     // the diagram under its schedule
  std::string declined;                 // why the backend does not build the schedule as one kernel ("" when it does)
  std::optional<Energy> kernel_energy;
  std::optional<std::vector<std::pair<std::string, int64_t>>> best_tiles;  // group tiles minimising time
  double best_time = 0;
  double best_top_bytes = 0;
  std::map<int, std::string> names;     // formula symbol → name
  std::string name_of(int symbol) const;
  std::string text(const Formula &formula) const;  // formula in names
};

struct CostOptions {
  bool use_schedules = true;              // price scheduled diagrams (and called ones) as fused kernels
  const ir::Schedule *schedule = nullptr; // price with this schedule instead of the diagram's own
  bool search_tiles = true;               // fill CostReport::best_tiles
  // The backend that builds the kernels (Registry::planner_for): each
  // scheduled kernel is priced as the shape it answers (ncd/kernel_plan.h),
  // and one it declines as its separate operations. nullptr: as scheduled.
  const Backend *planner = nullptr;
};

// Prices `diagram`; schedule errors (illegal partitions, tiles over capacity)
// go to `diagnostics` with their locations and make the result nullopt.
std::optional<CostReport> price(const ir::Program &program, const ir::Diagram &diagram, const HardwareProfile &hardware,
                                DiagnosticEngine &diagnostics, const CostOptions &options = {});

// The same, quietly: nullopt when the schedule is illegal (for passes that try candidates).
std::optional<CostReport> price(const ir::Program &program, const ir::Diagram &diagram, const HardwareProfile &hardware,
                                const CostOptions &options = {});

// The FLOPs of `diagram` as `price` counts them without schedules (every op
// once, repeats multiplied), on no hardware; nullopt when an axis has no size.
// Defined in flop_count.cpp.
std::optional<double> count_flops(const ir::Program &program, const ir::Diagram &diagram);

// The Napkin model of one schedule (which need not be in the IR yet): per-level
// traffic and memory as numbers and formulas. Errors go to `diagnostics`; the
// overload without it is quiet.
// With a `planner`, the schedule is priced as the shape that backend builds.
std::optional<KernelCost> napkin(const ir::Program &program, const ir::Diagram &diagram, const ir::Schedule &schedule,
                                 const HardwareProfile &hardware, DiagnosticEngine &diagnostics,
                                 const Backend *planner = nullptr);
std::optional<KernelCost> napkin(const ir::Program &program, const ir::Diagram &diagram, const ir::Schedule &schedule,
                                 const HardwareProfile &hardware, const Backend *planner = nullptr);

// Tile sizes for the grouped axes of a priced kernel, searched over the divisors
// of each axis: the feasible choice with the least time (ties: least top-level
// traffic). `square` keeps all group tiles equal; `traffic` minimises top-level
// traffic instead of time. Returns axis name → tile, or nullopt if nothing fits.
struct TileChoice {
  std::vector<std::pair<std::string, int64_t>> tiles;
  double time = 0;
  double top_bytes = 0;
  std::vector<double> memory;  // bytes per block at each level of KernelCost::memory
};
std::optional<TileChoice> best_tiles(const KernelCost &kernel, const HardwareProfile &hardware, bool square = false,
                                     bool traffic = false, bool parallelism = true);

// Reports as text (for people) and JSON (schema "ncd-cost" version kCostJsonVersion, docs/COST.md).
inline constexpr int kCostJsonVersion = 4;
std::string format_report(const CostReport &report, const SourceManager &sources);
std::string report_json(const CostReport &report, const SourceManager &sources);

// A sweep: the report at each value of the swept axes.
struct SweepPoint {
  std::vector<std::pair<std::string, int64_t>> values;  // swept axis → size
  CostReport report;
};
std::string format_sweep(const std::vector<SweepPoint> &points);
std::string sweep_json(const std::vector<SweepPoint> &points, const SourceManager &sources);

// SVG: a roofline chart with each operation (or kernel) placed on it, and, for a
// sweep, time / FLOPs / bytes against size. Deterministic and valid XML.
std::string plot_svg(const CostReport &report, const HardwareProfile &hardware, const std::vector<SweepPoint> *sweep);

}  // namespace ncd
