// The `svg` renderer plugin: a diagram laid out by Graphviz's dot engine and
// written as SVG (or PNG and PDF through Graphviz's cairo plugin), in process.
#include <memory>

#include "diagram_graph.h"
#include "graphviz_layout.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class SvgRenderer : public ncd::Renderer {
 public:
  std::string name() const override { return "svg"; }
  std::string description() const override {
    return "neural circuit diagram laid out by Graphviz: SVG, or PNG and PDF through its cairo plugin";
  }
  std::vector<std::string> formats() const override { return {"svg", "png", "pdf"}; }
  bool render(const ncd::ir::Program &program, const ncd::ir::Diagram &diagram, const ncd::SourceManager &,
              const ncd::RenderOptions &options, std::string &output, std::string &error) const override {
    if (options.format != "svg" && options.format != "png" && options.format != "pdf") {
      error = "the svg renderer writes formats svg, png and pdf, not '" + options.format + "'";
      return false;
    }
    std::string dot = ncd::render::diagram_to_dot(program, diagram, {options.depth, options.title});
    return ncd::render::graphviz_render(dot, options.format, output, error);
  }
};

int register_svg(ncd::Registry *registry) { return registry->add_renderer(std::make_unique<SvgRenderer>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(render_svg, "render-svg", "1.0.0", "SVG, PNG and PDF neural circuit diagrams through Graphviz", register_svg)
