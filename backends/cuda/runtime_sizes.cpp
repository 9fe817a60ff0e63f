// Runtime sizes (docs/CUDA.md, "Runtime sizes"): the size of each axis as
// generated code sees it. A callee's axis bound at a call has its caller's
// size; a derived axis is its definition over the sizes of its axes; an axis
// the program leaves without a size, or that --runtime names, is a runtime
// argument of the host function, read by the code as a member of the size
// struct `ncd_n` (host and kernels alike); any other is its number.
#include "generator.h"

namespace ncd::cuda::detail {

namespace {
// The planning value of a runtime size without one: the choices of speed
// (block tiles, packing) are made as if the axis had this size. Correctness
// never depends on it.
constexpr int64_t kPlanningSize = 2048;
}  // namespace

Sz Generator::axis_size(Frame &frame, int axis) {
  const ir::Axis &a = program_.axis(axis);
  if (frame.caller && frame.instance->binding())
    if (auto caller = frame.instance->binding()->caller_axis(axis)) return size(rt_axis(*frame.caller, *caller));
  const std::optional<int64_t> known = frame.instance->sizes().size(axis);
  if (!a.derived && runtime_names_.count(a.name)) return size_symbol(axis, known.value_or(kPlanningSize));
  if (a.derived) {
    // The definition over the sizes of its axes; one that is not a whole
    // polynomial (a division) is only usable with every size known.
    Sz total;
    bool whole = true, runtime = false;
    for (const auto &[monomial, coefficient] : a.definition.terms()) {
      whole = whole && coefficient == std::floor(coefficient) && std::fabs(coefficient) < 9e15;
      Sz term = whole ? static_cast<int64_t>(coefficient) : 0;
      for (const auto &[base, power] : monomial) {
        const Sz &base_size = size(rt_axis(frame, base));
        runtime = runtime || !base_size.known();
        whole = whole && power >= 0;
        for (int i = 0; i < power; ++i) term *= base_size;
      }
      total += term;
    }
    if (whole) return total;
    if (runtime)
      throw GenError("axis '" + a.name + "' (derived) divides by or scales a runtime size by a fraction; give its axes sizes");
  }
  if (a.formula)
    for (int base : a.formula->axes())
      if (!size(rt_axis(frame, base)).known())
        throw GenError("axis '" + a.name + "' rounds a quotient of the runtime size '" + program_.axis(base).name +
                       "'; give it a size, or make the rounded axis a runtime size of its own");
  if (known) return *known;
  if (a.derived)
    throw GenError("diagram '" + frame.diagram->name + "': " + frame.instance->sizes().missing_message(axis));
  return size_symbol(axis, kPlanningSize);
}

Sz Generator::size_symbol(int axis, int64_t planning) {
  auto it = runtime_sizes_.find(axis);
  if (it == runtime_sizes_.end()) {
    std::string member = ident(program_.axis(axis).name);
    std::set<std::string> taken;
    for (const auto &[other, name] : runtime_sizes_) taken.insert(name);
    for (int k = 2; taken.count(member); ++k) member = ident(program_.axis(axis).name) + "_" + std::to_string(k);
    it = runtime_sizes_.emplace(axis, member).first;
  }
  diagram_sizes_.insert(axis);
  return Sz::symbol("ncd_n." + it->second, planning);
}

}  // namespace ncd::cuda::detail
