// Helpers for the cost-model unit tests: compile .ncd text, read profiles.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "ncd/cost.h"
#include "ncd/frontend.h"
#include "ncd/hardware.h"

namespace ncd::cost_test {

inline std::string source_root() { return NCD_TEST_SOURCE_ROOT; }

// A compiled program and everything its diagnostics point into.
struct Compiled {
  std::unique_ptr<Compilation> compilation = std::make_unique<Compilation>();
  bool ok = false;
  std::string path;
  std::string messages() {
    std::ostringstream out;
    compilation->diagnostics.flush(out, false);
    return out.str();
  }
  const ir::Diagram &diagram(const std::string &name) {
    const ir::Diagram *found = compilation->program.find_diagram(name);
    if (!found) throw std::runtime_error("no diagram " + name);
    return *found;
  }
};

// Writes `text` to a temporary file (the front end reads files) and compiles it.
inline std::unique_ptr<Compiled> compile(const std::string &text, const std::vector<std::string> &defines = {}) {
  auto out = std::make_unique<Compiled>();
  char folder[] = "/tmp/ncd_cost_test_XXXXXX";
  if (!mkdtemp(folder)) throw std::runtime_error("mkdtemp failed");
  out->path = std::string(folder) + "/test.ncd";
  std::ofstream(out->path) << text;
  CompileOptions options;
  options.defines = defines;
  out->ok = compile_file(out->path, options, *out->compilation);
  std::filesystem::remove_all(folder);
  return out;
}

inline std::optional<HardwareProfile> profile(Compiled &compiled, const std::string &yaml) {
  return parse_hardware(yaml, "test.yaml", compiled.compilation->sources, compiled.compilation->diagnostics);
}

// A GPU-like profile whose tile level ("smem") holds `smem_bytes` per SM.
inline std::string gpu_yaml(double smem_bytes) {
  std::ostringstream out;
  out.precision(17);
  out << "name: test-gpu\n"
         "tile_level: smem\n"
         "levels:\n"
         "  - {name: hbm, capacity: 80 GB, bandwidth: 3 TB/s, energy: 30 pJ/B}\n"
         "  - {name: smem, capacity: "
      << smem_bytes
      << ", fanout: 100, bandwidth: 30 TB/s, energy: 1 pJ/B}\n"
         "compute:\n"
         "  tensor:\n"
         "    bf16: {peak: 1000 TFLOP/s, energy: 0.2 pJ}\n"
         "  vector:\n"
         "    f32: {peak: 60 TFLOP/s, energy: 1 pJ}\n";
  return out.str();
}

inline std::string attention_source(int64_t q, int64_t k, int64_t d, const std::string &schedule) {
  std::ostringstream out;
  out << "axis q = " << q << ", k = " << k << ", d = " << d
      << "\n"
         "default dtype bf16\n"
         "diagram Attention(Q[q, d], K[k, d], V[k, d]) -> O[q, d] {\n"
         "  S[q, k]: f32 = Q[q, d] * K[k, d] * rsqrt(#d)\n"
         "  P[q, k] = softmax[k](S[q, k])\n"
         "  O[q, d] = P[q, k] * V[k, d]\n"
         "}\n";
  if (!schedule.empty()) out << "schedule Attention {\n" << schedule << "\n}\n";
  return out.str();
}

inline std::string matmul_source(int64_t a, int64_t b, int64_t c, const std::string &schedule,
                                 const std::string &dtype = "bf16") {
  std::ostringstream out;
  out << "axis a = " << a << ", b = " << b << ", c = " << c << "\ndefault dtype " << dtype
      << "\n"
         "diagram MatMul(A[a, b], B[b, c]) -> C[a, c] {\n"
         "  C[a, c] = A[a, b] * B[b, c]\n"
         "}\n";
  if (!schedule.empty()) out << "schedule MatMul {\n" << schedule << "\n}\n";
  return out.str();
}

}  // namespace ncd::cost_test
