// The `dot` renderer plugin: a diagram as Graphviz DOT text (the drawing
// before layout, deterministic; the golden tests pin its structure).
#include <memory>

#include "diagram_graph.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class DotRenderer : public ncd::Renderer {
 public:
  std::string name() const override { return "dot"; }
  std::string description() const override { return "neural circuit diagram as Graphviz DOT source (before layout)"; }
  std::vector<std::string> formats() const override { return {"dot"}; }
  bool render(const ncd::ir::Program &program, const ncd::ir::Diagram &diagram, const ncd::SourceManager &,
              const ncd::RenderOptions &options, std::string &output, std::string &error) const override {
    if (options.format != "dot") {
      error = "the dot renderer writes only format 'dot', not '" + options.format + "'";
      return false;
    }
    if (options.direction != "lr") {
      // DOT's records hold a tensor's lanes as rows of a table, read left to right.
      error = "the dot renderer draws left to right only (--direction tb needs the svg renderer)";
      return false;
    }
    output = ncd::render::diagram_to_dot(program, diagram, {options.depth, options.title, nullptr, options.highlight});
    return true;
  }
};

int register_dot(ncd::Registry *registry) { return registry->add_renderer(std::make_unique<DotRenderer>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(render_dot, "render-dot", "1.0.0", "Graphviz DOT source of neural circuit diagrams", register_dot)
