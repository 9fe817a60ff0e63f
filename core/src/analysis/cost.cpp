// The cost model: the unfused baseline, the report, and the public entry points
// (the Napkin model of a schedule is napkin.cpp).
//
// A diagram is first flattened into a graph of "virtual" operations: calls are
// inlined through their bindings (a callee axis becomes the caller's axis it
// is bound to, the lifted axes are appended to every value that depends on the
// callee's inputs), repeat bodies are kept once with a multiplier. Values
// crossing a call boundary, and repeat arguments and results, are aliases
// (renamed views of one storage); Access and Merge results are views too. A
// read of a view resolves to the storage it reads and the extent of that
// storage it touches (an affine index x + i touches x + i - 1 rows, a gather
// touches as many rows as it has indices). Every figure is computed as a
// Formula and a number at once (`Sized`).
//
// Preconditions of `price` and `napkin`: the program came out of sema and the
// verifier without errors; every axis the diagram uses has a concrete size
// (otherwise a located error says which).
#include "ncd/cost.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "cost_format.h"
#include "pricer.h"

namespace ncd {
namespace cost_graph {

std::string Pricer::name_of(int symbol) const {
  if (symbol >= 0 && symbol < static_cast<int>(p_.axes.size())) return p_.axis(symbol).name;
  if (symbol == kCapacitySymbol) return "M";
  if (symbol == kSquareTileSymbol) return "t";
  int code = -symbol - 1000;
  if (code >= 0) {
    int vaxis = code / 2;
    std::string axis = vaxis < static_cast<int>(g_.vaxes.size()) ? g_.vaxes[static_cast<size_t>(vaxis)].name : "?";
    return (code % 2 == 0 ? "tile_" : "chunk_") + axis;
  }
  return "?";
}

void Pricer::fill_names(CostReport &report) const {
  for (const ir::Axis &axis : p_.axes) report.names[axis.id] = axis.name;
  report.names[kCapacitySymbol] = "M";
  report.names[kSquareTileSymbol] = "t";
  for (size_t v = 0; v < g_.vaxes.size(); ++v) {
    report.names[tile_symbol(static_cast<int>(v))] = name_of(tile_symbol(static_cast<int>(v)));
    report.names[chunk_symbol(static_cast<int>(v))] = name_of(chunk_symbol(static_cast<int>(v)));
  }
}

// ------------------------------------------------ unfused baseline
OpCost Pricer::leaf(const VOp &op) {
  OpCost cost;
  const Row &row = g_.rows[static_cast<size_t>(op.row)];
  cost.name = row.name;
  cost.what = row.what;
  cost.location = row.location;
  Extents whole;
  Sized flops = g_.flops(op, whole).scaled(op.repeat);
  Sized read = Sized::of(0), write = Sized::of(0);
  if (!op.view()) {
    for (const Read &r : g_.op_reads(op, whole))
      read += r.elements.scaled(ir::dtype_bytes(g_.values[static_cast<size_t>(r.storage)].dtype) * op.repeat);
    for (int result : op.results) {
      const VValue &value = g_.values[static_cast<size_t>(result)];
      if (value.free) continue;
      write += g_.elements_of(result, whole).scaled(ir::dtype_bytes(value.dtype) * op.repeat);
    }
  }
  cost.flops = flops.figure();
  for (size_t l = 0; l < hw_.levels.size(); ++l) cost.traffic.push_back({read.figure(), write.figure()});
  ComputeUnit unit = hw_.unit_for(op.op->kind == ir::OpKind::Contract, g_.compute_dtype(op));
  if (flops.v > 0) cost.unit = unit.label();
  std::map<std::string, Sized> unit_seconds;
  charge(unit_seconds, flops, g_.special(op, whole).scaled(op.repeat), unit);
  for (const auto &[label, seconds] : unit_seconds) cost.compute_time = std::max(cost.compute_time, seconds.v);
  cost.energy = flops.v * unit.rate.energy_per_flop;
  cost.erased_bits = flops.v * 8.0 * ir::dtype_bytes(g_.compute_dtype(op));
  for (size_t l = 0; l < hw_.levels.size(); ++l) cost.energy += (read.v + write.v) * hw_.levels[l].energy_per_byte;
  energy_formula_ = energy_formula_ + flops.f.scaled(unit.rate.energy_per_flop);
  bits_formula_ = bits_formula_ + flops.f.scaled(8.0 * ir::dtype_bytes(g_.compute_dtype(op)));
  for (size_t l = 0; l < hw_.levels.size(); ++l)
    energy_formula_ = energy_formula_ + (read.f + write.f).scaled(hw_.levels[l].energy_per_byte);
  // Every level carries the same bytes here: only the slowest can bound.
  for (const auto &[label, seconds] : unit_seconds) cost.roofline.push_back(seconds.f);
  if (unit_seconds.empty()) cost.roofline.push_back(Formula());
  double slowest = 0;
  for (const MemoryLevel &level : hw_.levels)
    if (level.bandwidth > 0 && (slowest == 0 || level.bandwidth < slowest)) slowest = level.bandwidth;
  if (slowest > 0) cost.roofline.push_back((read.f + write.f).scaled(1.0 / slowest));
  // Each operation that moves or computes anything is a kernel of its own (an
  // ideal one: it fills the machine), launched once per repeat.
  if (!op.view() && read.v + write.v > 0) cost.launch = hw_.launch * op.repeat;
  finish_roofline(cost);
  if (op.op->kind == ir::OpKind::Contract) cost.routing = routing(op, flops);
  bool params_only = !op.view() && !op.results.empty() && (cost.flops.value > 0 || read.v + write.v > 0);
  for (int result : op.results)
    params_only = params_only && static_cast<size_t>(result) < params_only_.size() && params_only_[static_cast<size_t>(result)];
  if (params_only) params_only_ops_.push_back(cost);
  return cost;
}

void Pricer::find_params_only() {
  params_only_.assign(g_.values.size(), 0);
  // 0: depends on an input; 1: on params (and constants) only; 2: constants only.
  auto state = [&](int v) {
    for (int depth = 0; depth < 64 && g_.values[static_cast<size_t>(v)].alias_of >= 0; ++depth)
      v = g_.values[static_cast<size_t>(v)].alias_of;
    const VValue &value = g_.values[static_cast<size_t>(v)];
    if (value.role == VValue::Role::Param || params_only_[static_cast<size_t>(v)]) return 1;
    if (value.free) return 2;
    return 0;
  };
  for (const VOp &op : g_.vops) {
    bool any_param = false, no_input = true;
    for (int operand : op.operands) {
      int s = state(operand);
      no_input = no_input && s != 0;
      any_param = any_param || s == 1;
    }
    if (no_input && any_param)
      for (int result : op.results) params_only_[static_cast<size_t>(result)] = 1;
  }
}

std::optional<Routing> Pricer::routing(const VOp &op, const Sized &flops) {
  const ir::Diagram &diagram = *g_.instances[static_cast<size_t>(op.instance)].diagram;
  auto &index = routing_index_[&diagram];
  if (!index) index = std::make_unique<RoutingIndex>(RoutingIndex{ir::ProducerIndex(diagram), ir::use_counts(diagram)});
  auto routed = ir::routed_operand(diagram, p_, *op.op, index->producers, index->uses);
  if (!routed) return std::nullopt;
  Routing r;
  r.table = diagram.value(routed->table).name;
  r.index = diagram.value(routed->index).name;
  Sized routes = g_.elements_of(g_.value_of(op.instance, routed->index), empty_);
  Sized experts = g_.full(g_.vaxis_of(op.instance, diagram.value(routed->table).axes[routed->expert]));
  r.routes = routes.figure();
  r.experts = experts.figure();
  r.rows_uniform = divide(routes, experts).figure();
  const int table = g_.value_of(op.instance, routed->table);
  r.expert_bytes =
      divide(g_.elements_of(table, empty_), experts).scaled(ir::dtype_bytes(diagram.value(routed->table).dtype)).figure();
  // A top-k index chooses distinct experts for a token: at most one route per token reaches an expert.
  Sized choices = Sized::of(1);
  bool selected = false;
  const ir::Op *producer = index->producers.producer(routed->index);
  if (producer && producer->kind == ir::OpKind::Select && producer->results.size() == 2 &&
      producer->results[1] == routed->index)
  {
    choices = g_.full(g_.vaxis_of(op.instance, producer->axes.at(1)));
    selected = true;
  }
  r.rows_skewed = divide(routes, choices).figure();
  // Each token's choices are distinct and uniform: an expert is missed by a
  // token with probability 1 - choices/experts.
  if (experts.v > 0) {
    double tokens = choices.v > 0 ? routes.v / choices.v : routes.v;
    r.experts_touched = experts.v * (1 - std::pow(std::max(0.0, 1 - choices.v / experts.v), tokens));
  }
  if (selected) r.dense_flops = divide(flops * experts, choices).figure();
  return r;
}

void Pricer::finish_roofline(OpCost &cost) const {
  cost.time = cost.compute_time;
  cost.bound = "compute";
  for (size_t l = 0; l < hw_.levels.size() && l < cost.traffic.size(); ++l) {
    if (hw_.levels[l].bandwidth <= 0) continue;
    double t = (cost.traffic[l].read.value + cost.traffic[l].write.value) / hw_.levels[l].bandwidth;
    if (t > cost.time) {
      cost.time = t;
      cost.bound = hw_.levels[l].name;
    }
  }
  double top = cost.traffic.empty() ? 0 : cost.traffic[0].read.value + cost.traffic[0].write.value;
  cost.intensity = top > 0 ? cost.flops.value / top : 0;
  if (cost.time == 0) cost.bound = "";
  cost.time += cost.launch;
}

// Sums children into an aggregate row (sequential kernels).
OpCost Pricer::aggregate(const std::string &name, const std::string &what, SourceLocation location, std::vector<OpCost> children) {
  OpCost cost;
  cost.name = name;
  cost.what = what;
  cost.location = location;
  cost.traffic.resize(hw_.levels.size());
  std::map<std::string, double> bound_time;
  std::set<std::string> units;
  for (const OpCost &child : children) {
    cost.flops.value += child.flops.value;
    cost.flops.formula += child.flops.formula;
    for (size_t l = 0; l < cost.traffic.size(); ++l) {
      cost.traffic[l].read.value += child.traffic[l].read.value;
      cost.traffic[l].read.formula += child.traffic[l].read.formula;
      cost.traffic[l].write.value += child.traffic[l].write.value;
      cost.traffic[l].write.formula += child.traffic[l].write.formula;
    }
    cost.compute_time += child.compute_time;
    cost.time += child.time;
    cost.energy += child.energy;
    cost.erased_bits += child.erased_bits;
    if (!child.bound.empty()) bound_time[child.bound] += child.time;
    if (!child.unit.empty()) units.insert(child.unit);
  }
  double best = -1;
  for (auto &[bound, t] : bound_time)
    if (t > best) best = t, cost.bound = bound;
  cost.unit = units.size() == 1 ? *units.begin() : units.empty() ? "" : "mixed";
  double top = cost.traffic.empty() ? 0 : cost.traffic[0].read.value + cost.traffic[0].write.value;
  cost.intensity = top > 0 ? cost.flops.value / top : 0;
  cost.children = std::move(children);
  return cost;
}

std::optional<OpCost> Pricer::price_row(int row_id) {
  const Row &row = g_.rows[static_cast<size_t>(row_id)];
  if (row.vop >= 0) {
    const VOp &op = g_.vops[static_cast<size_t>(row.vop)];
    if (op.hidden()) return std::nullopt;
    return leaf(op);
  }
  if (row.call && options_.use_schedules) {
    const ir::Diagram &callee = *p_.diagrams[static_cast<size_t>(row.call->callee)];
    if (const ir::Schedule *schedule = choose_schedule(callee)) {
      declined_.clear();
      auto kernel = call_kernel(row, callee, *schedule);
      if (!kernel && declined_.empty()) return std::nullopt;
      if (!kernel) {
        // The backend runs the operations as separate kernels: price them so.
        std::vector<OpCost> children;
        for (int child : row.children)
          if (auto cost = price_row(child)) children.push_back(std::move(*cost));
        return aggregate(row.name, row.what + " (not one kernel: " + declined_ + ")", row.location, std::move(children));
      }
      OpCost cost;
      cost.name = row.name;
      cost.what = row.what + " (fused kernel)";
      cost.location = row.location;
      cost.kernel = true;
      cost.flops = kernel->flops;
      cost.traffic = kernel->traffic;
      cost.compute_time = kernel->compute_seconds;
      cost.time = kernel->time;
      cost.bound = kernel->bound;
      cost.energy = kernel->energy;
      cost.erased_bits = kernel->erased_bits;
      cost.unit = kernel_unit_;
      cost.efficiency = kernel->efficiency;
      cost.launch = kernel->launch * row.repeat;
      for (const auto &[unit, seconds] : kernel->unit_times) cost.roofline.push_back(seconds.formula.scaled(row.repeat));
      for (size_t l = 0; l < hw_.levels.size(); ++l)
        if (hw_.levels[l].bandwidth > 0)
          cost.roofline.push_back((cost.traffic[l].read.formula + cost.traffic[l].write.formula).scaled(1.0 / hw_.levels[l].bandwidth));
      double top = cost.traffic[0].read.value + cost.traffic[0].write.value;
      cost.intensity = top > 0 ? cost.flops.value / top : 0;
      return cost;
    }
  }
  std::vector<OpCost> children;
  for (int child : row.children)
    if (auto cost = price_row(child)) children.push_back(std::move(*cost));
  return aggregate(row.name, row.what, row.location, std::move(children));
}

const ir::Schedule *Pricer::choose_schedule(const ir::Diagram &diagram) const {
  const ir::Schedule *untargeted = nullptr;
  for (const ir::Schedule &schedule : diagram.schedules) {
    if (!schedule.target.empty() && hw_.answers_to(schedule.target)) return &schedule;
    if (schedule.target.empty() && !untargeted) untargeted = &schedule;
  }
  if (untargeted) return untargeted;
  return diagram.schedules.empty() ? nullptr : &diagram.schedules.front();
}

// ------------------------------------------------ the whole report
std::optional<CostReport> Pricer::run(const ir::Diagram &diagram) {
  CostReport report;
  report.diagram = diagram.name;
  report.module = diagram.module;
  report.location = diagram.location;
  report.hardware = hw_.name;
  report.hardware_description = hw_.description;
  for (const auto &level : hw_.levels) {
    report.levels.push_back(level.name);
    report.bandwidths.push_back(level.bandwidth);
  }
  // The axes the diagram's values use.
  std::set<int> used;
  for (const VValue &value : g_.values)
    for (int axis : value.axes)
      for (int symbol : g_.vaxes[static_cast<size_t>(axis)].size.f.symbols())
        if (symbol >= 0) used.insert(symbol);
  for (int axis : used)
    if (auto size = p_.axis(axis).size) report.sizes.push_back({p_.axis(axis).name, *size});

  find_params_only();
  params_only_ops_.clear();
  for (int row : g_.top_rows)
    if (auto cost = price_row(row)) report.ops.push_back(std::move(*cost));
  if (failed_) return std::nullopt;
  report.total = aggregate("total", "", diagram.location, report.ops);
  report.total.children.clear();
  if (!params_only_ops_.empty()) report.params_only = aggregate("params only", "", diagram.location, params_only_ops_);
  report.energy = make_energy(report.total.energy, report.total, energy_formula_, report.total.erased_bits);
  report.energy.erased_bits_formula = bits_formula_;

  const ir::Schedule *schedule = options_.schedule ? options_.schedule : options_.use_schedules ? choose_schedule(diagram) : nullptr;
  std::optional<Planned> planned;
  if (schedule && options_.planner) {
    // The schedule as written must be legal and fit before its shape is priced.
    auto size = [&](int axis) -> std::optional<int64_t> { return p_.axis(axis).size; };
    if (!written_fits(diagram, *schedule, 0, 0, static_cast<int>(g_.vops.size()), size)) return std::nullopt;
  }
  if (schedule) {
    declined_.clear();
    planned = plan(diagram, *schedule, 0);
    if (!planned) report.declined = declined_;
  }
  if (planned) {
    auto size = [&](int axis) -> std::optional<int64_t> { return p_.axis(axis).size; };
    auto facts = check_schedule(p_, diagram, planned->schedule, hw_, size, d_);
    if (!facts) return std::nullopt;
    Spec spec = spec_from(diagram, planned->schedule, *facts, 0, 0, static_cast<int>(g_.vops.size()));
    if (planned->shape) {
      spec.threads = planned->shape->threads;
      spec.smem = static_cast<double>(planned->shape->smem);
    }
    for (int output : diagram.outputs) spec.outputs.push_back(g_.storage(g_.value_of(0, output)));
    KernelCost kernel = analyse(spec);
    if (!kernel.fits) {
      report_capacity(spec, kernel);
      return std::nullopt;
    }
    OpCost as_op;
    as_op.traffic = kernel.traffic;
    report.kernel_energy = make_energy(kernel.energy, as_op, kernel_energy_formula_, kernel.erased_bits);
    report.kernel_energy->erased_bits_formula = kernel_bits_formula_;
    if (options_.search_tiles)
      if (auto choice = best_tiles(kernel, hw_, false, false)) {
        report.best_tiles = choice->tiles;
        report.best_time = choice->time;
        report.best_top_bytes = choice->top_bytes;
      }
    report.kernel = std::move(kernel);
  }
  fill_names(report);
  return report;
}

Energy Pricer::make_energy(double total, const OpCost &traffic, const Formula &formula, double erased_bits) const {
  Energy energy;
  energy.temperature = hw_.temperature;
  energy.total = total;
  energy.formula = formula;
  double levels_total = 0;
  for (size_t l = 0; l < hw_.levels.size(); ++l) {
    double bytes = l < traffic.traffic.size() ? traffic.traffic[l].read.value + traffic.traffic[l].write.value : 0;
    energy.levels.push_back(bytes * hw_.levels[l].energy_per_byte);
    levels_total += energy.levels.back();
  }
  energy.compute = total - levels_total;
  energy.erased_bits = erased_bits;
  energy.landauer = energy.erased_bits * kBoltzmann * hw_.temperature * std::log(2.0);
  energy.ratio = energy.landauer > 0 ? total / energy.landauer : 0;
  return energy;
}

}  // namespace cost_graph

using cost_graph::Pricer;

std::string CostReport::name_of(int symbol) const {
  auto it = names.find(symbol);
  return it == names.end() ? "?" : it->second;
}

std::string CostReport::text(const Formula &formula) const {
  return formula.to_string([&](int symbol) { return name_of(symbol); });
}

std::optional<CostReport> price(const ir::Program &program, const ir::Diagram &diagram, const HardwareProfile &hardware,
                                DiagnosticEngine &diagnostics, const CostOptions &options) {
  Pricer pricer(program, hardware, diagnostics, options);
  if (!pricer.build(diagram)) return std::nullopt;
  return pricer.run(diagram);
}

std::optional<CostReport> price(const ir::Program &program, const ir::Diagram &diagram, const HardwareProfile &hardware,
                                const CostOptions &options) {
  SourceManager sources;
  DiagnosticEngine quiet(sources);  // collected and dropped: never printed
  return price(program, diagram, hardware, quiet, options);
}

}  // namespace ncd
