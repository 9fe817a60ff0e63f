// The pieces a drawn diagram is made of: text for DOT labels, the colours of
// memory levels, nodes as tables of lanes (see drawing_parts.h).
#include "drawing_parts.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>

#include "ncd/routing.h"

namespace ncd::render::parts {

// ---------------------------------------------------------------- text

std::string html_escape(std::string_view text) {
  std::string out;
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string dot_quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string format_number(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  if (std::isnan(value)) return "nan";
  if (value == std::floor(value) && std::fabs(value) < 1e15) return std::to_string(static_cast<long long>(value));
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%g", value);
  return buffer;
}

// Characters that display as one column (UTF-8 continuation bytes do not count).
size_t display_width(std::string_view text) {
  size_t width = 0;
  for (unsigned char c : text)
    if ((c & 0xC0) != 0x80) ++width;
  return width;
}

// Breaks long text at spaces (or anywhere, for a long word) into lines of at most `width` columns,
// so that a long label makes its node taller, never wider than the drawing can hold.
std::vector<std::string> wrap(const std::string &text, size_t width) {
  std::vector<std::string> lines;
  std::string current;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(' ', start);
    if (end == std::string::npos) end = text.size();
    std::string word = text.substr(start, end - start);
    start = end + 1;
    while (display_width(word) > width) {
      if (!current.empty()) {
        lines.push_back(current);
        current.clear();
      }
      // Cut at a character boundary.
      size_t cut = 0, columns = 0;
      while (cut < word.size() && columns < width) {
        ++cut;
        while (cut < word.size() && (static_cast<unsigned char>(word[cut]) & 0xC0) == 0x80) ++cut;
        ++columns;
      }
      lines.push_back(word.substr(0, cut));
      word = word.substr(cut);
    }
    if (word.empty()) continue;
    if (!current.empty() && display_width(current) + 1 + display_width(word) > width) {
      lines.push_back(current);
      current.clear();
    }
    current += (current.empty() ? "" : " ") + word;
  }
  if (!current.empty() || lines.empty()) lines.push_back(current);
  return lines;
}

// ---------------------------------------------------------------- schedules

LevelColor level_color(const std::string &level, int order) {
  std::string name;
  for (char c : level) name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (name == "hbm" || name == "gmem" || name == "global" || name == "dram" || name == "mem") return {"#e0ecff", "#1d4ed8"};
  if (name == "l2") return {"#f3e8ff", "#7e22ce"};
  if (name == "smem" || name == "shared" || name == "sram" || name == "l1") return {"#dcfce7", "#15803d"};
  if (name == "rmem" || name == "reg" || name == "regs" || name == "registers" || name == "rf") return {"#ffedd5", "#c2410c"};
  static const LevelColor palette[] = {{"#fef9c3", "#a16207"}, {"#cffafe", "#0e7490"}, {"#fce7f3", "#be185d"},
                                       {"#e2e8f0", "#334155"}};
  return palette[static_cast<size_t>(order) % (sizeof palette / sizeof palette[0])];
}

// ---------------------------------------------------------------- glyphs and nodes

std::string glyph_cell(const Glyph &glyph, int rowspan, const std::string &port, const char *level_fill) {
  std::string cell = "<TD PORT=\"" + port + "\"";
  if (rowspan > 1) cell += " ROWSPAN=\"" + std::to_string(rowspan) + "\"";
  const char *fill = level_fill ? level_fill : glyph.fill;
  if (glyph.border > 0) {
    cell += " BORDER=\"" + std::to_string(glyph.border) + "\" COLOR=\"" + glyph.stroke + "\"";
    if (std::string_view(fill) != "none") cell += " BGCOLOR=\"" + std::string(fill) + "\"";
    if (glyph.rounded) cell += " STYLE=\"rounded\"";
    if (glyph.dashed) cell += " STYLE=\"dashed\"";
  }
  cell += " CELLPADDING=\"4\">";
  std::string text;
  for (size_t i = 0; i < glyph.lines.size(); ++i) {
    if (i) text += "<BR/>";
    text += html_escape(glyph.lines[i]);
  }
  if (text.empty()) text = " ";
  if (glyph.bold) text = "<B>" + text + "</B>";
  std::string body = "<FONT POINT-SIZE=\"" + std::to_string(glyph.font_size) + "\">" + text + "</FONT>";
  for (const auto &note : glyph.notes) body += "<BR/><FONT POINT-SIZE=\"9\" COLOR=\"#555555\">" + html_escape(note) + "</FONT>";
  return cell + body + "</TD>";
}

// Keeps lanes in order but gathers the acted ones into one block where the first of them is,
// so that one glyph cell can span them.
void gather_acted(std::vector<Lane> &lanes) {
  auto first = std::find_if(lanes.begin(), lanes.end(), [](const Lane &lane) { return lane.role == Lane::Acted; });
  if (first == lanes.end()) return;
  std::vector<Lane> before(lanes.begin(), first), acted, after;
  for (auto it = first; it != lanes.end(); ++it) (it->role == Lane::Acted ? acted : after).push_back(*it);
  lanes = before;
  lanes.insert(lanes.end(), acted.begin(), acted.end());
  lanes.insert(lanes.end(), after.begin(), after.end());
}

// The HTML label of a node: a glyph and its lanes, on a grid of four columns (in port, two
// middle halves, out port). A pass-by lane is two half-height rows, and its wire inside the node
// is the bottom border of the upper one, so it runs straight through at the height where the
// edges attach; a summed lane's wire stops in a join dot. Acted lanes are one row each beside
// the glyph, which spans them; with no acted lane the glyph sits on top of the lanes.
std::string node_table(std::vector<Lane> lanes, const Glyph &glyph, const char *level_fill, const char *line_color) {
  const char *outline = glyph.outline;
  gather_acted(lanes);
  size_t acted_count = 0;
  for (const auto &lane : lanes) acted_count += lane.role == Lane::Acted;
  const std::string color = line_color;
  auto port_cell = [&](const char *side, const Lane &lane, bool present, bool beside_glyph) {
    std::string cell = beside_glyph ? "<TD HEIGHT=\"14\" WIDTH=\"1\"" : "<TD ROWSPAN=\"2\" WIDTH=\"1\"";
    if (!present) return cell + "></TD>";
    cell += " PORT=\"" + std::string(side) + std::to_string(lane.axis) + "\"";
    if (*side == 'i' && !lane.label.empty())
      return cell + " ALIGN=\"LEFT\"><FONT POINT-SIZE=\"8\" COLOR=\"#444444\">" + html_escape(lane.label) + " </FONT></TD>";
    return cell + "></TD>";
  };
  const std::string wire_half = "<TD HEIGHT=\"7\" WIDTH=\"12\" BORDER=\"1\" SIDES=\"B\" COLOR=\"" + color + "\"></TD>";
  const std::string empty_half = "<TD HEIGHT=\"7\" WIDTH=\"12\"></TD>";
  std::string glyph_html = glyph_cell(glyph, static_cast<int>(std::max<size_t>(acted_count, 1)), "g", level_fill);
  glyph_html.insert(3, " COLSPAN=\"2\"");
  std::string out = "<TABLE BORDER=\"" + std::string(outline ? "1" : "0") + "\"";
  if (outline) out += " STYLE=\"rounded,dashed\" COLOR=\"" + std::string(outline) + "\"";
  out += " CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"0\">";
  if (acted_count == 0) out += "<TR><TD></TD>" + glyph_html + "<TD></TD></TR>";  // on top of the lanes
  bool glyph_drawn = false;
  for (const Lane &lane : lanes) {
    if (lane.role == Lane::Acted) {
      out += "<TR>" + port_cell("i", lane, lane.in, true);
      if (!glyph_drawn) out += glyph_html;
      glyph_drawn = true;
      out += port_cell("o", lane, lane.out, true) + "</TR>";
      continue;
    }
    out += "<TR>" + port_cell("i", lane, lane.in, false);
    if (lane.role == Lane::Join) {
      // The summed wires meet in a dot and end there.
      out += wire_half + "<TD ROWSPAN=\"2\" ALIGN=\"LEFT\"><FONT POINT-SIZE=\"13\" COLOR=\"#000000\">\u25CF</FONT></TD>";
    } else {
      out += wire_half + wire_half;
    }
    out += port_cell("o", lane, lane.out, false) + "</TR><TR>" + empty_half +
           (lane.role == Lane::Join ? "" : empty_half) + "</TR>";
  }
  return out + "</TABLE>";
}

std::set<const ir::Op *> routed_gathers(const ir::Program &program, const ir::Diagram &diagram) {
  std::set<const ir::Op *> out;
  const ir::ProducerIndex producers(diagram);
  const std::vector<int> uses = ir::use_counts(diagram);
  ir::for_each_op(diagram.body, [&](const ir::Op &contraction) {
    if (auto r = ir::routed_operand(diagram, program, contraction, producers, uses)) out.insert(r->gather);
  });
  return out;
}

std::set<int> cotangent_values(const ir::Diagram &diagram) {
  std::set<int> out;
  for (int id : diagram.inputs)
    if (diagram.value(id).name.rfind("d_", 0) == 0) out.insert(id);
  if (out.empty()) return out;
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (std::any_of(op.operands.begin(), op.operands.end(), [&](int v) { return out.count(v) > 0; }))
      out.insert(op.results.begin(), op.results.end());
  });
  return out;
}

std::string join(const std::vector<std::string> &items, const std::string &separator) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) out += (i ? separator : "") + items[i];
  return out;
}

std::string strip(const std::string &rows) {
  return "<TABLE BORDER=\"1\" COLOR=\"#64748b\" CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"2\" BGCOLOR=\"#ffffff\">" +
         rows + "</TABLE>";
}

}  // namespace ncd::render::parts
