// The `hello` plugin: a small pass, built out of tree against the ncd SDK.
//
// Pass `hello` folds scalar constant arithmetic: an axis size (`#d`), a
// literal, and elementwise functions of them become one `constant` op, and
// what the folding leaves unused is removed. On examples/attention.ncd,
//
//   %4 = sizeof[d]() : [] f32
//   %5 = elementwise rsqrt(%4) : [] f32
//
// becomes `%5 = constant 0.125() : [] f32`. Try:
//   ncd show --ir --plugin ./ncd-plugin-hello.so --passes hello examples/attention.ncd
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "ncd/ir.h"
#include "ncd/ops.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using ncd::ir::Op;
using ncd::ir::OpKind;


class HelloPass : public ncd::Pass {
 public:
  std::string name() const override { return "hello"; }
  std::string description() const override {
    return "hello from an out-of-tree plugin: folds scalar constant arithmetic (#axis sizes, literals) into constants";
  }

  ncd::PassResult run(ncd::ir::Program &program, ncd::ir::Diagram &diagram, ncd::PassContext &context) override {
    ncd::PassResult result;
    std::map<int, double> known;  // value id -> its constant
    int folded = 0;
    fold(program, diagram, diagram.body, known, folded);
    int removed = remove_unused(diagram, diagram.body);
    result.changed = folded > 0 || removed > 0;
    if (context.explain)
      context.explain->push_back("hello: " + diagram.name + ": folded " + std::to_string(folded) + " op(s), removed " +
                                 std::to_string(removed));
    return result;
  }

 private:
  static bool scalar(const ncd::ir::Diagram &diagram, const Op &op) {
    return op.results.size() == 1 && diagram.value(op.results[0]).axes.empty();
  }

  static void make_constant(Op &op, double value) {
    op.kind = OpKind::Constant;
    op.constant = value;
    op.function = ncd::ops::Fn::None;
    op.operands.clear();
    op.axes.clear();
    op.options.clear();
  }

  void fold(const ncd::ir::Program &program, ncd::ir::Diagram &diagram, ncd::ir::Region &region,
            std::map<int, double> &known, int &folded) {
    for (auto &op : region.ops) {
      if (op->body) fold(program, diagram, *op->body, known, folded);
      if (!scalar(diagram, *op)) continue;
      std::optional<double> value;
      if (op->kind == OpKind::Constant) {
        known[op->results[0]] = op->constant;
        continue;
      }
      if (op->kind == OpKind::SizeOf && op->axes.size() == 1) {
        if (auto size = program.size(op->axes[0])) value = static_cast<double>(*size);
      } else if (op->kind == OpKind::Elementwise) {
        // Any pointwise function the op table evaluates (ncd/ops.h), in float64, and
        // copies; not casts or comparisons, whose results have dtypes of their own.
        const ncd::ops::Info &row = ncd::ops::info(op->function);
        bool foldable = (row.kind == ncd::ops::Kind::Elementwise && !row.boolean) || op->function == ncd::ops::Fn::Copy;
        bool all_known = foldable && !op->operands.empty() && op->operands.size() <= 3 && row.fold.f64;
        double x[3] = {0, 0, 0};
        for (size_t i = 0; all_known && i < op->operands.size(); ++i) {
          all_known = known.count(op->operands[i]) > 0;
          if (all_known) x[i] = known[op->operands[i]];
        }
        if (all_known) value = row.fold.f64(x[0], x[1], x[2]);
      }
      if (!value || !std::isfinite(*value)) continue;
      make_constant(*op, *value);
      known[op->results[0]] = *value;
      ++folded;
    }
  }

  // Removes constants nothing reads any more (folding leaves the old `sizeof` ops unused).
  static int remove_unused(ncd::ir::Diagram &diagram, ncd::ir::Region &body) {
    std::set<int> used;
    int removed = 0, before = -1;
    std::function<void(ncd::ir::Region &)> sweep = [&](ncd::ir::Region &region) {
      for (auto it = region.ops.begin(); it != region.ops.end();) {
        Op &op = **it;
        if (op.body) sweep(*op.body);
        bool dead = op.kind == OpKind::Constant && op.results.size() == 1 && !used.count(op.results[0]);
        if (dead || (op.kind == OpKind::SizeOf && op.results.size() == 1 && !used.count(op.results[0]))) {
          it = region.ops.erase(it);
          ++removed;
        } else {
          ++it;
        }
      }
    };
    // Removing one constant can leave another unused: sweep until nothing changes.
    while (removed != before) {
      before = removed;
      used = std::set<int>(diagram.outputs.begin(), diagram.outputs.end());
      ncd::ir::for_each_op(body, [&](const Op &op) {
        used.insert(op.operands.begin(), op.operands.end());
        used.insert(op.body_yields.begin(), op.body_yields.end());
      });
      sweep(body);
    }
    return removed;
  }
};

int register_hello(ncd::Registry *registry) { return registry->add_pass(std::make_unique<HelloPass>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(hello, "hello", "1.0.0", "Example out-of-tree plugin: the `hello` constant-folding pass", register_hello)
