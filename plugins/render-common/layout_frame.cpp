// The frame around ncd's layout (see layout_frame.h): top to bottom, legend, title.
#include "layout_frame.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace ncd::render {
namespace {

constexpr double kMargin = 12;
constexpr double kTitleBand = 36;  // the title's line above a top-to-bottom drawing

void swap_box(Box &box) {
  std::swap(box.x, box.y);
  std::swap(box.w, box.h);
}

}  // namespace

void turn_top_to_bottom(Layout &layout) {
  // Across the flow the drawing left to right starts under the title's room, which top to
  // bottom is wasted on the left: start at the leftmost thing drawn instead, a wire's label or
  // a wire passing over the top of a box included.
  double low = std::numeric_limits<double>::infinity(), left = low;
  auto see = [&](double x, double y) {
    left = std::min(left, x);
    low = std::min(low, y);
  };
  for (const auto &node : layout.nodes) see(node.box.x, node.box.y);
  for (const auto &cluster : layout.clusters)
    if (cluster.w > 0) see(cluster.x, cluster.y);
  for (const auto &edge : layout.edges) {
    for (const auto &point : edge.points) see(point.x, point.y);
    if (!edge.label.empty()) see(edge.label_at.x, edge.label_at.y - 0.8 * kWireLabelFont);
    if (!edge.value_label.empty()) see(edge.label_at.x, edge.label_at.y - kValueLabelRise - 0.8 * kWireLabelFont);
  }
  if (!std::isfinite(low)) low = left = 0;
  // New x: old y moved to the margin; new y: old x moved under the title.
  const double dx = kMargin - low, dy = kTitleBand - left;
  auto turn_box = [&](Box &box) {
    swap_box(box);
    box.x += dx;
    box.y += dy;
  };
  auto turn_point = [&](Point &point) {
    std::swap(point.x, point.y);
    point.x += dx;
    point.y += dy;
  };
  for (auto &node : layout.nodes) {
    turn_box(node.box);
    if (node.glyph.w > 0 || node.glyph.h > 0) turn_box(node.glyph);
    for (double &lane : node.lane_y) lane += dx;
  }
  for (auto &cluster : layout.clusters)
    if (cluster.w > 0) turn_box(cluster);
  for (auto &edge : layout.edges) {
    for (auto &point : edge.points) turn_point(point);
    turn_point(edge.label_at);
  }
  const double width = layout.height + dx, height = layout.width + dy;
  layout.width = width;
  layout.height = height;
}

void frame_drawing(Layout &layout, const DrawingModel &model, const LayoutOptions &options) {
  double right = layout.width, bottom = layout.height;
  if (!model.legend.empty() && options.legend) {
    double w = 0;
    for (const auto &line : model.legend) w = std::max(w, text_width(line, 11));
    layout.legend = {kMargin, bottom + 4, w + 16, static_cast<double>(model.legend.size()) * 15 + 10};
    bottom = layout.legend.y + layout.legend.h + kMargin;
    right = std::max(right, layout.legend.x + layout.legend.w + kMargin);
  }
  right = std::max(right, text_width(model.title, 16) + 24);
  layout.width = std::ceil(right);
  layout.height = std::ceil(bottom);
}

}  // namespace ncd::render
