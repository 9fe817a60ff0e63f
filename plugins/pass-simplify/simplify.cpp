// Pass `simplify`: constant folding, algebraic identities, and moving scalar
// factors to the cheaper side of a contraction.
//
// Preconditions: a verified diagram. Folding covers literals only: axis sizes
// (`#d`) stay symbolic so the optimized file still follows `-D`. Identities
// (x*1, x+0, x-0, x/1, neg(neg x), a copy to the same axes and dtype) forward
// the operand when it already has the result's axes and dtype. A contraction
// with scalar operands multiplies every term of its product by them; applying
// them to its smallest tensor operand instead (in f32) saves
// |result| - |operand| multiplications, e.g. rsqrt(#d) on Q[q, d] rather than
// on S[q, k] — when that operand is f32 already: scaling a 16-bit operand
// would make it f32 and move the contraction off the tensor cores.
// A 16-bit value widened to f32 (a copy, then selections against 0: the
// gradient of attention's scores, `where(mask, dS, 0)`) that only
// contractions read is held at 16 bits: its values are the same, and the
// contractions keep the tensor cores.
#include <cmath>
#include <functional>
#include <map>
#include <set>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

// The value of a pointwise function of literals, in float64 by the op
// table's fold. Casts, copies and comparisons are not folded: a literal is
// an f32, and their results have a dtype of their own.
std::optional<double> fold(ops::Fn function, const std::vector<double> &x) {
  const ops::Info &row = ops::info(function);
  if (row.kind != ops::Kind::Elementwise || row.boolean || !row.fold.f64 || x.size() > 3) return std::nullopt;
  double v[3] = {0, 0, 0};
  for (size_t i = 0; i < x.size(); ++i) v[i] = x[i];
  return row.fold.f64(v[0], v[1], v[2]);
}

int64_t elements(const ir::Program &program, const ir::Value &value) {
  int64_t n = 1;
  for (int axis : value.axes) n *= program.size(axis).value_or(1);
  return n;
}

class Simplify : public Pass {
 public:
  std::string name() const override { return "simplify"; }
  std::string description() const override {
    return "Fold constants, apply algebraic identities, move scalar factors to the cheaper side of a contraction";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::map<int, double> constants;  // value id → literal
    std::set<int> forwarded;          // ops whose result was replaced by an operand
    std::vector<std::pair<size_t, std::unique_ptr<ir::Op>>> inserts;
    for (size_t position = 0; position < diagram.body.ops.size(); ++position) {
      ir::Op &op = *diagram.body.ops[position];
      if (op.kind == ir::OpKind::Constant) {
        constants[op.results[0]] = op.constant;
        continue;
      }
      if (op.kind == ir::OpKind::Elementwise && op.results.size() == 1) {
        std::vector<double> literal;
        for (int operand : op.operands)
          if (constants.count(operand)) literal.push_back(constants[operand]);
        if (literal.size() == op.operands.size() && diagram.value(op.results[0]).axes.empty()) {
          if (auto folded = fold(op.function, literal)) {
            op.kind = ir::OpKind::Constant;
            op.constant = *folded;
            op.operands.clear();
            op.function = ops::Fn::None;
            constants[op.results[0]] = *folded;
            result.changed = true;
            continue;
          }
        }
        if (auto kept = identity_operand(diagram, op, constants)) {
          const ir::Value &out = diagram.value(op.results[0]);
          if (out.role != ir::Value::Role::Output) {
            context.note(op.location, "removed " + std::string(ops::name(op.function)) +
                                          " by an identity: " + ir::value_label(diagram, op.results[0]) + " is " +
                                          ir::value_label(diagram, *kept));
            ir::replace_uses(diagram, op.results[0], *kept);
            forwarded.insert(op.id);
            result.changed = true;
          }
        }
        continue;
      }
      if (op.kind == ir::OpKind::Contract) {
        if (auto insert = move_scalars(program, diagram, op, context)) {
          inserts.emplace_back(position, std::move(insert));
          result.changed = true;
        }
      }
    }
    for (auto it = inserts.rbegin(); it != inserts.rend(); ++it)
      diagram.body.ops.insert(diagram.body.ops.begin() + static_cast<std::ptrdiff_t>(it->first), std::move(it->second));
    if (!forwarded.empty()) ir::erase_ops(diagram.body, [&](const ir::Op &op) { return forwarded.count(op.id) > 0; });
    if (narrow(diagram, context)) result.changed = true;
    return result;
  }

 private:
  // The operand an identity reduces `op` to, when it has the result's axes and dtype.
  static std::optional<int> identity_operand(ir::Diagram &diagram, const ir::Op &op,
                                             const std::map<int, double> &constants) {
    auto literal = [&](size_t i, double x) {
      auto it = constants.find(op.operands[i]);
      return it != constants.end() && it->second == x;
    };
    std::optional<int> candidate;
    using ops::Fn;
    const Fn f = op.function;
    if (op.operands.size() == 2) {
      if ((f == Fn::Mul && literal(1, 1)) || (f == Fn::Add && literal(1, 0)) || (f == Fn::Sub && literal(1, 0)) ||
          (f == Fn::Div && literal(1, 1)))
        candidate = op.operands[0];
      else if ((f == Fn::Mul && literal(0, 1)) || (f == Fn::Add && literal(0, 0)))
        candidate = op.operands[1];
    } else if (op.operands.size() == 1) {
      if (ops::info(f).kind == ops::Kind::Cast) candidate = op.operands[0];
      if (f == Fn::Neg) {
        const ir::Op *inner = diagram.producer(op.operands[0]);
        if (inner && inner->kind == ir::OpKind::Elementwise && inner->function == Fn::Neg) candidate = inner->operands[0];
      }
    }
    if (!candidate) return std::nullopt;
    const ir::Value &from = diagram.value(*candidate), &to = diagram.value(op.results[0]);
    if (from.dtype != to.dtype || ir::axis_set(from) != ir::axis_set(to)) return std::nullopt;
    return candidate;
  }

  // Holds exactly widened values that only contractions read at their 16-bit dtype.
  static bool narrow(ir::Diagram &diagram, PassContext &context) {
    bool changed = false;
    auto users = ir::users(diagram);
    auto escaping = ir::escaping_values(diagram);
    auto zero = [&](int value) {
      const ir::Op *op = diagram.producer(value);
      return op && op->kind == ir::OpKind::Constant && op->constant == 0;
    };
    for (const auto &entry : diagram.body.ops) {
      const ir::Op &op = *entry;
      if (op.kind != ir::OpKind::Elementwise || ops::info(op.function).kind != ops::Kind::Cast ||
          op.operands.size() != 1)
        continue;
      const ir::DType narrow = diagram.value(op.operands[0]).dtype;
      if ((narrow != ir::DType::BF16 && narrow != ir::DType::F16) || diagram.value(op.results[0]).dtype != ir::DType::F32)
        continue;
      std::set<int> held{op.results[0]};
      std::vector<int> work{op.results[0]};
      bool ok = true, contracted = false;
      while (ok && !work.empty()) {
        int value = work.back();
        work.pop_back();
        ok = !escaping.count(value);
        for (ir::Op *user : users[value]) {
          if (!ok) break;
          if (user->kind == ir::OpKind::Contract) {
            contracted = true;
            continue;
          }
          const bool select = user->kind == ir::OpKind::Elementwise && user->function == ops::Fn::Where &&
                              user->operands[0] != value &&
                              (held.count(user->operands[1]) || zero(user->operands[1])) &&
                              (held.count(user->operands[2]) || zero(user->operands[2]));
          const bool widen = user->kind == ir::OpKind::Elementwise && ops::info(user->function).kind == ops::Kind::Cast;
          ok = (select || widen) && diagram.value(user->results[0]).dtype == ir::DType::F32;
          if (ok && held.insert(user->results[0]).second) work.push_back(user->results[0]);
        }
      }
      if (!ok || !contracted) continue;
      for (int value : held) diagram.value(value).dtype = narrow;
      context.note(op.location, "held " + ir::value_label(diagram, op.results[0]) + " at " +
                                    std::string(ir::dtype_name(narrow)) + ", as computed: only contractions read it");
      changed = true;
    }
    return changed;
  }

  // Applies the scalar operands of a contraction to its smallest tensor operand.
  static std::unique_ptr<ir::Op> move_scalars(ir::Program &program, ir::Diagram &diagram, ir::Op &op,
                                              PassContext &context) {
    std::vector<int> scalars, tensors;
    for (int operand : op.operands) (diagram.value(operand).axes.empty() ? scalars : tensors).push_back(operand);
    // One scalar factor (the usual rsqrt(#d)); several would need folding together first.
    if (scalars.size() != 1 || tensors.size() < 2) return nullptr;
    int smallest = tensors[0];
    for (int t : tensors)
      if (elements(program, diagram.value(t)) < elements(program, diagram.value(smallest))) smallest = t;
    int64_t saved = elements(program, diagram.value(op.results[0])) - elements(program, diagram.value(smallest));
    if (saved <= 0) {
      context.note(op.location, "kept the scalar factor on " + ir::value_label(diagram, op.results[0]) +
                                    ": no operand is smaller than the result");
      return nullptr;
    }
    const ir::Value &source = diagram.value(smallest);
    std::string label = ir::value_label(diagram, smallest);
    if (source.dtype != ir::DType::F32) {
      // The scaled copy would be f32: a 16-bit contraction would leave the tensor
      // cores, and a streamed kernel applies the factor in registers for free.
      context.note(op.location, "kept the scalar factor on " + ir::value_label(diagram, op.results[0]) +
                                    ": moving it onto " + label + " (" + std::string(ir::dtype_name(source.dtype)) +
                                    ") would make that operand f32 and take the contraction off the tensor cores");
      return nullptr;
    }
    int scaled = ir::add_value(diagram, "", source.axes, ir::DType::F32, op.location);
    diagram.value(scaled).name = "%" + std::to_string(scaled);
    auto multiply = ir::make_op(diagram, ir::OpKind::Elementwise, op.location);
    multiply->function = ops::Fn::Mul;
    multiply->operands.push_back(smallest);
    for (int s : scalars) multiply->operands.push_back(s);
    ir::set_results(diagram, *multiply, {scaled});
    std::vector<int> operands;
    for (int operand : op.operands) {
      if (operand == smallest)
        operands.push_back(scaled);
      else if (!diagram.value(operand).axes.empty())
        operands.push_back(operand);
    }
    op.operands = operands;
    context.note(op.location, "moved the scalar factor of " + ir::value_label(diagram, op.results[0]) + " onto " +
                                  label + ": " + std::to_string(saved) + " fewer multiplications");
    return multiply;
  }
};

int register_simplify(Registry *registry) { return registry->add_pass(std::make_unique<Simplify>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_simplify, "pass-simplify", "1.0.0", "Pass simplify: constant folding and algebraic identities",
           register_simplify)
