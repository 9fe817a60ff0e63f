// The Napkin model of a scheduled kernel ("FlashAttention on a Napkin"): what
// a schedule's tiles keep at each memory level, the traffic between levels,
// compute on tensor and vector units, the closed-form memory formula, and the
// search for the best tiles. Part of the pricer (pricer.h); docs/COST.md.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <set>

#include "cost_format.h"
#include "pricer.h"

namespace ncd {
namespace cost_graph {
namespace {

struct Level {
  Sized read, write;
};

std::string shape_text(const Graph &g, int value, const std::vector<double> *extents) {
  const VValue &v = g.values[static_cast<size_t>(value)];
  std::string out = "[";
  for (size_t i = 0; i < v.axes.size(); ++i) {
    int axis = v.axes[i];
    out += (i ? ", " : "") + g.vaxes[static_cast<size_t>(axis)].name;
    if (extents && i < extents->size()) out += ":" + costfmt::number((*extents)[i]);
  }
  return out + "] " + std::string(ir::dtype_name(v.dtype));
}

}  // namespace

double efficiency(double blocks, int64_t instances) {
  if (blocks <= 0 || instances <= 1) return 1;
  double per_instance = std::ceil(blocks / static_cast<double>(instances));
  return blocks / (static_cast<double>(instances) * per_instance);
}

int64_t occupancy(const HardwareProfile &hardware, double block_bytes, int64_t block_threads) {
  const MemoryLevel &level = hardware.levels[static_cast<size_t>(hardware.tile_level_index())];
  int64_t resident = hardware.max_blocks > 0 ? hardware.max_blocks : std::numeric_limits<int64_t>::max();
  if (block_bytes > 0) resident = std::min<int64_t>(resident, static_cast<int64_t>(std::floor(level.capacity / block_bytes)));
  if (block_threads > 0 && hardware.max_threads > 0) resident = std::min(resident, hardware.max_threads / block_threads);
  return resident == std::numeric_limits<int64_t>::max() ? 0 : resident;
}

bool Pricer::shares_softmax_statistics(const Spec &spec, const VOp &op) const {
  if (op.op->kind != ir::OpKind::Reduce || op.op->function != ops::Fn::LogSumExp || op.operands.empty()) return false;
  for (int j = spec.first; j < spec.last; ++j) {
    const VOp &other = g_.vops[static_cast<size_t>(j)];
    if (spec.online.count(other.op) && other.op->function == ops::Fn::Softmax && !other.operands.empty() &&
        other.operands[0] == op.operands[0] && other.axes == op.axes)
      return true;
  }
  return false;
}

void Pricer::charge(std::map<std::string, Sized> &seconds, const Sized &flops, const Sized &special, const ComputeUnit &unit) const {
  Sized rest = flops;
  if (hw_.special.peak > 0 && special.v > 0) {
    seconds["special"] += special.scaled(1.0 / hw_.special.peak);
    rest = flops + special.scaled(-1);
  }
  if (unit.rate.peak > 0 && (rest.v > 0 || !rest.f.is_zero())) seconds[unit.label()] += rest.scaled(1.0 / unit.rate.peak);
}

Pricer::Spec Pricer::spec_from(const ir::Diagram &diagram, const ir::Schedule &schedule, const ScheduleFacts &facts, int instance,
               int first, int last) {
  Spec spec;
  spec.first = first;
  spec.last = last;
  spec.location = schedule.location;
  spec.diagram = diagram.name;
  spec.target = schedule.target;
  spec.tile_level = facts.tile_level;
  for (auto [axis, amount] : facts.groups) spec.groups[g_.vaxis_of(instance, axis)] = amount;
  for (auto [axis, amount] : facts.streams) spec.streams[g_.vaxis_of(instance, axis)] = amount;
  for (auto [axis, location] : facts.directive) spec.directive[g_.vaxis_of(instance, axis)] = location;
  for (const auto &accumulator : facts.accumulators) {
    std::string &kind = spec.accumulator[g_.vaxis_of(instance, accumulator.axis)];
    if (kind.find(accumulator.kind) == std::string::npos) kind += (kind.empty() ? "" : ", ") + accumulator.kind;
  }
  for (auto [value, level] : facts.residency) spec.residency[g_.storage(g_.value_of(instance, value))] = level;
  for (const ir::ScheduleDirective &directive : schedule.directives)
    if (directive.kind == ir::ScheduleDirective::Kind::Level) {
      int level = hw_.level_index(directive.level);
      if (level >= 0 && !spec.level_directive.count(level)) spec.level_directive[level] = directive.location;
    }
  for_each_op(diagram.body, [&](const ir::Op &op) {
    if (facts.online_softmax.count(op.id)) spec.online.insert(&op);
  });
  // Online softmax inside callees reached through calls.
  for (int i = first; i < last; ++i)
    if (facts.online_softmax.count(g_.vops[static_cast<size_t>(i)].op->id)) spec.online.insert(g_.vops[static_cast<size_t>(i)].op);
  return spec;
}

bool Pricer::written_fits(const ir::Diagram &kernel, const ir::Schedule &written, int instance, int first, int last,
                          const std::function<std::optional<int64_t>(int)> &size) {
  auto facts = check_schedule(p_, kernel, written, hw_, size, d_);
  if (!facts) {
    failed_ = true;
    return false;
  }
  Spec spec = spec_from(kernel, written, *facts, instance, first, last);
  for (int axis : g_.instances[static_cast<size_t>(instance)].lifted)
    if (!spec.groups.count(axis)) spec.groups[axis] = 1;
  for (int output : kernel.outputs) spec.outputs.push_back(g_.storage(g_.value_of(instance, output)));
  KernelCost asked = analyse(spec);
  if (!asked.fits) {
    report_capacity(spec, asked);
    failed_ = true;
    return false;
  }
  return true;
}

std::optional<KernelCost> Pricer::call_kernel(const Row &row, const ir::Diagram &callee, const ir::Schedule &written) {
  int instance = row.instance;
  auto size = [&](int axis) -> std::optional<int64_t> {
    double v = g_.vaxes[static_cast<size_t>(g_.vaxis_of(instance, axis))].size.v;
    if (std::isnan(v)) return std::nullopt;
    return static_cast<int64_t>(std::llround(v));
  };
  // The schedule as written must be legal and fit (the user's contract)
  // before the backend's shape of it is priced.
  if (options_.planner && !written_fits(callee, written, instance, row.first, row.last, size)) return std::nullopt;
  auto planned = plan(callee, written, instance);
  if (!planned) return std::nullopt;
  const ir::Schedule &schedule = planned->schedule;
  auto facts = check_schedule(p_, callee, schedule, hw_, size, d_);
  if (!facts) {
    failed_ = true;
    return std::nullopt;
  }
  Spec spec = spec_from(callee, schedule, *facts, instance, row.first, row.last);
  // The lifted axes: the backend's shape says how many positions a block
  // covers; without one, one kernel per index (grouped by 1).
  const std::vector<int> &lifted = g_.instances[static_cast<size_t>(instance)].lifted;
  for (size_t i = 0; i < lifted.size(); ++i)
    if (!spec.groups.count(lifted[i]))
      spec.groups[lifted[i]] = planned->shape && i < planned->shape->lifted.size() ? planned->shape->lifted[i] : 1;
  if (planned->shape) {
    spec.threads = planned->shape->threads;
    spec.smem = static_cast<double>(planned->shape->smem);
  }
  for (int output : callee.outputs) spec.outputs.push_back(g_.storage(g_.value_of(instance, output)));
  spec.runs = row.repeat;
  auto kernel = analyse(spec);
  if (!kernel.fits) {
    report_capacity(spec, kernel);
    failed_ = true;
    return std::nullopt;
  }
  for (size_t l = 0; l < kernel.traffic.size(); ++l) {
    kernel.traffic[l].read.value *= row.repeat;
    kernel.traffic[l].read.formula = kernel.traffic[l].read.formula.scaled(row.repeat);
    kernel.traffic[l].write.value *= row.repeat;
    kernel.traffic[l].write.formula = kernel.traffic[l].write.formula.scaled(row.repeat);
  }
  kernel.flops = {kernel.flops.value * row.repeat, kernel.flops.formula.scaled(row.repeat)};
  kernel.compute_seconds *= row.repeat;
  kernel.time *= row.repeat;
  kernel.energy *= row.repeat;
  kernel.erased_bits *= row.repeat;
  energy_formula_ = energy_formula_ + kernel_energy_formula_.scaled(row.repeat);
  bits_formula_ = bits_formula_ + kernel_bits_formula_.scaled(row.repeat);
  return kernel;
}

KernelCost Pricer::analyse(const Spec &spec) {
  KernelCost kernel;
  kernel.diagram = spec.diagram;
  kernel.location = spec.location;
  kernel.target = spec.target;
  kernel.tile_level = spec.tile_level;
  size_t levels = hw_.levels.size();
  int tile = std::clamp(spec.tile_level, 0, static_cast<int>(levels) - 1);
  Extents total, step;
  Sized blocks = Sized::of(1);
  for (const auto &[axis, amount] : spec.groups) {
    Sized t{Formula::symbol(tile_symbol(axis)), static_cast<double>(amount)};
    values_[tile_symbol(axis)] = static_cast<double>(amount);
    total[axis] = t;
    step[axis] = t;
    Sized count = divide(g_.full(axis), t);
    blocks = blocks * count;
    Partition partition;
    partition.axis = g_.vaxes[static_cast<size_t>(axis)].name;
    partition.amount = amount;
    partition.count = count.figure();
    partition.symbol = tile_symbol(axis);
    partition.program_axis = g_.vaxes[static_cast<size_t>(axis)].program_axis;
    partition.size = g_.full(axis).v;
    if (auto it = spec.directive.find(axis); it != spec.directive.end())
      partition.location = it->second;
    else
      partition.implicit = true;
    kernel.partitions.push_back(partition);
  }
  std::map<int, Sized> steps;
  for (const auto &[axis, amount] : spec.streams) {
    Sized c{Formula::symbol(chunk_symbol(axis)), static_cast<double>(amount)};
    values_[chunk_symbol(axis)] = static_cast<double>(amount);
    step[axis] = c;
    steps[axis] = divide(g_.full(axis), c);
    Partition partition;
    partition.axis = g_.vaxes[static_cast<size_t>(axis)].name;
    partition.stream = true;
    partition.amount = amount;
    partition.count = steps[axis].figure();
    partition.symbol = chunk_symbol(axis);
    partition.program_axis = g_.vaxes[static_cast<size_t>(axis)].program_axis;
    partition.size = g_.full(axis).v;
    if (auto it = spec.accumulator.find(axis); it != spec.accumulator.end()) partition.accumulator = it->second;
    if (auto it = spec.directive.find(axis); it != spec.directive.end()) partition.location = it->second;
    kernel.partitions.push_back(partition);
  }
  kernel.blocks = blocks.figure();
  // Masked tiles the kernel skips (masked_tiles.cpp).
  const MaskShare mask = mask_share(spec);
  const double kept_share = mask.kept;
  const int masked_stream = mask.stream;
  if (mask.stream >= 0) {
    kernel.mask_tiles = mask.tiles;
    kernel.skipped_tiles = mask.skipped;
    kernel.notes.push_back(mask.note);
  }
  auto along_mask = [&](const VOp &op) {
    if (masked_stream < 0) return false;
    if (contains(op.axes, masked_stream)) return true;
    for (int v : op.operands)
      if (contains(g_.values[static_cast<size_t>(v)].axes, masked_stream)) return true;
    for (int v : op.results)
      if (contains(g_.values[static_cast<size_t>(v)].axes, masked_stream)) return true;
    return false;
  };
  auto residency = [&](int storage) {
    auto it = spec.residency.find(storage);
    return it != spec.residency.end() ? it->second : tile;
  };
  auto bytes_of = [&](int storage) { return static_cast<double>(ir::dtype_bytes(g_.values[static_cast<size_t>(storage)].dtype)); };
  auto inside = [&](int storage) {
    int producer = g_.values[static_cast<size_t>(storage)].producer;
    return producer >= spec.first && producer < spec.last;
  };

  // FLOPs, with recomputation for operations that lack a grouped axis, and
  // each compute unit's time.
  Sized flops = Sized::of(0);
  Formula energy, bits;
  double energy_value = 0, bits_value = 0;
  std::set<std::string> units;
  std::map<std::string, Sized> unit_seconds;
  auto add_flops = [&](const Sized &f, const ComputeUnit &unit, ir::DType dtype, const Sized &special = Sized::of(0)) {
    flops += f;
    charge(unit_seconds, f, special, unit);
    energy = energy + f.f.scaled(unit.rate.energy_per_flop);
    energy_value += f.v * unit.rate.energy_per_flop;
    bits = bits + f.f.scaled(8.0 * ir::dtype_bytes(dtype));
    bits_value += f.v * 8.0 * ir::dtype_bytes(dtype);
    if (f.v > 0) units.insert(unit.label());
  };
  std::vector<Level> traffic(levels);
  Sized top_elements = Sized::of(0);
  std::map<int, std::vector<Read>> input_reads;  // storage → per-block reads (total extents)
  std::map<int, std::vector<Read>> input_steps;  // storage → per-block reads (step extents)
  Sized rescale = Sized::of(0);
  Sized stats_elements = Sized::of(0);
  std::map<int, int> last_use;  // storage → index of the last op that reads it
  for (int i = spec.first; i < spec.last; ++i) {
    const VOp &op = g_.vops[static_cast<size_t>(i)];
    bool free = !op.results.empty();
    for (int result : op.results) free = free && g_.values[static_cast<size_t>(result)].free;
    double repeat = op.repeat / spec.runs;  // iterations of a repeat inside the kernel
    if (!free && along_mask(op)) repeat *= kept_share;
    Sized multiplier = free ? Sized::of(repeat) : blocks.scaled(repeat);
    const Extents &extents = free ? empty_ : total;
    ir::DType dtype = g_.compute_dtype(op);
    ComputeUnit unit = hw_.unit_for(op.op->kind == ir::OpKind::Contract, dtype);
    Sized f = g_.flops(op, extents) * multiplier;
    Sized special = g_.special(op, extents) * multiplier;
    if (!free && shares_softmax_statistics(spec, op)) {
      // The rows' logsumexp of a streamed softmax's operand comes from its running max and sum,
      // m + log l: a log, an add and a scale per row, not a second exp pass over the row.
      const Sized rows = g_.elements_of(op.results[0], total) * multiplier;
      f = rows.scaled(3);
      special = rows;
    }
    if (f.v > 0 || !f.f.is_zero()) add_flops(f, unit, dtype, special);
    if (op.view() || free) continue;
    // The online-softmax rescaling: per step, the accumulators of the
    // contractions it feeds are scaled (1 per element) and the running max
    // and sum are updated (3 per row).
    if (spec.online.count(op.op)) {
      int streamed = -1;
      for (int axis : op.axes)
        if (spec.streams.count(axis)) streamed = axis;
      if (streamed >= 0) {
        int result = op.results[0];
        std::vector<int> rows_axes;
        for (int axis : g_.values[static_cast<size_t>(result)].axes)
          if (axis != streamed) rows_axes.push_back(axis);
        Sized rows = g_.product(rows_axes, total);
        Sized extra = rows.scaled(3);
        for (int j = spec.first; j < spec.last; ++j) {
          const VOp &user = g_.vops[static_cast<size_t>(j)];
          if (contains(user.operands, result)) extra += g_.elements_of(user.results[0], total);
        }
        extra = extra * steps[streamed] * blocks.scaled(repeat * (streamed == masked_stream ? kept_share : 1));
        rescale += extra;
        add_flops(extra, hw_.unit_for(false, ir::DType::F32), ir::DType::F32);
        stats_elements += g_.product(rows_axes, step).scaled(2);
      }
    }
    for (const Read &r : g_.op_reads(op, total)) {
      last_use[r.storage] = i;
      if (!inside(r.storage)) {
        input_reads[r.storage].push_back(r);
        continue;
      }
      int level = residency(r.storage);
      Sized bytes = r.elements.scaled(bytes_of(r.storage)) * multiplier;
      traffic[static_cast<size_t>(level)].read += bytes;
      if (level == 0) top_elements += r.elements * multiplier;
    }
    for (const Read &r : g_.op_reads(op, step))
      if (!inside(r.storage)) input_steps[r.storage].push_back(r);
    for (int result : op.results) {
      int storage = g_.storage(result);
      if (g_.values[static_cast<size_t>(storage)].free) continue;
      int level = residency(storage);
      Sized elements = g_.elements_of(storage, total) * multiplier;
      traffic[static_cast<size_t>(level)].write += elements.scaled(bytes_of(storage));
      if (level == 0) top_elements += elements;
    }
  }
  kernel.rescale_flops = rescale.figure();

  struct Reloaded {
    Sized bytes, once;  // over all blocks, and of one copy
  };
  std::vector<Reloaded> reloaded;
  // Inputs: loaded once per block into their level (the reload multiplicity
  // is the number of groups of the grouped axes they lack), or read at every
  // use when they stay in the top level.
  for (auto &[storage, list] : input_reads) {
    const VValue &value = g_.values[static_cast<size_t>(storage)];
    int level = residency(storage);
    if (level == 0) {
      for (const Read &r : list) {
        traffic[0].read += r.elements.scaled(bytes_of(storage)) * blocks;
        top_elements += r.elements * blocks;
      }
      continue;
    }
    const Read *widest = &list[0];
    for (const Read &r : list)
      if (r.elements.v > widest->elements.v) widest = &r;
    Sized elements = widest->elements * blocks;
    if (masked_stream >= 0 && contains(value.axes, masked_stream)) elements = elements.scaled(kept_share);
    Sized bytes = elements.scaled(bytes_of(storage));
    reloaded.push_back({bytes, divide(bytes, divide(elements, g_.elements_of(storage, empty_)))});
    top_elements += elements;
    traffic[static_cast<size_t>(level)].write += bytes;  // the fill
    TileTransfer transfer;
    transfer.tensor = value.name;
    transfer.shape = shape_text(g_, storage, nullptr);
    transfer.bytes = bytes.figure();
    transfer.reloads = divide(elements, g_.elements_of(storage, empty_)).figure();
    std::string lacks;
    for (const auto &[axis, amount] : spec.groups)
      if (!contains(value.axes, axis) && g_.full(axis).v / static_cast<double>(amount) > 1)
        lacks += (lacks.empty() ? "" : ", ") + g_.vaxes[static_cast<size_t>(axis)].name;
    transfer.why = lacks.empty() ? "once" : "once per group of " + lacks;
    kernel.transfers.push_back(transfer);
  }
  // Outputs: written once to the top level, drained from their level.
  for (int storage : spec.outputs) {
    Sized elements = g_.elements_of(storage, total) * blocks;
    Sized bytes = elements.scaled(bytes_of(storage));
    traffic[0].write += bytes;
    top_elements += elements;
    int level = residency(storage);
    if (level > 0) traffic[static_cast<size_t>(level)].read += bytes;
  }
  // Reuse across blocks: when one copy of every reloaded input fits in a
  // cache between the top and the tile level (L2), concurrent blocks find
  // them there: the top level is read once per input, the cache serves every
  // reload. Otherwise every reload reaches the top level.
  // Inputs are taken smallest first while they fit together (a larger one
  // streams through and leaves the cache to the others).
  int cache = 0;
  std::vector<bool> cached(reloaded.size(), false);
  for (int l = 1; l < tile && !cache; ++l) {
    const MemoryLevel &level = hw_.levels[static_cast<size_t>(l)];
    std::vector<size_t> order;
    for (size_t i = 0; i < reloaded.size(); ++i)
      if (reloaded[i].bytes.v > reloaded[i].once.v * (1 + 1e-9)) order.push_back(i);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return reloaded[a].once.v < reloaded[b].once.v; });
    double once = 0;
    std::string names;
    for (size_t i : order) {
      if (once + reloaded[i].once.v > level.capacity * static_cast<double>(level.fanout)) break;
      once += reloaded[i].once.v;
      cached[i] = true;
      names += (names.empty() ? "" : ", ") + kernel.transfers[i].tensor;
    }
    if (once <= 0) continue;
    cache = l;
    kernel.notes.push_back(names + " (" + costfmt::bytes(once) + ") fit in " + level.name + " (" +
                           costfmt::memory(level.capacity * static_cast<double>(level.fanout)) + "): " + hw_.levels[0].name +
                           " reads " + (order.size() == 1 ? "it" : "each") + " once, " + level.name + " serves the reloads");
  }
  Sized served = Sized::of(0);  // reloads the cache serves
  for (size_t i = 0; i < reloaded.size(); ++i) {
    const Reloaded &r = reloaded[i];
    if (cached[i]) {
      traffic[0].read += r.once;
      served += r.bytes + r.once.scaled(-1);
    } else {
      traffic[0].read += r.bytes;
    }
  }
  // Levels between the top and the tile level pass the top level's traffic through.
  for (int l = 1; l < tile; ++l) {
    traffic[static_cast<size_t>(l)].read += traffic[0].read;
    traffic[static_cast<size_t>(l)].write += traffic[0].write;
    if (cache > 0 && l >= cache) traffic[static_cast<size_t>(l)].read += served;
  }
  for (size_t l = 0; l < levels; ++l) kernel.traffic.push_back({traffic[l].read.figure(), traffic[l].write.figure()});
  kernel.top_elements = top_elements.figure();

  // Memory per block: the widest live set of tiles at each level. Input
  // tiles and accumulators (results of reductions over a streamed axis, the
  // online-softmax statistics) live through the whole kernel; every other
  // tile from the op that writes it to the last op that reads it; outputs
  // until they are written out. Streamed chunks are single-buffered.
  struct Live {
    int level;
    std::string label;
    Sized elements;
    double bytes;
    int start, end;
  };
  std::vector<Live> live;
  std::map<int, LevelMemory> memory;
  int end = spec.last - 1;
  for (auto &[storage, list] : input_steps) {
    const Read *widest = &list[0];
    for (const Read &r : list)
      if (r.elements.v > widest->elements.v) widest = &r;
    live.push_back({residency(storage), g_.values[static_cast<size_t>(storage)].name + " " + shape_text(g_, storage, &widest->extents),
                    widest->elements, bytes_of(storage), spec.first, end});
  }
  std::set<int> held;
  for (int i = spec.first; i < spec.last; ++i) {
    const VOp &op = g_.vops[static_cast<size_t>(i)];
    if (op.view()) continue;
    bool accumulates = false;
    if (op.op->kind == ir::OpKind::Contract || op.op->kind == ir::OpKind::Reduce)
      for (int axis : op.axes) accumulates = accumulates || spec.streams.count(axis) > 0;
    for (int result : op.results) {
      int storage = g_.storage(result);
      if (g_.values[static_cast<size_t>(storage)].free || !held.insert(storage).second) continue;
      bool output = contains(spec.outputs, storage);
      int last = output ? end : last_use.count(storage) ? std::max(last_use[storage], i) : i;
      std::vector<double> extents;
      for (int axis : g_.values[static_cast<size_t>(storage)].axes) extents.push_back(g_.extent(step, axis).v);
      live.push_back({residency(storage), g_.values[static_cast<size_t>(storage)].name + " " + shape_text(g_, storage, &extents),
                      g_.elements_of(storage, step), bytes_of(storage), accumulates ? spec.first : i, last});
    }
  }
  if (stats_elements.v > 0)
    live.push_back({tile, "softmax statistics (running max and sum) f32", stats_elements, 4, spec.first, end});
  std::set<int> held_levels;
  for (const Live &entry : live)
    if (entry.level > 0) held_levels.insert(entry.level);
  for (int level : held_levels) {
    LevelMemory best;
    best.level = level;
    best.bytes.value = -1;
    for (int i = spec.first; i < spec.last; ++i) {
      LevelMemory m;
      m.level = level;
      for (const Live &entry : live) {
        if (entry.level != level || entry.start > i || entry.end < i) continue;
        Sized b = entry.elements.scaled(entry.bytes);
        m.bytes.value += b.v;
        m.bytes.formula += b.f;
        m.elements.value += entry.elements.v;
        m.elements.formula += entry.elements.f;
        m.tiles.push_back({entry.label, b.figure()});
      }
      if (m.bytes.value > best.bytes.value) best = m;
    }
    best.capacity = hw_.levels[static_cast<size_t>(level)].capacity;
    best.fits = best.bytes.value <= best.capacity;
    kernel.fits = kernel.fits && best.fits;
    memory[level] = best;
    kernel.memory.push_back(best);
  }

  // Roofline, parallelism and energy.
  kernel.flops = flops.figure();
  for (const auto &[label, seconds] : unit_seconds) {
    kernel.unit_times.push_back({label, seconds.figure()});
    kernel.compute_seconds = std::max(kernel.compute_seconds, seconds.v);
  }
  kernel.time = kernel.compute_seconds;
  kernel.bound = "compute";
  for (size_t l = 0; l < levels; ++l) {
    double bytes = kernel.traffic[l].read.value + kernel.traffic[l].write.value;
    energy_value += bytes * hw_.levels[l].energy_per_byte;
    energy = energy + (kernel.traffic[l].read.formula + kernel.traffic[l].write.formula).scaled(hw_.levels[l].energy_per_byte);
    if (hw_.levels[l].bandwidth <= 0) continue;
    double t = bytes / hw_.levels[l].bandwidth;
    if (t > kernel.time) kernel.time = t, kernel.bound = hw_.levels[l].name;
  }
  if (spec.smem >= 0) {
    // The backend's block is what runs: its shared memory decides the fit.
    const MemoryLevel &level = hw_.levels[static_cast<size_t>(tile)];
    kernel.fits = spec.smem <= level.capacity;
    for (LevelMemory &m : kernel.memory)
      if (m.level == tile) m.fits = kernel.fits;
    kernel.notes.push_back("as built, a block has " + std::to_string(spec.threads) + " threads and keeps " + costfmt::capacity(spec.smem) +
                           " in " + level.name + " (the tiles above are the model's account of its live values)");
  }
  {
    const MemoryLevel &instances = hw_.levels[static_cast<size_t>(tile)];
    double per_block = spec.smem >= 0 ? spec.smem : memory.count(tile) ? memory[tile].bytes.value : 0;
    kernel.instances = instances.fanout;
    kernel.occupancy = occupancy(hw_, per_block, spec.threads);
    kernel.efficiency = efficiency(kernel.blocks.value, instances.fanout);
    // A busy instance with fewer warps than schedulers leaves some idle.
    if (spec.threads > 0 && hw_.schedulers > 0 && kernel.occupancy > 0) {
      double resident = std::min<double>(static_cast<double>(kernel.occupancy),
                                         std::ceil(kernel.blocks.value / static_cast<double>(std::max<int64_t>(1, instances.fanout))));
      double warps = resident * std::ceil(static_cast<double>(spec.threads) / 32);
      kernel.warp_share = std::min(1.0, warps / static_cast<double>(hw_.schedulers));
      kernel.efficiency *= kernel.warp_share;
    }
    kernel.waves = kernel.occupancy > 0 ? std::ceil(kernel.blocks.value / static_cast<double>(instances.fanout * kernel.occupancy)) : 0;
    kernel.launch = hw_.launch;
    kernel.time = kernel.time / kernel.efficiency + kernel.launch;
  }
  double top = kernel.traffic[0].read.value + kernel.traffic[0].write.value;
  kernel.intensity = top > 0 ? kernel.flops.value / top : 0;
  kernel.energy = energy_value;
  kernel.erased_bits = bits_value;
  kernel_energy_formula_ = energy;
  kernel_bits_formula_ = bits;
  kernel_unit_ = units.size() == 1 ? *units.begin() : units.empty() ? "" : "mixed";

  // The Napkin closed form: square tiles t for every grouped axis, sized so
  // that the leading term of the tile level's memory fills M.
  int element_bytes = 1;
  for (auto &[storage, list] : input_reads)
    element_bytes = std::max(element_bytes, ir::dtype_bytes(g_.values[static_cast<size_t>(storage)].dtype));
  kernel.element_bytes = element_bytes;
  kernel.capacity_elements = hw_.levels[static_cast<size_t>(tile)].capacity / element_bytes;
  values_[kCapacitySymbol] = kernel.capacity_elements;
  closed_form(kernel, spec, memory.count(tile) ? memory[tile].elements.formula : Formula());
  for (const ir::Axis &axis : p_.axes)
    if (axis.size) values_[axis.id] = static_cast<double>(*axis.size);
  kernel.values = values_;
  if (kernel.closed_form) {
    auto value = kernel.closed_form->evaluate([&](int symbol) -> std::optional<double> {
      auto it = values_.find(symbol);
      return it == values_.end() ? std::nullopt : std::optional<double>(it->second);
    });
    kernel.closed_form_value = value ? *value : 0;
  }
  return kernel;
}

void Pricer::closed_form(KernelCost &kernel, const Spec &spec, const Formula &memory) {
  if (spec.groups.empty()) return;
  std::set<int> tiles, chunks;
  for (const auto &[axis, amount] : spec.groups) tiles.insert(tile_symbol(axis));
  for (const auto &[axis, amount] : spec.streams) chunks.insert(chunk_symbol(axis));
  // Axes grouped by 1 (one block per index, like a lifted axis) stay 1.
  std::map<int, Formula> substitution;
  for (const auto &[axis, amount] : spec.groups)
    substitution[tile_symbol(axis)] = amount == 1 ? Formula::constant(1) : Formula::symbol(kSquareTileSymbol);
  auto square = [&](const Formula &formula) {
    return formula.substitute([&](int symbol) {
      auto it = substitution.find(symbol);
      return it != substitution.end() ? it->second : Formula::symbol(symbol);
    });
  };
  Formula leading = memory.filter([&](const Formula::Monomial &monomial, double) {
    for (const auto &[symbol, power] : monomial)
      if (chunks.count(symbol)) return false;
    return true;
  });
  auto squared = square(leading);
  if (!squared || squared->is_zero()) return;
  // The leading term: highest power of t, then highest degree in the axis
  // sizes (a derived axis counts with its definition's degree: model =
  // heads*d is 2). Several leading terms: no single closed form.
  std::function<double(int)> degree_of = [&](int symbol) -> double {
    if (symbol < 0 || symbol >= static_cast<int>(p_.axes.size())) return 0;
    const ir::Axis &axis = p_.axis(symbol);
    if (!axis.derived) return 1;
    double best_degree = 0;
    for (const auto &[monomial, c] : axis.definition.terms()) {
      double d = 0;
      for (auto [base, power] : monomial) d += power * degree_of(base);
      best_degree = std::max(best_degree, d);
    }
    return best_degree;
  };
  const Formula::Monomial *best = nullptr;
  double best_t = 0, best_degree = 0, coefficient = 0;
  int ties = 0;
  for (const auto &[monomial, c] : squared->terms()) {
    double t = Formula::power_of(monomial, kSquareTileSymbol).value();
    double degree = 0;
    for (const auto &[symbol, power] : monomial) degree += power.value() * degree_of(symbol);
    if (!best || t > best_t || (t == best_t && degree > best_degree)) {
      best = &monomial;
      best_t = t;
      best_degree = degree;
      coefficient = c;
      ties = 1;
    } else if (t == best_t && degree == best_degree) {
      ++ties;
    }
  }
  if (ties != 1) return;
  if (!best || best_t <= 0) return;
  // c * X * t^k = M  →  t = (M / (c X))^(1/k)
  Rational k = Formula::power_of(*best, kSquareTileSymbol);
  Formula rest = Formula::constant(coefficient);
  for (const auto &[symbol, power] : *best)
    if (symbol != kSquareTileSymbol) rest = rest * *Formula::symbol(symbol).power(power);
  auto ratio = Formula::symbol(kCapacitySymbol).divide(rest);
  if (!ratio) return;
  auto t = ratio->power(Rational(k.den, k.num));
  if (!t) return;
  auto traffic = square(kernel.top_elements.formula);
  if (!traffic) return;
  auto in_m = traffic->substitute([&](int symbol) {
    return symbol == kSquareTileSymbol ? *t : Formula::symbol(symbol);
  });
  if (!in_m) return;
  kernel.closed_form = *in_m;
  kernel.tile_for_m = *t;
}

void Pricer::report_capacity(const Spec &spec, const KernelCost &kernel) {
  for (const LevelMemory &m : kernel.memory) {
    if (m.fits) continue;
    const MemoryLevel &level = hw_.levels[static_cast<size_t>(m.level)];
    // Point at the `level` directive that placed tiles there, else at the largest group.
    SourceLocation at = spec.location;
    if (auto it = spec.level_directive.find(m.level); it != spec.level_directive.end()) at = it->second;
    else {
      int64_t largest = 0;
      for (const auto &[axis, amount] : spec.groups)
        if (spec.directive.count(axis) && amount > largest) largest = amount, at = spec.directive.at(axis);
    }
    std::string tiles;
    for (const auto &[label, bytes] : m.tiles) tiles += (tiles.empty() ? "" : ", ") + label + " " + costfmt::capacity(bytes.value);
    std::string hint;
    if (auto choice = best_tiles(kernel, hw_, false, false)) {
      for (const auto &[axis, size] : choice->tiles) hint += (hint.empty() ? "" : ", ") + ("group " + axis + " by " + std::to_string(size));
      hint = "; " + hint + " would fit";
    }
    auto &error = d_.error(at, "tile over capacity: a block of this schedule keeps " + costfmt::capacity(m.bytes.value) + " in " +
                                   level.name + ", which holds " + costfmt::memory(level.capacity) +
                                   (level.fanout > 1 ? " per instance (" + std::to_string(level.fanout) + " instances)" : "") +
                                   hint);
    error.notes.push_back({spec.location, "the tiles: " + tiles});
  }
}

}  // namespace cost_graph

std::optional<KernelCost> napkin(const ir::Program &program, const ir::Diagram &diagram, const ir::Schedule &schedule,
                                 const HardwareProfile &hardware, const Backend *planner) {
  SourceManager sources;
  DiagnosticEngine quiet(sources);
  return napkin(program, diagram, schedule, hardware, quiet, planner);
}

std::optional<KernelCost> napkin(const ir::Program &program, const ir::Diagram &diagram, const ir::Schedule &schedule,
                                 const HardwareProfile &hardware, DiagnosticEngine &diagnostics, const Backend *planner) {
  CostOptions options;
  options.schedule = &schedule;
  options.search_tiles = false;
  options.planner = planner;
  auto report = price(program, diagram, hardware, diagnostics, options);
  if (!report || !report->kernel) return std::nullopt;
  return report->kernel;
}

std::optional<TileChoice> best_tiles(const KernelCost &kernel, const HardwareProfile &hardware, bool square, bool traffic,
                                     bool parallelism) {
  struct Axis {
    std::string name;
    int symbol;
    std::vector<int64_t> candidates;
  };
  std::vector<Axis> axes;
  for (const Partition &partition : kernel.partitions) {
    if (partition.stream || partition.implicit) continue;  // lifted axes stay grouped by 1
    Axis axis{partition.axis, partition.symbol, {}};
    int64_t size = static_cast<int64_t>(std::llround(partition.size));
    for (int64_t d = 1; d * d <= size; ++d)
      if (size % d == 0) {
        axis.candidates.push_back(d);
        if (d != size / d) axis.candidates.push_back(size / d);
      }
    std::sort(axis.candidates.begin(), axis.candidates.end());
    axes.push_back(axis);
  }
  if (axes.empty()) return std::nullopt;
  // Keep the search small: powers of two (and the size) when the divisors are many.
  double combinations = 1;
  for (const Axis &axis : axes) combinations *= static_cast<double>(axis.candidates.size());
  if (combinations > 200000)
    for (Axis &axis : axes) {
      std::vector<int64_t> kept;
      for (int64_t c : axis.candidates)
        if ((c & (c - 1)) == 0 || c == axis.candidates.back()) kept.push_back(c);
      axis.candidates = kept;
    }
  combinations = 1;
  for (const Axis &axis : axes) combinations *= static_cast<double>(axis.candidates.size());
  if (combinations > 50000 && !square) return std::nullopt;  // too many to search quickly
  if (square) {
    std::vector<int64_t> common = axes[0].candidates;
    for (const Axis &axis : axes) {
      std::vector<int64_t> both;
      std::set_intersection(common.begin(), common.end(), axis.candidates.begin(), axis.candidates.end(), std::back_inserter(both));
      common = both;
    }
    for (Axis &axis : axes) axis.candidates = common;
  }
  std::map<int, double> values = kernel.values;
  auto eval = [&](const Formula &formula) {
    auto v = formula.evaluate([&](int symbol) -> std::optional<double> {
      auto it = values.find(symbol);
      return it == values.end() ? std::nullopt : std::optional<double>(it->second);
    });
    return v ? *v : std::numeric_limits<double>::infinity();
  };
  std::optional<TileChoice> best;
  std::vector<size_t> index(axes.size(), 0);
  while (true) {
    bool valid = true;
    for (size_t i = 0; i < axes.size(); ++i) {
      if (axes[i].candidates.empty()) {
        valid = false;
        break;
      }
      int64_t pick = square ? axes[0].candidates[index[0]] : axes[i].candidates[index[i]];
      values[axes[i].symbol] = static_cast<double>(pick);
    }
    if (valid) {
      TileChoice choice;
      bool fits = true;
      for (const LevelMemory &m : kernel.memory) {
        double bytes = eval(m.bytes.formula);
        choice.memory.push_back(bytes);
        fits = fits && bytes <= m.capacity;
      }
      if (fits) {
        choice.time = 0;
        for (const auto &[unit, seconds] : kernel.unit_times) choice.time = std::max(choice.time, eval(seconds.formula));
        for (size_t l = 0; l < hardware.levels.size() && l < kernel.traffic.size(); ++l) {
          double bytes = eval(kernel.traffic[l].read.formula) + eval(kernel.traffic[l].write.formula);
          if (l == 0) choice.top_bytes = bytes;
          if (hardware.levels[l].bandwidth > 0) choice.time = std::max(choice.time, bytes / hardware.levels[l].bandwidth);
        }
        // Few blocks leave instances idle: the same parallelism term as the kernel's.
        int tile = std::clamp(kernel.tile_level, 0, static_cast<int>(hardware.levels.size()) - 1);
        if (parallelism)
          choice.time /= cost_graph::efficiency(eval(kernel.blocks.formula), hardware.levels[static_cast<size_t>(tile)].fanout);
        choice.time += kernel.launch;
        for (const Axis &axis : axes) choice.tiles.push_back({axis.name, static_cast<int64_t>(values[axis.symbol])});
        auto key = [&](const TileChoice &c) {
          return traffic ? std::make_pair(c.top_bytes, c.time) : std::make_pair(c.time, c.top_bytes);
        };
        if (!best || key(choice).first < key(*best).first * (1 - 1e-12) ||
            (key(choice).first <= key(*best).first * (1 + 1e-12) && key(choice).second < key(*best).second))
          best = choice;
      }
    }
    // Next combination (square: only the first axis moves).
    size_t dims = square ? 1 : axes.size();
    size_t i = 0;
    while (i < dims) {
      if (++index[i] < axes[i].candidates.size()) break;
      index[i] = 0;
      ++i;
    }
    if (i == dims) break;
  }
  return best;
}

}  // namespace ncd
