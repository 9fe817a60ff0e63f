// Fuzz target: the hardware profile reader (YAML, units, levels, compute
// units) with its located diagnostics.
#include <cstdint>
#include <sstream>
#include <string>

#include "ncd/diagnostics.h"
#include "ncd/hardware.h"
#include "ncd/source.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 64 * 1024) return 0;
  const std::string text(reinterpret_cast<const char *>(data), size);
  ncd::SourceManager sources;
  ncd::DiagnosticEngine diagnostics(sources);
  (void)ncd::parse_hardware(text, "fuzz.yaml", sources, diagnostics);
  std::ostringstream sink;
  diagnostics.flush(sink, false);
  return 0;
}
