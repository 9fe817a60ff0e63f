// Wire crossings of a laid-out drawing, counted exactly from its geometry, so
// that ncd's layout can choose between orderings by the number the tests pin
// (tests/render/crossings.py counts the same thing from the SVG).
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

}  // namespace ncd::render
