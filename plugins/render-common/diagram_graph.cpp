// A core-IR diagram as a neural circuit diagram in DOT (see diagram_graph.h).
//
// Every node is an HTML-like table of lanes, one lane per axis: wires enter a
// lane's left port cell and leave its right one. The glyph cell in the middle
// spans the lanes an operation acts on; lanes it is lifted over are straight
// lines that pass by the glyph. Contractions draw no box: the wires of a
// summed axis end in one join dot. Scalars computed from constants, sizes and
// axis indices (rsqrt(#d), -inf, a causal mask) are folded into the glyph of
// the operation that uses them, as text.
#include "diagram_graph.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <vector>

#include "drawing_parts.h"
#include "drawing_scope.h"
#include "sharding_marks.h"

namespace ncd::render {
namespace {

using ir::OpKind;
using namespace parts;

// ---------------------------------------------------------------- scopes

class Drawer {
 public:
  Drawer(const ir::Program &program, const DrawOptions &options) : program_(program), options_(options) {}

  // Graphviz lays edge labels out as nodes of their own on extra ranks, which makes layout time grow
  // quadratically with the number of wires; past this many wires, each wire's label is written
  // inside the node where the wire enters (lane-label mode) and edges carry none.
  static constexpr size_t kMaxEdgeLabels = 2000;

  std::string draw(const ir::Diagram &diagram) {
    marks_ = std::make_unique<ShardingMarks>(program_, diagram);
    std::string out = draw_once(diagram);
    if (edges_.size() <= kMaxEdgeLabels || model_) return out;
    body_.clear();
    edges_.clear();
    legend_rows_.clear();
    legend_done_.clear();
    sources_rank_.clear();
    sinks_rank_.clear();
    lane_labels_ = true;
    return draw_once(diagram);
  }

 private:
  std::string draw_once(const ir::Diagram &diagram) {
    Scope top;
    top.diagram = &diagram;
    prepare(top);
    indent_ = 1;
    draw_scope_values(top, true);
    draw_region(top, diagram.body, true);
    draw_outputs(top, true);
    if (!marks_->empty())
      legend_rows_.push_back(std::string("<TR><TD ALIGN=\"LEFT\"><FONT COLOR=\"") + kShardColor + "\">" +
                             html_escape(marks_->legend()) + "</FONT></TD></TR>");
    std::string title = options_.title.empty() ? diagram.name : options_.title;
    if (model_) model_->title = title;
    if (model_)
      for (const auto &row : legend_rows_) model_->legend.push_back(html_to_text(row));
    std::string out = "digraph " + dot_quote(diagram.name) + " {\n";
    out += "  graph [rankdir=LR, newrank=true, fontname=" + dot_quote(kFont) +
           ", fontsize=16, labelloc=t, labeljust=l, nodesep=0.18, ranksep=0.3, pad=0.25, bgcolor=\"white\", label=" +
           dot_quote(title) + "];\n";
    out += "  node [shape=plain, fontname=" + dot_quote(kFont) + ", fontsize=12];\n";
    out += "  edge [arrowhead=none, fontname=" + dot_quote(kFont) + ", fontsize=10, color=\"" + kWireColor +
           "\", fontcolor=\"" + kWireColor + "\"];\n";
    out += body_;
    if (!legend_rows_.empty()) {
      out += "  legend [label=<<TABLE BORDER=\"1\" COLOR=\"#999999\" CELLBORDER=\"0\" CELLSPACING=\"0\" CELLPADDING=\"3\">";
      for (const auto &row : legend_rows_) out += row;
      out += "</TABLE>>];\n";
    }
    if (!sources_rank_.empty()) out += "  { rank=min; " + join(sources_rank_, "; ") + "; }\n";
    if (!sinks_rank_.empty()) out += "  { rank=max; " + join(sinks_rank_, "; ") + "; }\n";
    for (const auto &edge : edges_) out += "  " + edge + "\n";
    out += "}\n";
    return out;
  }

  // A node with an HTML label, one table row per line so that DOT diffs read row by row.
  std::string html_node(const std::string &name, const std::string &label) const {
    std::string pad = "\n" + std::string(static_cast<size_t>(indent_) * 2 + 4, ' ');
    std::string text = name + " [label=<";
    size_t start = 0;
    for (size_t at = label.find("<TR>"); at != std::string::npos; at = label.find("<TR>", at + 4)) {
      text += label.substr(start, at - start) + pad;
      start = at;
    }
    return text + label.substr(start) + ">];";
  }

  void line(const std::string &text) { body_ += std::string(static_cast<size_t>(indent_) * 2, ' ') + text + "\n"; }

  // ------------------------------------------------------------ analysis

  void prepare(Scope &scope) {
    const ir::Diagram &d = *scope.diagram;
    scope.cotangents = parts::cotangent_values(d);
    // Pure values, in dependency order.
    ir::for_each_op(d.body, [&](const ir::Op &op) {
      bool pure = false;
      switch (op.kind) {
        case OpKind::Constant:
        case OpKind::SizeOf:
        case OpKind::AxisIndex: pure = true; break;
        case OpKind::Elementwise:
          pure = !op.operands.empty() &&
                 std::all_of(op.operands.begin(), op.operands.end(), [&](int v) { return scope.pure.count(v) > 0; });
          break;
        default: break;
      }
      if (!pure || op.results.size() != 1) return;
      scope.pure.insert(op.results[0]);
      scope.pure_text[op.results[0]] = expression(scope, op);
      if (op.kind == OpKind::Elementwise && op.operands.size() == 2 && infix(op.function))
        scope.pure_infix.insert(op.results[0]);
    });
    // Which pure values need a node of their own.
    ir::for_each_op(d.body, [&](const ir::Op &op) {
      if (!op.results.empty() && scope.pure.count(op.results[0])) return;
      for (size_t i = 0; i < op.operands.size(); ++i)
        if (scope.pure.count(op.operands[i]) && !folds(scope, op, i)) scope.needs_node.insert(op.operands[i]);
      for (int yield : op.body_yields)
        if (scope.pure.count(yield)) scope.needs_node.insert(yield);
    });
    for (int output : d.outputs)
      if (scope.pure.count(output)) scope.needs_node.insert(output);
    // The first schedule colours levels and marks axes; all are listed in the legend.
    if (!d.schedules.empty()) {
      const ir::Schedule &schedule = d.schedules.front();
      for (const auto &directive : schedule.directives) {
        switch (directive.kind) {
          case ir::ScheduleDirective::Kind::Group:
            scope.axis_mark[directive.axis] = "group " + std::to_string(directive.amount);
            break;
          case ir::ScheduleDirective::Kind::Stream:
            scope.axis_mark[directive.axis] = "stream " + std::to_string(directive.amount);
            break;
          case ir::ScheduleDirective::Kind::Level:
            if (!scope.level_order.count(directive.level))
              scope.level_order[directive.level] = static_cast<int>(scope.level_order.size());
            for (int value : directive.values) scope.level_of[value] = directive.level;
            break;
        }
      }
      add_legend(scope);
    }
  }

  // The legend lists every schedule of the drawn diagrams (legend_rows), a callee drawn twice once.
  void add_legend(const Scope &scope) {
    if (!legend_done_.insert(scope.diagram).second) return;
    for (auto &row : legend_rows(program_, scope)) legend_rows_.push_back(std::move(row));
  }

  static std::string value_name(const ir::Diagram &d, int id) { return render::value_name(d, id); }
  std::string axis_name(const Scope &scope, int axis) const { return axis_view(scope, axis).name; }
  AxisView axis_view(const Scope &scope, int axis) const { return render::axis_view(program_, scope, axis); }

  std::string wire_label(const Scope &scope, int axis) const {
    AxisView view = axis_view(scope, axis);
    std::string label = view.size.empty() ? view.name : view.name + "(" + view.size + ")";
    auto mark = scope.axis_mark.find(axis);
    if (mark != scope.axis_mark.end()) label += "\n" + mark->second;
    return label;
  }

  // In lane-label mode, writes each wire's label where it enters the node.
  void label_lanes(const Scope &scope, std::vector<Lane> &lanes) const {
    if (!lane_labels_) return;
    for (auto &lane : lanes) {
      if (!lane.in) continue;
      lane.label = wire_label(scope, lane.axis);
      for (char &c : lane.label)
        if (c == '\n') c = ' ';
    }
  }

  // A strip row's text for a wire: its name, or in lane-label mode its full label.
  std::string strip_text(const Scope &scope, int axis) const {
    if (!lane_labels_) return axis_view(scope, axis).name;
    std::string label = wire_label(scope, axis);
    for (char &c : label)
      if (c == '\n') c = ' ';
    return label;
  }

  // Whether operand `index` of `op` is drawn as text inside op's glyph instead of as a wire.
  static bool folds(const Scope &scope, const ir::Op &op, size_t index) {
    int value = op.operands[index];
    if (!scope.pure.count(value)) return false;
    switch (op.kind) {
      case OpKind::Elementwise:
        if (op.function == ops::Fn::Where && index == 0) return true;  // the mask condition
        [[fallthrough]];
      case OpKind::Contract:
      case OpKind::Reduce:
      case OpKind::Normalize:
        return scope.diagram->value(value).axes.empty();
      default: return false;
    }
  }

  // The drawing's operators: the language's, in mathematical type, and pow as `^`.
  static const char *infix(ops::Fn function) {
    static const std::map<ops::Fn, const char *> table{{ops::Fn::Sub, "\u2212"}, {ops::Fn::Mul, "\u00D7"}, {ops::Fn::Le, "\u2264"},
                                                       {ops::Fn::Ge, "\u2265"}, {ops::Fn::Ne, "\u2260"}, {ops::Fn::Pow, "^"}};
    if (ops::info(function).syntax == ops::Syntax::Infix && !table.count(function)) return ops::info(function).symbol.data();
    auto it = table.find(function);
    return it == table.end() ? nullptr : it->second;
  }

  std::string operand_text(const Scope &scope, int value, bool parenthesize) const {
    auto it = scope.pure_text.find(value);
    if (it == scope.pure_text.end()) return "\u00B7";  // a wire: ·
    const std::string &text = it->second;
    if (parenthesize && scope.pure_infix.count(value)) return "(" + text + ")";
    return text;
  }

  // Text of a pure op: #d, rsqrt(#d), q ≥ k, -inf.
  std::string expression(const Scope &scope, const ir::Op &op) const {
    switch (op.kind) {
      case OpKind::Constant: return format_number(op.constant);
      case OpKind::SizeOf: return "#" + axis_name(scope, op.axes.empty() ? -1 : op.axes[0]);
      case OpKind::AxisIndex: return axis_name(scope, op.axes.empty() ? -1 : op.axes[0]);
      default: break;
    }
    const std::string f(ops::name(op.function));
    if (op.operands.size() == 1 && ops::info(op.function).syntax == ops::Syntax::Prefix)
      return std::string(ops::info(op.function).symbol) + operand_text(scope, op.operands[0], true);
    if (op.operands.size() == 2)
      if (const char *symbol = infix(op.function))
        return operand_text(scope, op.operands[0], true) + " " + symbol + " " + operand_text(scope, op.operands[1], true);
    if (op.function == ops::Fn::Copy && op.operands.size() == 1) return operand_text(scope, op.operands[0], false);
    std::string text = f + "(";
    for (size_t i = 0; i < op.operands.size(); ++i) text += (i ? ", " : "") + operand_text(scope, op.operands[i], false);
    return text + ")";
  }

  // ------------------------------------------------------------ edges

  void wire(Scope &scope, int value, int axis, const std::string &node, const std::string &port,
            const std::string &extra = "") {
    auto value_it = scope.sources.find(value);
    if (value_it == scope.sources.end()) return;
    auto it = value_it->second.find(axis);
    if (it == value_it->second.end()) it = value_it->second.find(-1);
    if (it == value_it->second.end()) return;
    const Endpoint &from = it->second;
    std::string attributes;
    // A wire of a value held split across devices: its device count, in the sharding colour.
    std::string split = axis >= 0 && !lane_labels_ ? marks_->split_mark(scope.chain, value, axis) : "";
    if (axis >= 0) {
      attributes = lane_labels_ ? "penwidth=1"
                                : "label=" + dot_quote(wire_label(scope, axis) + (split.empty() ? "" : " " + split));
      auto mark = scope.axis_mark.find(axis);
      if (mark != scope.axis_mark.end())
        attributes += mark->second.rfind("group", 0) == 0 ? ", penwidth=2.2" : ", penwidth=2.2, style=dashed";
    } else {
      attributes = "style=dotted";
    }
    auto level = scope.level_of.find(value);
    if (level != scope.level_of.end()) {
      LevelColor color = level_color(level->second, scope.level_order[level->second]);
      attributes += std::string(", color=\"") + color.stroke + "\", fontcolor=\"" + color.stroke + "\"";
    } else if (scope.cotangents.count(value)) {
      attributes += std::string(", color=\"") + parts::kCotangentColor + "\", fontcolor=\"" + parts::kCotangentColor + "\"";
    }
    if (!split.empty()) attributes += std::string(", color=\"") + kShardColor + "\", fontcolor=\"" + kShardColor + "\"";
    if (!extra.empty()) attributes += ", " + extra;
    edges_.push_back(endpoint(from, "e") + " -> " + endpoint({node, port}, "w") + " [" + attributes + "];");
    if (model_) {
      ModelEdge edge = model_edge(program_, scope, value, axis);
      if (!split.empty()) {
        edge.mark = edge.mark.empty() ? split : edge.mark + " " + split;
        edge.color = kShardColor;
      }
      model_->add_edge(from, {node, port}, std::move(edge));
    }
  }

  static std::string endpoint(const Endpoint &at, const char *side) {
    if (at.port.empty()) return at.node;
    return at.node + ":" + at.port + ":" + side;
  }

  // Wires every axis of `value` into node `node` at ports prefix+axis (or `scalar_port` for a scalar).
  void wire_value(Scope &scope, int value, const std::string &node, const std::string &prefix) {
    const auto &axes = scope.diagram->value(value).axes;
    if (axes.empty()) {
      wire(scope, value, -1, node, "g");
      return;
    }
    for (int axis : axes) wire(scope, value, axis, node, prefix + std::to_string(axis));
  }

  // ------------------------------------------------------------ nodes

  // Emits a node, inside its memory level's cluster when the schedule puts `value` at a level.
  void emit_node(Scope &scope, const std::string &name, std::vector<Lane> lanes, const Glyph &glyph, const char *fill,
                 int value, bool top) {
    std::string text = html_node(name, node_table(lanes, glyph, fill, kWireColor));
    auto level = value >= 0 ? scope.level_of.find(value) : scope.level_of.end();
    bool in_level = top && level != scope.level_of.end();
    if (in_level) open_level(scope, level->second);
    line(text);
    if (model_) {
      ModelNode &node = model_->add_node(name);
      gather_acted(lanes);
      node.lanes = std::move(lanes);
      node.glyph = glyph;
      node.fill = fill ? fill : "";
    }
    if (in_level) close_cluster();
  }

  // A call's or a repeat's entry or exit strip.
  void emit_strip(const std::string &name, const std::string &rows) {
    line(html_node(name, strip(rows)));
    if (model_) model_->add_strip(name, rows);
  }

  void open_level(Scope &scope, const std::string &level) {
    LevelColor color = level_color(level, scope.level_order[level]);
    line("subgraph " + dot_quote("cluster_" + scope.prefix + "level_" + level) + " {");
    ++indent_;
    line(std::string("style=\"rounded,filled\"; fillcolor=\"") + color.fill + "\"; color=\"" + color.stroke +
         "\"; fontcolor=\"" + color.stroke + "\"; fontsize=11; label=" + dot_quote(level) + ";");
    if (model_) model_->open_cluster({"level_" + level, level, -1, ModelCluster::Level, color.fill, color.stroke});
  }

  void close_cluster() {
    if (model_) model_->close_cluster();
    --indent_;
    line("}");
  }

  const char *level_fill(const Scope &scope, int value) const {
    auto level = scope.level_of.find(value);
    if (level == scope.level_of.end()) return nullptr;
    auto order = scope.level_order.find(level->second);
    return level_color(level->second, order == scope.level_order.end() ? 0 : order->second).fill;
  }

  void draw_scope_values(Scope &scope, bool top) {
    const ir::Diagram &d = *scope.diagram;
    if (top) {
      for (int id : d.inputs) draw_source_value(scope, id, false, top);
    }
    for (int id : d.params) draw_source_value(scope, id, true, top);
  }

  // An input or a param: a name with one wire leaving per axis.
  void draw_source_value(Scope &scope, int id, bool param, bool top) {
    const ir::Value &value = scope.diagram->value(id);
    std::string node = scope.prefix + "v" + std::to_string(id);
    Glyph glyph;
    glyph.lines = wrap(value.name, kWrapWidth);
    glyph.notes.push_back(std::string(ir::dtype_name(value.dtype)) +
                          (value.instances > 1 ? "  \u00D7" + std::to_string(value.instances) : ""));
    if (param) {
      glyph.border = 3;
      glyph.bold = true;
      glyph.fill = "#fff2cc";
      glyph.stroke = "#1f1f1f";
    } else {
      glyph.rounded = true;
    }
    std::vector<Lane> lanes;
    for (int axis : source_order(scope, id)) lanes.push_back({axis, false, true, Lane::Acted});
    emit_node(scope, node, lanes, glyph, level_fill(scope, id), id, top);
    if (top && !param) sources_rank_.push_back(node);
    if (top && !param && model_) model_->nodes.back().source = true;
    set_sources(scope, id, node, "o");
  }

  // The axes of an input or param in the order its first consumer's lanes have them, so that
  // its wires leave without crossing each other.
  std::vector<int> source_order(const Scope &scope, int value) const {
    std::vector<int> axes = scope.diagram->value(value).axes;
    if (scope.first_reader.empty())  // one walk for every input and param of the scope
      ir::for_each_op(scope.diagram->body, [&](const ir::Op &op) {
        if (op.kind == OpKind::Call || op.kind == OpKind::Repeat) return;
        if (!op.results.empty() && scope.pure.count(op.results[0])) return;
        for (int operand : op.operands) scope.first_reader.emplace(operand, &op);
      });
    auto found = scope.first_reader.find(value);
    const ir::Op *consumer = found == scope.first_reader.end() ? nullptr : found->second;
    if (!consumer) return axes;
    std::vector<Lane> lanes;
    glyph_for(scope, *consumer, lanes);
    gather_acted(lanes);
    std::map<int, size_t> position;
    for (size_t i = 0; i < lanes.size(); ++i) position[lanes[i].axis] = i;
    std::stable_sort(axes.begin(), axes.end(), [&](int a, int b) {
      size_t pa = position.count(a) ? position[a] : lanes.size(), pb = position.count(b) ? position[b] : lanes.size();
      return pa < pb;
    });
    return axes;
  }

  void set_sources(Scope &scope, int value, const std::string &node, const std::string &prefix) {
    const auto &axes = scope.diagram->value(value).axes;
    auto &map = scope.sources[value];
    if (axes.empty()) map[-1] = {node, "g"};
    for (int axis : axes) map[axis] = {node, prefix + std::to_string(axis)};
  }

  void draw_outputs(Scope &scope, bool top) {
    const ir::Diagram &d = *scope.diagram;
    for (int id : d.outputs) {
      const ir::Value &value = d.value(id);
      std::string node = scope.prefix + "out" + std::to_string(id);
      Glyph glyph;
      glyph.lines = wrap(value.name, kWrapWidth);
      glyph.notes.push_back(std::string(ir::dtype_name(value.dtype)));
      glyph.rounded = true;
      std::vector<Lane> lanes;
      for (int axis : value.axes) lanes.push_back({axis, true, false, Lane::Acted});
      label_lanes(scope, lanes);
      emit_node(scope, node, lanes, glyph, nullptr, -1, top);
      if (top) sinks_rank_.push_back(node);
      if (top && model_) model_->nodes.back().sink = true;
      wire_value(scope, id, node, "i");
    }
  }

  void draw_region(Scope &scope, const ir::Region &region, bool top) {
    for (const auto &op : region.ops) draw_op(scope, *op, top);
  }

  void draw_op(Scope &scope, const ir::Op &op, bool top) {
    const ir::Diagram &d = *scope.diagram;
    if (!op.results.empty() && scope.pure.count(op.results[0])) {
      if (scope.needs_node.count(op.results[0])) draw_pure(scope, op.results[0], top);
      return;
    }
    switch (op.kind) {
      case OpKind::Call: {
        bool expand = options_.depth < 0 || scope.depth < options_.depth;
        if (expand && scope.depth < 64) {
          int level_value = op.results.empty() ? -1 : op.results[0];
          auto level = scope.level_of.find(level_value);
          bool in_level = top && level != scope.level_of.end();
          if (in_level) open_level(scope, level->second);
          draw_call(scope, op);
          if (in_level) close_cluster();
          return;
        }
        break;
      }
      case OpKind::Repeat: draw_repeat(scope, op); return;
      default: break;
    }
    // Every other op is one node.
    std::string node = scope.prefix + "n" + std::to_string(op.id);
    std::vector<Lane> lanes;
    Glyph glyph = glyph_for(scope, op, lanes);
    for (std::string &badge : marks_->badges(scope.chain, op, op.kind == OpKind::Call)) {
      glyph.notes.push_back(std::move(badge));
      (glyph.outline ? glyph.outline : glyph.stroke) = kShardColor;
    }
    label_lanes(scope, lanes);
    int result = op.results.empty() ? -1 : op.results[0];
    emit_node(scope, node, lanes, glyph, result >= 0 ? level_fill(scope, result) : nullptr, result, top);
    for (size_t i = 0; i < op.operands.size(); ++i) {
      if (folds(scope, op, i)) continue;
      wire_value(scope, op.operands[i], node, "i");
    }
    for (int r : op.results) set_sources(scope, r, node, "o");
    (void)d;
  }

  // A pure value drawn as a source: its expression with a wire per axis.
  void draw_pure(Scope &scope, int id, bool top) {
    std::string node = scope.prefix + "v" + std::to_string(id);
    Glyph glyph;
    glyph.lines = wrap(scope.pure_text[id], kWrapWidth);
    glyph.notes.push_back("index expression");
    glyph.fill = "#f8fafc";
    glyph.dashed = true;
    glyph.font_size = 11;
    std::vector<Lane> lanes;
    for (int axis : scope.diagram->value(id).axes) lanes.push_back({axis, false, true, Lane::Acted});
    emit_node(scope, node, lanes, glyph, level_fill(scope, id), id, top);
    set_sources(scope, id, node, "o");
  }

  // Lanes in order of first appearance: drawn operands, then the results.
  void collect_lanes(const Scope &scope, const ir::Op &op, std::vector<Lane> &lanes) const {
    std::map<int, size_t> index;
    auto touch = [&](int axis) -> Lane & {
      auto it = index.find(axis);
      if (it != index.end()) return lanes[it->second];
      index[axis] = lanes.size();
      lanes.push_back({axis, false, false, Lane::Pass});
      return lanes.back();
    };
    for (size_t i = 0; i < op.operands.size(); ++i) {
      if (folds(scope, op, i)) continue;
      for (int axis : scope.diagram->value(op.operands[i]).axes) touch(axis).in = true;
    }
    for (int result : op.results)
      for (int axis : scope.diagram->value(result).axes) touch(axis).out = true;
    for (auto &lane : lanes) lane.role = lane.in && lane.out ? Lane::Pass : Lane::Acted;
  }

  // Text of the folded operands of an op, for its glyph.
  std::vector<std::string> folded_texts(const Scope &scope, const ir::Op &op, size_t skip_first = 0) const {
    std::vector<std::string> out;
    for (size_t i = skip_first; i < op.operands.size(); ++i)
      if (folds(scope, op, i)) out.push_back(operand_text(scope, op.operands[i], false));
    return out;
  }

  Glyph glyph_for(const Scope &scope, const ir::Op &op, std::vector<Lane> &lanes) const {
    collect_lanes(scope, op, lanes);
    std::set<int> op_axes(op.axes.begin(), op.axes.end());
    Glyph glyph;
    switch (op.kind) {
      case OpKind::Contract: {
        // No box: summed wires join in a dot; the rest pass through. A scalar factor is written above.
        for (auto &lane : lanes)
          if (op_axes.count(lane.axis) && lane.in && !lane.out) lane.role = Lane::Join;
        glyph.border = 0;
        glyph.outline = "#9ca3af";
        std::string factors;
        for (const auto &text : folded_texts(scope, op)) factors += " \u00D7 " + text;
        glyph.lines = {factors.empty() ? "\u03A3" : "\u03A3" + factors};  // Σ × rsqrt(#d)
        glyph.font_size = 11;
        if (glyph.lines[0].size() > kWrapWidth) glyph.lines = wrap(glyph.lines[0], kWrapWidth);
        break;
      }
      case OpKind::Normalize: {
        for (auto &lane : lanes) lane.role = op_axes.count(lane.axis) ? Lane::Acted : lane.role;
        glyph.lines = {std::string(ops::name(op.function))};
        for (const auto &[key, value] : op.options) glyph.notes.push_back(key + " " + format_number(value));
        glyph.fill = "#fde2c8";
        glyph.stroke = "#9a3412";
        glyph.rounded = true;
        glyph.border = 2;
        break;
      }
      case OpKind::Scan: {
        // A box like a normalisation's (every axis kept), the scanned lane marked and named.
        for (auto &lane : lanes) lane.role = op_axes.count(lane.axis) ? Lane::Acted : lane.role;
        glyph.lines = {std::string(ops::name(op.function))};
        glyph.notes.push_back("along " + axis_name(scope, op.axes.at(0)));
        glyph.fill = "#ccfbf1";
        glyph.stroke = "#0f766e";
        glyph.rounded = true;
        glyph.border = 2;
        break;
      }
      case OpKind::Select: {
        // topk / sort: the values and their positions, along one axis into another (`e → top`).
        for (auto &lane : lanes) lane.role = op_axes.count(lane.axis) ? Lane::Acted : lane.role;
        glyph.lines = {std::string(ops::name(op.function))};
        const std::string along = axis_name(scope, op.axes.at(0)), into = axis_name(scope, op.axes.at(1));
        glyph.notes.push_back(along == into ? "along " + along : along + " \u2192 " + into);
        glyph.notes.push_back("values, positions");
        glyph.fill = "#dcfce7";
        glyph.stroke = "#166534";
        break;
      }
      case OpKind::Reduce: {
        for (auto &lane : lanes) lane.role = op_axes.count(lane.axis) ? Lane::Acted : lane.role;
        static const std::map<ops::Fn, std::string> symbols{{ops::Fn::Sum, "\u03A3"}, {ops::Fn::Prod, "\u03A0"}};
        auto it = symbols.find(op.function);
        glyph.lines = {it != symbols.end() ? it->second : std::string(ops::name(op.function))};
        glyph.notes.push_back(ops::info(op.function).position ? "position" : "reduce");
        glyph.fill = "#dcfce7";
        glyph.stroke = "#166534";
        break;
      }
      case OpKind::Elementwise: elementwise_glyph(scope, op, glyph); break;
      case OpKind::Access: access_glyph(scope, op, lanes, glyph); break;
      case OpKind::Merge: {
        std::set<int> acted;
        for (size_t r = 0; r < op.merges.size(); ++r) {
          const auto &group = op.merges[r];
          int result_axis = scope.diagram->value(op.results[0]).axes.at(r);
          if (group.size() == 1 && group[0] == result_axis) continue;
          std::string text = "(";
          for (size_t i = 0; i < group.size(); ++i) text += (i ? ", " : "") + axis_name(scope, group[i]);
          glyph.lines.push_back(text + ") \u2192 " + axis_name(scope, result_axis));
          acted.insert(group.begin(), group.end());
          acted.insert(result_axis);
        }
        for (auto &lane : lanes)
          if (acted.count(lane.axis)) lane.role = Lane::Acted;
        if (glyph.lines.empty()) glyph.lines = {"merge"};
        glyph.notes.push_back("merge");
        glyph.fill = "#ede9fe";
        glyph.stroke = "#5b21b6";
        break;
      }
      case OpKind::Call: {
        // Folded: one box for the whole callee; lifted axes pass by.
        std::set<int> lifted(op.lifted.begin(), op.lifted.end());
        for (auto &lane : lanes)
          lane.role = lifted.count(lane.axis) && lane.in && lane.out ? Lane::Pass : Lane::Acted;
        glyph.lines = wrap((op.label.empty() ? "" : op.label + ": ") + op.callee_name, kWrapWidth);
        glyph.notes.push_back("folded call");
        bool hot = op.callee_name == options_.highlight;
        glyph.fill = hot ? parts::kHighlightFill : "#f1f5f9";
        glyph.stroke = hot ? parts::kHighlightStroke : "#0f172a";
        glyph.border = 2;
        glyph.bold = true;
        break;
      }
      default: {
        glyph.lines = {std::string(ir::op_kind_name(op.kind))};
        break;
      }
    }
    return glyph;
  }

  void elementwise_glyph(const Scope &scope, const ir::Op &op, Glyph &glyph) const {
    const std::string f(ops::name(op.function));
    static const std::map<ops::Fn, const char *> circled{
        {ops::Fn::Add, "\u2295"}, {ops::Fn::Sub, "\u2296"}, {ops::Fn::Mul, "\u2299"}, {ops::Fn::Div, "\u2298"}};
    std::vector<std::string> folded = folded_texts(scope, op);
    if (op.function == ops::Fn::Where) {
      // A mask: the condition and the fill value are text, the data passes through.
      std::string condition = operand_text(scope, op.operands.at(0), false);
      glyph.lines = {"mask"};
      for (const auto &piece : wrap(condition, kWrapWidth)) glyph.lines.push_back(piece);
      std::string otherwise;
      if (op.operands.size() == 3 && folds(scope, op, 2)) otherwise = operand_text(scope, op.operands[2], false);
      if (op.operands.size() == 3 && folds(scope, op, 1))
        glyph.notes.push_back("then " + operand_text(scope, op.operands[1], false));
      if (!otherwise.empty()) glyph.notes.push_back("else " + otherwise);
      glyph.fill = "#e5e7eb";
      glyph.stroke = "#374151";
      glyph.dashed = true;
      glyph.font_size = 11;
      return;
    }
    auto circle = circled.find(op.function);
    if (circle != circled.end() && folded.empty()) {
      // Additions and products of tensors: a circled operator, no box.
      glyph.lines = {circle->second};
      glyph.border = 0;
      glyph.font_size = 20;
      return;
    }
    if (op.function == ops::Fn::Cast) {
      glyph.lines = {"\u2192 " + std::string(ir::dtype_name(scope.diagram->value(op.results.at(0)).dtype))};
      glyph.notes.push_back(f);
    } else if (op.function == ops::Fn::Copy) {
      glyph.lines = {f};
    } else if (const char *symbol = infix(op.function); symbol && op.operands.size() == 2) {
      // `· × 0.5`: the dot stands for the wires.
      glyph.lines = wrap(operand_text(scope, op.operands[0], true) + " " + symbol + " " +
                             operand_text(scope, op.operands[1], true),
                         kWrapWidth);
    } else if (folded.empty()) {
      glyph.lines = {f};
    } else {
      std::string text = f + "(";
      for (size_t i = 0; i < op.operands.size(); ++i)
        text += (i ? ", " : "") + operand_text(scope, op.operands[i], false);
      glyph.lines = wrap(text + ")", kWrapWidth);
    }
    glyph.fill = "#dbeafe";
    glyph.stroke = "#1e3a8a";
  }

  std::string affine_text(const Scope &scope, const ir::AccessIndex &index) const {
    std::string text;
    for (const auto &[axis, coefficient] : index.terms) {
      std::string term = axis_name(scope, axis);
      if (coefficient == -1) term = "-" + term;
      else if (coefficient != 1) term = std::to_string(coefficient) + "\u00B7" + term;
      if (text.empty()) text = term;
      else if (term[0] == '-') text += " - " + term.substr(1);
      else text += " + " + term;
    }
    if (index.offset != 0 || text.empty()) {
      if (text.empty()) text = std::to_string(index.offset);
      else text += (index.offset < 0 ? " - " : " + ") + std::to_string(std::llabs(index.offset));
    }
    return text;
  }

  // Whether `op` is the gather of a routed contraction, found once per diagram.
  bool routed(const Scope &scope, const ir::Op &op) const {
    auto [it, fresh] = routed_gathers_.try_emplace(scope.diagram);
    if (fresh) it->second = parts::routed_gathers(program_, *scope.diagram);
    return it->second.count(&op) > 0;
  }

  void access_glyph(const Scope &scope, const ir::Op &op, std::vector<Lane> &lanes, Glyph &glyph) const {
    const ir::Diagram &d = *scope.diagram;
    const auto &source_axes = d.value(op.operands.at(0)).axes;
    const auto &result_axes = d.value(op.results.at(0)).axes;
    std::set<int> results(result_axes.begin(), result_axes.end());
    std::set<int> identity;
    bool gather = false;
    for (size_t i = 0; i < op.access.size() && i < source_axes.size(); ++i) {
      const ir::AccessIndex &index = op.access[i];
      int source = source_axes[i];
      switch (index.kind) {
        case ir::AccessIndex::Kind::Affine:
          if (index.terms.size() == 1 && index.terms[0].first == source && index.terms[0].second == 1 &&
              index.offset == 0 && results.count(source)) {
            identity.insert(source);
            continue;
          }
          glyph.lines.push_back(axis_name(scope, source) + " \u2190 " + affine_text(scope, index));
          break;
        case ir::AccessIndex::Kind::Split: {
          std::string text = axis_name(scope, source) + " \u2192 (";
          for (size_t k = 0; k < index.split.size(); ++k) text += (k ? ", " : "") + axis_name(scope, index.split[k]);
          glyph.lines.push_back(text + ")");
          break;
        }
        case ir::AccessIndex::Kind::Gather: {
          gather = true;
          int operand = index.gather_operand >= 0 && static_cast<size_t>(index.gather_operand) < op.operands.size()
                            ? op.operands[static_cast<size_t>(index.gather_operand)]
                            : -1;
          glyph.lines.push_back(axis_name(scope, source) + " \u2190 " +
                                (operand >= 0 ? value_name(d, operand) : std::string("?")));
          break;
        }
      }
    }
    for (auto &lane : lanes) lane.role = identity.count(lane.axis) ? Lane::Pass : Lane::Acted;
    if (glyph.lines.empty()) glyph.lines = {"access"};
    if (routed(scope, op)) {
      // A routed contraction's gather (docs/SPARSE_AND_QUANTIZED.md): each route picks
      // one expert's slice, the backends run one product per expert; the router's amber.
      glyph.notes.push_back("route: one product per expert");
      glyph.fill = "#fef3c7";
      glyph.stroke = "#b45309";
      glyph.font_size = 11;
      return;
    }
    glyph.notes.push_back(gather ? "gather" : "index");
    glyph.fill = "#ede9fe";
    glyph.stroke = "#5b21b6";
    glyph.font_size = 11;
  }

  // ------------------------------------------------------------ calls and repeats

  // A call unfolded: a cluster with an entry strip (the callee's inputs, each axis bound to the
  // caller's), the callee's body, and an exit strip. Lifted axes run from entry to exit.
  void draw_call(Scope &scope, const ir::Op &op) {
    const ir::Diagram &callee = *program_.diagrams.at(static_cast<size_t>(op.callee));
    const ir::Diagram &d = *scope.diagram;
    std::string base = scope.prefix + "n" + std::to_string(op.id);
    std::map<int, int> bound;  // callee axis -> caller axis
    for (const auto &[callee_axis, caller_axis] : op.bindings) bound[callee_axis] = caller_axis;

    Scope inner;
    inner.diagram = &callee;
    inner.prefix = base + "_";
    inner.depth = scope.depth + 1;
    inner.chain = scope.chain;
    inner.chain.push_back(&op);
    for (const auto &[callee_axis, caller_axis] : bound) {
      AxisView view = axis_view(scope, caller_axis);
      inner.axes[callee_axis] = {program_.axis(callee_axis).name, view.size};
    }
    prepare(inner);

    std::string title = (op.label.empty() ? "" : op.label + ": ") + callee.name;
    if (!op.lifted.empty()) {
      title += "  lifted over ";
      for (size_t i = 0; i < op.lifted.size(); ++i) title += (i ? ", " : "") + wire_label(scope, op.lifted[i]);
    }
    line("subgraph " + dot_quote("cluster_" + base) + " {");
    ++indent_;
    bool odd = scope.depth % 2 == 0, hot = callee.name == options_.highlight;
    std::string fill = hot ? parts::kHighlightFill : odd ? "#f8fafc" : "#eef2f7";
    std::string stroke = hot ? parts::kHighlightStroke : "#64748b";
    line("style=\"rounded,filled" + std::string(hot ? ",bold" : "") + "\"; fillcolor=\"" + fill + "\"; color=\"" +
         stroke + "\"; fontsize=12; label=" + dot_quote(title) + ";");
    if (model_) model_->open_cluster({base, title, -1, ModelCluster::Call, fill, stroke, false, hot});

    // Entry strip.
    std::string entry = base + "_in";
    std::string rows;
    for (size_t k = 0; k < callee.inputs.size(); ++k) {
      const ir::Value &input = callee.value(callee.inputs[k]);
      rows += "<TR><TD PORT=\"i" + std::to_string(k) + "\" BGCOLOR=\"#e2e8f0\"><B>" + html_escape(input.name) + "</B></TD></TR>";
      for (int axis : input.axes) {
        std::string text = program_.axis(axis).name;
        auto it = bound.find(axis);
        if (it != bound.end() && (lane_labels_ || axis_view(scope, it->second).name != text))
          text += " \u2190 " + strip_text(scope, it->second);
        rows += "<TR><TD PORT=\"i" + std::to_string(k) + "_" + std::to_string(axis) + "\">" + html_escape(text) + "</TD></TR>";
      }
    }
    for (int axis : op.lifted)
      rows += "<TR><TD PORT=\"L" + std::to_string(axis) + "\"><I>" + html_escape(strip_text(scope, axis)) +
              " (lifted)</I></TD></TR>";
    emit_strip(entry, rows);
    // Caller wires into the entry strip.
    for (size_t k = 0; k < op.operands.size() && k < callee.inputs.size(); ++k) {
      int operand = op.operands[k];
      const auto &callee_axes = callee.value(callee.inputs[k]).axes;
      const auto &axes = d.value(operand).axes;
      if (axes.empty()) {
        wire(scope, operand, -1, entry, "i" + std::to_string(k));
        continue;
      }
      for (int axis : axes) {
        std::string port = "i" + std::to_string(k);
        for (int c : callee_axes) {
          auto it = bound.find(c);
          if (it != bound.end() && it->second == axis) {
            port += "_" + std::to_string(c);
            break;
          }
        }
        if (port == "i" + std::to_string(k) &&
            std::find(op.lifted.begin(), op.lifted.end(), axis) != op.lifted.end())
          port = "L" + std::to_string(axis);
        wire(scope, operand, axis, entry, port);
      }
      inner.sources[callee.inputs[k]][-1] = {entry, "i" + std::to_string(k)};
      for (int c : callee_axes) inner.sources[callee.inputs[k]][c] = {entry, "i" + std::to_string(k) + "_" + std::to_string(c)};
    }

    // The body.
    draw_scope_values(inner, false);
    draw_region(inner, callee.body, false);

    // Exit strip.
    std::string exit = base + "_out";
    rows.clear();
    for (size_t k = 0; k < callee.outputs.size(); ++k) {
      const ir::Value &output = callee.value(callee.outputs[k]);
      rows += "<TR><TD PORT=\"r" + std::to_string(k) + "\" BGCOLOR=\"#e2e8f0\"><B>" + html_escape(output.name) + "</B></TD></TR>";
      for (int axis : output.axes) {
        std::string text = lane_labels_ ? strip_text(inner, axis) : program_.axis(axis).name;
        auto it = bound.find(axis);
        if (it != bound.end() && axis_view(scope, it->second).name != program_.axis(axis).name)
          text += " \u2192 " + axis_view(scope, it->second).name;
        rows += "<TR><TD PORT=\"r" + std::to_string(k) + "_" + std::to_string(axis) + "\">" + html_escape(text) + "</TD></TR>";
      }
    }
    for (int axis : op.lifted)
      rows += "<TR><TD PORT=\"L" + std::to_string(axis) + "\"><I>" + html_escape(strip_text(scope, axis)) +
              " (lifted)</I></TD></TR>";
    emit_strip(exit, rows);
    for (size_t k = 0; k < callee.outputs.size(); ++k) {
      int output = callee.outputs[k];
      const auto &axes = callee.value(output).axes;
      if (axes.empty()) wire(inner, output, -1, exit, "r" + std::to_string(k));
      for (int axis : axes) wire(inner, output, axis, exit, "r" + std::to_string(k) + "_" + std::to_string(axis));
    }
    // Lifted axes pass by the callee's body.
    for (int axis : op.lifted) {
      std::string port = "L" + std::to_string(axis);
      std::string label = lane_labels_ ? "" : "label=" + dot_quote(wire_label(scope, axis)) + ", ";
      edges_.push_back(endpoint({entry, port}, "e") + " -> " + endpoint({exit, port}, "w") + " [" + label +
                       "style=dashed, color=\"#64748b\", fontcolor=\"#64748b\"];");
      if (model_) {
        ModelEdge edge = model_edge(program_, scope, op.operands.empty() ? 0 : op.operands[0], axis);
        edge.dashed = true, edge.color = "#64748b", edge.value.clear();
        model_->add_edge({entry, port}, {exit, port}, edge);
      }
    }
    close_cluster();

    // Results leave from the exit strip.
    for (size_t k = 0; k < op.results.size() && k < callee.outputs.size(); ++k) {
      int result = op.results[k];
      auto &map = scope.sources[result];
      map[-1] = {exit, "r" + std::to_string(k)};
      const auto &callee_axes = callee.value(callee.outputs[k]).axes;
      for (int axis : d.value(result).axes) {
        std::string port = "r" + std::to_string(k);
        for (int c : callee_axes) {
          auto it = bound.find(c);
          if (it != bound.end() && it->second == axis) {
            port += "_" + std::to_string(c);
            break;
          }
        }
        if (port == "r" + std::to_string(k) &&
            std::find(op.lifted.begin(), op.lifted.end(), axis) != op.lifted.end())
          port = "L" + std::to_string(axis);
        map[axis] = {exit, port};
      }
    }
  }

  // `repeat N`: the body drawn once in a cluster marked ×N, carried values entering and leaving
  // through strips, a dashed wire from the end back to the start.
  void draw_repeat(Scope &scope, const ir::Op &op) {
    const ir::Diagram &d = *scope.diagram;
    std::string base = scope.prefix + "n" + std::to_string(op.id);
    line("subgraph " + dot_quote("cluster_" + base) + " {");
    ++indent_;
    line("style=\"rounded,dashed,bold\"; color=\"#7c3aed\"; fontcolor=\"#7c3aed\"; fontsize=14; label=" +
         dot_quote("repeat \u00D7" + std::to_string(op.count)) + ";");
    if (model_)
      model_->open_cluster({base, "repeat \u00D7" + std::to_string(op.count), -1, ModelCluster::Repeat, "", "#7c3aed", true, true});
    std::string entry = base + "_in", exit = base + "_out";
    std::string rows;
    for (size_t k = 0; k < op.body_arguments.size(); ++k) {
      const ir::Value &argument = d.value(op.body_arguments[k]);
      rows += "<TR><TD PORT=\"i" + std::to_string(k) + "\" BGCOLOR=\"#ede9fe\"><B>" + html_escape(argument.name) + "</B></TD></TR>";
      for (int axis : argument.axes)
        rows += "<TR><TD PORT=\"i" + std::to_string(k) + "_" + std::to_string(axis) + "\">" +
                html_escape(strip_text(scope, axis)) + "</TD></TR>";
    }
    emit_strip(entry, rows);
    for (size_t k = 0; k < op.operands.size() && k < op.body_arguments.size(); ++k) {
      int operand = op.operands[k];
      const auto &axes = d.value(operand).axes;
      if (axes.empty()) wire(scope, operand, -1, entry, "i" + std::to_string(k));
      for (int axis : axes) wire(scope, operand, axis, entry, "i" + std::to_string(k) + "_" + std::to_string(axis));
      set_sources(scope, op.body_arguments[k], entry, "i" + std::to_string(k) + "_");
      scope.sources[op.body_arguments[k]][-1] = {entry, "i" + std::to_string(k)};
    }
    draw_region(scope, *op.body, false);
    rows.clear();
    for (size_t k = 0; k < op.body_yields.size(); ++k) {
      const ir::Value &yield = d.value(op.body_yields[k]);
      rows += "<TR><TD PORT=\"r" + std::to_string(k) + "\" BGCOLOR=\"#ede9fe\"><B>" + html_escape(yield.name) + "</B></TD></TR>";
      for (int axis : yield.axes)
        rows += "<TR><TD PORT=\"r" + std::to_string(k) + "_" + std::to_string(axis) + "\">" +
                html_escape(strip_text(scope, axis)) + "</TD></TR>";
    }
    emit_strip(exit, rows);
    for (size_t k = 0; k < op.body_yields.size(); ++k) {
      int yield = op.body_yields[k];
      const auto &axes = d.value(yield).axes;
      if (axes.empty()) wire(scope, yield, -1, exit, "r" + std::to_string(k));
      for (int axis : axes) wire(scope, yield, axis, exit, "r" + std::to_string(k) + "_" + std::to_string(axis));
    }
    close_cluster();
    if (model_) {
      ModelEdge edge;
      edge.back = edge.dashed = true, edge.color = "#7c3aed", edge.text = "next of " + std::to_string(op.count);
      model_->add_edge({exit, ""}, {entry, ""}, edge);
    }
    edges_.push_back(exit + " -> " + entry + " [constraint=false, style=dashed, color=\"#7c3aed\", fontcolor=\"#7c3aed\"" +
                     (lane_labels_ ? std::string() : ", label=" + dot_quote("next of " + std::to_string(op.count))) + "];");
    for (size_t k = 0; k < op.results.size() && k < op.body_yields.size(); ++k) {
      set_sources(scope, op.results[k], exit, "r" + std::to_string(k) + "_");
      scope.sources[op.results[k]][-1] = {exit, "r" + std::to_string(k)};
    }
  }

  const ir::Program &program_;
  mutable std::map<const ir::Diagram *, std::set<const ir::Op *>> routed_gathers_;
  DrawOptions options_;
  DrawingModel *model_ = options_.model;
  std::unique_ptr<ShardingMarks> marks_;  // of the drawn diagram (empty when it is not sharded)
  bool lane_labels_ = false;
  std::set<const ir::Diagram *> legend_done_;
  std::string body_;
  int indent_ = 1;
  std::vector<std::string> edges_;
  std::vector<std::string> legend_rows_;
  std::vector<std::string> sources_rank_, sinks_rank_;
};

}  // namespace

std::string diagram_to_dot(const ir::Program &program, const ir::Diagram &diagram, const DrawOptions &options) {
  Drawer drawer(program, options);
  return drawer.draw(diagram);
}

}  // namespace ncd::render
