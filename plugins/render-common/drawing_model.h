// The drawing as data: the nodes (lanes and a glyph, or a call's strip of
// rows), the wires between their ports and the clusters around them, as the
// drawer (diagram_graph.cpp) makes them. The DOT writer turns the same drawing
// into Graphviz text; ncd's own layout (layout.h) places this model and
// svg_writer.h draws it, so both layouts show the same glyphs and wires.
#pragma once

#include <string>
#include <unordered_map>
#include <vector>

#include "drawing_parts.h"

namespace ncd::render {

struct StripRow {
  std::string text, port;  // text is plain (unescaped)
  bool bold = false, italic = false;
  std::string fill;  // background, empty for none
};

struct ModelNode {
  std::string name;
  int cluster = -1;  // innermost cluster, -1: the top level
  bool strip = false;
  bool source = false, sink = false;  // the diagram's inputs (leftmost) and outputs (rightmost)
  std::vector<parts::Lane> lanes;     // gathered (parts::gather_acted)
  parts::Glyph glyph;
  std::string fill;  // a memory level's fill, overriding the glyph's
  std::vector<StripRow> rows;
};

struct ModelEdge {
  int from = -1, to = -1;  // node indices
  std::string from_port, to_port;
  std::string axis, size, mark;  // the label's parts; axis empty: no label
  std::string value;             // the name of the value the wire carries ("" when unnamed)
  std::string color = parts::kWireColor;
  double width = 1;
  bool dashed = false, dotted = false;
  bool back = false;  // a repeat's wire from its end back to its start (not a dependency)
  std::string text;   // a fixed label (the repeat's "next of N")
};

struct ModelCluster {
  std::string name, title;
  int parent = -1;
  enum Kind { Call, Repeat, Level } kind = Call;
  std::string fill, stroke;
  bool dashed = false, bold = false;
};

class DrawingModel {
 public:
  std::vector<ModelNode> nodes;
  std::vector<ModelEdge> edges;
  std::vector<ModelCluster> clusters;
  std::vector<std::string> legend;  // plain text lines
  std::string title;

  // Clusters with the same name under the same parent are one (Graphviz merges them too).
  void open_cluster(ModelCluster cluster);
  void close_cluster();
  ModelNode &add_node(const std::string &name);
  // A strip from the drawer's table rows (<TR><TD PORT=..>text</TD></TR>...).
  void add_strip(const std::string &name, const std::string &rows_html);
  void add_edge(const parts::Endpoint &from, const parts::Endpoint &to, ModelEdge edge);
  int find(const std::string &name) const;

 private:
  std::vector<int> open_;
  std::unordered_map<std::string, int> node_index_;
  std::unordered_map<std::string, int> cluster_index_;  // parent index + name
};

// Plain text of an HTML-like label fragment: tags dropped, entities decoded.
std::string html_to_text(const std::string &html);

}  // namespace ncd::render
