// Instances of diagrams at run time: sizes at call sites and param names.
#include "ncd/instances.h"

#include <cmath>
#include <functional>

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
  if (a.derived) {
    cache_[axis] = std::nullopt;  // guards against cycles
    auto value = a.definition.evaluate([&](int base) -> std::optional<double> {
      auto s = size(base);
      return s ? std::optional<double>(static_cast<double>(*s)) : std::nullopt;
    });
    if (value && *value >= 1 && std::floor(*value) == *value) result = static_cast<int64_t>(*value);
  } else {
    result = a.size;
  }
  cache_[axis] = result;
  return result;
}

std::string AxisSizes::missing_message(int axis) const {
  const ir::Axis &a = program_->axis(axis);
  if (a.derived) return "axis '" + a.name + "' (derived) has no concrete size here; set the axes it is derived from with -D";
  return "axis '" + a.name + "' has no size; set it with -D " + a.name + "=SIZE";
}

// ---------------------------------------------------------------- naming

ParamNaming::ParamNaming(const ir::Diagram &diagram) {
  std::map<int, int> calls_per_callee, seen_per_callee;
  std::map<int, std::vector<const ir::Op *>> first_use;
  ir::for_each_op(diagram.body, [&](const ir::Op &op) {
    if (op.kind == ir::OpKind::Call) ++calls_per_callee[op.callee];
    if (op.kind == ir::OpKind::Repeat) repeat_ordinals_[&op] = static_cast<int>(repeat_count_++);
  });
  std::vector<const ir::Op *> stack;
  std::function<void(const ir::Region &)> walk = [&](const ir::Region &region) {
    for (const auto &op : region.ops) {
      enclosing_[op.get()] = stack;
      if (op->kind == ir::OpKind::Call) {
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

const std::vector<const ir::Op *> &ParamNaming::param_repeats(int value) const {
  static const std::vector<const ir::Op *> none;
  auto it = param_repeats_.find(value);
  return it == param_repeats_.end() ? none : it->second;
}

// ---------------------------------------------------------------- listing

namespace {

class Lister {
 public:
  Lister(const ir::Program &program, std::vector<ParamInstance> &out) : program_(program), out_(out) {}

  bool visit(const ir::Diagram &diagram, const AxisSizes &sizes, const std::string &prefix) {
    auto &naming = naming_of(diagram);
    // Own params, one per combination of iterations of the repeats that multiply them.
    for (int id : diagram.params) {
      if (!naming.param_used(id)) continue;
      const ir::Value &value = diagram.value(id);
      ParamInstance instance;
      instance.diagram = &diagram;
      instance.value = id;
      instance.dtype = value.dtype;
      for (int axis : value.axes) {
        auto size = sizes.size(axis);
        if (!size) {
          error_ = "param '" + value.name + "' of '" + diagram.name + "': " + sizes.missing_message(axis);
          return false;
        }
        instance.axis_names.push_back(program_.axis(axis).name);
        instance.shape.push_back(*size);
      }
      const auto &repeats = naming.param_repeats(id);
      std::vector<int64_t> iteration(repeats.size(), 0);
      for (bool more = true; more;) {
        std::string path = prefix;
        for (size_t k = 0; k < repeats.size(); ++k) path += naming.repeat_segment(repeats[k], iteration[k]) + ".";
        instance.path = path + value.name;
        out_.push_back(instance);
        more = false;
        for (size_t k = repeats.size(); k-- > 0;) {
          if (++iteration[k] < repeats[k]->count) {
            more = true;
            break;
          }
          iteration[k] = 0;
        }
      }
    }
    std::vector<std::pair<const ir::Op *, int64_t>> iterations;
    return walk(diagram, naming, diagram.body, sizes, prefix, iterations);
  }

  const std::string &error() const { return error_; }

 private:
  bool walk(const ir::Diagram &diagram, const ParamNaming &naming, const ir::Region &region, const AxisSizes &sizes,
            const std::string &prefix, std::vector<std::pair<const ir::Op *, int64_t>> &iterations) {
    for (const auto &op : region.ops) {
      if (op->kind == ir::OpKind::Call) {
        std::string path = prefix;
        for (auto &[repeat, i] : iterations) path += naming.repeat_segment(repeat, i) + ".";
        path += naming.call_label(op.get()) + ".";
        AxisSizes inner(program_, *op, sizes);
        if (!visit(*program_.diagrams.at(static_cast<size_t>(op->callee)), inner, path)) return false;
      } else if (op->kind == ir::OpKind::Repeat) {
        for (int64_t i = 0; i < op->count; ++i) {
          iterations.push_back({op.get(), i});
          bool ok = walk(diagram, naming, *op->body, sizes, prefix, iterations);
          iterations.pop_back();
          if (!ok) return false;
        }
      }
    }
    return true;
  }

  const ParamNaming &naming_of(const ir::Diagram &diagram) {
    auto it = naming_.find(&diagram);
    if (it == naming_.end()) it = naming_.emplace(&diagram, ParamNaming(diagram)).first;
    return it->second;
  }

  const ir::Program &program_;
  std::vector<ParamInstance> &out_;
  std::map<const ir::Diagram *, ParamNaming> naming_;
  std::string error_;
};

}  // namespace

bool list_param_instances(const ir::Program &program, const ir::Diagram &diagram, std::vector<ParamInstance> &out,
                          std::string &error) {
  out.clear();
  Lister lister(program, out);
  AxisSizes sizes(program);
  if (!lister.visit(diagram, sizes, "")) {
    error = lister.error();
    return false;
  }
  return true;
}

}  // namespace ncd
