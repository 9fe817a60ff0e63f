// The IR verifier: checks the invariants documented in ir.h for every op.
#include "ncd/verifier.h"

#include <algorithm>
#include <set>

namespace ncd {
namespace {

class Verifier {
 public:
  Verifier(const ir::Program &program, std::vector<std::string> &out) : program_(program), out_(out) {}

  void diagram(const ir::Diagram &d) {
    d_ = &d;
    defined_.clear();
    for (int id : d.inputs) define(id, "input");
    for (int id : d.params) define(id, "param");
    region(d.body);
    for (int id : d.outputs) {
      if (!valid(id)) {
        fail(nullptr, "an output refers to a nonexistent value");
        continue;
      }
      if (!defined_.count(id)) fail(nullptr, "output '" + d.value(id).name + "' is never defined");
      if (d.value(id).role != ir::Value::Role::Output) fail(nullptr, "output '" + d.value(id).name + "' lacks the output role");
    }
    for (const ir::Value &value : d.values) {
      std::set<int> unique(value.axes.begin(), value.axes.end());
      if (unique.size() != value.axes.size()) fail(nullptr, "value '" + value.name + "' repeats an axis");
      for (int axis : value.axes)
        if (axis < 0 || static_cast<size_t>(axis) >= program_.axes.size())
          fail(nullptr, "value '" + value.name + "' names a nonexistent axis");
    }
  }

 private:
  void define(int id, const char *what) {
    if (!valid(id)) {
      fail(nullptr, std::string(what) + " refers to nonexistent value " + std::to_string(id));
      return;
    }
    if (!defined_.insert(id).second) fail(nullptr, "value '" + d_->value(id).name + "' is defined twice");
  }

  void fail(const ir::Op *op, const std::string &message) {
    std::string where = "diagram " + d_->name;
    if (op) where += ", op " + std::to_string(op->id) + " (" + std::string(ir::op_kind_name(op->kind)) + ")";
    out_.push_back(where + ": " + message);
  }

  bool valid(int value) const { return value >= 0 && static_cast<size_t>(value) < d_->values.size(); }

  std::set<int> axes_of(int value) const {
    if (!valid(value)) return {};
    const auto &axes = d_->value(value).axes;
    return {axes.begin(), axes.end()};
  }

  void region(const ir::Region &r) {
    for (const auto &op : r.ops) {
      bool ids_valid = true;
      for (int id : op->operands) ids_valid = ids_valid && valid(id);
      for (int id : op->results) ids_valid = ids_valid && valid(id);
      if (!ids_valid) {
        fail(op.get(), "refers to a nonexistent value");
        continue;
      }
      for (int operand : op->operands)
        if (!defined_.count(operand)) fail(op.get(), "uses value " + std::to_string(operand) + " before it is defined");
      if (op->kind == ir::OpKind::Repeat) {
        if (!op->body) {
          fail(op.get(), "has no body");
          continue;
        }
        if (op->body_arguments.size() != op->operands.size() || op->body_yields.size() != op->operands.size() ||
            op->results.size() != op->operands.size())
          fail(op.get(), "carried values, arguments, yields and results differ in number");
        for (int argument : op->body_arguments) define(argument, "block argument");
        region(*op->body);
        for (int yield : op->body_yields)
          if (!defined_.count(yield)) fail(op.get(), "yields an undefined value");
      }
      for (int result : op->results) {
        define(result, "result");
        if (!valid(result)) continue;
        if (d_->value(result).producer != op->id) fail(op.get(), "result's producer is not this op");
      }
      check_function(*op);
      check_shapes(*op);
    }
  }

  // Ops that apply a function apply one of their kind, to as many operands as it takes.
  void check_function(const ir::Op &op) {
    const ops::Info &row = ops::info(op.function);
    bool applies = op.kind == ir::OpKind::Elementwise || op.kind == ir::OpKind::Reduce ||
                   op.kind == ir::OpKind::Normalize || op.kind == ir::OpKind::Scan || op.kind == ir::OpKind::Select;
    if (!applies) {
      if (op.function != ops::Fn::None) fail(&op, "applies a function ('" + std::string(row.name) + "')");
      return;
    }
    if (ir::op_kind_of(op.function) != op.kind) {
      fail(&op, op.function == ops::Fn::None ? std::string("applies no function")
                                             : "applies '" + std::string(row.name) + "', which is not of its kind");
      return;
    }
    if (op.operands.size() != static_cast<size_t>(row.arity))
      fail(&op, "'" + std::string(row.name) + "' takes " + std::to_string(row.arity) + " operand" +
                    (row.arity == 1 ? "" : "s") + ", not " + std::to_string(op.operands.size()));
  }

  void check_shapes(const ir::Op &op) {
    std::set<int> operand_union;
    for (int operand : op.operands) {
      auto axes = axes_of(operand);
      operand_union.insert(axes.begin(), axes.end());
    }
    auto result_axes = op.results.empty() ? std::set<int>{} : axes_of(op.results[0]);
    std::set<int> op_axes(op.axes.begin(), op.axes.end());
    switch (op.kind) {
      case ir::OpKind::Contract: {
        std::set<int> expected;
        for (int axis : operand_union)
          if (!op_axes.count(axis)) expected.insert(axis);
        for (int axis : op_axes)
          if (!operand_union.count(axis)) fail(&op, "sums an axis no operand has");
        if (expected != result_axes) fail(&op, "result axes are not the operands' minus the summed");
        break;
      }
      case ir::OpKind::Elementwise:
        for (int axis : operand_union)
          if (!result_axes.count(axis)) fail(&op, "drops an operand axis");
        break;
      case ir::OpKind::Reduce: {
        std::set<int> expected;
        for (int axis : operand_union)
          if (!op_axes.count(axis)) expected.insert(axis);
        if (expected != result_axes || op.operands.size() != 1) fail(&op, "result axes are not the operand's minus the reduced");
        if (ops::info(op.function).position) {
          if (op.axes.size() != 1 || !operand_union.count(op.axes[0]))
            fail(&op, "gives a position along other than one axis of its operand");
          if (!op.results.empty() && d_->value(op.results[0]).dtype != ir::DType::I32)
            fail(&op, "gives a position in other than i32");
        }
        break;
      }
      case ir::OpKind::Normalize:
        if (operand_union != result_axes || op.operands.size() != 1) fail(&op, "changes its operand's axes");
        for (int axis : op_axes)
          if (!operand_union.count(axis)) fail(&op, "normalises over an axis its operand lacks");
        break;
      case ir::OpKind::Scan:
        if (operand_union != result_axes) fail(&op, "changes its operands' axes");
        if (op.axes.size() != 1 || !operand_union.count(op.axes[0]))
          fail(&op, "scans along other than one axis of its operands");
        break;
      case ir::OpKind::Access: {
        if (op.operands.empty() || op.access.size() != d_->value(op.operands[0]).axes.size()) {
          fail(&op, "has one index per position of its source");
          break;
        }
        // The result's axes are exactly the axes the indices mention.
        std::set<int> indexed;
        for (const auto &index : op.access) {
          if (index.kind == ir::AccessIndex::Kind::Affine)
            for (auto [axis, coefficient] : index.terms) indexed.insert(axis);
          if (index.kind == ir::AccessIndex::Kind::Split) indexed.insert(index.split.begin(), index.split.end());
          if (index.kind == ir::AccessIndex::Kind::Gather) {
            if (index.gather_operand < 1 || static_cast<size_t>(index.gather_operand) >= op.operands.size()) {
              fail(&op, "gathers through a nonexistent operand");
              continue;
            }
            auto axes = axes_of(op.operands[static_cast<size_t>(index.gather_operand)]);
            indexed.insert(axes.begin(), axes.end());
          }
        }
        if (indexed != result_axes) fail(&op, "result axes differ from the axes its indices use");
        break;
      }
      case ir::OpKind::Select: {
        // Along axes[0]; both results have axes[1] in its place, the second holds positions.
        if (op.axes.size() != 2 || op.results.size() != 2 || op.operands.size() != 1) {
          fail(&op, "has other than one operand, two results and two axes");
          break;
        }
        const int along = op.axes[0], kept = op.axes[1];
        std::set<int> expected = operand_union;
        if (!expected.erase(along)) fail(&op, "selects along an axis its operand lacks");
        if (kept != along && operand_union.count(kept)) fail(&op, "gives its operand's axis as the selected one");
        expected.insert(kept);
        if (expected != result_axes || axes_of(op.results[1]) != result_axes)
          fail(&op, "result axes are not the operand's with the selected axis in place of the one selected along");
        if (d_->value(op.results[1]).dtype != ir::DType::I32) fail(&op, "gives positions in other than i32");
        auto n = program_.size(along), k = program_.size(kept);
        if (n && k && (ops::info(op.function).whole ? *k != *n : *k > *n))
          fail(&op, "selects " + std::to_string(*k) + " of " + std::to_string(*n));
        break;
      }
      case ir::OpKind::Merge:
        if (op.results.size() != 1 || op.merges.size() != d_->value(op.results[0]).axes.size())
          fail(&op, "merge groups differ from result axes");
        break;
      case ir::OpKind::Call: {
        if (op.callee < 0 || static_cast<size_t>(op.callee) >= program_.diagrams.size()) {
          fail(&op, "calls a nonexistent diagram");
          break;
        }
        const ir::Diagram &callee = *program_.diagrams[static_cast<size_t>(op.callee)];
        if (callee.inputs.size() != op.operands.size() || callee.outputs.size() != op.results.size())
          fail(&op, "operand or result count differs from the callee's signature");
        break;
      }
      default: break;
    }
  }

  const ir::Program &program_;
  std::vector<std::string> &out_;
  const ir::Diagram *d_ = nullptr;
  std::set<int> defined_;
};

}  // namespace

std::vector<std::string> verify(const ir::Program &program) {
  std::vector<std::string> out;
  Verifier verifier(program, out);
  for (const auto &diagram : program.diagrams) verifier.diagram(*diagram);
  return out;
}

}  // namespace ncd
