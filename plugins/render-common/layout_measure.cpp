// Measures for ncd's layout (see layout_measure.h): node sizes, ports, wire labels, text widths.
#include "layout_measure.h"

#include <algorithm>
#include <cstdlib>
#include <string_view>

namespace ncd::render {
namespace {

constexpr double kLane = 18;       // vertical pitch of a wire's lane inside a node
constexpr double kSide = 9;        // the short lane ends drawn either side of a glyph
constexpr double kPaperSide = 4;   // in paper style, where the gaps' wires show the lanes enough
constexpr double kPaperStrip = 4;  // a call's entry or exit in paper style
constexpr size_t kPaperWrap = 12;  // columns of a glyph's text line in paper style, left to right
constexpr size_t kPaperWrapTb = 24;  // top to bottom, where a wide glyph costs less than a tall one
constexpr double kRow = 16;        // a strip's row

bool circled(const parts::Glyph &glyph) { return glyph.border == 0 && !glyph.outline && glyph.font_size >= 18; }

}  // namespace

Measured measure(const ModelNode &node, const LayoutOptions &options) {
  const bool paper = options.paper;
  Measured m;
  if (node.strip) {
    // Paper style: a call's entry and exit are thin bars; the wires leaving them name the axes
    // the call renames.
    double width = paper ? kPaperStrip : 24;
    for (const auto &row : node.rows)
      if (!paper) width = std::max(width, text_width(row.text, 11) + 12);
    m.w = width;
    for (size_t k = 0; k < node.rows.size(); ++k) m.lane_y.push_back((static_cast<double>(k) + 0.5) * kRow);
    m.h = std::max(kRow, static_cast<double>(node.rows.size()) * kRow);
    return m;
  }
  const parts::Glyph &glyph = node.glyph;
  const double side = paper ? kPaperSide : kSide;
  bool show_notes =
      !paper || (std::any_of(node.lanes.begin(), node.lanes.end(), [](const parts::Lane &l) { return l.in; }) &&
                 std::any_of(node.lanes.begin(), node.lanes.end(), [](const parts::Lane &l) { return l.out; }));
  double text_w = 0, text_h = 0;
  for (const auto &line : glyph_lines(node, options)) {
    text_w = std::max(text_w, text_width(line, glyph.font_size));
    text_h += glyph.font_size * 1.25;
  }
  if (show_notes)
    for (const auto &note : glyph.notes) {
      text_w = std::max(text_w, text_width(note, 9));
      text_h += 9 * 1.25;
    }
  // Sizes along the flow (gw) and across it (gh): a glyph's text stays horizontal whatever the
  // direction, so top to bottom its lines stack along the flow.
  double gw = std::max(text_w + 14, 22.0), gh = text_h + 8;
  if (options.vertical) {
    gw = std::max(text_h + 10, 22.0);
    gh = text_w + 14;
  }
  if (circled(glyph)) gw = gh = 22;
  const bool spans = spans_lanes(node);
  auto is_acted = [&](const parts::Lane &lane) { return spans || lane.role == parts::Lane::Acted; };
  size_t acted = 0;
  for (const auto &lane : node.lanes) acted += is_acted(lane);
  double cursor = 0;
  if (acted == 0 && !circled(glyph)) {
    m.glyph = {side, 2, gw, gh};
    cursor = gh + 6;
  }
  double block_h = std::max(static_cast<double>(acted) * kLane, gh + 4);
  bool block_done = false;
  size_t acted_index = 0;
  double block_top = 0;
  for (const auto &lane : node.lanes) {
    if (is_acted(lane)) {
      if (!block_done) {
        block_top = cursor;
        block_done = true;
        m.glyph = {side, block_top + 2, gw, block_h - 4};
        cursor += block_h;
      }
      m.lane_y.push_back(block_top + (static_cast<double>(acted_index++) + 0.5) * block_h / static_cast<double>(acted));
      continue;
    }
    m.lane_y.push_back(cursor + kLane / 2);
    cursor += kLane;
  }
  if (circled(glyph)) {
    cursor = std::max(cursor, 26.0);
    double middle = node.lanes.empty() ? cursor / 2 : (m.lane_y.front() + m.lane_y.back()) / 2;
    m.glyph = {side, middle - gh / 2, gw, gh};
  }
  if (node.lanes.empty() && acted == 0) cursor = std::max(cursor, gh + 6);
  m.w = gw + 2 * side;
  m.h = std::max(cursor, 12.0);
  return m;
}

double port_y(const ModelNode &node, const Measured &m, const std::string &port) {
  if (port.empty() || port == "g") return m.glyph.h > 0 ? m.glyph.y + m.glyph.h / 2 : m.h / 2;
  if (node.strip) {
    for (size_t k = 0; k < node.rows.size(); ++k)
      if (node.rows[k].port == port) return m.lane_y[k];
    return m.h / 2;
  }
  int axis = std::atoi(port.c_str() + 1);
  bool in = port[0] == 'i';
  for (size_t k = 0; k < node.lanes.size(); ++k)
    if (node.lanes[k].axis == axis && (in ? node.lanes[k].in : node.lanes[k].out)) return m.lane_y[k];
  return m.h / 2;
}

std::string label_text(const ModelEdge &edge, const ModelNode &from, const LayoutOptions &options) {
  if (!edge.text.empty()) return edge.text;
  if (edge.axis.empty()) return "";
  bool with_size = !options.paper || options.sizes;
  std::string text = with_size && !edge.size.empty() ? edge.axis + "(" + edge.size + ")" : edge.axis;
  if (!edge.mark.empty()) text += " " + edge.mark;
  if (!options.paper) return text;
  // Paper style: only where the wire starts (a source, or an op that makes the axis).
  if (from.strip) {
    for (const auto &row : from.rows) {
      size_t arrow = row.text.find(" \u2190 ");
      if (row.port == edge.from_port && arrow != std::string::npos) return row.text.substr(0, arrow);
    }
    return "";
  }
  int axis = std::atoi(edge.from_port.c_str() + 1);
  for (const auto &lane : from.lanes)
    if (lane.axis == axis && lane.out) return lane.in ? "" : text;
  return text;
}

std::vector<std::string> glyph_lines(const ModelNode &node, const LayoutOptions &options) {
  if (!options.paper) return node.glyph.lines;
  std::vector<std::string> out;
  for (const auto &line : node.glyph.lines)
    for (auto &piece : parts::wrap(line, options.vertical ? kPaperWrapTb : kPaperWrap)) out.push_back(std::move(piece));
  return out;
}

bool spans_lanes(const ModelNode &node) {
  if (node.strip || node.lanes.empty() || node.glyph.border == 0) return false;
  return std::none_of(node.lanes.begin(), node.lanes.end(),
                      [](const parts::Lane &lane) { return lane.role != parts::Lane::Pass; });
}

double text_width(const std::string &text, double font_size) {
  double em = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c & 0xC0) == 0x80) continue;
    if (c >= 0x80)
      em += 0.8;
    else if (std::string_view("iljtfrI.,:;'!|()[]{} ").find(static_cast<char>(c)) != std::string_view::npos)
      em += 0.36;
    else if (c == 'm' || c == 'w' || c == 'M' || c == 'W' || c == '@' || c == '%')
      em += 0.86;
    else if (std::isupper(c) || std::isdigit(c))
      em += 0.68;
    else
      em += 0.57;
  }
  return em * font_size;
}

}  // namespace ncd::render
