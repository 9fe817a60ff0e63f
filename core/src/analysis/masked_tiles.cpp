// Masked tiles: a `where(mask, x, -inf)` whose mask is a predicate of the
// indices of grouped axes and one streamed axis (ncd/index_predicate.h) keeps
// nothing of some (group tile, stream chunk) pairs. A kernel skips them
// (FlashAttention's causal blocks, FlexAttention's block mask derived from the
// predicate), so the Napkin model prices the work along the streamed axis at
// the share of pairs the mask can keep (docs/COST.md, "The Napkin model").
// Part of the pricer (pricer.h).
#include <cmath>
#include <functional>

#include "cost_format.h"
#include "ncd/index_predicate.h"
#include "pricer.h"

namespace ncd::cost_graph {

Pricer::MaskShare Pricer::mask_share(const Spec &spec) {
  MaskShare out;
  for (int i = spec.first; i < spec.last && out.stream < 0; ++i) {
    const VOp &op = g_.vops[static_cast<size_t>(i)];
    if (op.op->kind != ir::OpKind::Elementwise || op.op->function != ops::Fn::Where) continue;
    const ir::Diagram &diagram = *g_.instances[static_cast<size_t>(op.instance)].diagram;
    const ir::ProducerIndex index(diagram);
    // The other value: -inf (a constant, or the negation of one).
    const ir::Op *other = index.producer(op.op->operands.at(2));
    double sign = 1;
    if (other && other->kind == ir::OpKind::Elementwise && other->function == ops::Fn::Neg) {
      sign = -1;
      other = index.producer(other->operands.at(0));
    }
    if (!other || other->kind != ir::OpKind::Constant || !std::isinf(other->constant) || sign * other->constant > 0) continue;
    auto size_of = [&](int axis) -> std::optional<double> { return g_.full(g_.vaxis_of(op.instance, axis)).v; };
    IndexPredicate predicate = index_predicate(diagram, index, op.op->operands.at(0), size_of);
    // Axes of the predicate, as the kernel's: one streamed, the others grouped.
    std::map<int, int> vaxis;  // IR axis → vaxis
    int streamed = -1;
    bool usable = !predicate.clauses.empty();
    for (const auto &clause : predicate.clauses) {
      usable = usable && !clause.empty();  // a clause that always holds keeps every tile
      for (const IndexConjunct &conjunct : clause)
        for (const auto &[axis, c] : conjunct.form.axes) {
          int v = g_.vaxis_of(op.instance, axis);
          vaxis[axis] = v;
          if (spec.streams.count(v)) streamed = streamed < 0 || streamed == v ? v : -2;
          else if (!spec.groups.count(v)) usable = false;
        }
    }
    if (!usable || streamed < 0) continue;
    // Count the live (group tiles x chunk) boxes of the predicate's axes.
    std::vector<std::pair<int, double>> dims;  // IR axis, tile
    double combos = 1;
    for (const auto &[axis, v] : vaxis) {
      double tile_size = static_cast<double>(spec.streams.count(v) ? spec.streams.at(v) : spec.groups.at(v));
      dims.push_back({axis, tile_size});
      combos *= std::ceil(g_.full(v).v / tile_size);
    }
    if (combos > 4e6) continue;  // too many to count quickly: priced as computed
    double kept = 0, total_boxes = 0;
    std::vector<double> at(dims.size(), 0);
    std::function<void(size_t, std::map<int, std::pair<double, double>> &)> walk = [&](size_t d, std::map<int, std::pair<double, double>> &box) {
      if (d == dims.size()) {
        total_boxes += 1;
        kept += may_hold(predicate, box);
        return;
      }
      double n = g_.full(vaxis[dims[d].first]).v;
      for (double start = 0; start < n; start += dims[d].second) {
        box[dims[d].first] = {start, std::min(n, start + dims[d].second) - 1};
        walk(d + 1, box);
      }
      box.erase(dims[d].first);
    };
    std::map<int, std::pair<double, double>> box;
    walk(0, box);
    if (total_boxes > 0 && kept < total_boxes) {
      out.kept = kept / total_boxes;
      out.stream = streamed;
      out.skipped = total_boxes - kept;
      out.tiles = total_boxes;
      out.note = ("the mask keeps nothing of " + costfmt::number(total_boxes - kept) + " of " + costfmt::number(total_boxes) +
                             " (tile, chunk) pairs: the kernel skips them; work along " + g_.vaxes[static_cast<size_t>(streamed)].name +
                             " is priced at " + costfmt::number(out.kept) + " of its extent");
    }
  }
  return out;
}

}  // namespace ncd::cost_graph
