// Fuzz target: the .npy parser (preamble, header dictionary, dtypes, Fortran
// order). A file it accepts holds exactly its shape's data and survives a
// round trip through ncd's own writer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ncd/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string bytes(reinterpret_cast<const char *>(data), size);
  ncd::RawArray array;
  std::string error;
  if (!ncd::parse_npy(bytes, array, error)) {
    if (error.empty()) {
      std::fprintf(stderr, "fuzz: refused without a reason\n");
      std::abort();
    }
    return 0;
  }
  ncd::RawArray again;
  if (!ncd::parse_npy(ncd::npy_bytes(array), again, error) || again.shape != array.shape || again.type != array.type ||
      again.data != array.data) {
    std::fprintf(stderr, "fuzz: the written .npy does not read back the same\n");
    std::abort();
  }
  return 0;
}
