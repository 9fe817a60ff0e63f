// Pass `dce`: removes operations whose results nothing uses.
//
// Preconditions: a verified diagram. An op is dead when none of its results
// is used by another op, is an output, or is yielded by a repeat. Calls are
// kept even when dead if their callee holds params: removing one would
// renumber the param paths of later calls of the same diagram (docs/RUN.md),
// so the optimized program would no longer read the same weights.
#include <set>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

class DeadCodeElimination : public Pass {
 public:
  std::string name() const override { return "dce"; }
  std::string description() const override { return "Remove operations whose results are never used"; }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    std::set<int> kept_calls;  // noted once each
    for (;;) {
      auto used = ir::users(diagram);
      auto escaping = ir::escaping_values(diagram);
      std::set<int> dead;
      for (const auto &entry : diagram.body.ops) {
        const ir::Op &op = *entry;
        if (is_dead(program, diagram, op, used, escaping, kept_calls, context)) dead.insert(op.id);
      }
      int erased = ir::erase_ops(diagram.body, [&](const ir::Op &op) { return dead.count(op.id) > 0; });
      if (erased == 0) break;
      result.changed = true;
    }
    return result;
  }

 private:
  static bool is_dead(const ir::Program &program, const ir::Diagram &diagram, const ir::Op &op,
                      const std::map<int, std::vector<ir::Op *>> &used, const std::set<int> &escaping,
                      std::set<int> &kept_calls, PassContext &context) {
    for (int value : op.results)
      if (used.count(value) || escaping.count(value)) return false;
    if (op.kind == ir::OpKind::Repeat) return false;
    if (op.kind == ir::OpKind::Call) {
      if (ir::reaches_params(program, *program.diagrams[static_cast<size_t>(op.callee)])) {
        if (kept_calls.insert(op.id).second)
          context.note(op.location, "kept the unused call of '" + op.callee_name +
                                        "': removing it would renumber the params of later calls");
        return false;
      }
    }
    if (!ir::is_data_free(diagram, op))
      context.note(op.location, "removed unused " + std::string(ir::op_kind_name(op.kind)) +
                                    (op.results.empty() ? "" : " " + ir::value_label(diagram, op.results[0])));
    return true;
  }
};

int register_dce(Registry *registry) { return registry->add_pass(std::make_unique<DeadCodeElimination>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_dce, "pass-dce", "1.0.0", "Pass dce: dead code elimination", register_dce)
