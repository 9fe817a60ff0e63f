// Unrolling `repeat`: a diagram as straight-line code, each iteration's ops
// written out. `ncd grad` differentiates a repeated diagram this way: the
// backward pass runs the iterations in reverse and reads each iteration's own
// values, which straight-line code states directly.
#pragma once

#include <memory>
#include <string>

#include "ncd/ir.h"

namespace ncd::ir {

// A copy of `diagram` (named `name`) with every repeat, nested ones included,
// replaced by its iterations. Each call site that reaches params gets the label
// that names its params' path in the original (`h.3`, `0.Block@1`), so the
// copy reads the same param instances. Values defined outside repeats keep
// their ids. Returns nullptr and sets `why`/`where` when a param is declared
// inside a repeat (its instances have no name in straight-line code).
std::unique_ptr<Diagram> unroll_repeats(const Program &program, const Diagram &diagram, const std::string &name,
                                        std::string &why, SourceLocation &where);

}  // namespace ncd::ir
