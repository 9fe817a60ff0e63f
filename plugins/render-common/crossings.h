// Wire crossings of a laid-out drawing, counted exactly from its geometry, so
// that ncd's layout can choose between orderings by the number the tests pin
// (tests/render/crossings.py counts the same thing from the SVG); and where a
// wire runs behind what it should pass by, so that it can refuse a move.
#pragma once

#include <cstddef>

#include "drawing_model.h"
#include "layout.h"

namespace ncd::render {

// Proper crossings between the polylines of two wires that share no node (a bundle fanning out
// of one tensor, or wires into one glyph, are not counted against each other). Coordinates are
// rounded to hundredths first, as the SVG writes them. O(S log S) in the segments S, plus the
// squares of the node degrees (pairs of wires sharing a node are checked directly).
size_t count_crossings(const DrawingModel &model, const Layout &layout);

// Whether a horizontal stretch of `wire` runs through `box` (strictly, the box grown by `margin`
// above and below).
bool runs_through(const EdgeGeometry &wire, const Box &box, double margin);

// A wire this far inside a box's top or bottom edge only grazes it (count_hidden).
constexpr double kGraze = -2;

// What is drawn of a node: across the flow from its first lane or glyph to its last (the rest of
// its box is room around them), along the flow the whole box.
Box drawn_extent(const NodeGeometry &node);

// (wire, node) pairs where a horizontal stretch of a wire runs behind what is drawn of a node it
// neither starts nor ends at (tests/render/crossings.py's count_hidden reads the same from the
// SVG). O(wires x nodes).
size_t count_hidden(const DrawingModel &model, const Layout &layout);

// Whether a horizontal stretch of wire e runs behind a node box other than its ends' (grown by
// `clearance`), through a call's box that holds neither end, or along a wire that shares no node
// with it, where the two would read as one.
bool runs_behind(const DrawingModel &model, const Layout &layout, size_t e, double clearance);

}  // namespace ncd::render
