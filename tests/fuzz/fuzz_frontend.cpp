// Fuzz target: the whole front end on one .ncd file (lexer, parser, sema,
// lowering, verifier), then the diagnostics' rendering, the IR printers and
// the formatter. Beyond "no crash": formatting is idempotent, and a file that
// compiles still compiles once formatted (the formatter changes layout only).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "ncd/format.h"
#include "ncd/frontend.h"
#include "ncd/ir_print.h"

namespace {

// One scratch file per process: the front end reads files, as ncd does.
const std::string &scratch_path() {
  static const std::string path = [] {
    const char *tmp = std::getenv("TMPDIR");
    return std::string(tmp && *tmp ? tmp : "/tmp") + "/ncd-fuzz-frontend-" + std::to_string(getpid()) + ".ncd";
  }();
  return path;
}

void write_scratch(const std::string &text) {
  std::ofstream out(scratch_path(), std::ios::binary | std::ios::trunc);
  out << text;
}

struct Result {
  bool ok = false;
  std::string formatted;  // empty when the file did not parse
};

Result compile(const std::string &text) {
  write_scratch(text);
  ncd::Compilation compilation;
  ncd::CompileOptions options;
  options.include_dirs.push_back(NCD_FUZZ_STDLIB_DIR);
  Result result;
  result.ok = ncd::compile_file(scratch_path(), options, compilation);
  std::ostringstream sink;
  compilation.diagnostics.flush(sink, false);
  if (result.ok) {
    (void)ncd::print_ir(compilation.program, compilation.sources, nullptr);
    (void)ncd::ir_to_json(compilation.program, compilation.sources, nullptr);
  }
  if (!compilation.modules.empty() && compilation.modules[0].ast && !compilation.diagnostics.has_errors())
    result.formatted = ncd::format_file(*compilation.modules[0].ast, compilation.sources.file(compilation.modules[0].file_id));
  return result;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0;  // the front end's cost grows with size; small files find the bugs
  const std::string text(reinterpret_cast<const char *>(data), size);
  Result first = compile(text);
  if (first.formatted.empty()) return 0;
  Result second = compile(first.formatted);
  if (first.ok && !second.ok) {
    std::fprintf(stderr, "fuzz: the file compiles, its formatted text does not\n");
    std::abort();
  }
  if (!second.formatted.empty() && second.formatted != first.formatted) {
    std::fprintf(stderr, "fuzz: formatting is not idempotent\n");
    std::abort();
  }
  return 0;
}
