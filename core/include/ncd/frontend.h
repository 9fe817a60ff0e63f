// The front end: from a root .ncd file to a verified core IR Program.
//
// Loads the root file and its imports through the search path, parses each
// once, applies -D size overrides, lowers every diagram (sema) and runs the
// IR verifier. All problems are reported to the compilation's diagnostics.
#pragma once

#include <string>
#include <vector>

#include "ncd/compilation.h"

namespace ncd {

// How a dependency file names a file read: as given when that reaches it from
// the current folder (make resolves prerequisites there), else its resolved path.
std::string prerequisite_path(const std::string &as_given, const std::string &resolved);
// `path` relative to the current folder when it lies below it, else "".
std::string relative_to_cwd(const std::string &path);

// The directories searched for imports after -I: NCD_PATH, then the stdlib.
std::vector<std::string> default_search_path();

// Returns true when the program is free of errors.
bool compile_file(const std::string &path, const CompileOptions &options, Compilation &out);
// The same for a root file held in memory (`path` names it in diagnostics and
// anchors its relative imports); nothing is read or written for the root.
bool compile_text(const std::string &path, const std::string &text, const CompileOptions &options, Compilation &out);

// Reads a file for the front end; returns false (with a located-less error) when unreadable.
bool read_text_file(const std::string &path, std::string &text, std::string &error);

}  // namespace ncd
