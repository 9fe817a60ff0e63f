// Laying out and rendering DOT text with Graphviz's C libraries (cgraph + gvc),
// in process: no `dot` subprocess.
#pragma once

#include <string>
#include <vector>

namespace ncd::render {

// Renders `dot` with the dot layout engine to `format` (svg, png, pdf, or any
// Graphviz output format). Returns false with `error` set when the format is
// unavailable in this Graphviz, the DOT text is invalid, or layout fails.
bool graphviz_render(const std::string &dot, const std::string &format, std::string &output, std::string &error);

// Renders an SVG drawing already laid out (by ncd's layout) to `format` (png, pdf): the SVG
// is one image at a fixed position in an otherwise empty graph, drawn by Graphviz's cairo
// plugin through librsvg.
bool graphviz_render_svg(const std::string &svg, double width, double height, const std::string &format,
                         std::string &output, std::string &error);

// Whether Graphviz can produce `format` here, and the formats it can.
bool graphviz_has_format(const std::string &format, std::vector<std::string> *available = nullptr);

}  // namespace ncd::render
