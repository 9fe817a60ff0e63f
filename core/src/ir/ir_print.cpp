// IR printers: text for people, JSON for tools.
#include "ncd/ir_print.h"

#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ncd/sharding.h"

namespace ncd {
namespace {

std::string number_text(double value) {
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  std::ostringstream out;
  out.precision(9);
  out << value;
  return out.str();
}

// What an op applies, by name: its function, or the diagram it calls.
std::string function_name(const ir::Op &op) {
  return op.kind == ir::OpKind::Call ? op.callee_name : std::string(ops::name(op.function));
}

std::vector<const ir::Diagram *> selected(const ir::Program &program, const ir::Diagram *only) {
  if (only) return {only};
  return program.root_diagrams();
}

const char *role_name(ir::Value::Role role) {
  switch (role) {
    case ir::Value::Role::Input: return "input";
    case ir::Value::Role::Param: return "param";
    case ir::Value::Role::Intermediate: return "intermediate";
    case ir::Value::Role::Output: return "output";
    case ir::Value::Role::BlockArgument: return "block_argument";
  }
  return "intermediate";
}

const char *access_kind_name(ir::AccessIndex::Kind kind) {
  switch (kind) {
    case ir::AccessIndex::Kind::Affine: return "affine";
    case ir::AccessIndex::Kind::Split: return "split";
    case ir::AccessIndex::Kind::Gather: return "gather";
  }
  return "affine";
}

class TextPrinter {
 public:
  TextPrinter(const ir::Program &program, const SourceManager &sources) : p_(program), sources_(sources) {}

  std::string run(const ir::Program &program, const ir::Diagram *only) {
    for (const ir::Axis &axis : program.axes) {
      if (only && !uses_axis(*only, axis.id)) continue;
      if (!only && axis.module != program.modules[0].path) continue;
      const bool defined = axis.derived || axis.formula;
      out_ << "axis " << axis.name << " = " << p_.definition_text(axis.id)
           << (defined && axis.size ? " = " : "") << (axis.size ? std::to_string(*axis.size) : defined ? "" : "?")
           << (axis.overridden ? "  (-D)" : "") << "\n";
    }
    for (const ir::Diagram *diagram : selected(program, only)) this->diagram(*diagram);
    return out_.str();
  }

 private:
  static bool uses_axis(const ir::Diagram &d, int axis) {
    for (const auto &value : d.values)
      for (int id : value.axes)
        if (id == axis) return true;
    return false;
  }

  std::string ref(const ir::Diagram &d, int id) const {
    const ir::Value &value = d.value(id);
    if (!value.name.empty() && value.name[0] != '%') return "%" + std::to_string(id) + ":" + value.name;
    return "%" + std::to_string(id);
  }

  std::string type(const ir::Value &value) const {
    std::string out = "[";
    for (size_t i = 0; i < value.axes.size(); ++i) out += (i ? ", " : "") + p_.axis_label(value.axes[i]);
    return out + "] " + std::string(ir::dtype_name(value.dtype));
  }

  std::string axes(const std::vector<int> &ids) const {
    std::string out;
    for (size_t i = 0; i < ids.size(); ++i) out += (i ? ", " : "") + p_.axis(ids[i]).name;
    return out;
  }

  std::string where(const SourceLocation &location) const {
    return location.valid() ? "  @" + sources_.describe(location) : "";
  }

  void diagram(const ir::Diagram &d) {
    out_ << "\ndiagram " << d.name << where(d.location) << "\n";
    for (int id : d.inputs) out_ << "  input  " << ref(d, id) << " : " << type(d.value(id)) << "\n";
    for (int id : d.params)
      out_ << "  param  " << ref(d, id) << " : " << type(d.value(id))
           << (d.value(id).instances > 1 ? " x" + std::to_string(d.value(id).instances) : "") << "\n";
    region(d, d.body, 1);
    for (int id : d.outputs) out_ << "  output " << ref(d, id) << " : " << type(d.value(id)) << "\n";
    for (const ir::Schedule &schedule : d.schedules) {
      out_ << "  schedule" << (schedule.target.empty() ? "" : " for \"" + schedule.target + "\"") << "\n";
      for (const auto &directive : schedule.directives) {
        out_ << "    ";
        switch (directive.kind) {
          case ir::ScheduleDirective::Kind::Group: out_ << "group " << p_.axis(directive.axis).name << " by " << directive.amount; break;
          case ir::ScheduleDirective::Kind::Stream: out_ << "stream " << p_.axis(directive.axis).name << " by " << directive.amount; break;
          case ir::ScheduleDirective::Kind::Level: {
            out_ << "level " << directive.level << ":";
            for (size_t i = 0; i < directive.values.size(); ++i) out_ << (i ? ", " : " ") << ref(d, directive.values[i]);
            break;
          }
        }
        out_ << "\n";
      }
    }
    if (!d.shards.empty()) {
      int64_t devices = 1;
      std::string mesh;
      for (const ir::ShardDirective &shard : d.shards) {
        devices *= shard.devices;
        mesh += (mesh.empty() ? "" : " x ") + std::to_string(shard.devices);
      }
      out_ << "  mesh " << mesh << " (" << devices << " device" << (devices == 1 ? "" : "s") << ")\n";
      for (const ir::ShardDirective &shard : d.shards) {
        out_ << "    shard";
        for (size_t i = 0; i < shard.axes.size(); ++i) out_ << (i ? ", " : " ") << p_.axis(shard.axes[i]).name;
        out_ << " over " << shard.devices << "\n";
      }
      // The collectives the mesh needs (docs/SHARDING.md), as ncd cost prices them.
      ShardingPlan plan = plan_sharding(p_, d);
      for (const Collective &c : plan.collectives) {
        char count[32];
        std::snprintf(count, sizeof count, "%g", c.count);
        out_ << "    " << collective_name(c.kind) << " over mesh " << c.mesh_dim << " of " << c.value << " at "
             << c.site << (c.count != 1 ? std::string(" x") + count : std::string()) << "\n";
      }
    }
  }

  void region(const ir::Diagram &d, const ir::Region &r, int depth) {
    std::string indent(static_cast<size_t>(depth * 2), ' ');
    for (const auto &op : r.ops) {
      out_ << indent;
      for (size_t i = 0; i < op->results.size(); ++i) out_ << (i ? ", " : "") << ref(d, op->results[i]);
      out_ << (op->results.empty() ? "" : " = ") << ir::op_kind_name(op->kind);
      if (!op->label.empty()) out_ << " " << op->label << ":";
      if (std::string name = function_name(*op); !name.empty()) out_ << " " << name;
      switch (op->kind) {
        case ir::OpKind::Constant: out_ << " " << number_text(op->constant); break;
        case ir::OpKind::Contract: out_ << " sum[" << axes(op->axes) << "]"; break;
        case ir::OpKind::SizeOf:
        case ir::OpKind::AxisIndex:
        case ir::OpKind::Reduce:
        case ir::OpKind::Normalize:
        case ir::OpKind::Scan: out_ << "[" << axes(op->axes) << "]"; break;
        case ir::OpKind::Select:
          out_ << "[" << p_.axis(op->axes.at(0)).name << " -> " << p_.axis(op->axes.at(1)).name << "]";
          break;
        case ir::OpKind::Repeat: out_ << " " << op->count; break;
        default: break;
      }
      for (auto &[key, value] : op->options) out_ << " " << key << "=" << number_text(value);
      if (op->kind == ir::OpKind::Call) {
        out_ << " [";
        for (size_t i = 0; i < op->bindings.size(); ++i)
          out_ << (i ? ", " : "") << p_.axis(op->bindings[i].first).name << " = " << p_.axis(op->bindings[i].second).name;
        out_ << "]";
        if (!op->lifted.empty()) out_ << " lifted[" << axes(op->lifted) << "]";
      }
      out_ << "(";
      for (size_t i = 0; i < op->operands.size(); ++i) out_ << (i ? ", " : "") << ref(d, op->operands[i]);
      out_ << ")";
      if (op->kind == ir::OpKind::Access) {
        out_ << " at [";
        for (size_t i = 0; i < op->access.size(); ++i) out_ << (i ? ", " : "") << access_text(*op, op->access[i], d);
        out_ << "]";
      }
      if (op->kind == ir::OpKind::Merge) {
        out_ << " as [";
        for (size_t i = 0; i < op->merges.size(); ++i)
          out_ << (i ? ", " : "") << (op->merges[i].size() > 1 ? "(" + axes(op->merges[i]) + ")" : axes(op->merges[i]));
        out_ << "]";
      }
      if (!op->results.empty()) out_ << " : " << type(d.value(op->results[0]));
      out_ << where(op->location) << "\n";
      if (op->body) {
        out_ << indent << "  args(";
        for (size_t i = 0; i < op->body_arguments.size(); ++i) out_ << (i ? ", " : "") << ref(d, op->body_arguments[i]);
        out_ << ") {\n";
        region(d, *op->body, depth + 2);
        out_ << indent << "  } yield(";
        for (size_t i = 0; i < op->body_yields.size(); ++i) out_ << (i ? ", " : "") << ref(d, op->body_yields[i]);
        out_ << ")\n";
      }
    }
  }

  std::string access_text(const ir::Op &op, const ir::AccessIndex &index, const ir::Diagram &d) const {
    switch (index.kind) {
      case ir::AccessIndex::Kind::Split: return "(" + axes(index.split) + ")";
      case ir::AccessIndex::Kind::Gather: return ref(d, op.operands[static_cast<size_t>(index.gather_operand)]);
      case ir::AccessIndex::Kind::Affine: {
        std::string out;
        for (auto [axis, coefficient] : index.terms) {
          if (!out.empty()) out += coefficient < 0 ? " - " : " + ";
          else if (coefficient < 0) out += "-";
          int64_t magnitude = coefficient < 0 ? -coefficient : coefficient;
          out += (magnitude != 1 ? std::to_string(magnitude) + "*" : "") + p_.axis(axis).name;
        }
        if (index.offset != 0 || out.empty())
          out += out.empty() ? std::to_string(index.offset)
                             : (index.offset < 0 ? " - " : " + ") + std::to_string(std::llabs(index.offset));
        return out;
      }
    }
    return "";
  }

  const ir::Program &p_;
  const SourceManager &sources_;
  std::ostringstream out_;
};

using nlohmann::json;

class JsonPrinter {
 public:
  JsonPrinter(const ir::Program &program, const SourceManager &sources) : p_(program), sources_(sources) {}

  json run(const ir::Diagram *only) {
    json out;
    out["schema"] = "ncd.ir";
    out["version"] = kIrJsonVersion;
    out["modules"] = json::array();
    for (const ir::Module &module : p_.modules) out["modules"].push_back({{"path", module.path}, {"imports", module.imports}});
    out["axes"] = json::array();
    for (const ir::Axis &axis : p_.axes) {
      json a{{"id", axis.id},
             {"name", axis.name},
             {"module", axis.module},
             {"derived", axis.derived},
             {"definition", p_.size_poly(axis.id).to_string([&](int id) { return p_.axis(id).name; })},
             {"overridden", axis.overridden},
             {"location", location(axis.location)}};
      if (axis.formula) a["computed"] = p_.definition_text(axis.id);
      a["size"] = axis.size ? json(*axis.size) : json(nullptr);
      a["default"] = axis.default_size ? json(*axis.default_size) : json(nullptr);
      out["axes"].push_back(a);
    }
    out["diagrams"] = json::array();
    for (const ir::Diagram *diagram : selected(p_, only)) out["diagrams"].push_back(this->diagram(*diagram));
    return out;
  }

 private:
  json location(const SourceLocation &loc) const {
    if (!loc.valid()) return nullptr;
    return {{"file", sources_.file(loc.file).path}, {"line", loc.line}, {"column", loc.column}};
  }

  json axis_names(const std::vector<int> &ids) const {
    json out = json::array();
    for (int id : ids) out.push_back(p_.axis(id).name);
    return out;
  }

  json diagram(const ir::Diagram &d) const {
    json out{{"name", d.name}, {"module", d.module}, {"location", location(d.location)},
             {"inputs", d.inputs}, {"params", d.params}, {"outputs", d.outputs}};
    out["values"] = json::array();
    for (const ir::Value &value : d.values) {
      json axes = json::array();
      json shape = json::array();
      bool known = true;
      double elements = 1;
      for (int id : value.axes) {
        auto size = p_.axis(id).size;
        axes.push_back({{"id", id}, {"name", p_.axis(id).name}, {"size", size ? json(*size) : json(nullptr)}});
        shape.push_back(size ? json(*size) : json(nullptr));
        if (size) elements *= static_cast<double>(*size);
        else known = false;
      }
      json v{{"id", value.id},
             {"name", value.name},
             {"role", role_name(value.role)},
             {"axes", axes},
             {"shape", shape},
             {"dtype", std::string(ir::dtype_name(value.dtype))},
             {"producer", value.producer},
             {"instances", value.instances},
             {"location", location(value.location)}};
      v["bytes"] = known ? json(static_cast<int64_t>(elements) * ir::dtype_bytes(value.dtype)) : json(nullptr);
      out["values"].push_back(v);
    }
    out["ops"] = region(d.body);
    out["schedules"] = json::array();
    for (const ir::Schedule &schedule : d.schedules) {
      json s{{"target", schedule.target}, {"location", location(schedule.location)}, {"directives", json::array()}};
      for (const auto &directive : schedule.directives) {
        json entry;
        switch (directive.kind) {
          case ir::ScheduleDirective::Kind::Group:
          case ir::ScheduleDirective::Kind::Stream:
            entry = {{"kind", directive.kind == ir::ScheduleDirective::Kind::Group ? "group" : "stream"},
                     {"axis", p_.axis(directive.axis).name},
                     {"amount", directive.amount}};
            break;
          case ir::ScheduleDirective::Kind::Level:
            entry = {{"kind", "level"}, {"level", directive.level}, {"values", directive.values}};
            break;
        }
        s["directives"].push_back(entry);
      }
      out["schedules"].push_back(s);
    }
    if (!d.shards.empty()) {
      out["shards"] = json::array();
      for (const ir::ShardDirective &shard : d.shards) {
        json axes = json::array();
        for (int axis : shard.axes) axes.push_back(p_.axis(axis).name);
        out["shards"].push_back({{"axes", axes}, {"devices", shard.devices}, {"location", location(shard.location)}});
      }
    }
    return out;
  }

  json region(const ir::Region &r) const {
    json ops = json::array();
    for (const auto &op : r.ops) {
      json o{{"id", op->id},
             {"kind", std::string(ir::op_kind_name(op->kind))},
             {"operands", op->operands},
             {"results", op->results},
             {"location", location(op->location)}};
      if (std::string name = function_name(*op); !name.empty()) o["function"] = name;
      if (!op->axes.empty()) o["axes"] = axis_names(op->axes);
      if (op->kind == ir::OpKind::Constant) {
        if (std::isinf(op->constant)) o["constant"] = op->constant > 0 ? "inf" : "-inf";
        else o["constant"] = op->constant;
      }
      if (!op->options.empty()) o["options"] = op->options;
      if (op->kind == ir::OpKind::Access) {
        json access = json::array();
        for (const auto &index : op->access) {
          json entry{{"kind", access_kind_name(index.kind)}};
          if (index.kind == ir::AccessIndex::Kind::Affine) {
            json terms = json::array();
            for (auto [axis, coefficient] : index.terms) terms.push_back({{"axis", p_.axis(axis).name}, {"coefficient", coefficient}});
            entry["terms"] = terms;
            entry["offset"] = index.offset;
          } else if (index.kind == ir::AccessIndex::Kind::Split) {
            entry["axes"] = axis_names(index.split);
          } else {
            entry["operand"] = index.gather_operand;
          }
          access.push_back(entry);
        }
        o["access"] = access;
      }
      if (op->kind == ir::OpKind::Merge) {
        json merges = json::array();
        for (const auto &group : op->merges) merges.push_back(axis_names(group));
        o["merges"] = merges;
      }
      if (op->kind == ir::OpKind::Call) {
        o["callee"] = p_.diagrams[static_cast<size_t>(op->callee)]->name;
        if (!op->label.empty()) o["label"] = op->label;
        json bindings = json::array();
        for (auto [from, to] : op->bindings)
          bindings.push_back({{"callee_axis", p_.axis(from).name}, {"axis", p_.axis(to).name}});
        o["bindings"] = bindings;
        o["lifted"] = axis_names(op->lifted);
      }
      if (op->kind == ir::OpKind::Repeat) {
        o["count"] = op->count;
        o["body_arguments"] = op->body_arguments;
        o["body_yields"] = op->body_yields;
        o["body"] = region(*op->body);
      }
      ops.push_back(o);
    }
    return ops;
  }

  const ir::Program &p_;
  const SourceManager &sources_;
};

}  // namespace

std::string print_ir(const ir::Program &program, const SourceManager &sources, const ir::Diagram *only) {
  return TextPrinter(program, sources).run(program, only);
}

std::string ir_to_json(const ir::Program &program, const SourceManager &sources, const ir::Diagram *only) {
  // File names need not be UTF-8; replace what is not rather than fail.
  return JsonPrinter(program, sources).run(only).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace ncd
