// Score grids for `fuse`: finding them, and giving each of their kernels its
// own copy of the grid ops it recomputes (grid.h).
#include "grid.h"

#include <algorithm>
#include <map>

#include "ncd/ir_edit.h"

namespace ncd::fuse {

namespace {

bool has_axis(const ir::Value &value, int axis) {
  return std::find(value.axes.begin(), value.axes.end(), axis) != value.axes.end();
}

bool sums(const ir::Op &op, int axis) { return std::find(op.axes.begin(), op.axes.end(), axis) != op.axes.end(); }

// The grid a contraction `seed` starts (a = the axis only its first operand
// has, b = the one only its second has), or nothing.
struct Grid {
  int a = -1, b = -1;
  std::set<int> region;     // grid ops
  std::set<int> consumers;  // contractions that sum a or b away
};

class Finder {
 public:
  Finder(const ir::Diagram &d, const std::set<int> &recomputed) : d_(d), recomputed_(recomputed) {
    for (const auto &op : d.body.ops) {
      by_id_[op->id] = op.get();
      for (int operand : op->operands) users_[operand].push_back(op.get());
      if (op->body)
        ir::for_each_op(*op->body, [&](const ir::Op &inner) {
          for (int operand : inner.operands) users_[operand].push_back(op.get());
        });
    }
    escaping_ = ir::escaping_values(d);
  }

  std::optional<Grid> grow(const ir::Op &seed) const {
    if (seed.kind != ir::OpKind::Contract) return std::nullopt;
    std::vector<int> tensors;
    for (int operand : seed.operands)
      if (!d_.value(operand).axes.empty()) tensors.push_back(operand);
    if (tensors.size() != 2) return std::nullopt;
    Grid grid;
    grid.a = only_axis(tensors[0], tensors[1], seed);
    grid.b = only_axis(tensors[1], tensors[0], seed);
    if (grid.a < 0 || grid.b < 0) return std::nullopt;
    const ir::Value &result = d_.value(seed.results.at(0));
    if (!has_axis(result, grid.a) || !has_axis(result, grid.b)) return std::nullopt;
    // Grow both ways: users that stay on the grid, and grid-shaped operands'
    // producers (another contraction of inputs, such as dP = dO·V).
    std::vector<const ir::Op *> work{&seed};
    grid.region.insert(seed.id);
    while (!work.empty()) {
      const ir::Op *op = work.back();
      work.pop_back();
      for (int operand : op->operands) {
        const ir::Op *producer = d_.producer(operand);
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
        for (const ir::Op *user : it->second) {
          if (grid.region.count(user->id) || grid.consumers.count(user->id)) continue;
          if (grid_op(*user, grid)) {
            grid.region.insert(user->id);
            work.push_back(user);
          } else if (consumer(*user, grid)) {
            grid.consumers.insert(user->id);
          } else {
            return std::nullopt;  // a normalisation, a reduction, a call...: not a grid this way
          }
        }
      }
    }
    if (grid.consumers.empty()) return std::nullopt;
    return grid;
  }

  // The kernel of the consumers that sum `axis`: them, and the grid ops they need.
  GridKernel kernel(const Grid &grid, int axis) const {
    GridKernel kernel;
    kernel.stream = axis;
    kernel.group = axis == grid.a ? grid.b : grid.a;
    std::vector<int> work;
    for (int id : grid.consumers)
      if (sums(*by_id_.at(id), axis)) {
        kernel.ops.insert(id);
        work.push_back(id);
      }
    while (!work.empty()) {
      const ir::Op *op = by_id_.at(work.back());
      work.pop_back();
      for (int operand : op->operands) {
        const ir::Op *producer = d_.producer(operand);
        if (producer && grid.region.count(producer->id) && kernel.ops.insert(producer->id).second)
          work.push_back(producer->id);
      }
    }
    return kernel;
  }

  // A kernel must not read a value computed from its own results (it would
  // have to run before itself).
  bool convex(const GridKernel &kernel) const {
    std::set<int> downstream;
    std::vector<int> work;
    for (int id : kernel.ops)
      for (int value : by_id_.at(id)->results) work.push_back(value);
    while (!work.empty()) {
      int value = work.back();
      work.pop_back();
      auto it = users_.find(value);
      if (it == users_.end()) continue;
      for (const ir::Op *user : it->second) {
        if (kernel.ops.count(user->id) || !downstream.insert(user->id).second) continue;
        for (int result : user->results) work.push_back(result);
      }
    }
    for (int id : kernel.ops)
      for (int operand : by_id_.at(id)->operands) {
        const ir::Op *producer = d_.producer(operand);
        if (producer && !kernel.ops.count(producer->id) && downstream.count(producer->id)) return false;
      }
    return true;
  }

 private:
  // The one axis of `x` that `y` lacks and `op` does not sum, or -1.
  int only_axis(int x, int y, const ir::Op &op) const {
    int found = -1;
    for (int axis : d_.value(x).axes) {
      if (has_axis(d_.value(y), axis) || sums(op, axis)) continue;
      if (found >= 0) return -1;
      found = axis;
    }
    return found;
  }

  bool on_grid(int value, const Grid &grid) const {
    const ir::Value &v = d_.value(value);
    return has_axis(v, grid.a) && has_axis(v, grid.b);
  }

  // Work that stays on the grid: elementwise functions, and contractions over
  // a third axis (dP[q, k] = Σ_e dO·V), of grid shape.
  bool grid_op(const ir::Op &op, const Grid &grid) const {
    if (op.results.size() != 1 || !on_grid(op.results[0], grid)) return false;
    if (op.kind == ir::OpKind::Elementwise) return true;
    return op.kind == ir::OpKind::Contract && !sums(op, grid.a) && !sums(op, grid.b);
  }

  // A contraction that sums exactly one of the grid's axes away.
  static bool consumer(const ir::Op &op, const Grid &grid) {
    return op.kind == ir::OpKind::Contract && op.results.size() == 1 && sums(op, grid.a) != sums(op, grid.b);
  }

  const ir::Diagram &d_;
  const std::set<int> &recomputed_;
  std::map<int, const ir::Op *> by_id_;
  std::map<int, std::vector<const ir::Op *>> users_;
  std::set<int> escaping_;
};

}  // namespace

std::vector<std::vector<GridKernel>> find_grids(const ir::Diagram &diagram, const std::set<int> &recomputed) {
  Finder finder(diagram, recomputed);
  std::vector<std::vector<GridKernel>> out;
  std::set<int> taken;
  for (const auto &op : diagram.body.ops) {
    if (taken.count(op->id) || recomputed.count(op->id)) continue;
    auto grid = finder.grow(*op);
    if (!grid) continue;
    bool overlaps = false;
    for (int id : grid->region) overlaps = overlaps || taken.count(id);
    for (int id : grid->consumers) overlaps = overlaps || taken.count(id);
    if (overlaps) continue;
    std::vector<GridKernel> kernels;
    for (int axis : {grid->b, grid->a}) {
      GridKernel kernel = finder.kernel(*grid, axis);
      if (kernel.ops.empty()) continue;
      if (!finder.convex(kernel)) {
        kernels.clear();
        break;
      }
      kernels.push_back(std::move(kernel));
    }
    if (kernels.empty()) continue;
    taken.insert(grid->region.begin(), grid->region.end());
    taken.insert(grid->consumers.begin(), grid->consumers.end());
    out.push_back(std::move(kernels));
  }
  return out;
}

void separate(ir::Diagram &diagram, std::vector<GridKernel> &kernels) {
  std::set<int> owned;
  for (GridKernel &kernel : kernels) {
    std::map<int, int> renamed;  // value of a shared op → its copy's
    std::set<int> ops;
    std::vector<std::unique_ptr<ir::Op>> body;
    // In program order, each copy right after its original: its operands,
    // and the copies it reads, come earlier.
    for (auto &op : diagram.body.ops) {
      const bool mine = kernel.ops.count(op->id) > 0;
      std::unique_ptr<ir::Op> copy;
      if (mine && owned.count(op->id)) {
        copy = ir::clone_op(*op);
        copy->id = ++diagram.max_op_id;
        for (int &operand : copy->operands)
          if (auto it = renamed.find(operand); it != renamed.end()) operand = it->second;
        std::vector<int> results;
        for (int value : op->results) {
          const ir::Value &v = diagram.value(value);
          int fresh = ir::add_value(diagram, "", v.axes, v.dtype, v.location);
          renamed[value] = fresh;
          results.push_back(fresh);
        }
        ir::set_results(diagram, *copy, results);
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
  }
}

}  // namespace ncd::fuse
