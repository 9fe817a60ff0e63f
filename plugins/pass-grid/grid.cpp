// Pass `grid`: recomputes score grids per tile instead of writing them.
//
// Preconditions: a verified diagram; a hardware profile and the backend that
// builds kernels for it (`PassContext::planner`; without one the pass does
// nothing and says so). A score grid (ncd/ir_grid.h: values on [a, b]
// computed from contractions of two tensors through elementwise work, summed
// away only by contractions over a or over b, as in attention's backward
// pass) becomes one kernel per summed axis, `<Diagram>_grid<N>`, that
// recomputes its share of the grid tile by tile: its schedule groups the
// other axis and streams the summed one (`tile` chooses the sizes). For the
// gradient of attention this is FlashAttention-2's backward: dK and dV over a
// block of keys streaming the queries, dQ over a block of queries streaming
// the keys. A grid is formed only when the backend accepts each of its
// kernels (asked on a copy of the diagram). Runs before `stream`, so that
// the forward pass a gradient recomputes (softmax and logsumexp of the same
// scores) streams on its own once the grid's kernels are out, and before
// `fuse`, which leaves these kernels whole.
#include "ncd/ir_edit.h"
#include "ncd/ir_grid.h"
#include "ncd/ir_kernel.h"
#include "ncd/kernel_plan.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

class GridPass : public Pass {
 public:
  std::string name() const override { return "grid"; }
  std::string description() const override {
    return "Recompute score grids per tile instead of writing them (attention's backward: FlashAttention-2's kernels)";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    const std::set<int> recomputed = ir::recomputed_ops(diagram);
    if (ir::is_grid_kernel(diagram, recomputed)) return result;
    int number = 0;
    for (ir::Grid &grid : ir::find_grids(diagram, recomputed)) {
      const ir::Op *seed = nullptr;  // the grid's first op, where the notes point
      for (const auto &op : diagram.body.ops)
        if (!seed && grid.kernels.front().ops.count(op->id)) seed = op.get();
      std::string what = "the [";
      for (int axis : diagram.value(seed->results.at(0)).axes)
        what += (what.back() == '[' ? "" : ", ") + program.axis(axis).name;
      what += "] grid of " + ir::value_label(diagram, seed->results.at(0));
      std::string why;
      if (!accepted(program, diagram, grid, recomputed, context, why)) {
        context.note(seed->location, what + " is not recomputed per tile: " + why);
        continue;
      }
      const SourceLocation location = seed->location;
      ir::separate(diagram, grid);
      std::string summary;
      for (const ir::GridKernel &kernel : grid.kernels) {
        std::vector<ir::Op *> ops;
        for (const auto &op : diagram.body.ops)
          if (kernel.ops.count(op->id)) ops.push_back(op.get());
        ir::KernelDraft draft = ir::draft_kernel(program, diagram, ops, recomputed, "grid", ++number);
        draft.kernel->schedules.push_back(schedule(kernel, draft.kernel->location, context));
        summary += std::string(summary.empty() ? "" : "; ") + draft.kernel->name + " grouping " +
                   program.axis(kernel.group).name + " and streaming " + program.axis(kernel.stream).name;
        ir::install_kernel(program, diagram, std::move(draft), ops);
      }
      context.note(location, what + " is recomputed per tile instead of written whole: " + summary);
      result.changed = true;
    }
    if (!result.changed) return result;
    // The grid's own ops that only its kernels read are left unused.
    for (bool removed = true; removed;) {
      auto used = ir::users(diagram);
      auto escaping = ir::escaping_values(diagram);
      removed = ir::erase_ops(diagram.body, [&](const ir::Op &op) {
                  if (op.kind == ir::OpKind::Call || op.kind == ir::OpKind::Repeat) return false;
                  for (int value : op.results)
                    if (used.count(value) || escaping.count(value)) return false;
                  return true;
                }) > 0;
    }
    ir::topological_sort(diagram);
    return result;
  }

 private:
  // Groups the other axis and streams the summed one; the sizes are placeholders `tile` replaces.
  static ir::Schedule schedule(const ir::GridKernel &kernel, const SourceLocation &location, const PassContext &context) {
    ir::Schedule schedule;
    schedule.target = context.hardware ? context.hardware->name : "";
    schedule.location = location;
    schedule.directives.push_back({ir::ScheduleDirective::Kind::Group, kernel.group, 64, {}, {}, location});
    schedule.directives.push_back({ir::ScheduleDirective::Kind::Stream, kernel.stream, 64, {}, {}, location});
    return schedule;
  }

  // Whether the backend builds every kernel of the grid (asked on a copy of the diagram).
  static bool accepted(const ir::Program &program, const ir::Diagram &diagram, ir::Grid grid,
                       const std::set<int> &recomputed, const PassContext &context, std::string &why) {
    if (!context.planner || !context.hardware) {
      why = "no backend builds kernels for the hardware profile";
      return false;
    }
    auto trial = ir::clone_diagram(diagram, diagram.name);
    ir::separate(*trial, grid);
    for (const ir::GridKernel &kernel : grid.kernels) {
      std::vector<ir::Op *> ops;
      for (const auto &op : trial->body.ops)
        if (kernel.ops.count(op->id)) ops.push_back(op.get());
      ir::KernelDraft draft = ir::draft_kernel(program, *trial, ops, recomputed, "grid", 0);
      ir::Schedule schedule = GridPass::schedule(kernel, draft.kernel->location, context);
      KernelQuery query;
      query.program = &program;
      query.kernel = draft.kernel.get();
      query.schedule = &schedule;
      query.size = [&](int axis) { return program.size(axis); };
      query.hardware = context.hardware;
      if (!context.planner->plan_kernel(query, why)) return false;
    }
    return true;
  }
};

int register_grid(Registry *registry) { return registry->add_pass(std::make_unique<GridPass>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_grid, "pass-grid", "1.0.0", "Pass grid: score grids recomputed per tile", register_grid)
