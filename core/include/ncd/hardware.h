// Hardware profiles: the memory hierarchy and compute rates the cost model
// prices a diagram on.
//
// Profiles are YAML files (stdlib/hw/*.yaml, or a user's own through
// `--hw FILE.yaml`); the schema is documented in docs/COST.md. A profile lists
// its memory levels from the top (largest, slowest: HBM, DRAM) down to the
// registers, each with a capacity per instance, a fan-out (instances: one per
// SM or core), an aggregate bandwidth towards the level below and an energy per
// byte; and peak throughput and energy per FLOP for each dtype on the tensor
// (matrix) units and on the plain (vector) units.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ncd/diagnostics.h"
#include "ncd/ir.h"
#include "ncd/source.h"

namespace ncd {

struct MemoryLevel {
  std::string name;         // "hbm", "l2", "smem", "registers"
  std::string description;
  double capacity = 0;      // bytes per instance
  int64_t fanout = 1;       // instances (one per SM, per core, ...)
  double bandwidth = 0;     // bytes/s, all instances together, towards the level below; 0: not a bound
  double energy_per_byte = 0;  // joules per byte read from or written to this level
  SourceLocation location;
};

struct ComputeRate {
  double peak = 0;             // FLOP/s (or OP/s for integers)
  double energy_per_flop = 0;  // joules
  SourceLocation location;
};

// The units an operation runs on, as chosen by HardwareProfile::unit_for.
struct ComputeUnit {
  bool tensor = false;         // matrix units (tensor cores, AMX, ...) or vector units
  ir::DType dtype = ir::DType::F32;  // the rate actually used (after any fallback)
  ComputeRate rate;
  std::string label() const;   // "tensor bf16", "vector f32"
};

// A link between devices (docs/SHARDING.md, "Cost"): the bandwidth one device
// sends at, each way, and the latency of one step of a collective.
struct Link {
  std::string name;  // "nvlink", "pcie", "infiniband"
  std::string description;
  double bandwidth = 0;  // bytes/s per device, each direction
  double latency = 0;    // seconds per step
  SourceLocation location;
};

// How devices of this kind are wired into a cluster: `node` of them share the
// intra-node fabric (NVLink through NVSwitch, or PCIe); nodes talk over the
// inter-node network (InfiniBand), one NIC per device.
struct Interconnect {
  int64_t node = 1;  // devices per node
  Link intra_node, inter_node;
  bool present = false;  // the profile has an `interconnect` section
  // The link a collective over `group` devices runs at: a ring that stays in
  // one node runs at the intra-node link; one that spans nodes at the slowest, the network.
  const Link &link_for(int64_t group) const { return group <= node ? intra_node : inter_node; }
};

struct HardwareProfile {
  std::string name;                  // "h100-sxm"
  std::string description;           // "NVIDIA H100 SXM5 80 GB"
  std::string path;                  // the YAML file it was read from
  std::vector<std::string> aliases;  // names a schedule's `for "..."` may use
  std::vector<MemoryLevel> levels;   // top (largest, slowest) first
  std::string tile_level;            // default residency of a schedule's tiles
  std::map<ir::DType, ComputeRate> tensor, vector;
  // Special-function units (exp, tanh, rsqrt, ...): evaluations per second
  // over the whole chip; peak 0 when the profile has none (they then count on
  // the vector units like any FLOP).
  ComputeRate special;
  double launch = 0;                 // seconds each kernel launch costs (0: not modelled)
  // What one instance of the tile level (an SM) holds resident at once; 0: no limit known.
  int64_t max_blocks = 0, max_threads = 0;
  // Warp schedulers per instance: the instance reaches its peak rates only
  // with at least one resident warp per scheduler (0: not modelled).
  int64_t schedulers = 0;
  double temperature = 300;          // kelvin, for the Landauer bound
  Interconnect interconnect;         // how several of these are wired (for sharded diagrams)

  // Index of a level by name, -1 when absent.
  int level_index(std::string_view level) const;
  int tile_level_index() const;
  bool answers_to(std::string_view target) const;  // name or alias
  // Contractions run on tensor units where the profile has a rate for their
  // dtype, everything else on vector units; a dtype the profile lacks falls back
  // to the next wider one (f8 → f16/bf16 → f32).
  ComputeUnit unit_for(bool contraction, ir::DType dtype) const;
};

// Reads a profile from YAML text; reports located errors (the text is added to
// `sources`) and returns nullopt when the profile is malformed.
std::optional<HardwareProfile> parse_hardware(const std::string &text, const std::string &path, SourceManager &sources,
                                              DiagnosticEngine &diagnostics);

// A profile by name (searched as hw/NAME.yaml in the stdlib search path) or by
// path (anything with a '/' or ending in .yaml/.yml).
std::optional<HardwareProfile> load_hardware(const std::string &name_or_path, SourceManager &sources,
                                             DiagnosticEngine &diagnostics);

// The profiles found in the search path, by name, sorted.
std::vector<std::string> hardware_names();

}  // namespace ncd
