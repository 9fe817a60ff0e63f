// Canonical formatting of .ncd files (`ncd fmt`).
//
// Prints an AST back as text in the one canonical layout: two-space indents,
// one statement per line, spaces around binary operators and after commas,
// parentheses exactly where the user wrote them, comments kept (own-line
// comments before the next statement, trailing comments after theirs) and at
// most one blank line where the source had any. Idempotent by construction:
// formatting the output again changes nothing.
#pragma once

#include <string>

#include "ncd/ast.h"

namespace ncd {

std::string format_file(const ast::File &file, const SourceFile &source);

// Expression printers shared with the IR printer and the AST dump.
std::string format_expr(const ast::Expr &expr);
std::string format_size(const ast::SizeExpr &expr);
std::string format_index(const ast::Index &index);

}  // namespace ncd
