// Parsing: .ncd text to AST.
//
// The only place that touches ANTLR. It validates the raw bytes (text, UTF-8,
// nesting depth) before parsing so that no input can crash or exhaust the
// parser, reports syntax errors through our own listener in ncd's words, and
// transforms the typed parse tree into the AST by hand.
#pragma once

#include <memory>

#include "ncd/ast.h"
#include "ncd/diagnostics.h"

namespace ncd {

// Limits that keep pathological input from exhausting memory or the stack.
inline constexpr size_t kMaxSourceBytes = 64u << 20;
inline constexpr int kMaxNesting = 256;

// Returns nullptr when the file has syntax errors (reported to `diagnostics`).
std::unique_ptr<ast::File> parse_file(const SourceManager &sources, int file_id,
                                      DiagnosticEngine &diagnostics);

}  // namespace ncd
