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

}  // namespace

std::string quoted(const std::string &text) {
  std::string s = "\"";
  for (char c : text) s += (c == '"' || c == '\\') ? std::string("\\") + c : std::string(1, c);
  return s + "\"";
}

std::string harness_code(const std::vector<HarnessDiagram> &diagrams) {
  std::string s = "\n// ---------------------------------------------------------------- harness tables\nnamespace {\n";
  std::string shapes;
  int index = 0;
  for (const HarnessDiagram &d : diagrams) {
    std::vector<const HarnessTensor *> all;
    for (const auto &t : d.inputs) all.push_back(&t);
    for (const auto &t : d.params) all.push_back(&t);
    for (const auto &t : d.outputs) all.push_back(&t);
    std::string table = "ncd_tensors_" + std::to_string(index);
    std::string run = "ncd_run_" + std::to_string(index);
    std::string sizes;
    for (size_t k = 0; k < d.sizes.size(); ++k) sizes += (k ? ", n[" : "n[") + std::to_string(k) + "]";
    s += "size_t ncd_workspace_" + std::to_string(index) + "(const long long *n) {\n  (void)n;\n  return " +
         d.function + "_workspace(" + sizes + ");\n}\n";
    s += "int " + run + "(void *const *p, const long long *n, void *ws, size_t ws_bytes, cudaStream_t stream) {\n"
         "  (void)n;\n  return " + d.function + "(";
    for (size_t i = 0; i < all.size(); ++i)
      s += "static_cast<" + std::string(i < d.inputs.size() + d.params.size() ? "const " : "") +
           element_type(all[i]->dtype) + " *>(p[" + std::to_string(i) + "]), ";
    s += sizes + (sizes.empty() ? "" : ", ") + "ws, ws_bytes, stream);\n}\n";
    // The runtime dimensions of the tensors, from the sizes (the members of ncd_n, in order).
    shapes += "void ncd_shapes_" + std::to_string(index) + "(const long long *n, NcdTensorInfo *t) {\n";
    if (!d.sizes.empty()) {
      shapes += "  NcdSizes ncd_n{};\n";
      for (size_t k = 0; k < d.sizes.size(); ++k) shapes += "  " + d.sizes[k].member + " = n[" + std::to_string(k) + "];\n";
    }
    for (size_t i = 0; i < all.size(); ++i)
      for (size_t j = 0; j < all[i]->shape.size(); ++j)
        if (!all[i]->shape[j].known())
          shapes += "  t[" + std::to_string(i) + "].shape[" + std::to_string(j) + "] = " + all[i]->shape[j].code() + ";\n";
    shapes += "  (void)n;\n  (void)t;\n}\n";
    ++index;
  }
  s += "}  // namespace\n";
  // The tables and the shape functions need the harness's struct definitions: emitted after them.
  std::string tables = "\nnamespace {\n" + shapes;
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
      for (size_t i = 0; i < t->shape.size(); ++i)
        tables += (i ? ", " : "") + (t->shape[i].known() ? t->shape[i].code() : std::string("-1"));
      tables += "}},\n";
    }
    if (all.empty()) tables += "    {\"\", 0, 0, {}},\n";
    tables += "};\n";
    // Each runtime size is read from the first input dimension that is that size alone.
    tables += "const NcdSizeInfo ncd_sizes_" + std::to_string(index) + "[] = {\n";
    for (const HarnessDiagram::Size &size : d.sizes)
      tables += "    {" + quoted(size.axis) + ", " + std::to_string(size.tensor) + ", " + std::to_string(size.dim) + "},\n";
    if (d.sizes.empty()) tables += "    {\"\", -1, -1},\n";
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
              ", " + std::to_string(d.sizes.size()) + ", ncd_sizes_" + std::to_string(index) + ", ncd_shapes_" +
              std::to_string(index) + ", ncd_workspace_" + std::to_string(index) + ", ncd_run_" +
              std::to_string(index) + "},\n";
    ++index;
  }
  tables += "};\nconst int kNcdDiagramCount = " + std::to_string(diagrams.size()) + ";\n}  // namespace\n";
  // main() refers to the tables: split the harness text where main begins.
  std::string harness = device::harness;
  size_t main_at = harness.find("int main(");
  return s + harness.substr(0, main_at) + tables + "\n" + harness.substr(main_at);
}

}  // namespace ncd::cuda
