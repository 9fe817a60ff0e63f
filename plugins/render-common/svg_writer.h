// SVG written directly from ncd's layout (layout.h): clusters, then wires,
// then nodes on top of the wires (boxes are lifted over the wires that pass
// them). Groups carry class="cluster|edge|node" and a <title>, as Graphviz's
// SVG does, so that the same checks (label overlaps, wire crossings) read the
// drawings of both layouts.
#pragma once

#include <string>

#include "drawing_model.h"
#include "layout.h"

namespace ncd::render {

// The SVG document; deterministic (numbers printed with two decimals).
std::string write_svg(const DrawingModel &model, const Layout &layout, const LayoutOptions &options);

}  // namespace ncd::render
