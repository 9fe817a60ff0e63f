// The sizes of the things ncd's layout places (layout.h): a node's lanes, glyph and strip rows
// in its own coordinates, where a wire enters or leaves it, and the label a wire carries where
// it starts. Split from layout.cpp, which places what this measures.
#pragma once

#include <string>
#include <vector>

#include "layout.h"

namespace ncd::render {

struct Measured {
  double w = 0, h = 0;
  std::vector<double> lane_y;  // local
  Box glyph;                   // local
};

// A node's size, lanes and glyph box, in its own coordinates (top left at 0, 0), as if the
// drawing ran left to right: w along the flow, h and lane_y across it (layout.h, `vertical`).
Measured measure(const ModelNode &node, const LayoutOptions &options);

// Where a port is inside a node: the lane or row it names, at the left (`in`) or right side.
double port_y(const ModelNode &node, const Measured &m, const std::string &port);

// The label a wire carries where it starts: `axis(size)`, or in paper style the axis name only
// where the wire starts or changes (empty elsewhere).
std::string label_text(const ModelEdge &edge, const ModelNode &from, const LayoutOptions &options);

}  // namespace ncd::render
