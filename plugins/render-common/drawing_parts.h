// The pieces a drawn diagram is made of (diagram_graph.cpp draws with them):
// text escaping and wrapping for DOT's HTML-like labels, the colours of memory
// levels, and a node as a table of lanes (one per axis) around a glyph.
#pragma once

#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ncd/ir.h"

namespace ncd::render::parts {

inline constexpr size_t kWrapWidth = 28;  // columns of a glyph's text line
inline constexpr const char *kFont = "Helvetica";
inline constexpr const char *kWireColor = "#333333";
inline constexpr const char *kCotangentColor = "#c2410c";  // the backward flow of a gradient
inline constexpr const char *kShardColor = "#7c3aed";      // split wires and collectives (docs/SHARDING.md)
// `ncd render --highlight KERNEL`: the calls of that kernel, unfolded (a cluster) or folded (a box).
inline constexpr const char *kHighlightFill = "#fde68a";
inline constexpr const char *kHighlightStroke = "#b45309";

// Memory levels get fixed colours by their usual names, others a palette in order of appearance.
struct LevelColor {
  const char *fill, *stroke;
};

struct Glyph {
  std::vector<std::string> lines;  // plain text, escaped when drawn; line 0 is the main one
  std::vector<std::string> notes;  // smaller text under the lines
  const char *fill = "#ffffff";
  const char *stroke = "#333333";
  int border = 1;        // 0: no box
  bool rounded = false;  // STYLE="rounded"
  bool dashed = false;
  bool bold = false;
  int font_size = 12;
  const char *outline = nullptr;  // a dashed outline around the whole node (contractions)
};

struct Lane {
  enum Role { Pass, Acted, Join };
  int axis = -1;
  bool in = false, out = false;
  Role role = Pass;
  std::string label{};  // in lane-label mode: the wire's axis(size), written where it enters
};

struct Endpoint {
  std::string node, port;
};

// Text for DOT: HTML-like label text, quoted ids, short numbers, the width a
// label takes on screen, and wrapping at a width.
std::string html_escape(std::string_view text);
std::string dot_quote(std::string_view text);
std::string format_number(double value);
size_t display_width(std::string_view text);
std::vector<std::string> wrap(const std::string &text, size_t width);

LevelColor level_color(const std::string &level, int order);

// A node: its glyph cell, the acted-on lanes brought together, the whole table.
std::string glyph_cell(const Glyph &glyph, int rowspan, const std::string &port, const char *level_fill);
void gather_acted(std::vector<Lane> &lanes);
std::string node_table(std::vector<Lane> lanes, const Glyph &glyph, const char *level_fill, const char *line_color);

// The gathers of the diagram's routed contractions (ncd/routing.h): drawn as
// a route, not a materialised gather.
std::set<const ir::Op *> routed_gathers(const ir::Program &program, const ir::Diagram &diagram);

// The values of a gradient's backward flow: inputs named d_NAME (the cotangents `ncd grad`
// takes, docs/AUTODIFF.md) and every value computed from one.
std::set<int> cotangent_values(const ir::Diagram &diagram);

std::string join(const std::vector<std::string> &items, const std::string &separator);
// A bordered strip (a repeat's entry and exit) holding table rows.
std::string strip(const std::string &rows);

}  // namespace ncd::render::parts
