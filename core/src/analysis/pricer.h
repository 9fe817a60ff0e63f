// The cost model's pricer (core/src/analysis/cost.cpp, napkin.cpp): prices the
// flattened graph of cost_graph.h, op by op for the unfused baseline (cost.cpp)
// and kernel by kernel for a schedule, by the Napkin model (napkin.cpp).
// Private to the cost model.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "cost_graph.h"
#include "ncd/cost.h"
#include "ncd/routing.h"
#include "ncd/schedule_check.h"

namespace ncd::cost_graph {

// The share of the machine a kernel of `blocks` keeps busy on `instances`
// (SMs): the busiest instance runs ceil(blocks / instances) blocks' work.
double efficiency(double blocks, int64_t instances);
// Blocks resident at once on one instance of the tile level: limited by its
// capacity, the profile's occupancy limits and the block's threads (0: unknown).
int64_t occupancy(const HardwareProfile &hardware, double block_bytes, int64_t block_threads);

class Pricer {
 public:
  Pricer(const ir::Program &program, const HardwareProfile &hardware, DiagnosticEngine &diagnostics,
         const CostOptions &options)
      : p_(program), hw_(hardware), d_(diagnostics), options_(options), g_(program) {}

  bool build(const ir::Diagram &diagram) {
    g_.build(diagram);
    // Every axis needs a size.
    std::set<int> missing;
    for (const VValue &value : g_.values)
      for (int axis : value.axes)
        if (std::isnan(g_.vaxes[static_cast<size_t>(axis)].size.v))
          for (int symbol : g_.vaxes[static_cast<size_t>(axis)].size.f.symbols())
            if (symbol >= 0 && !p_.axis(symbol).size) missing.insert(symbol);
    for (int axis : missing) {
      const ir::Axis &a = p_.axis(axis);
      d_.error(a.location, "axis '" + a.name + "' has no size; ncd cost needs every size: give one with -D " + a.name + "=N");
    }
    return missing.empty();
  }

  std::string name_of(int symbol) const;

  void fill_names(CostReport &report) const;

  // ------------------------------------------------ unfused baseline

  OpCost leaf(const VOp &op);
  // The routing figures of a routed contraction (ncd/routing.h), if `op` is one.
  std::optional<Routing> routing(const VOp &op, const Sized &flops);

  // Adds `flops` (of which `special` evaluations) to the seconds of the units
  // that run them: special functions on the special-function units when the
  // profile has them, the rest on `unit`.
  void charge(std::map<std::string, Sized> &seconds, const Sized &flops, const Sized &special, const ComputeUnit &unit) const;

  void finish_roofline(OpCost &cost) const;

  // Sums children into an aggregate row (sequential kernels).
  OpCost aggregate(const std::string &name, const std::string &what, SourceLocation location, std::vector<OpCost> children);

  std::optional<OpCost> price_row(int row_id);

  const ir::Schedule *choose_schedule(const ir::Diagram &diagram) const;

  // ------------------------------------------------ the Napkin model

  struct Spec {
    std::map<int, int64_t> groups, streams;  // vaxis → amount
    std::map<int, SourceLocation> directive;  // vaxis → its directive
    std::map<int, std::string> accumulator;  // streamed vaxis → kind
    std::map<int, int> residency;            // storage → level
    std::map<int, SourceLocation> level_directive;  // level → a `level` directive naming it
    int tile_level = 1;
    std::set<const ir::Op *> online;
    int first = 0, last = 0;
    std::vector<int> outputs;  // storages written to the top level
    double runs = 1;           // times the kernel runs (a call inside `repeat N`); figures are per run
    int64_t threads = 0;       // per block, from the backend's shape (0: unknown)
    double smem = -1;          // bytes per block, from the backend's shape (-1: the model's tiles)
    SourceLocation location;
    std::string diagram, target;
  };

  Spec spec_from(const ir::Diagram &diagram, const ir::Schedule &schedule, const ScheduleFacts &facts, int instance,
                 int first, int last);
  // Whether `op` is a logsumexp of the operand of a softmax the kernel streams online, along the same
  // axes: the kernel finishes it from the softmax's running max and sum.
  bool shares_softmax_statistics(const Spec &spec, const VOp &op) const;

  std::optional<KernelCost> call_kernel(const Row &row, const ir::Diagram &callee, const ir::Schedule &schedule);

  // Whether `written` is legal and its tiles fit at `instance` (ops first..last),
  // reporting why not; checked before a backend's shape of it is priced.
  bool written_fits(const ir::Diagram &kernel, const ir::Schedule &written, int instance, int first, int last,
                    const std::function<std::optional<int64_t>(int)> &size);

  // The schedule the planner's backend builds for `schedule` of `kernel` at
  // `instance`, and its shape; without a planner, the schedule as written.
  // nullopt, with declined_ set, when the backend runs the operations apart.
  struct Planned {
    ir::Schedule schedule;
    std::optional<KernelShape> shape;
  };
  std::optional<Planned> plan(const ir::Diagram &kernel, const ir::Schedule &schedule, int instance);
  std::string declined_;

  // The share of a kernel's (tile, chunk) pairs its mask of axis indices can
  // keep, the streamed axis it skips along (-1: none) and a note for the report.
  struct MaskShare {
    double kept = 1;
    int stream = -1;
    double tiles = 0, skipped = 0;
    std::string note;
  };
  MaskShare mask_share(const Spec &spec);

  std::string kernel_unit_;
  Formula kernel_energy_formula_, kernel_bits_formula_;

  KernelCost analyse(const Spec &spec);

  void closed_form(KernelCost &kernel, const Spec &spec, const Formula &memory);

  void report_capacity(const Spec &spec, const KernelCost &kernel);

  // ------------------------------------------------ the whole report

  std::optional<CostReport> run(const ir::Diagram &diagram);

  Energy make_energy(double total, const OpCost &traffic, const Formula &formula, double erased_bits) const;

  const ir::Program &p_;
  const HardwareProfile &hw_;
  DiagnosticEngine &d_;
  CostOptions options_;
  Graph g_;
  Extents empty_;
  bool failed_ = false;
  Formula energy_formula_, bits_formula_;
  std::map<int, double> values_;
  // Per diagram, what recognising its routed contractions needs (built once).
  struct RoutingIndex {
    ir::ProducerIndex producers;
    std::vector<int> uses;
  };
  std::map<const ir::Diagram *, std::unique_ptr<RoutingIndex>> routing_index_;
  // Per value: computed from params (and constants) alone, no input; the leaf ops computing such values.
  std::vector<char> params_only_;
  std::vector<OpCost> params_only_ops_;
  void find_params_only();
};

}  // namespace ncd::cost_graph
