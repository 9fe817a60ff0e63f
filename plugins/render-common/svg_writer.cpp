// SVG from ncd's layout (see svg_writer.h).
#include "svg_writer.h"

#include <algorithm>
#include <cstdio>

#include "layout_frame.h"

namespace ncd::render {
namespace {

std::string num(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  std::string text = buffer;
  if (text == "-0.00") text = "0.00";
  return text;
}

std::string esc(const std::string &text) { return parts::html_escape(text); }

// A rectangle as a path (rounded corners as quadratic curves), so that checks reading
// polygon and path points see its extent.
std::string box_path(const Box &b, bool rounded) {
  if (!rounded || b.w < 10 || b.h < 10) {
    return "M" + num(b.x) + "," + num(b.y) + " L" + num(b.x + b.w) + "," + num(b.y) + " L" + num(b.x + b.w) + "," +
           num(b.y + b.h) + " L" + num(b.x) + "," + num(b.y + b.h) + " Z";
  }
  double r = 4, x0 = b.x, y0 = b.y, x1 = b.x + b.w, y1 = b.y + b.h;
  return "M" + num(x0 + r) + "," + num(y0) + " L" + num(x1 - r) + "," + num(y0) + " Q" + num(x1) + "," + num(y0) + " " +
         num(x1) + "," + num(y0 + r) + " L" + num(x1) + "," + num(y1 - r) + " Q" + num(x1) + "," + num(y1) + " " +
         num(x1 - r) + "," + num(y1) + " L" + num(x0 + r) + "," + num(y1) + " Q" + num(x0) + "," + num(y1) + " " +
         num(x0) + "," + num(y1 - r) + " L" + num(x0) + "," + num(y0 + r) + " Q" + num(x0) + "," + num(y0) + " " +
         num(x0 + r) + "," + num(y0) + " Z";
}

std::string line(double x0, double y0, double x1, double y1, const std::string &color, double width = 1) {
  return "<polyline fill=\"none\" stroke=\"" + color + "\" stroke-width=\"" + num(width) + "\" points=\"" + num(x0) +
         "," + num(y0) + " " + num(x1) + "," + num(y1) + "\"/>\n";
}

std::string text(double x, double y, const std::string &content, double size, const char *anchor,
                 const std::string &color = "#000000", const char *style = nullptr) {
  std::string out = "<text text-anchor=\"" + std::string(anchor) + "\" x=\"" + num(x) + "\" y=\"" + num(y) +
                    "\" font-size=\"" + num(size) + "\" fill=\"" + color + "\"";
  if (style) out += " " + std::string(style);
  return out + ">" + esc(content) + "</text>\n";
}

// Text that runs along a wire, written from its baseline's start as the drawing left to right
// has it (`along` the flow, `across` it): level left to right; top to bottom, turned a quarter
// anticlockwise to read up the page, as a plot's vertical axis label does. Turned so, its
// baseline stays at `across` with the descent towards the wire, as left to right, and ending
// the text at `along` keeps it over the same stretch of the turned drawing.
std::string flow_text(bool vertical, double along, double across, const std::string &content, double size,
                      const std::string &color = "#000000", const char *style = nullptr) {
  if (!vertical) return text(along, across, content, size, "start", color, style);
  std::string turn = "transform=\"rotate(-90 " + num(across) + " " + num(along) + ")\"";
  if (style) turn += " " + std::string(style);
  return text(across, along, content, size, "end", color, turn.c_str());
}

// A line across a node at `lane` (left to right: a height; top to bottom: an x), from `from` to
// `to` along the flow.
std::string lane_line(bool vertical, double lane, double from, double to) {
  return vertical ? line(lane, from, lane, to, parts::kWireColor) : line(from, lane, to, lane, parts::kWireColor);
}

void write_node(std::string &out, const ModelNode &node, const NodeGeometry &g, const LayoutOptions &options) {
  out += "<g class=\"node\">\n<title>" + esc(node.name) + "</title>\n";
  const Box &b = g.box;
  if (node.strip && options.paper) {
    out += "<path fill=\"#64748b\" stroke=\"#64748b\" d=\"" + box_path(b, false) + "\"/>\n</g>\n";
    return;
  }
  const bool vertical = options.vertical;
  // Where the flow starts and ends through the node, and its extent along the flow.
  const double start = vertical ? b.y : b.x, end = vertical ? b.y + b.h : b.x + b.w;
  if (node.strip) {
    out += "<path fill=\"#ffffff\" stroke=\"#64748b\" d=\"" + box_path(b, false) + "\"/>\n";
    for (size_t k = 0; k < node.rows.size() && k < g.lane_y.size(); ++k) {
      const StripRow &row = node.rows[k];
      double y = g.lane_y[k];
      if (!row.fill.empty()) {
        Box band = vertical ? Box{y - 8, start + 1, 16, end - start - 2} : Box{start + 1, y - 8, end - start - 2, 16};
        out += "<rect x=\"" + num(band.x) + "\" y=\"" + num(band.y) + "\" width=\"" + num(band.w) + "\" height=\"" +
               num(band.h) + "\" fill=\"" + row.fill + "\"/>\n";
      }
      const char *style = row.bold ? "font-weight=\"bold\"" : row.italic ? "font-style=\"italic\"" : nullptr;
      out += flow_text(vertical, start + 6, y + 4, row.text, 11, "#000000", style);
    }
    out += "</g>\n";
    return;
  }
  const parts::Glyph &glyph = node.glyph;
  if (glyph.outline)
    out += "<path fill=\"none\" stroke=\"" + std::string(glyph.outline) + "\" stroke-dasharray=\"4,2\" d=\"" +
           box_path(b, true) + "\"/>\n";
  const Box &gb = g.glyph;
  for (size_t k = 0; k < node.lanes.size() && k < g.lane_y.size(); ++k) {
    const parts::Lane &lane = node.lanes[k];
    double y = g.lane_y[k];
    const double glyph_start = vertical ? gb.y : gb.x, glyph_end = vertical ? gb.y + gb.h : gb.x + gb.w;
    switch (spans_lanes(node) ? parts::Lane::Acted : lane.role) {
      case parts::Lane::Pass: out += lane_line(vertical, y, start, end); break;
      case parts::Lane::Join: {
        double middle = (start + end) / 2;
        out += lane_line(vertical, y, start, middle);
        out += "<circle cx=\"" + num(vertical ? y : middle) + "\" cy=\"" + num(vertical ? middle : y) +
               "\" r=\"3.50\" fill=\"#000000\"/>\n";
        break;
      }
      case parts::Lane::Acted:
        if (lane.in) out += lane_line(vertical, y, start, glyph_start);
        if (lane.out) out += lane_line(vertical, y, glyph_end, end);
        break;
    }
  }
  std::string fill = node.fill.empty() ? glyph.fill : node.fill;
  bool circle = glyph.border == 0 && !glyph.outline && glyph.font_size >= 18;
  if (circle) {
    double cx = gb.x + gb.w / 2, cy = gb.y + gb.h / 2;
    out += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"" + num(gb.w / 2) +
           "\" fill=\"#ffffff\" stroke=\"#333333\"/>\n";
    // The operator drawn as strokes: + for ⊕, − for ⊖, · for ⊙, / for ⊘.
    std::string symbol = glyph.lines.empty() ? "" : glyph.lines[0];
    double r = gb.w / 2 - 4;
    if (symbol == "\u2295" || symbol == "\u2296") out += line(cx - r, cy, cx + r, cy, "#333333", 1.2);
    if (symbol == "\u2295") out += line(cx, cy - r, cx, cy + r, "#333333", 1.2);
    if (symbol == "\u2298") out += line(cx - r * 0.7, cy + r * 0.7, cx + r * 0.7, cy - r * 0.7, "#333333", 1.2);
    if (symbol == "\u2299")
      out += "<circle cx=\"" + num(cx) + "\" cy=\"" + num(cy) + "\" r=\"2.00\" fill=\"#333333\"/>\n";
    out += "</g>\n";
    return;
  }
  if (glyph.border > 0) {
    out += "<path fill=\"" + fill + "\" stroke=\"" + std::string(glyph.stroke) + "\" stroke-width=\"" +
           num(glyph.bold ? 2.5 : glyph.border) + "\"" + (glyph.dashed ? " stroke-dasharray=\"4,2\"" : "") + " d=\"" +
           box_path(gb, glyph.rounded) + "\"/>\n";
  }
  bool notes =
      !options.paper || (std::any_of(node.lanes.begin(), node.lanes.end(), [](const parts::Lane &l) { return l.in; }) &&
                         std::any_of(node.lanes.begin(), node.lanes.end(), [](const parts::Lane &l) { return l.out; }));
  double height = 0;
  const std::vector<std::string> lines = glyph_lines(node, options);
  for (size_t i = 0; i < lines.size(); ++i) height += glyph.font_size * 1.25;
  if (notes) height += 9 * 1.25 * static_cast<double>(glyph.notes.size());
  double y = gb.y + (gb.h - height) / 2, cx = gb.x + gb.w / 2;
  for (const auto &content : lines) {
    y += glyph.font_size * 1.25;
    out += text(cx, y - glyph.font_size * 0.3, content, glyph.font_size, "middle", "#000000",
                glyph.bold ? "font-weight=\"bold\"" : nullptr);
  }
  if (notes)
    for (const auto &note : glyph.notes) {
      y += 9 * 1.25;
      out += text(cx, y - 9 * 0.3, note, 9, "middle", "#555555");
    }
  out += "</g>\n";
}

}  // namespace

std::string write_svg(const DrawingModel &model, const Layout &layout, const LayoutOptions &options) {
  std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n";
  out += "<!-- ncd render: ncd's own layout (docs/RENDER.md) -->\n";
  out += "<svg width=\"" + num(layout.width) + "\" height=\"" + num(layout.height) + "\" viewBox=\"0.00 0.00 " +
         num(layout.width) + " " + num(layout.height) + "\" xmlns=\"http://www.w3.org/2000/svg\">\n";
  out += "<g id=\"graph0\" class=\"graph\" font-family=\"Helvetica,Arial,sans-serif\">\n<title>" + esc(model.title) +
         "</title>\n";
  out += "<rect x=\"0.00\" y=\"0.00\" width=\"" + num(layout.width) + "\" height=\"" + num(layout.height) +
         "\" fill=\"#ffffff\"/>\n";
  out += text(12, 24, model.title, 16, "start");
  for (size_t k = 0; k < model.clusters.size(); ++k) {
    const ModelCluster &cluster = model.clusters[k];
    const Box &b = layout.clusters[k];
    if (b.w <= 0) continue;
    out += "<g class=\"cluster\">\n<title>cluster_" + esc(cluster.name) + ": " + esc(cluster.title) + "</title>\n";
    out += "<path fill=\"" + (cluster.fill.empty() ? std::string("none") : cluster.fill) + "\" stroke=\"" +
           cluster.stroke + "\"" + (cluster.bold ? " stroke-width=\"2.00\"" : "") +
           (cluster.dashed ? " stroke-dasharray=\"6,3\"" : "") + " d=\"" + box_path(b, true) + "\"/>\n";
    std::string color = cluster.kind == ModelCluster::Call ? "#000000" : cluster.stroke;
    // A title longer than its box is cut (the whole title is the group's <title>).
    std::string title = cluster.title;
    double size = cluster.kind == ModelCluster::Repeat ? 13 : 12;
    const double room = (options.vertical ? b.h : b.w) - 12;
    if (text_width(title, size) > room) {
      while (!title.empty() && text_width(title + "\u2026", size) > room) {
        while (!title.empty() && (static_cast<unsigned char>(title.back()) & 0xC0) == 0x80) title.pop_back();
        if (!title.empty()) title.pop_back();
      }
      title += "\u2026";
    }
    // Along the flow 6 px in from the box's start, across it 16 px (the title's line).
    out += flow_text(options.vertical, (options.vertical ? b.y : b.x) + 6, (options.vertical ? b.x : b.y) + 16, title,
                     size, color);
    out += "</g>\n";
  }
  for (size_t e = 0; e < model.edges.size(); ++e) {
    const ModelEdge &edge = model.edges[e];
    const EdgeGeometry &g = layout.edges[e];
    const ModelNode &from = model.nodes[static_cast<size_t>(edge.from)],
                    &to = model.nodes[static_cast<size_t>(edge.to)];
    out += "<g class=\"edge\">\n<title>" +
           esc(from.name + (edge.from_port.empty() ? "" : ":" + edge.from_port) + "->" + to.name +
               (edge.to_port.empty() ? "" : ":" + edge.to_port)) +
           "</title>\n<path fill=\"none\" stroke=\"" + edge.color + "\" stroke-width=\"" + num(edge.width) + "\"";
    if (edge.dashed) out += " stroke-dasharray=\"5,3\"";
    if (edge.dotted) out += " stroke-dasharray=\"1,3\"";
    out += " d=\"";
    for (size_t p = 0; p < g.points.size(); ++p)
      out += (p ? " L" : "M") + num(g.points[p].x) + "," + num(g.points[p].y);
    out += "\"/>\n";
    // label_at is the baseline's start left to right; top to bottom, x is across and y along.
    const double along = options.vertical ? g.label_at.y : g.label_at.x,
                 across = options.vertical ? g.label_at.x : g.label_at.y;
    if (!g.label.empty()) out += flow_text(options.vertical, along, across, g.label, kWireLabelFont, edge.color);
    if (!g.value_label.empty())
      out += flow_text(options.vertical, along, across - kValueLabelRise, g.value_label, kWireLabelFont, edge.color,
                       "font-style=\"italic\"");
    out += "</g>\n";
  }
  for (size_t i = 0; i < model.nodes.size(); ++i) write_node(out, model.nodes[i], layout.nodes[i], options);
  if (layout.legend.w > 0) {
    const Box &b = layout.legend;
    out += "<g class=\"legend\">\n<path fill=\"#ffffff\" stroke=\"#999999\" d=\"" + box_path(b, false) + "\"/>\n";
    for (size_t k = 0; k < model.legend.size(); ++k)
      out += text(b.x + 8, b.y + 18 + 15 * static_cast<double>(k), model.legend[k], 11, "start", "#000000",
                  model.legend[k].rfind("schedule ", 0) == 0 ? "font-weight=\"bold\"" : nullptr);
    out += "</g>\n";
  }
  out += "</g>\n</svg>\n";
  return out;
}

}  // namespace ncd::render
