// Runtime sizes (docs/CUDA.md, "Runtime sizes"): the size of an axis the
// program leaves without a concrete one. A callee's axis bound at a call has
// its caller's size; a derived axis is its definition over the sizes of its
// axes; any other is a runtime argument of the host function, read by the
// code as a member of the size struct `ncd_n` (host and kernels alike).
#include "generator.h"

namespace ncd::cuda::detail {

namespace {
// The planning value of a runtime size: the choices of speed (block tiles,
// packing) are made as if the axis had this size. Correctness never depends on it.
constexpr int64_t kPlanningSize = 2048;
}  // namespace

Sz Generator::runtime_size(Frame &frame, int axis) {
  const ir::Axis &a = program_.axis(axis);
  if (frame.caller && frame.instance->binding())
    if (auto caller = frame.instance->binding()->caller_axis(axis)) return size(rt_axis(*frame.caller, *caller));
  if (a.derived) {
    Sz total;
    for (const auto &[monomial, coefficient] : a.definition.terms()) {
      if (coefficient != std::floor(coefficient) || std::fabs(coefficient) > 9e15)
        throw GenError("axis '" + a.name + "' (derived) is not a whole multiple of its axes; set them with -D");
      Sz term = static_cast<int64_t>(coefficient);
      for (const auto &[base, power] : monomial) {
        if (power < 0) throw GenError("axis '" + a.name + "' (derived) divides by a runtime size; set it with -D");
        for (int i = 0; i < power; ++i) term *= size(rt_axis(frame, base));
      }
      total += term;
    }
    return total;
  }
  return size_symbol(axis);
}

Sz Generator::size_symbol(int axis) {
  auto it = runtime_sizes_.find(axis);
  if (it == runtime_sizes_.end()) {
    std::string member = ident(program_.axis(axis).name);
    std::set<std::string> taken;
    for (const auto &[other, name] : runtime_sizes_) taken.insert(name);
    for (int k = 2; taken.count(member); ++k) member = ident(program_.axis(axis).name) + "_" + std::to_string(k);
    it = runtime_sizes_.emplace(axis, member).first;
  }
  diagram_sizes_.insert(axis);
  return Sz::symbol("ncd_n." + it->second, kPlanningSize);
}

}  // namespace ncd::cuda::detail
