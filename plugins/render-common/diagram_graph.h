// Drawing a core-IR diagram as a neural circuit diagram, in Graphviz's DOT
// language. Shared by the `dot` and `svg` renderer plugins.
//
// Conventions (docs/RENDER.md has the picture legend):
//   - data flows left to right: inputs on the left, outputs on the right;
//   - every axis of a tensor is one wire (one edge), labelled axis(size); a
//     tensor is the bundle of its wires;
//   - every operation is one node whose wires enter and leave on per-axis
//     lanes; the glyph (a box, a join dot, a circle) shows the kind; lanes the
//     operation is lifted over pass by the glyph as straight lines;
//   - calls are clusters (folded into one box below --depth), `repeat N`
//     bodies are drawn once in a cluster marked ×N;
//   - schedules colour memory levels and mark grouped and streamed axes.
//
// The DOT text is a pure function of the IR and the options: node names come
// from op and value ids, never from addresses, so output is deterministic.
#pragma once

#include <string>

#include "drawing_model.h"
#include "ncd/ir.h"

namespace ncd::render {

struct DrawOptions {
  int depth = -1;     // calls nested deeper than this are drawn folded; -1: unfold all
  std::string title;  // graph title; empty: the diagram's name
  // When set, the drawing is also recorded here as data (for ncd's own layout); every wire
  // then keeps its label (ncd's layout has no cost per label, unlike Graphviz's).
  DrawingModel *model = nullptr;
  std::string highlight;  // calls of this diagram (a fused kernel) are drawn in the highlight colour
};

// The DOT source of `diagram`'s drawing.
std::string diagram_to_dot(const ir::Program &program, const ir::Diagram &diagram, const DrawOptions &options);

}  // namespace ncd::render
