// The --harness main(): reads inputs and params from .npy files laid out as
// `ncd run --random` writes them (DIR/inputs/NAME.npy, DIR/params/PATH.npy),
// runs a diagram's host function, writes its outputs as .npy (dtypes as
// docs/RUN.md stores them), and times it with CUDA events (warm-up, then the
// median of N runs), printing TFLOP/s from ncd's FLOP count. The fixed code
// is device/harness.cuh; this file writes the per-diagram tables it reads.
#include <cstdio>

#include "codegen.h"
#include "device_code.h"

namespace ncd::cuda {
namespace {

int dtype_code(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return 0;
    case ir::DType::F16: return 1;
    case ir::DType::BF16: return 2;
    case ir::DType::F8E4M3: return 3;
    case ir::DType::F8E5M2: return 4;
    case ir::DType::I8: return 5;
    case ir::DType::I32: return 6;
    case ir::DType::Bool: return 7;
  }
  return 0;
}

std::string quoted(const std::string &text) {
  std::string s = "\"";
  for (char c : text) s += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return s + "\"";
}

}  // namespace

std::string harness_code(const std::vector<HarnessDiagram> &diagrams) {
  std::string s = "\n// ---------------------------------------------------------------- harness tables\nnamespace {\n";
  int index = 0;
  for (const HarnessDiagram &d : diagrams) {
    std::vector<const HarnessTensor *> all;
    for (const auto &t : d.inputs) all.push_back(&t);
    for (const auto &t : d.params) all.push_back(&t);
    for (const auto &t : d.outputs) all.push_back(&t);
    std::string table = "ncd_tensors_" + std::to_string(index);
    std::string run = "ncd_run_" + std::to_string(index);
    s += "int " + run + "(void *const *p, cudaStream_t stream) {\n  return " + d.function + "(";
    for (size_t i = 0; i < all.size(); ++i)
      s += "static_cast<" + std::string(i < d.inputs.size() + d.params.size() ? "const " : "") +
           element_type(all[i]->dtype) + " *>(p[" + std::to_string(i) + "]), ";
    s += "stream);\n}\n";
    ++index;
  }
  s += "}  // namespace\n";
  // The tables need the harness's struct definitions: emitted after them.
  std::string tables = "\nnamespace {\n";
  index = 0;
  for (const HarnessDiagram &d : diagrams) {
    std::vector<const HarnessTensor *> all;
    for (const auto &t : d.inputs) all.push_back(&t);
    for (const auto &t : d.params) all.push_back(&t);
    for (const auto &t : d.outputs) all.push_back(&t);
    tables += "const NcdTensorInfo ncd_tensors_" + std::to_string(index) + "[] = {\n";
    for (const HarnessTensor *t : all) {
      tables += "    {" + quoted(t->name) + ", " + std::to_string(dtype_code(t->dtype)) + ", " +
                std::to_string(t->shape.size()) + ", {";
      for (size_t i = 0; i < t->shape.size(); ++i) tables += (i ? ", " : "") + std::to_string(t->shape[i]);
      tables += "}},\n";
    }
    if (all.empty()) tables += "    {\"\", 0, 0, {}},\n";
    tables += "};\n";
    ++index;
  }
  tables += "const NcdDiagramInfo kNcdDiagrams[] = {\n";
  index = 0;
  for (const HarnessDiagram &d : diagrams) {
    char flops[64];
    std::snprintf(flops, sizeof flops, "%.17g", d.flops);
    tables += "    {" + quoted(d.name) + ", " + std::to_string(d.inputs.size()) + ", " + std::to_string(d.params.size()) +
              ", " + std::to_string(d.outputs.size()) + ", ncd_tensors_" + std::to_string(index) + ", " + flops +
              ", ncd_run_" + std::to_string(index) + "},\n";
    ++index;
  }
  tables += "};\nconst int kNcdDiagramCount = " + std::to_string(diagrams.size()) + ";\n}  // namespace\n";
  // main() refers to the tables: split the harness text where main begins.
  std::string harness = device::harness;
  size_t main_at = harness.find("int main(");
  return s + harness.substr(0, main_at) + tables + "\n" + harness.substr(main_at);
}

}  // namespace ncd::cuda
