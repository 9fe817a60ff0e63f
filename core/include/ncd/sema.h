// Sema: lowers parsed modules to the core IR.
//
// Preconditions: every module in `compilation.modules` parsed without errors,
// imports resolved (ParsedModule::imports filled, no cycles). Resolves names
// (axes, tensors, diagrams, functions), evaluates axis sizes (defaults, -D,
// derived relations), infers and checks shapes, places implicit contractions,
// lowers call sites with their bindings and lifting, and keeps schedules.
#pragma once

#include <string>
#include <vector>

#include "ncd/compilation.h"

namespace ncd {

void lower_to_ir(Compilation &compilation, const std::vector<std::string> &defines);

}  // namespace ncd
