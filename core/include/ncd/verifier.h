// The IR verifier: structural invariants every pass must preserve.
//
// Run after lowering and after every pass in debug builds and in tests. A
// violation is an internal error (a bug in ncd), reported with the op's
// source location; it never depends on user input being well-formed.
#pragma once

#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

// Returns the violations found; empty when the program is well-formed.
std::vector<std::string> verify(const ir::Program &program);

}  // namespace ncd
