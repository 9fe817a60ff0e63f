// Core IR helpers: dtypes, op kind names, and Program lookups.
#include "ncd/ir.h"

#include <array>
#include <functional>

namespace ncd::ir {

namespace {
struct DTypeInfo {
  DType dtype;
  const char *name;
  int bytes;
};
constexpr std::array<DTypeInfo, 8> kDTypes{{{DType::F32, "f32", 4},
                                           {DType::F16, "f16", 2},
                                           {DType::BF16, "bf16", 2},
                                           {DType::F8E4M3, "f8e4m3", 1},
                                           {DType::F8E5M2, "f8e5m2", 1},
                                           {DType::I8, "i8", 1},
                                           {DType::I32, "i32", 4},
                                           {DType::Bool, "bool", 1}}};
}  // namespace

std::string_view dtype_name(DType dtype) {
  for (const auto &info : kDTypes)
    if (info.dtype == dtype) return info.name;
  return "f32";
}

std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto &info : kDTypes)
    if (name == info.name) return info.dtype;
  return std::nullopt;
}

std::vector<std::string> dtype_names() {
  std::vector<std::string> out;
  for (const auto &info : kDTypes) out.push_back(info.name);
  return out;
}

int dtype_bytes(DType dtype) {
  for (const auto &info : kDTypes)
    if (info.dtype == dtype) return info.bytes;
  return 4;
}

bool is_integer(DType dtype) { return dtype == DType::I8 || dtype == DType::I32; }

std::string_view op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Constant: return "constant";
    case OpKind::SizeOf: return "sizeof";
    case OpKind::AxisIndex: return "axis_index";
    case OpKind::Access: return "access";
    case OpKind::Merge: return "merge";
    case OpKind::Elementwise: return "elementwise";
    case OpKind::Contract: return "contract";
    case OpKind::Reduce: return "reduce";
    case OpKind::Normalize: return "normalize";
    case OpKind::Scan: return "scan";
    case OpKind::Select: return "select";
    case OpKind::Call: return "call";
    case OpKind::Repeat: return "repeat";
  }
  return "unknown";
}

OpKind op_kind_of(ops::Fn fn) {
  switch (ops::info(fn).kind) {
    case ops::Kind::Elementwise:
    case ops::Kind::Cast: return OpKind::Elementwise;
    case ops::Kind::Reduce: return OpKind::Reduce;
    case ops::Kind::Normalize: return OpKind::Normalize;
    case ops::Kind::Scan: return OpKind::Scan;
    case ops::Kind::Select: return OpKind::Select;
    case ops::Kind::None: break;
  }
  return OpKind::Constant;
}

const Op *Diagram::producer(int value_id) const {
  int id = value(value_id).producer;
  if (id < 0) return nullptr;
  const Op *found = nullptr;
  for_each_op(body, [&](const Op &op) {
    if (op.id == id) found = &op;
  });
  return found;
}

Op *Diagram::producer(int value_id) {
  int id = value(value_id).producer;
  if (id < 0) return nullptr;
  Op *found = nullptr;
  std::function<void(Region &)> walk = [&](Region &region) {
    for (auto &op : region.ops) {
      if (op->id == id) found = op.get();
      if (op->body) walk(*op->body);
    }
  };
  walk(body);
  return found;
}

ProducerIndex::ProducerIndex(const Diagram &diagram) : by_value_(diagram.values.size(), nullptr) {
  for_each_op(diagram.body, [&](const Op &op) {
    for (int result : op.results)
      if (result >= 0 && static_cast<size_t>(result) < by_value_.size() && diagram.value(result).producer == op.id)
        by_value_[static_cast<size_t>(result)] = &op;
  });
}

Diagram *Program::find_diagram(std::string_view name, std::string_view module) {
  for (auto &diagram : diagrams)
    if (diagram->name == name && (module.empty() || diagram->module == module)) return diagram.get();
  return nullptr;
}

const Diagram *Program::find_diagram(std::string_view name, std::string_view module) const {
  for (const auto &diagram : diagrams)
    if (diagram->name == name && (module.empty() || diagram->module == module)) return diagram.get();
  return nullptr;
}

std::vector<const Diagram *> Program::root_diagrams() const {
  std::vector<const Diagram *> out;
  if (modules.empty()) return out;
  for (const auto &diagram : diagrams)
    if (diagram->module == modules[static_cast<size_t>(root_module)].path) out.push_back(diagram.get());
  return out;
}

std::vector<Diagram *> Program::editable_root_diagrams() {
  std::vector<Diagram *> out;
  if (modules.empty()) return out;
  for (auto &diagram : diagrams)
    if (diagram->module == modules[static_cast<size_t>(root_module)].path) out.push_back(diagram.get());
  return out;
}

bool Program::same_size(int a, int b) const {
  if (a == b || size_poly(a) == size_poly(b)) return true;
  auto sa = axis(a).size, sb = axis(b).size;
  return sa && sb && *sa == *sb;
}

Poly Program::size_poly(int axis_id) const {
  const Axis &a = axis(axis_id);
  return a.derived ? a.definition : Poly::axis(axis_id);
}

std::string Program::definition_text(int axis_id) const {
  const Axis &a = axis(axis_id);
  auto name = [&](int id) { return axis(id).name; };
  if (a.formula) return a.formula->to_string([&](const Poly &poly) { return poly.to_string(name); });
  return a.derived ? a.definition.to_string(name) : "";
}

std::string Program::axis_label(int axis_id) const {
  const Axis &a = axis(axis_id);
  return a.size ? a.name + "(" + std::to_string(*a.size) + ")" : a.name;
}

}  // namespace ncd::ir
