// What a compilation is: the options of the front end, the parsed modules and
// the IR program lowered from them, with the sources and diagnostics they were
// reported against. Shared by the driver (ncd/frontend.h) and the phases it
// runs (sema), which must not depend on the driver.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ncd/ast.h"
#include "ncd/diagnostics.h"
#include "ncd/ir.h"

namespace ncd {

struct CompileOptions {
  std::vector<std::string> include_dirs;  // -I, searched after the importing file's folder
  std::vector<std::string> defines;       // -D NAME=N, as given
  bool stop_after_parse = false;          // fmt and show --ast need only the AST
};

struct ParsedModule {
  int file_id = -1;
  std::string path;      // as displayed
  std::string resolved;  // absolute
  std::unique_ptr<ast::File> ast;
  std::vector<int> imports;  // indices into Compilation::modules
};

struct Compilation {
  SourceManager sources;
  DiagnosticEngine diagnostics{sources};
  std::vector<ParsedModule> modules;  // modules[0] is the root file
  ir::Program program;
  // Every file read, root first: for -MD dependency files.
  std::vector<std::string> dependencies() const;
};

}  // namespace ncd
