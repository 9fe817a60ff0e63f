// Printing the core IR: as readable text (`ncd show --ir`, --print-after-all)
// and as versioned JSON (`ncd show --json`, the interface for external tools;
// schema documented in docs/IR_JSON.md).
#pragma once

#include <string>

#include "ncd/ir.h"
#include "ncd/source.h"

namespace ncd {

inline constexpr int kIrJsonVersion = 1;

// `only` limits the output to one diagram (nullptr: every diagram of the root file).
std::string print_ir(const ir::Program &program, const SourceManager &sources, const ir::Diagram *only);
std::string ir_to_json(const ir::Program &program, const SourceManager &sources, const ir::Diagram *only);

}  // namespace ncd
