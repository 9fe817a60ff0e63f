// Helpers shared by the unit tests: parsing text in memory, collecting the
// .ncd files of the tree, printing diagnostics as the CLI would.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "ncd/ast.h"
#include "ncd/diagnostics.h"
#include "ncd/source.h"

namespace ncd::test {

// The source tree (tests read stdlib/, examples/ and tests/golden/ from it).
std::string source_root();

// One parse of an in-memory text, with the sources and diagnostics it needs.
struct Parsed {
  SourceManager sources;
  DiagnosticEngine diagnostics{sources};
  int file_id = -1;
  std::unique_ptr<ast::File> ast;  // null on syntax errors
  const SourceFile &source() const { return sources.file(file_id); }
  // Everything reported, as the CLI prints it without colour (and cleared).
  std::string messages();
};

std::unique_ptr<Parsed> parse_text(const std::string &text, const std::string &path = "test.ncd");

// The AST dump without locations; "<syntax error>" plus the messages when it does not parse.
std::string dump_text(const std::string &text);

// `ncd fmt` of a text; throws std::runtime_error when it does not parse.
std::string format_text(const std::string &text);

std::string read_file(const std::string &path);

// Every .ncd file under stdlib/ and examples/ (recursively), sorted.
std::vector<std::string> library_files();
// Every .ncd file under tests/golden/ (recursively, but not pending/), sorted.
std::vector<std::string> golden_files();

// A fresh empty directory under the system's temporary folder.
std::string make_temp_dir();

}  // namespace ncd::test
