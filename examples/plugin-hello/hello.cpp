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
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using ncd::ir::Op;
using ncd::ir::OpKind;

// Scalar functions the pass knows how to evaluate.
const std::map<std::string, std::function<double(double)>> &unary() {
  static const std::map<std::string, std::function<double(double)>> table{
      {"neg", [](double x) { return -x; }},
      {"rsqrt", [](double x) { return 1.0 / std::sqrt(x); }},
      {"sqrt", [](double x) { return std::sqrt(x); }},
      {"exp", [](double x) { return std::exp(x); }},
      {"log", [](double x) { return std::log(x); }},
      {"recip", [](double x) { return 1.0 / x; }},
      {"square", [](double x) { return x * x; }},
      {"abs", [](double x) { return std::fabs(x); }},
      {"copy", [](double x) { return x; }},
  };
  return table;
}

const std::map<std::string, std::function<double(double, double)>> &binary() {
  static const std::map<std::string, std::function<double(double, double)>> table{
      {"add", [](double x, double y) { return x + y; }},
      {"sub", [](double x, double y) { return x - y; }},
      {"mul", [](double x, double y) { return x * y; }},
      {"div", [](double x, double y) { return x / y; }},
      {"pow", [](double x, double y) { return std::pow(x, y); }},
      {"minimum", [](double x, double y) { return std::fmin(x, y); }},
      {"maximum", [](double x, double y) { return std::fmax(x, y); }},
  };
  return table;
}

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
    op.function.clear();
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
        bool all_known = !op->operands.empty();
        for (int operand : op->operands) all_known = all_known && known.count(operand);
        if (all_known && op->operands.size() == 1 && unary().count(op->function))
          value = unary().at(op->function)(known[op->operands[0]]);
        if (all_known && op->operands.size() == 2 && binary().count(op->function))
          value = binary().at(op->function)(known[op->operands[0]], known[op->operands[1]]);
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
