// Score grids: finding them, and giving each of their kernels its own copy of
// the grid ops it recomputes (ncd/ir_grid.h).
#include "ncd/ir_grid.h"

#include <algorithm>
#include <map>

#include "ncd/ir_edit.h"

namespace ncd::ir {

namespace {

bool has_axis(const Value &value, int axis) {
  return std::find(value.axes.begin(), value.axes.end(), axis) != value.axes.end();
}

bool sums(const Op &op, int axis) { return std::find(op.axes.begin(), op.axes.end(), axis) != op.axes.end(); }

// The grid a contraction `seed` starts (a = the axis only its first operand
// has, b = the one only its second has), or nothing.
struct Found {
  int a = -1, b = -1;
  std::set<int> region;     // grid ops
  std::set<int> consumers;  // contractions that sum a or b away
  std::set<int> epilogues;  // copies of a consumer's result, its only user
  bool shared = false;      // other ops read grid values (streamable reductions of one grid axis)
};

class Finder {
 public:
  Finder(const Diagram &d, const std::set<int> &recomputed) : d_(d), index_(d), recomputed_(recomputed) {
    for (const auto &op : d.body.ops) {
      by_id_[op->id] = op.get();
      for (int operand : op->operands) users_[operand].push_back(op.get());
      if (op->body)
        for_each_op(*op->body, [&](const Op &inner) {
          for (int operand : inner.operands) users_[operand].push_back(op.get());
        });
    }
    escaping_ = escaping_values(d);
  }

  std::optional<Found> grow(const Op &seed) const {
    if (seed.kind != OpKind::Contract) return std::nullopt;
    std::vector<int> tensors;
    for (int operand : seed.operands)
      if (!d_.value(operand).axes.empty()) tensors.push_back(operand);
    if (tensors.size() != 2) return std::nullopt;
    Found grid;
    grid.a = only_axis(tensors[0], tensors[1], seed);
    grid.b = only_axis(tensors[1], tensors[0], seed);
    if (grid.a < 0 || grid.b < 0) return std::nullopt;
    const Value &result = d_.value(seed.results.at(0));
    if (!has_axis(result, grid.a) || !has_axis(result, grid.b)) return std::nullopt;
    // Grow both ways: users that stay on the grid, and grid-shaped operands'
    // producers (another contraction of inputs, such as dP = dO·V).
    std::vector<const Op *> work{&seed};
    grid.region.insert(seed.id);
    while (!work.empty()) {
      const Op *op = work.back();
      work.pop_back();
      for (int operand : op->operands) {
        const Op *producer = index_.producer(operand);
        if (!producer || recomputed_.count(producer->id) || grid.region.count(producer->id)) continue;
        if (!on_grid(operand, grid)) continue;  // a row or column vector, a scalar: an operand of the kernel
        if (!grid_op(*producer, grid)) return std::nullopt;
        grid.region.insert(producer->id);
        work.push_back(producer);
      }
      for (int value : op->results) {
        if (escaping_.count(value)) return std::nullopt;  // the grid would be written whole
        auto it = users_.find(value);
        if (it == users_.end()) continue;
        for (const Op *user : it->second) {
          if (grid.region.count(user->id) || grid.consumers.count(user->id)) continue;
          if (grid_op(*user, grid)) {
            grid.region.insert(user->id);
            work.push_back(user);
          } else if (consumer(*user, grid)) {
            grid.consumers.insert(user->id);
          } else if (streamable(*user, grid)) {
            grid.shared = true;
          } else {
            return std::nullopt;  // a call, an access, a reduction over both axes...: not a grid this way
          }
        }
      }
    }
    if (grid.consumers.empty()) return std::nullopt;
    // A copy of a consumer's result (the gradient's `d_Q = t35`) is written by its kernel.
    for (int id : grid.consumers) {
      int value = by_id_.at(id)->results.at(0);
      auto it = users_.find(value);
      if (it == users_.end() || it->second.size() != 1 || escaping_.count(value)) continue;
      const Op *user = it->second.front();
      if (user->kind == OpKind::Elementwise && ops::info(user->function).kind == ops::Kind::Cast &&
          user->operands.size() == 1 && user->results.size() == 1)
        grid.epilogues.insert(user->id);
    }
    return grid;
  }

  // The kernel of the consumers that sum `axis`: them, and the grid ops they need.
  GridKernel kernel(const Found &grid, int axis) const {
    GridKernel kernel;
    kernel.stream = axis;
    kernel.group = axis == grid.a ? grid.b : grid.a;
    std::vector<int> work;
    for (int id : grid.consumers)
      if (sums(*by_id_.at(id), axis)) {
        kernel.ops.insert(id);
        work.push_back(id);
      }
    for (int id : grid.epilogues) {
      const Op *copy = by_id_.at(id);
      const Op *source = index_.producer(copy->operands[0]);
      if (source && kernel.ops.count(source->id)) kernel.ops.insert(id);
    }
    while (!work.empty()) {
      const Op *op = by_id_.at(work.back());
      work.pop_back();
      for (int operand : op->operands) {
        const Op *producer = index_.producer(operand);
        if (producer && grid.region.count(producer->id) && kernel.ops.insert(producer->id).second) {
          kernel.recomputes.insert(producer->id);
          work.push_back(producer->id);
        }
      }
    }
    return kernel;
  }

  // A kernel must not read a value computed from its own results (it would
  // have to run before itself).
  // In a shared grid the kernel recomputes copies of the grid ops, so only
  // its own ops (sums and their copies) can have values computed from them.
  bool convex(const GridKernel &kernel, bool shared) const {
    std::set<int> downstream;
    std::vector<int> work;
    for (int id : kernel.ops)
      if (!shared || !kernel.recomputes.count(id))
        for (int value : by_id_.at(id)->results) work.push_back(value);
    while (!work.empty()) {
      int value = work.back();
      work.pop_back();
      auto it = users_.find(value);
      if (it == users_.end()) continue;
      for (const Op *user : it->second) {
        if (kernel.ops.count(user->id) || !downstream.insert(user->id).second) continue;
        for (int result : user->results) work.push_back(result);
      }
    }
    for (int id : kernel.ops)
      for (int operand : by_id_.at(id)->operands) {
        const Op *producer = index_.producer(operand);
        if (producer && !kernel.ops.count(producer->id) && downstream.count(producer->id)) return false;
      }
    return true;
  }

 private:
  // The one axis of `x` that `y` lacks and `op` does not sum, or -1.
  int only_axis(int x, int y, const Op &op) const {
    int found = -1;
    for (int axis : d_.value(x).axes) {
      if (has_axis(d_.value(y), axis) || sums(op, axis)) continue;
      if (found >= 0) return -1;
      found = axis;
    }
    return found;
  }

  bool on_grid(int value, const Found &grid) const {
    const Value &v = d_.value(value);
    return has_axis(v, grid.a) && has_axis(v, grid.b);
  }

  // Work that stays on the grid: elementwise functions, and contractions over
  // a third axis (dP[q, k] = Σ_e dO·V), of grid shape.
  bool grid_op(const Op &op, const Found &grid) const {
    if (op.results.size() != 1 || !on_grid(op.results[0], grid)) return false;
    if (op.kind == OpKind::Elementwise) return true;
    return op.kind == OpKind::Contract && !sums(op, grid.a) && !sums(op, grid.b);
  }

  // A normalisation or reduction over one grid axis (softmax[k], logsumexp[k]):
  // the forward pass a gradient recomputes, which streams on its own.
  static bool streamable(const Op &op, const Found &grid) {
    return (op.kind == OpKind::Normalize || op.kind == OpKind::Reduce) && op.axes.size() == 1 &&
           (op.axes[0] == grid.a || op.axes[0] == grid.b);
  }

  // A contraction that sums exactly one of the grid's axes away.
  static bool consumer(const Op &op, const Found &grid) {
    return op.kind == OpKind::Contract && op.results.size() == 1 && sums(op, grid.a) != sums(op, grid.b);
  }

  const Diagram &d_;
  const ProducerIndex index_;  // the diagram is not edited while a Finder lives
  const std::set<int> &recomputed_;
  std::map<int, const Op *> by_id_;
  std::map<int, std::vector<const Op *>> users_;
  std::set<int> escaping_;
};

}  // namespace

std::vector<Grid> find_grids(const Diagram &diagram, const std::set<int> &recomputed) {
  Finder finder(diagram, recomputed);
  std::vector<Grid> out;
  std::set<int> taken;
  for (const auto &op : diagram.body.ops) {
    if (taken.count(op->id) || recomputed.count(op->id)) continue;
    auto found = finder.grow(*op);
    if (!found) continue;
    bool overlaps = false;
    for (const std::set<int> *ids : {&found->region, &found->consumers, &found->epilogues})
      for (int id : *ids) overlaps = overlaps || taken.count(id);
    if (overlaps) continue;
    Grid grid;
    grid.shared = found->shared;
    for (int axis : {found->b, found->a}) {
      GridKernel kernel = finder.kernel(*found, axis);
      if (kernel.ops.empty()) continue;
      if (!finder.convex(kernel, found->shared)) {
        grid.kernels.clear();
        break;
      }
      grid.kernels.push_back(std::move(kernel));
    }
    if (grid.kernels.empty()) continue;
    for (const std::set<int> *ids : {&found->region, &found->consumers, &found->epilogues})
      taken.insert(ids->begin(), ids->end());
    out.push_back(std::move(grid));
  }
  return out;
}

void separate(Diagram &diagram, Grid &grid) {
  std::set<int> owned;  // ops a kernel took as they are
  for (GridKernel &kernel : grid.kernels) {
    std::map<int, int> renamed;  // value of a shared op → its copy's
    std::set<int> ops;
    std::vector<std::unique_ptr<Op>> body;
    // In program order, each copy right after its original: its operands,
    // and the copies it reads, come earlier.
    for (auto &op : diagram.body.ops) {
      const bool mine = kernel.ops.count(op->id) > 0;
      std::unique_ptr<Op> copy;
      if (mine && (owned.count(op->id) || (grid.shared && kernel.recomputes.count(op->id)))) {
        copy = clone_op(*op);
        copy->id = ++diagram.max_op_id;
        for (int &operand : copy->operands)
          if (auto it = renamed.find(operand); it != renamed.end()) operand = it->second;
        std::vector<int> results;
        for (int value : op->results) {
          const Value &v = diagram.value(value);
          int fresh = add_value(diagram, "", v.axes, v.dtype, v.location);
          renamed[value] = fresh;
          results.push_back(fresh);
        }
        set_results(diagram, *copy, results);
        ops.insert(copy->id);
      } else if (mine) {
        owned.insert(op->id);
        ops.insert(op->id);
        for (int &operand : op->operands)
          if (auto it = renamed.find(operand); it != renamed.end()) operand = it->second;
      }
      body.push_back(std::move(op));
      if (copy) body.push_back(std::move(copy));
    }
    diagram.body.ops = std::move(body);
    kernel.ops = std::move(ops);
    kernel.recomputes.clear();  // now the kernel's own
  }
}

bool is_grid_kernel(const Diagram &diagram, const std::set<int> &recomputed) {
  std::set<int> streamed;
  for (const Schedule &schedule : diagram.schedules)
    for (const ScheduleDirective &directive : schedule.directives)
      if (directive.kind == ScheduleDirective::Kind::Stream) streamed.insert(directive.axis);
  if (streamed.size() != 1) return false;
  std::vector<Grid> grids = find_grids(diagram, recomputed);
  if (grids.size() != 1 || grids[0].shared || grids[0].kernels.size() != 1 || grids[0].kernels[0].stream != *streamed.begin())
    return false;
  for (const auto &op : diagram.body.ops)
    if (!recomputed.count(op->id) && !grids[0].kernels[0].ops.count(op->id)) return false;
  return true;
}

}  // namespace ncd::ir
