// Pass `cse`: common subexpression elimination by structural hashing.
//
// Preconditions: a verified diagram. Two ops are the same computation when
// kind, function, operands, summed/reduced axes, constants, options, access
// indices, merges and callee (with bindings and lifting) agree and their
// results have the same axes and dtypes; the later one's results are replaced
// by the earlier one's. Calls of diagrams holding params are never merged:
// each call site owns its own param instance. Repeat bodies are not entered
// (values inside an iteration differ per iteration).
#include <algorithm>
#include <map>
#include <set>
#include <sstream>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

std::string structural_key(const ir::Diagram &diagram, const ir::Op &op) {
  std::ostringstream key;
  key.precision(17);
  key << static_cast<int>(op.kind) << '|' << ops::name(op.function) << op.callee_name << '|' << op.constant << '|';
  for (int operand : op.operands) key << operand << ',';
  key << '|';
  std::vector<int> axes = op.axes;
  std::sort(axes.begin(), axes.end());
  for (int axis : axes) key << axis << ',';
  key << '|';
  for (const auto &[name, value] : op.options) key << name << '=' << value << ',';
  key << '|';
  for (const auto &index : op.access) {
    key << static_cast<int>(index.kind) << ':' << index.offset << ':' << index.gather_operand << ':';
    for (auto [axis, coefficient] : index.terms) key << axis << '*' << coefficient << '+';
    for (int axis : index.split) key << axis << '.';
    key << ';';
  }
  key << '|';
  for (const auto &group : op.merges) {
    for (int axis : group) key << axis << '.';
    key << ';';
  }
  key << '|' << op.callee << '|';
  for (auto [from, to] : op.bindings) key << from << '>' << to << ',';
  key << '|';
  for (int axis : op.lifted) key << axis << ',';
  key << '|';
  for (int result : op.results) {
    const ir::Value &value = diagram.value(result);
    std::vector<int> result_axes = value.axes;
    std::sort(result_axes.begin(), result_axes.end());
    for (int axis : result_axes) key << axis << ',';
    key << ':' << static_cast<int>(value.dtype) << ';';
  }
  return key.str();
}

class CommonSubexpressionElimination : public Pass {
 public:
  std::string name() const override { return "cse"; }
  std::string description() const override {
    return "Merge operations that compute the same value (structural hashing)";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::map<std::string, const ir::Op *> seen;
    std::set<int> merged;
    for (const auto &entry : diagram.body.ops) {
      const ir::Op &op = *entry;
      if (op.kind == ir::OpKind::Repeat) continue;
      if (op.kind == ir::OpKind::Call) {
        if (ir::reaches_params(program, *program.diagrams[static_cast<size_t>(op.callee)])) continue;
      }
      // Outputs keep their own op: an output value must be defined by name.
      bool defines_output = false;
      for (int value : op.results)
        defines_output = defines_output || diagram.value(value).role == ir::Value::Role::Output;
      std::string key = structural_key(diagram, op);
      auto found = seen.find(key);
      if (found == seen.end() || defines_output) {
        if (!defines_output) seen.emplace(key, &op);
        continue;
      }
      const ir::Op &earlier = *found->second;
      for (size_t i = 0; i < op.results.size(); ++i) ir::replace_uses(diagram, op.results[i], earlier.results[i]);
      if (!ir::is_data_free(diagram, op))
        context.note(op.location, "merged " + ir::value_label(diagram, op.results[0]) + " into the identical " +
                                      ir::value_label(diagram, earlier.results[0]) + " (" +
                                      (context.sources ? context.sources->describe(earlier.location) : "") + ")");
      merged.insert(op.id);
    }
    if (!merged.empty()) {
      ir::erase_ops(diagram.body, [&](const ir::Op &op) { return merged.count(op.id) > 0; });
      result.changed = true;
    }
    return result;
  }
};

int register_cse(Registry *registry) {
  return registry->add_pass(std::make_unique<CommonSubexpressionElimination>()) ? 0 : 1;
}

}  // namespace

NCD_PLUGIN(pass_cse, "pass-cse", "1.0.0", "Pass cse: common subexpression elimination", register_cse)
