// The frame around ncd's layout of a drawing (layout.h): the drawing turned to run top to
// bottom (--direction tb), and the legend and the title's room added around it. Split from
// layout.cpp, which places the drawing itself, left to right.
#pragma once

#include "layout.h"

namespace ncd::render {

// The text a wire carries (its label, the value's name above it) is drawn this size.
constexpr double kWireLabelFont = 10;
// How far above a wire's label its value's name sits (--label-intermediates).
constexpr double kValueLabelRise = 12;

// Swaps x and y throughout a layout made left to right (with its glyphs measured turned), then
// moves it clear of the title and the left edge. Precondition: width and height are the
// drawing's own extent, before frame_drawing.
void turn_top_to_bottom(Layout &layout);

// Places the legend under the drawing (when asked for and there is one) and widens the drawing
// to its title; rounds the size up to whole pixels.
void frame_drawing(Layout &layout, const DrawingModel &model, const LayoutOptions &options);

}  // namespace ncd::render
