// Fuzz target: the safetensors parser (header length, JSON header, dtypes,
// shapes, data offsets). An accepted file survives a round trip through
// ncd's own writer.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ncd/tensor.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const std::string bytes(reinterpret_cast<const char *>(data), size);
  ncd::SafetensorsFile file;
  std::string error;
  if (!ncd::parse_safetensors(bytes, file, error)) {
    if (error.empty()) {
      std::fprintf(stderr, "fuzz: refused without a reason\n");
      std::abort();
    }
    return 0;
  }
  ncd::SafetensorsFile again;
  if (!ncd::parse_safetensors(ncd::safetensors_bytes(file), again, error) || again.tensors.size() != file.tensors.size()) {
    std::fprintf(stderr, "fuzz: the written safetensors file does not read back: %s\n", error.c_str());
    std::abort();
  }
  for (const auto &[name, array] : file.tensors) {
    const auto &other = again.tensors.at(name);
    if (other.shape != array.shape || other.type != array.type || other.data != array.data) {
      std::fprintf(stderr, "fuzz: tensor '%s' does not read back the same\n", name.c_str());
      std::abort();
    }
  }
  return 0;
}
