// ncd's own layout of a neural circuit diagram (the drawing model of
// drawing_model.h), in place of Graphviz's general-purpose `dot` layout.
//
// Operations go in columns by dependency depth, left to right; calls and
// repeats are boxes sized from their contents, laid out inside out; within a
// box each node or inner box takes the free place nearest to the mean height
// of its placed sources or of its readers (barycentre sweeps, the pass with
// the fewest crossings kept), never on a wire already placed, so that a long
// wire keeps one straight lane (the residual stream) and wires bend
// orthogonally, in the gap before their target's column, only where they must
// change height; in drawings of at most 300 wires a long wire may step earlier
// or run through a channel beside the boxes it passes (rerouting, where a
// Sugiyama layout has virtual nodes). Every step is linear in the drawing's
// size except the free-place search, which looks only at the nodes sharing a
// column span, the crossing count (n log n) and the sifting and rerouting of
// drawings of at most 300 wires.
#pragma once

#include <string>
#include <vector>

#include "drawing_model.h"

namespace ncd::render {

struct LayoutOptions {
  bool paper = false;          // --style paper: axis names (no sizes) only where a wire starts
  bool sizes = false;          // --sizes: sizes even in paper style
  bool intermediates = false;  // --label-intermediates: name each named value where its wires start
  bool legend = true;          // the schedule's legend (paper style: only with --legend)
  // --direction tb: laid out left to right with the glyphs measured turned, then the drawing
  // turned (x and y swapped); wires and their labels run down the page, glyph text stays level.
  bool vertical = false;
};

struct Box {
  double x = 0, y = 0, w = 0, h = 0;
};

struct Point {
  double x = 0, y = 0;
};

struct NodeGeometry {
  Box box;                     // the whole node
  Box glyph;                   // the glyph's box (or circle's bounds); empty for strips
  std::vector<double> lane_y;  // per lane (ModelNode::lanes) or row (ModelNode::rows), absolute
  int column = 0;
};

struct EdgeGeometry {
  std::vector<Point> points;  // an orthogonal polyline from the source port to the target port
  std::string label;          // empty: none
  Point label_at;             // baseline start of the label
  std::string value_label;    // --label-intermediates: the value's name, above the label
};

struct Layout {
  std::vector<NodeGeometry> nodes;  // as DrawingModel::nodes
  std::vector<EdgeGeometry> edges;  // as DrawingModel::edges
  std::vector<Box> clusters;        // as DrawingModel::clusters
  Box legend;                       // empty when no legend is drawn
  double width = 0, height = 0;
};

// The text lines of a node's glyph: as drawn, or in paper style wrapped narrower (a tall box
// costs less than a wide one in a drawing read left to right, and a wide one less top to bottom).
std::vector<std::string> glyph_lines(const ModelNode &node, const LayoutOptions &options);

// Whether a node's glyph is drawn over all its lanes: an operation lifted over every wire it
// has (an elementwise function, a mask), a box the whole bundle passes through, as in the paper.
bool spans_lanes(const ModelNode &node);

// Width in pixels that `text` takes at `font_size` in a Helvetica-like font, on the large side.
double text_width(const std::string &text, double font_size);

// Places every node, cluster and wire of `model`. Deterministic: a function of the model alone.
Layout layout_drawing(const DrawingModel &model, const LayoutOptions &options);

}  // namespace ncd::render
