// Call instantiation (ncd/instantiate.h): bindings, sizes at call sites,
// param names and paths, and the listing of every param instance.
#include "ncd/instantiate.h"

#include <cmath>
#include <functional>

#include "ir_source_writer.h"

namespace ncd {

// ---------------------------------------------------------------- sizes

AxisSizes::AxisSizes(const ir::Program &program, const ir::Op &call, const AxisSizes &caller)
    : program_(&program), root_(false) {
  for (auto [from, to] : call.bindings) bound_[from] = caller.size(to);
}

std::optional<int64_t> AxisSizes::size(int axis) const {
  const ir::Axis &a = program_->axis(axis);
  if (root_) return a.size;
  if (auto it = bound_.find(axis); it != bound_.end()) return it->second;
  if (auto it = cache_.find(axis); it != cache_.end()) return it->second;
  std::optional<int64_t> result;
  if (a.derived || a.formula) {
    cache_[axis] = std::nullopt;  // guards against cycles
    auto sized = [&](int base) -> std::optional<double> {
      auto s = size(base);
      return s ? std::optional<double>(static_cast<double>(*s)) : std::nullopt;
    };
    auto value = a.formula ? a.formula->evaluate(sized) : a.definition.evaluate(sized);
    if (value && *value >= 1 && std::floor(*value) == *value) result = static_cast<int64_t>(*value);
  } else {
    result = a.size;
  }
  cache_[axis] = result;
  return result;
}

std::string AxisSizes::missing_message(int axis) const {
  const ir::Axis &a = program_->axis(axis);
  if (a.derived || a.formula) return "axis '" + a.name + "' (derived) has no concrete size here; set the axes it is derived from with -D";
  return "axis '" + a.name + "' has no size; set it with -D " + a.name + "=SIZE";
}

// ---------------------------------------------------------------- naming

ParamNaming::ParamNaming(const ir::Diagram &diagram) {
  std::map<int, int> calls_per_callee, seen_per_callee;
  std::map<int, std::vector<const ir::Op *>> first_use;
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind == ir::OpKind::Call && op.label.empty()) ++calls_per_callee[op.callee];
    if (op.kind == ir::OpKind::Repeat) repeat_ordinals_[&op] = static_cast<int>(repeat_count_++);
  });
  std::vector<const ir::Op *> stack;
  std::function<void(const ir::Region &)> walk = [&](const ir::Region &region) {
    for (const auto &op : region.ops) {
      enclosing_[op.get()] = stack;
      if (op->kind == ir::OpKind::Call && !op->label.empty()) {
        call_labels_[op.get()] = op->label;
      } else if (op->kind == ir::OpKind::Call) {
        int k = seen_per_callee[op->callee]++;
        call_labels_[op.get()] = calls_per_callee[op->callee] > 1 ? op->callee_name + "@" + std::to_string(k) : op->callee_name;
      }
      for (int operand : op->operands)
        if (diagram.value(operand).role == ir::Value::Role::Param && !first_use.count(operand)) first_use[operand] = stack;
      if (op->body) {
        stack.push_back(op.get());
        walk(*op->body);
        stack.pop_back();
      }
    }
  };
  walk(diagram.body);
  for (auto &[value, chain] : first_use) {
    // The shortest chain of enclosing repeats whose counts multiply to the instances.
    int64_t instances = diagram.value(value).instances;
    std::vector<const ir::Op *> repeats;
    int64_t product = 1;
    for (const ir::Op *repeat : chain) {
      if (product == instances) break;
      repeats.push_back(repeat);
      product *= repeat->count;
    }
    param_repeats_[value] = repeats;
  }
}

std::string ParamNaming::repeat_segment(const ir::Op *repeat, int64_t iteration) const {
  std::string segment = std::to_string(iteration);
  if (repeat_count_ > 1) segment += "@" + std::to_string(repeat_ordinals_.at(repeat));
  return segment;
}

ParamPath ParamNaming::call_path(const ir::Op *call) const {
  // A named call site is a torch module list: its name, then the iterations (`h.3.`);
  // an unnamed one the iterations, then the callee's name (`3.GPT2Block.`).
  ParamPath path;
  const bool named = !call->label.empty();
  if (named) path.push_back({call->label + ".", nullptr, nullptr});
  for (const ir::Op *repeat : enclosing_repeats(call)) path.push_back({"", repeat, this, named});
  if (!named) path.push_back({call_label(call) + ".", nullptr, nullptr});
  return path;
}

const std::vector<const ir::Op *> &ParamNaming::param_repeats(int value) const {
  static const std::vector<const ir::Op *> none;
  auto it = param_repeats_.find(value);
  return it == param_repeats_.end() ? none : it->second;
}

// ---------------------------------------------------------------- paths

bool is_call_label(const std::string &label) {
  if (ir_source_detail::is_identifier(label)) return true;
  auto digits = [](const std::string &text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  size_t start = 0;
  while (true) {
    const size_t dot = label.find('.', start);
    const std::string segment = label.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    const size_t at = segment.find('@');
    const std::string head = segment.substr(0, at);
    const bool ok = at == std::string::npos
                        ? ir_source_detail::is_identifier(segment) || digits(segment)
                        : (ir_source_detail::is_identifier(head) || digits(head)) && digits(segment.substr(at + 1));
    if (!ok) return false;
    if (dot == std::string::npos) return true;
    start = dot + 1;
  }
}

std::string call_label_source(const std::string &label) {
  return ir_source_detail::is_identifier(label) ? label : "\"" + label + "\"";
}

std::string path_text(const ParamPath &path, const std::function<int64_t(const ir::Op *)> &iteration) {
  std::string text;
  for (const PathSegment &segment : path)
    if (!segment.repeat)
      text += segment.text;
    else if (segment.bare)
      text += std::to_string(iteration(segment.repeat)) + ".";
    else
      text += segment.naming->repeat_segment(segment.repeat, iteration(segment.repeat)) + ".";
  return text;
}

const ParamNaming &Namings::of(const ir::Diagram &diagram) {
  auto &slot = namings_[&diagram];
  if (!slot) slot = std::make_unique<ParamNaming>(diagram);
  return *slot;
}

// ---------------------------------------------------------------- calls

CallBinding::CallBinding(const ir::Program &program, const ir::Op &call)
    : program_(&program),
      call_(&call),
      callee_(program.diagrams.at(static_cast<size_t>(call.callee)).get()),
      binding_(call.bindings.begin(), call.bindings.end()) {}

std::optional<int> CallBinding::caller_axis(int callee_axis) const {
  auto it = binding_.find(callee_axis);
  if (it == binding_.end()) return std::nullopt;
  return it->second;
}

std::vector<CallBinding::AxisPair> CallBinding::pairs(int value) const {
  std::vector<AxisPair> out;
  for (int axis : callee_->value(value).axes) out.push_back({axis, caller_axis(axis).value_or(-1)});
  return out;
}

std::vector<CallBinding::AxisPair> CallBinding::input_axes(size_t k) const { return pairs(callee_->inputs.at(k)); }

std::vector<CallBinding::AxisPair> CallBinding::output_axes(size_t k) const { return pairs(callee_->outputs.at(k)); }

std::string CallBinding::unbound_message(int callee_axis) const {
  return "internal: axis '" + program_->axis(callee_axis).name + "' of '" + callee_->name + "' is not bound";
}

// ---------------------------------------------------------------- instances

Instance::Instance(const ir::Program &program, const ir::Diagram &root, Namings &namings)
    : program_(&program), diagram_(&root), namings_(&namings), naming_(&namings.of(root)), sizes_(program) {}

Instance::Instance(const Instance &caller, const ir::Op &call)
    : program_(caller.program_),
      diagram_(caller.program_->diagrams.at(static_cast<size_t>(call.callee)).get()),
      namings_(caller.namings_),
      naming_(&caller.namings_->of(*diagram_)),
      sizes_(*caller.program_, call, caller.sizes_),
      binding_(CallBinding(*caller.program_, call)),
      prefix_(caller.prefix_) {
  const ParamPath segments = caller.naming_->call_path(&call);
  prefix_.insert(prefix_.end(), segments.begin(), segments.end());
}

ParamPath Instance::param_path(int value) const {
  ParamPath path = prefix_;
  for (const ir::Op *repeat : naming_->param_repeats(value)) path.push_back({"", repeat, naming_});
  path.push_back({diagram_->value(value).name, nullptr, nullptr});
  return path;
}

// ---------------------------------------------------------------- listing

namespace {

class Lister {
 public:
  Lister(const ir::Program &program, std::vector<ParamInstance> &out) : program_(program), out_(out) {}

  bool visit(const Instance &instance) {
    const ir::Diagram &diagram = instance.diagram();
    const ParamNaming &naming = instance.naming();
    // Own params, one per combination of iterations of the repeats that multiply them.
    for (int id : diagram.params) {
      if (!naming.param_used(id)) continue;
      const ir::Value &value = diagram.value(id);
      ParamInstance param;
      param.diagram = &diagram;
      param.value = id;
      param.dtype = value.dtype;
      for (int axis : value.axes) {
        auto size = instance.sizes().size(axis);
        if (!size) {
          error_ = "param '" + value.name + "' of '" + diagram.name + "': " + instance.sizes().missing_message(axis);
          return false;
        }
        param.axis_names.push_back(program_.axis(axis).name);
        param.shape.push_back(*size);
      }
      const ParamPath path = instance.param_path(id);
      const auto &repeats = naming.param_repeats(id);
      for (const ir::Op *repeat : repeats) iterations_[repeat] = 0;
      for (bool more = true; more;) {
        param.path = path_text(path, [&](const ir::Op *repeat) { return iterations_.at(repeat); });
        // Call sites given the same name share their params (docs/LANGUAGE.md, "Tied call sites").
        if (auto [at, fresh] = listed_.emplace(param.path, out_.size()); !fresh) {
          const ParamInstance &first = out_[at->second];
          if (first.shape != param.shape || first.dtype != param.dtype) {
            error_ = "param '" + param.path + "' is reached twice (tied call sites) with different shapes or dtypes";
            return false;
          }
        } else {
          out_.push_back(param);
        }
        more = false;
        for (size_t k = repeats.size(); k-- > 0;) {
          if (++iterations_[repeats[k]] < repeats[k]->count) {
            more = true;
            break;
          }
          iterations_[repeats[k]] = 0;
        }
      }
    }
    return walk(instance, diagram.body);
  }

  const std::string &error() const { return error_; }

 private:
  bool walk(const Instance &instance, const ir::Region &region) {
    for (const auto &op : region.ops) {
      if (op->kind == ir::OpKind::Call) {
        if (!visit(Instance(instance, *op))) return false;
      } else if (op->kind == ir::OpKind::Repeat) {
        for (int64_t i = 0; i < op->count; ++i) {
          iterations_[op.get()] = i;
          if (!walk(instance, *op->body)) return false;
        }
      }
    }
    return true;
  }

  const ir::Program &program_;
  std::vector<ParamInstance> &out_;
  std::map<const ir::Op *, int64_t> iterations_;  // the iteration each repeat on the way is at
  std::map<std::string, size_t> listed_;          // path → its entry of out_
  std::string error_;
};

}  // namespace

bool list_param_instances(const ir::Program &program, const ir::Diagram &diagram, std::vector<ParamInstance> &out,
                          std::string &error) {
  out.clear();
  Lister lister(program, out);
  Namings namings;
  if (!lister.visit(Instance(program, diagram, namings))) {
    error = lister.error();
    return false;
  }
  return true;
}

}  // namespace ncd
