// Pass `contract-order`: splits contractions of three or more tensors into a
// chain of pairwise contractions in the order with the fewest FLOPs.
//
// Preconditions: a verified diagram. For a product of n ≤ 6 tensor operands
// (scalars stay with the last step) every pairing order is priced — a pair's
// cost is the product of the sizes of the axes it touches; an axis is summed
// at the first step after which no other operand and not the result carries
// it — and the cheapest is written as binary contractions. An intermediate
// holds the statement's dtype where that is a 16-bit float (the language
// holds a statement's intermediates in its dtype, and a bf16 partial product
// keeps the next step on tensor cores: SwiGLU's silu(G) * U * Wd) or an
// integer (exact, as the integer contraction it splits), f32 otherwise.
// Two-operand contractions have one order: nothing to do.
//
// With an argument N (`contract-order=N`, N >= 1) the pass writes the order
// with the N-th fewest FLOPs instead (counting orders of equal FLOPs once;
// the most expensive when there are fewer): the built-in advisor of `ncd
// optimize --advisor` (docs/ADVISOR.md) tries these, since the fewest FLOPs
// is not always the least time (a larger intermediate, another kernel).
#include <algorithm>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <string>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

// The argument's rank, or 0 when it is not a positive integer below 1000.
int rank_of(const std::string &argument) {
  if (argument.empty() || argument.size() > 3) return 0;
  for (char ch : argument)
    if (ch < '0' || ch > '9') return 0;
  return std::stoi(argument);
}

struct Plan {
  double flops = std::numeric_limits<double>::infinity();
  std::vector<std::pair<size_t, size_t>> steps;  // indices into the growing operand list
};

class ContractOrder : public Pass {
 public:
  std::string name() const override { return "contract-order"; }
  std::string description() const override { return "Order multi-operand contractions by FLOPs"; }
  std::string check_argument(const std::string &argument) const override {
    return argument.empty() || rank_of(argument) > 0
               ? ""
               : "pass 'contract-order' takes a rank N >= 1 (the N-th fewest-FLOP order), not '" + argument + "'";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::vector<std::unique_ptr<ir::Op>> out;
    for (auto &entry : diagram.body.ops) {
      ir::Op &op = *entry;
      std::vector<int> tensors, scalars;
      if (op.kind == ir::OpKind::Contract)
        for (int operand : op.operands) (diagram.value(operand).axes.empty() ? scalars : tensors).push_back(operand);
      if (op.kind != ir::OpKind::Contract || tensors.size() < 3 || tensors.size() > 6) {
        out.push_back(std::move(entry));
        continue;
      }
      std::set<int> keep(diagram.value(op.results[0]).axes.begin(), diagram.value(op.results[0]).axes.end());
      auto size = [&](int axis) { return static_cast<double>(program.size(axis).value_or(1)); };
      std::vector<std::set<int>> start;
      for (int t : tensors) start.emplace_back(diagram.value(t).axes.begin(), diagram.value(t).axes.end());
      // Exhaustive search over pairings; for a rank N > 1, the first order
      // found of each of the N smallest FLOP counts is kept.
      const size_t rank = context.argument.empty() ? 1 : static_cast<size_t>(rank_of(context.argument));
      std::map<double, std::vector<std::pair<size_t, size_t>>> cheapest;
      std::vector<std::pair<size_t, size_t>> steps;
      std::function<void(std::vector<std::set<int>>, double)> search = [&](std::vector<std::set<int>> live,
                                                                           double flops) {
        if (cheapest.size() >= rank && flops >= std::prev(cheapest.end())->first) return;
        if (live.size() == 1) {
          cheapest.emplace(flops, steps);
          if (cheapest.size() > rank) cheapest.erase(std::prev(cheapest.end()));
          return;
        }
        for (size_t i = 0; i < live.size(); ++i)
          for (size_t j = i + 1; j < live.size(); ++j) {
            std::set<int> touched = live[i];
            touched.insert(live[j].begin(), live[j].end());
            double cost = 1;
            for (int axis : touched) cost *= size(axis);
            std::set<int> kept;
            for (int axis : touched) {
              bool needed = keep.count(axis) > 0;
              for (size_t k = 0; k < live.size(); ++k)
                if (k != i && k != j && live[k].count(axis)) needed = true;
              if (needed) kept.insert(axis);
            }
            std::vector<std::set<int>> next;
            for (size_t k = 0; k < live.size(); ++k)
              if (k != i && k != j) next.push_back(live[k]);
            next.push_back(kept);
            steps.emplace_back(i, j);
            search(next, flops + 2 * cost);
            steps.pop_back();
          }
      };
      search(start, 0);
      Plan best;
      best.flops = std::prev(cheapest.end())->first;
      best.steps = std::prev(cheapest.end())->second;
      // Emit the chain.
      std::vector<int> live_values = tensors;
      for (size_t s = 0; s < best.steps.size(); ++s) {
        auto [i, j] = best.steps[s];
        int a = live_values[i], b = live_values[j];
        std::set<int> touched(diagram.value(a).axes.begin(), diagram.value(a).axes.end());
        touched.insert(diagram.value(b).axes.begin(), diagram.value(b).axes.end());
        std::vector<int> remaining;
        for (size_t k = 0; k < live_values.size(); ++k)
          if (k != i && k != j) remaining.push_back(live_values[k]);
        bool last = s + 1 == best.steps.size();
        std::vector<int> kept_axes, summed;
        for (int axis : touched) {
          bool needed = keep.count(axis) > 0;
          for (int other : remaining) {
            const auto &axes = diagram.value(other).axes;
            if (std::find(axes.begin(), axes.end(), axis) != axes.end()) needed = true;
          }
          (needed ? kept_axes : summed).push_back(axis);
        }
        if (last) {
          op.operands = {a, b};
          op.operands.insert(op.operands.end(), scalars.begin(), scalars.end());
          op.axes = summed;
          out.push_back(std::move(entry));
          break;
        }
        const ir::DType result_dtype = diagram.value(op.results[0]).dtype;
        const bool keep = ir::is_integer(result_dtype) || ir::dtype_bytes(result_dtype) == 2;
        int partial = ir::add_value(diagram, "", kept_axes, keep ? result_dtype : ir::DType::F32, op.location);
        diagram.value(partial).name = "%" + std::to_string(partial);
        auto step = ir::make_op(diagram, ir::OpKind::Contract, op.location);
        step->operands = {a, b};
        step->axes = summed;
        ir::set_results(diagram, *step, {partial});
        out.push_back(std::move(step));
        remaining.push_back(partial);
        live_values = remaining;
      }
      context.note(op.location, "ordered the " + std::to_string(tensors.size()) + "-operand contraction pairwise: " +
                                    std::to_string(static_cast<long long>(best.flops)) + " FLOPs" +
                                    (rank > 1 ? " (order " + std::to_string(cheapest.size()) + " by FLOPs)" : ""));
      result.changed = true;
    }
    diagram.body.ops = std::move(out);
    return result;
  }
};

int register_contract_order(Registry *registry) {
  return registry->add_pass(std::make_unique<ContractOrder>()) ? 0 : 1;
}

}  // namespace

NCD_PLUGIN(pass_contract_order, "pass-contract-order", "1.0.0", "Pass contract-order: contraction ordering",
           register_contract_order)
