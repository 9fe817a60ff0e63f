// The state of one drawn diagram (the top one, or a callee inside a call's
// cluster) and what is computed from it alone: axis names and sizes as the
// caller binds them, value names, the schedule's legend, and a wire as data
// for the drawing model. Internal to render-common.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "drawing_model.h"
#include "drawing_parts.h"
#include "ncd/ir.h"

namespace ncd::render {

using parts::Endpoint;

struct AxisView {
  std::string name, size;
};

// One diagram being drawn: the top diagram, or a callee inside a call cluster.
struct Scope {
  const ir::Diagram *diagram = nullptr;
  std::string prefix;  // of node names
  int depth = 0;       // calls between the top diagram and this one
  std::map<int, AxisView> axes;                    // callee axes bound to a caller's
  std::map<int, std::map<int, Endpoint>> sources;  // value -> axis (-1: scalar) -> where its wire starts
  std::map<int, std::string> level_of;             // value -> memory level
  std::map<std::string, int> level_order;
  std::map<int, std::string> axis_mark;  // axis -> "group 128", "stream 64"
  std::set<int> pure;                    // values computed from constants, sizes and axis indices only
  std::map<int, std::string> pure_text;
  std::set<int> pure_infix;  // pure values whose text is an operator expression (parenthesised as operands)
  std::set<int> needs_node;  // pure values some consumer cannot fold
  std::set<int> cotangents;  // the backward flow of a gradient (parts::cotangent_values)
  mutable std::map<int, const ir::Op *> first_reader;  // value -> the first op reading it (drawn as a node)
  std::vector<const ir::Op *> chain;                   // the call sites from the top diagram (sharding marks)
};

std::string value_name(const ir::Diagram &d, int id);
AxisView axis_view(const ir::Program &program, const Scope &scope, int axis);
// One legend row (DOT HTML) per schedule directive of the scope's diagram, each level with a
// square of its colour.
std::vector<std::string> legend_rows(const ir::Program &program, const Scope &scope);
// A wire as data: its label's parts and its style.
ModelEdge model_edge(const ir::Program &program, const Scope &scope, int value, int axis);

}  // namespace ncd::render
