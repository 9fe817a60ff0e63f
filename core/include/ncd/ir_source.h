// Writing the core IR back as .ncd source.
//
// The written file is self-contained and canonical (`ncd fmt` leaves it
// unchanged), and lowers to the same computation: one statement per IR
// operation, temporaries named t<id>, scalar literals, sizes and axis positions
// spelled inline. It lets passes and tools hand their IR to anything that reads
// .ncd files, and makes the IR testable against the language
// (`ncd show --source`, `ncd equiv`).
#pragma once

#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

struct SourceWriteOptions {
  std::string header_comment;  // leading comment lines, without their '#'
};

// Writes `roots` and every diagram they call, transitively (callees first),
// every axis those diagrams use (base axes at their current sizes, derived axes
// as their definitions) and the diagrams' schedules. Axes of different files
// that share a name become one axis when that changes no size the diagrams
// use. Returns false with `error` set when some IR construct has no faithful
// spelling in the language.
bool write_ncd_source(const ir::Program &program, const std::vector<const ir::Diagram *> &roots,
                      const SourceWriteOptions &options, std::string &text, std::string &error);

}  // namespace ncd
