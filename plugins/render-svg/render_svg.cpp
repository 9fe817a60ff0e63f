// The `svg` renderer plugin: a diagram laid out by ncd's own layout and written
// as SVG directly (PNG and PDF: that SVG drawn by Graphviz's cairo plugin at
// fixed positions), or with --layout dot laid out by Graphviz's dot engine, in
// process.
#include <memory>

#include "diagram_graph.h"
#include "graphviz_layout.h"
#include "layout.h"
#include "svg_writer.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

class SvgRenderer : public ncd::Renderer {
 public:
  std::string name() const override { return "svg"; }
  std::string description() const override {
    return "neural circuit diagram laid out by ncd (or Graphviz's dot): SVG, or PNG and PDF through Graphviz's cairo plugin";
  }
  std::vector<std::string> formats() const override { return {"svg", "png", "pdf"}; }
  bool render(const ncd::ir::Program &program, const ncd::ir::Diagram &diagram, const ncd::SourceManager &,
              const ncd::RenderOptions &options, std::string &output, std::string &error) const override {
    if (options.format != "svg" && options.format != "png" && options.format != "pdf") {
      error = "the svg renderer writes formats svg, png and pdf, not '" + options.format + "'";
      return false;
    }
    // auto is ncd's layout: it crosses no more wires than dot on any stdlib drawing, draws paper
    // style, and stays linear at any size (docs/RENDER.md, "Choosing a layout").
    ncd::render::DrawingModel model;
    std::string layout_name = options.layout == "auto" ? "ncd" : options.layout;
    if (options.direction != "lr" && options.direction != "tb") {
      error = "unknown direction '" + options.direction + "' (known: lr, tb)";
      return false;
    }
    if (layout_name == "dot") {
      if (options.direction != "lr") {
        error = "Graphviz's dot layout draws left to right only (--direction tb needs --layout ncd)";
        return false;
      }
      std::string dot =
          ncd::render::diagram_to_dot(program, diagram, {options.depth, options.title, nullptr, options.highlight});
      return ncd::render::graphviz_render(dot, options.format, output, error);
    }
    if (layout_name != "ncd") {
      error = "unknown layout '" + options.layout + "' (known: auto, ncd, dot)";
      return false;
    }
    ncd::render::diagram_to_dot(program, diagram, {options.depth, options.title, &model, options.highlight});
    ncd::render::LayoutOptions layout_options;
    layout_options.paper = options.paper;
    layout_options.sizes = options.sizes;
    layout_options.intermediates = options.label_intermediates;
    layout_options.legend = !options.paper || options.legend;
    layout_options.vertical = options.direction == "tb";
    ncd::render::Layout layout = ncd::render::layout_drawing(model, layout_options);
    std::string svg = ncd::render::write_svg(model, layout, layout_options);
    if (options.format == "svg") {
      output = std::move(svg);
      return true;
    }
    return ncd::render::graphviz_render_svg(svg, layout.width, layout.height, options.format, output, error);
  }
};

int register_svg(ncd::Registry *registry) { return registry->add_renderer(std::make_unique<SvgRenderer>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(render_svg, "render-svg", "1.0.0", "SVG, PNG and PDF neural circuit diagrams through Graphviz", register_svg)
