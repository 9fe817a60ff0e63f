// Test fixture: a pass that breaks the function it is given (every `add`
// becomes `sub`), so that `ncd optimize --verify` must catch it.
#include "ncd/ir.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class Miscompile : public ncd::Pass {
 public:
  std::string name() const override { return "miscompile"; }
  std::string description() const override { return "Turns every add into a sub (a deliberately wrong pass)"; }
  ncd::PassResult run(ncd::ir::Program &, ncd::ir::Diagram &diagram, ncd::PassContext &) override {
    ncd::PassResult result;
    ncd::ir::for_each_op(diagram.body, [&](const ncd::ir::Op &op) {
      if (op.kind == ncd::ir::OpKind::Elementwise && op.function == ncd::ops::Fn::Add) {
        const_cast<ncd::ir::Op &>(op).function = ncd::ops::Fn::Sub;
        result.changed = true;
      }
    });
    return result;
  }
};

int register_miscompile(ncd::Registry *registry) { return registry->add_pass(std::make_unique<Miscompile>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(miscompile, "test-miscompile", "1.0.0", "A wrong pass, for testing --verify", register_miscompile)
