// Pass `tile`: chooses group and stream sizes for every kernel with the cost
// model on the target hardware, and writes them into its schedule.
//
// Preconditions: a verified diagram; kernels are diagrams with a schedule
// (made by `fuse`, or `stream`, or written by the user); a hardware profile
// is given (`--hw`); `PassContext::planner`, when set, is the backend that
// builds kernels for it (ncd/kernel_plan.h). For each such diagram:
//   - grouped axes: the axes every output carries that no operation sums,
//     reduces or normalises over (and that are not streamed);
//   - streamed axes: those `stream` chose, and, in a kernel with none, the
//     axis its contraction sums (a matmul streams its inner dimension);
//   - stream chunks are tried among 16, 32, 64 and 128 (those dividing the
//     axis), each with the group tiles `best_tiles` finds and with the same
//     rows on every grouped axis from 256 down to 16 (multiples of 16, the
//     tensor cores' fragment edge, that divide the axis); each candidate is
//     priced as the planner's backend builds it, and what is written is that
//     shape, so `emit` builds what was announced. A kernel that runs lifted
//     is first chosen without the parallelism term (its lifted positions add
//     blocks its own sizes do not show).
// Then, from a diagram nothing calls, each kernel's tiles and chunks are
// tried again one directive at a time among the sizes the backend builds as
// asked, keeping what makes the whole diagram fastest (in context); and where
// a kernel's tiles do not fit at a call, its groups are halved.
// A kernel with nothing to group keeps an empty schedule (one block per
// position of the axes it is lifted over).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>

#include "ncd/cost.h"
#include "ncd/hardware.h"
#include "ncd/ir_edit.h"
#include "ncd/pass_manager.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

constexpr int64_t kFragment = 16;
constexpr int64_t kMaxRows = 256;

int64_t round_tile(int64_t tile, int64_t size) {
  tile = std::min(tile, std::min(size, kMaxRows));
  for (int64_t t = tile - tile % kFragment; t >= kFragment; t -= kFragment)
    if (size % t == 0) return t;
  for (int64_t t = tile; t >= 1; --t)
    if (size % t == 0) return t;
  return 1;
}

class Tile : public Pass {
 public:
  std::string name() const override { return "tile"; }
  std::string description() const override {
    return "Choose group and stream sizes with the cost model (within capacity, tensor-core multiples)";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result = tile(program, diagram, context);
    if (context.hardware && fit_in_context(program, diagram, context)) result.changed = true;
    if (context.hardware && refine_in_context(program, diagram, context)) result.changed = true;
    return result;
  }

 private:
  // Whether `kernel` runs lifted: some diagram calls it lifted over axes of
  // its own, or calls it from a diagram that runs lifted.
  static bool runs_lifted(const ir::Program &program, const ir::Diagram &kernel, std::set<const ir::Diagram *> &seen) {
    if (!seen.insert(&kernel).second) return false;
    bool lifted = false;
    for (const auto &caller : program.diagrams)
      ir::for_each_op(caller->body, [&](const ir::Op &op) {
        if (lifted || op.kind != ir::OpKind::Call || op.callee < 0 ||
            program.diagrams[static_cast<size_t>(op.callee)].get() != &kernel)
          return;
        lifted = !op.lifted.empty() || runs_lifted(program, *caller, seen);
      });
    return lifted;
  }

  static bool called(const ir::Program &program, const ir::Diagram &diagram) {
    bool found = false;
    for (const auto &caller : program.diagrams)
      ir::for_each_op(caller->body, [&](const ir::Op &op) {
        if (op.kind == ir::OpKind::Call && op.callee >= 0 && program.diagrams[static_cast<size_t>(op.callee)].get() == &diagram)
          found = true;
      });
    return found;
  }

  // A kernel called lifted was tiled at its own sizes, where its lifted
  // positions do not show. From a diagram nothing calls, try each of its
  // tiles and chunks again (one directive at a time, among the sizes the
  // backend builds as asked) and keep what makes the whole diagram fastest.
  static bool refine_in_context(ir::Program &program, ir::Diagram &root, PassContext &context) {
    if (called(program, root)) return false;
    const HardwareProfile &hardware = *context.hardware;
    CostOptions options;
    options.planner = context.planner;
    options.search_tiles = false;
    auto total = [&]() {
      auto report = price(program, root, hardware, options);
      return report ? report->total.time : std::numeric_limits<double>::infinity();
    };
    double best = total();
    if (!std::isfinite(best)) return false;
    bool changed = false;
    for (ir::Diagram *kernel : reachable_diagrams(program, root)) {
      if (kernel == &root || kernel->schedules.empty()) continue;
      ir::Schedule &schedule = kernel->schedules.front();
      bool moved = false;
      for (ir::ScheduleDirective &directive : schedule.directives) {
        if (directive.kind == ir::ScheduleDirective::Kind::Level) continue;
        auto size = program.size(directive.axis);
        if (!size) continue;
        const bool group = directive.kind == ir::ScheduleDirective::Kind::Group;
        std::set<int64_t> candidates;
        for (int64_t c : group ? std::vector<int64_t>{16, 32, 64, 128, 256} : std::vector<int64_t>{16, 32, 64, 128})
          if (group) candidates.insert(round_tile(c, *size));
          else if (c <= *size && *size % c == 0) candidates.insert(c);
        const int64_t original = directive.amount;
        int64_t chosen = original;
        for (int64_t c : candidates) {
          if (c == original) continue;
          directive.amount = c;
          // Only sizes the backend builds as asked: the schedule stays what is emitted.
          auto built = napkin(program, *kernel, schedule, hardware, context.planner);
          bool as_asked = built.has_value();
          if (built)
            for (const Partition &partition : built->partitions)
              if (partition.program_axis == directive.axis && partition.stream == !group) as_asked = as_asked && partition.amount == c;
          if (!as_asked) continue;
          double t = total();
          if (t < best * (1 - 1e-9)) best = t, chosen = c;
        }
        directive.amount = chosen;
        moved = moved || chosen != original;
      }
      if (!moved) continue;
      changed = true;
      std::string tiles;
      for (const auto &directive : schedule.directives)
        if (directive.kind != ir::ScheduleDirective::Kind::Level)
          tiles += (tiles.empty() ? "" : ", ") +
                   std::string(directive.kind == ir::ScheduleDirective::Kind::Group ? "group " : "stream ") +
                   program.axis(directive.axis).name + " by " + std::to_string(directive.amount);
      char time[64];
      std::snprintf(time, sizeof time, "%.3g us", best * 1e6);
      context.note(kernel->location, "tiles of '" + kernel->name + "' where '" + root.name + "' calls it: " + tiles + "; '" +
                                         root.name + "' predicted " + time);
    }
    return changed;
  }

  // Tiles chosen at a kernel's own sizes may not fit where it is called (other
  // sizes through bindings, lifted axes): price `diagram` with everything it
  // calls, and while the model refuses a kernel's schedule here, halve that
  // kernel's group tiles, or drop its schedule when they cannot shrink.
  static bool fit_in_context(ir::Program &program, ir::Diagram &diagram, PassContext &context) {
    const HardwareProfile &hardware = *context.hardware;
    bool changed = false;
    for (int attempt = 0; attempt < 64; ++attempt) {
      CostOptions options;
      options.planner = context.planner;
      if (price(program, diagram, hardware, options)) return changed;
      ir::Diagram *culprit = nullptr;
      for (ir::Diagram *kernel : reachable_diagrams(program, diagram)) {
        if (kernel->schedules.empty()) continue;
        auto saved = std::move(kernel->schedules);
        kernel->schedules.clear();
        bool fits = price(program, diagram, hardware, options).has_value();
        kernel->schedules = std::move(saved);
        if (fits) {
          culprit = kernel;
          break;
        }
      }
      if (!culprit) return changed;  // something else stops the model; `ncd cost` will say what
      changed = true;
      bool shrunk = false;
      std::string tiles;
      for (auto &directive : culprit->schedules.front().directives) {
        if (directive.kind != ir::ScheduleDirective::Kind::Group || directive.amount <= 1) continue;
        int64_t size = program.size(directive.axis).value_or(1);
        int64_t smaller = round_tile(std::max<int64_t>(1, directive.amount / 2), size);
        if (smaller >= directive.amount) continue;
        directive.amount = smaller;
        shrunk = true;
        tiles += (tiles.empty() ? "" : ", ") + program.axis(directive.axis).name + " by " + std::to_string(smaller);
      }
      if (!shrunk) {
        culprit->schedules.clear();
        context.note(culprit->location, "dropped the schedule of '" + culprit->name + "': no tiles fit where '" +
                                            diagram.name + "' calls it");
        continue;
      }
      context.note(culprit->location, "re-tiled '" + culprit->name + "' (group " + tiles + ") to fit where '" +
                                          diagram.name + "' calls it");
    }
    return changed;
  }

  static PassResult tile(ir::Program &program, ir::Diagram &diagram, PassContext &context) {
    PassResult result;
    if (diagram.schedules.empty()) return result;
    if (!context.hardware) {
      result.declined = "no tiles chosen for '" + diagram.name + "': no hardware profile (give --hw)";
      return result;
    }
    const HardwareProfile &hardware = *context.hardware;
    ir::Schedule &schedule = diagram.schedules.front();
    // A kernel called lifted runs its blocks once per lifted position, which
    // its own sizes do not show: its tiles are then chosen without the
    // parallelism term (idle instances at its own size are filled by the
    // lifted positions); `ncd cost` prices it where it is called.
    std::set<const ir::Diagram *> seen;
    const bool lifted = runs_lifted(program, diagram, seen);
    auto seconds = [&](const KernelCost &kernel) {
      return lifted ? (kernel.time - kernel.launch) * kernel.efficiency + kernel.launch : kernel.time;
    };
    if (schedule.target.empty()) schedule.target = hardware.name;
    std::set<int> consumed;  // summed, reduced, normalised or scanned
    const ir::Op *contraction = nullptr;
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Contract || op.kind == ir::OpKind::Reduce || op.kind == ir::OpKind::Normalize ||
          op.kind == ir::OpKind::Scan)
        consumed.insert(op.axes.begin(), op.axes.end());
      if (op.kind == ir::OpKind::Contract && !contraction) contraction = &op;
    });
    std::set<int> streamed;
    for (const auto &directive : schedule.directives)
      if (directive.kind == ir::ScheduleDirective::Kind::Stream) streamed.insert(directive.axis);
    if (streamed.empty() && contraction && !contraction->axes.empty()) {
      ir::ScheduleDirective directive;
      directive.kind = ir::ScheduleDirective::Kind::Stream;
      directive.axis = contraction->axes.front();
      directive.amount = program.size(directive.axis).value_or(1);
      directive.location = contraction->location;
      schedule.directives.push_back(directive);
      streamed.insert(directive.axis);
    }
    std::vector<int> grouped;
    if (!diagram.outputs.empty()) {
      for (int axis : diagram.value(diagram.outputs[0]).axes) {
        bool everywhere = true;
        for (int output : diagram.outputs) {
          const auto &axes = diagram.value(output).axes;
          everywhere = everywhere && std::find(axes.begin(), axes.end(), axis) != axes.end();
        }
        if (everywhere && !consumed.count(axis) && !streamed.count(axis)) grouped.push_back(axis);
      }
    }
    // Batch axes: grouped axes that two operands of the contraction carry (attention's heads), where
    // a row axis is carried by one. A tensor-core tile acts on the row axes; a batch axis takes one
    // position per block, and a tile of 16 heads in the model's account would refuse a schedule the
    // backend builds.
    std::set<int> batch;
    if (contraction)
      for (int axis : grouped) {
        int carriers = 0;
        for (int operand : contraction->operands) {
          const auto &axes = diagram.value(operand).axes;
          carriers += std::find(axes.begin(), axes.end(), axis) != axes.end();
        }
        if (carriers >= 2) batch.insert(axis);
      }
    // Drop group directives the user or an earlier run wrote; this pass owns them.
    std::erase_if(schedule.directives,
                  [](const ir::ScheduleDirective &d) { return d.kind == ir::ScheduleDirective::Kind::Group; });
    for (int axis : grouped) {
      ir::ScheduleDirective directive;
      directive.kind = ir::ScheduleDirective::Kind::Group;
      directive.axis = axis;
      // Start small so the first pricing fits (the model refuses tiles over capacity).
      directive.amount = batch.count(axis) ? 1 : round_tile(kFragment, program.size(axis).value_or(1));
      directive.location = diagram.location;
      schedule.directives.insert(schedule.directives.begin(), directive);
    }
    // Candidate chunks for each streamed axis.
    struct Priced {
      ir::Schedule schedule;
      double time, bytes, efficiency;
    };
    std::vector<Priced> priced;
    std::vector<int64_t> chunks = {16, 32, 64, 128};
    std::vector<ir::ScheduleDirective *> streams;
    for (auto &directive : schedule.directives)
      if (directive.kind == ir::ScheduleDirective::Kind::Stream) streams.push_back(&directive);
    std::vector<std::vector<int64_t>> options;
    for (auto *directive : streams) {
      int64_t size = program.size(directive->axis).value_or(1);
      std::vector<int64_t> fitting;
      for (int64_t c : chunks)
        if (c <= size && size % c == 0) fitting.push_back(c);
      if (fitting.empty()) fitting.push_back(size);
      options.push_back(fitting);
    }
    std::vector<size_t> pick(streams.size(), 0);
    for (;;) {
      ir::Schedule candidate = schedule;
      size_t s = 0;
      for (auto &directive : candidate.directives)
        if (directive.kind == ir::ScheduleDirective::Kind::Stream) {
          directive.amount = options[s][pick[s]];
          ++s;
        }
      if (auto first = napkin(program, diagram, candidate, hardware, context.planner)) {
        // Group tiles to price: the Napkin search's choice (for a
        // contraction: reuse bought with bigger tiles), and the same rows on
        // every grouped axis from 16 to the maximum; each is priced as the
        // backend builds it.
        std::vector<ir::Schedule> tries;
        if (!grouped.empty()) {
          if (auto tiles = contraction ? best_tiles(*first, hardware, false, false, !lifted) : std::nullopt) {
            ir::Schedule searched = candidate;
            for (auto &directive : searched.directives) {
              if (directive.kind != ir::ScheduleDirective::Kind::Group) continue;
              for (const auto &[name, tile] : tiles->tiles)
                if (name == program.axis(directive.axis).name)
                  directive.amount = round_tile(tile, program.size(directive.axis).value_or(1));
            }
            tries.push_back(searched);
          }
          for (int64_t rows = kMaxRows; rows >= kFragment; rows /= 2) {
            ir::Schedule uniform = candidate;
            for (auto &directive : uniform.directives)
              if (directive.kind == ir::ScheduleDirective::Kind::Group && !batch.count(directive.axis))
                directive.amount = round_tile(rows, program.size(directive.axis).value_or(1));
            tries.push_back(uniform);
          }
        } else {
          tries.push_back(candidate);
        }
        for (const ir::Schedule &trial : tries) {
          auto final_price = napkin(program, diagram, trial, hardware, context.planner);
          if (!final_price || !final_price->fits) continue;
          double bytes = final_price->traffic.empty()
                             ? 0
                             : final_price->traffic[0].read.value + final_price->traffic[0].write.value;
          // The schedule as the backend builds it (its tiles, not the asked ones).
          ir::Schedule built = trial;
          if (context.planner) {
            std::erase_if(built.directives,
                          [](const ir::ScheduleDirective &d) { return d.kind != ir::ScheduleDirective::Kind::Level; });
            std::vector<ir::ScheduleDirective> tiles;
            for (const Partition &partition : final_price->partitions) {
              if (partition.implicit || partition.program_axis < 0) continue;
              ir::ScheduleDirective directive;
              directive.kind = partition.stream ? ir::ScheduleDirective::Kind::Stream : ir::ScheduleDirective::Kind::Group;
              directive.axis = partition.program_axis;
              directive.amount = partition.amount;
              directive.location = partition.location.valid() ? partition.location : diagram.location;
              tiles.push_back(directive);
            }
            built.directives.insert(built.directives.begin(), tiles.begin(), tiles.end());
          }
          priced.push_back({built, seconds(*final_price), bytes, final_price->efficiency});
        }
      }
      size_t i = 0;
      while (i < pick.size() && ++pick[i] == options[i].size()) pick[i++] = 0;
      if (i == pick.size()) break;
    }
    // Least time; within 1 % of it, least top-level traffic (the model cannot
    // see L2 absorbing reloads, so fewer is the safer choice), then least time.
    std::optional<ir::Schedule> best;
    double best_time = 0;
    if (!priced.empty()) {
      double fastest = priced.front().time;
      for (const auto &p : priced) fastest = std::min(fastest, p.time);
      // Ties (within 1 % and the same traffic): the one that keeps more of
      // the machine busy (a model error then costs less), then the larger
      // tiles and chunks, fewer steps and blocks for the same predicted work.
      auto extent = [](const ir::Schedule &s) {
        double product = 1;
        for (const auto &d : s.directives)
          if (d.kind != ir::ScheduleDirective::Kind::Level) product *= static_cast<double>(d.amount);
        return product;
      };
      const Priced *chosen = nullptr;
      for (const auto &p : priced)
        if (p.time <= fastest * 1.01 &&
            (!chosen || p.bytes < chosen->bytes * (1 - 1e-9) ||
             (p.bytes <= chosen->bytes * (1 + 1e-9) &&
              (p.efficiency > chosen->efficiency + 1e-9 ||
               (p.efficiency >= chosen->efficiency - 1e-9 && extent(p.schedule) > extent(chosen->schedule))))))
          chosen = &p;
      best = chosen->schedule;
      best_time = chosen->time;
    }
    if (!best) {
      // An unscheduled kernel diagram is priced and run operation by operation.
      diagram.schedules.clear();
      context.note(diagram.location, "no tiles of '" + diagram.name + "' fit " + hardware.name +
                                         "; its schedule is dropped (its operations run as separate kernels)");
      result.changed = true;
      return result;
    }
    schedule = *best;
    std::string chosen;
    for (const auto &directive : schedule.directives) {
      if (directive.kind == ir::ScheduleDirective::Kind::Level) continue;
      chosen += (chosen.empty() ? "" : ", ") +
                std::string(directive.kind == ir::ScheduleDirective::Kind::Group ? "group " : "stream ") +
                program.axis(directive.axis).name + " by " + std::to_string(directive.amount);
    }
    char time[64];
    std::snprintf(time, sizeof time, "%.3g us", best_time * 1e6);
    context.note(diagram.location, "tiles of '" + diagram.name + "' on " + hardware.name + ": " +
                                       (chosen.empty() ? "none (one block per lifted position)" : chosen) +
                                       "; predicted " + time);
    result.changed = true;
    return result;
  }
};

int register_tile(Registry *registry) { return registry->add_pass(std::make_unique<Tile>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_tile, "pass-tile", "1.0.0", "Pass tile: cost-driven tile sizes", register_tile)
