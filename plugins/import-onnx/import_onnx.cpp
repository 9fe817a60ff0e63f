// Importer `onnx` (plugin import-onnx): `ncd import MODEL.onnx` reads an ONNX
// model (what torch.onnx.export and every other framework write) and gives
// the ncd program and its weights (docs/IMPORT.md). onnx_graph.cpp reads the
// graph, onnx_print.cpp writes the program.
#include <memory>

#include "ncd/plugin.h"
#include "ncd/registry.h"
#include "onnx_model.h"

namespace {

class OnnxImporter : public ncd::Importer {
 public:
  std::string name() const override { return "onnx"; }
  std::string description() const override { return "ONNX models (torch.onnx.export): graph, named axes, weights"; }
  std::vector<std::string> extensions() const override { return {".onnx"}; }
  bool import_model(const ncd::ImportRequest &request, ncd::ImportResult &result, std::string &error) const override {
    ncd::onnx_import::Graph graph;
    if (!ncd::onnx_import::build_graph(request.bytes, graph, error)) return false;
    return ncd::onnx_import::print_program(graph, request.path, request.axis_names, request.diagram, result.source,
                                           result.weights, error);
  }
};

int register_onnx(ncd::Registry *registry) {
  return registry->add_importer(std::make_unique<OnnxImporter>()) ? 0 : 1;
}

}  // namespace

NCD_PLUGIN(import_onnx, "import-onnx", "0.1.0", "ONNX importer (ncd import MODEL.onnx)", register_onnx)
