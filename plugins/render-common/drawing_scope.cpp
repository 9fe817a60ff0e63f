// What is computed from one drawn diagram's scope alone (see drawing_scope.h).
#include "drawing_scope.h"

namespace ncd::render {

using namespace parts;

std::string value_name(const ir::Diagram &d, int id) {
  const ir::Value &value = d.value(id);
  return value.name.empty() ? "%" + std::to_string(id) : value.name;
}

AxisView axis_view(const ir::Program &program, const Scope &scope, int axis) {
  auto it = scope.axes.find(axis);
  if (it != scope.axes.end()) return it->second;
  const ir::Axis &a = program.axis(axis);
  return {a.name, a.size ? std::to_string(*a.size) : ""};
}

std::vector<std::string> legend_rows(const ir::Program &program, const Scope &scope) {
  const ir::Diagram &d = *scope.diagram;
  std::vector<std::string> rows;
  for (size_t index = 0; index < d.schedules.size(); ++index) {
    const ir::Schedule &schedule = d.schedules[index];
    std::string head = "schedule " + d.name + (schedule.target.empty() ? "" : " for \"" + schedule.target + "\"");
    if (index > 0) head += " (not drawn)";
    rows.push_back("<TR><TD ALIGN=\"LEFT\"><B>" + html_escape(head) + "</B></TD></TR>");
    for (const auto &directive : schedule.directives) {
      std::string symbol, text;
      switch (directive.kind) {
        case ir::ScheduleDirective::Kind::Group:
          text = "group " + axis_view(program, scope, directive.axis).name + " by " + std::to_string(directive.amount) +
                 " (thick wires)";
          symbol = "<FONT COLOR=\"#333333\">\u2501</FONT>";
          break;
        case ir::ScheduleDirective::Kind::Stream:
          text = "stream " + axis_view(program, scope, directive.axis).name + " by " +
                 std::to_string(directive.amount) + " (thick dashed wires)";
          symbol = "<FONT COLOR=\"#333333\">\u254D</FONT>";
          break;
        case ir::ScheduleDirective::Kind::Level: {
          text = "level " + directive.level + ":";
          for (size_t i = 0; i < directive.values.size(); ++i)
            text += (i ? ", " : " ") + value_name(d, directive.values[i]);
          auto it = scope.level_order.find(directive.level);
          LevelColor color = level_color(directive.level, it == scope.level_order.end() ? 0 : it->second);
          symbol = index == 0 ? std::string("<FONT COLOR=\"") + color.stroke + "\">\u25A0</FONT>" : "\u25A1";
          break;
        }
      }
      rows.push_back("<TR><TD ALIGN=\"LEFT\">" + symbol + " " + html_escape(text) + "</TD></TR>");
    }
  }
  return rows;
}

ModelEdge model_edge(const ir::Program &program, const Scope &scope, int value, int axis) {
  ModelEdge edge;
  edge.dotted = axis < 0;
  if (axis >= 0) {
    AxisView view = axis_view(program, scope, axis);
    edge.axis = view.name;
    edge.size = view.size;
    auto mark = scope.axis_mark.find(axis);
    if (mark != scope.axis_mark.end()) {
      edge.mark = mark->second;
      edge.width = 2.2;
      edge.dashed = mark->second.rfind("group", 0) != 0;
    }
  }
  const ir::Value &v = scope.diagram->value(value);
  edge.value = v.name;
  auto level = scope.level_of.find(value);
  if (level != scope.level_of.end())
    edge.color = level_color(level->second, scope.level_order.at(level->second)).stroke;
  else if (scope.cotangents.count(value))
    edge.color = parts::kCotangentColor;
  return edge;
}

}  // namespace ncd::render
