// Reverse-mode differentiation (ncd/autodiff.h, docs/AUTODIFF.md): the
// derived diagram, the reverse sweep and calls.
//
// Preconditions: a verified program whose diagram sizes are concrete. The
// derived diagram starts as a copy of D (its forward values), seeds each float
// output with a cotangent input, and walks D's ops backwards, adding each
// op's vector-Jacobian products (autodiff_rules.cpp) to the cotangents of its
// operands. A call is differentiated once per callee (F_grad: gradients of
// all its float inputs and params) and called with the same bindings and
// lifting at a call site of the same name, so that its params are the call's
// (tied call sites). A diagram holding a repeat is differentiated as its
// unrolled copy (ncd/unroll.h). Ops no output needs are dropped at the end.
#include "ncd/autodiff.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>

#include "autodiff_impl.h"
#include "ncd/diagnostics.h"
#include "ncd/instantiate.h"
#include "ncd/ir_edit.h"
#include "ncd/unroll.h"
#include "ncd/verifier.h"

namespace ncd {
namespace {

using autodiff::Builder;
using autodiff::Failure;
using autodiff::is_real;

// A path as a name of the language: dots and @ become underscores.
std::string path_name(const std::string &path) {
  std::string out = path;
  for (char &c : out)
    if (c == '.' || c == '@') c = '_';
  return out;
}

// What each output of a derived diagram is the gradient of.
struct GradientOf {
  int input = -1;    // index into the differentiated diagram's inputs, or
  std::string path;  // a param's path relative to it
};

struct Derived {
  ir::Diagram *diagram = nullptr;
  std::vector<GradientOf> gradients;  // one per gradient output, after the kept outputs
  // A callee's gradient takes only the inputs it reads: for each, its place among the callee's
  // inputs followed by its float outputs' cotangents.
  std::vector<size_t> operands;
  std::vector<int> scores, row_stats;  // attention the backward recomputes (autodiff::StepParts)
  const ir::Diagram *source = nullptr;  // what was differentiated: D, or D with its repeats unrolled
};

struct Wanted {
  std::set<int> inputs;      // value ids of the differentiated diagram
  bool all_params = false;
  std::set<std::string> params;  // paths
  bool wants(const std::string &path) const { return all_params || params.count(path); }
  bool wants_under(const std::string &prefix) const {
    if (all_params) return true;
    for (const auto &path : params)
      if (path.compare(0, prefix.size(), prefix) == 0) return true;
    return false;
  }
};

class Deriver {
 public:
  explicit Deriver(ir::Program &program) : program_(program) {}

  // `primed`: (param path, position) whose axis the gradient output holds under a copy of the axis,
  // for a call site that binds two axes of the param to one axis (a square weight).
  using Primed = std::set<std::pair<std::string, size_t>>;
  Derived derive(const ir::Diagram &d, const std::string &name, const Wanted &wanted, bool keep_outputs,
                 const Primed &primed = {}, bool top_level = true);

 private:
  const Derived &callee_gradient(const ir::Diagram &callee, const Primed &primed);
  std::string fresh_value_name(const ir::Diagram &d, const std::string &base) const;

  ir::Program &program_;
  std::map<std::pair<const ir::Diagram *, Primed>, Derived> callee_gradients_;
  std::map<int, int> copy_of_;  // a primed axis → the axis it copies
  // Callees with a call's lifted axes made their own, by callee and the lifted axes of each argument.
  std::map<std::pair<const ir::Diagram *, std::vector<std::vector<int>>>, std::unique_ptr<ir::Diagram>> lifted_;
  // Repeated diagrams unrolled, differentiated in their place.
  std::map<const ir::Diagram *, std::unique_ptr<ir::Diagram>> unrolled_;
};

std::string Deriver::fresh_value_name(const ir::Diagram &d, const std::string &base) const {
  std::set<std::string> taken;
  for (const ir::Value &v : d.values) taken.insert(v.name);
  for (const auto &other : program_.diagrams) taken.insert(other->name);
  std::string name = base;
  for (int k = 2; taken.count(name); ++k) name = base + "_" + std::to_string(k);
  return name;
}

const Derived &Deriver::callee_gradient(const ir::Diagram &callee, const Primed &primed) {
  if (auto it = callee_gradients_.find({&callee, primed}); it != callee_gradients_.end()) return it->second;
  Wanted all;
  for (int id : callee.inputs)
    if (is_real(callee.value(id).dtype)) all.inputs.insert(id);
  all.all_params = true;
  Derived derived = derive(callee, ir::fresh_diagram_name(program_, callee.name + "_grad"), all, false, primed, false);
  return callee_gradients_.emplace(std::make_pair(&callee, primed), std::move(derived)).first->second;
}

Derived Deriver::derive(const ir::Diagram &d, const std::string &name, const Wanted &wanted, bool keep_outputs,
                        const Primed &primed, bool top_level) {
  // A repeat is differentiated unrolled: its backward runs the iterations in reverse, each reading its
  // own forward values and params, which straight-line code names directly (ncd/unroll.h).
  bool repeats = false;
  ir::for_each_op(d.body, [&](const ir::Op &op) { repeats |= op.kind == ir::OpKind::Repeat; });
  if (repeats) {
    auto &flat = unrolled_[&d];  // once per diagram: D_grad and D_train share it
    if (!flat) {
      std::string why;
      SourceLocation where;
      flat = ir::unroll_repeats(program_, d, d.name, why, where);
      if (!flat) throw Failure{where, why};
    }
    return derive(*flat, name, wanted, keep_outputs, primed, top_level);
  }
  auto owned = ir::clone_diagram(d, name);
  ir::Diagram &g = *owned;
  g.schedules.clear();
  g.outputs.clear();
  for (int id : d.outputs) g.value(id).role = keep_outputs ? ir::Value::Role::Output : ir::Value::Role::Intermediate;
  if (keep_outputs) g.outputs = d.outputs;
  Builder b(program_, g);
  b.location = d.location;

  // A call that reaches params is named in g after its path segment (`LayerNorm@1` for the second unnamed one).
  const ParamNaming naming(d);

  // Forward activity: a value depends on something differentiated.
  std::set<int> active(wanted.inputs.begin(), wanted.inputs.end());
  for (int id : d.params)
    if (wanted.wants(d.value(id).name)) active.insert(id);
  std::map<const ir::Op *, std::string> call_segment;
  for (const auto &op : d.body.ops) {
    bool any = false;
    for (int operand : op->operands) any |= active.count(operand) > 0;
    if (op->kind == ir::OpKind::Call) {
      const ir::Diagram &callee = *program_.diagrams[static_cast<size_t>(op->callee)];
      if (ir::reaches_params(program_, callee)) {
        const std::string segment = op->label.empty() ? naming.call_label(op.get()) : op->label;
        call_segment[op.get()] = segment;
        any |= wanted.wants_under(segment + ".");
      }
    }
    if (!any) continue;
    for (int result : op->results)
      if (is_real(d.value(result).dtype)) active.insert(result);
  }

  // Seeds: one cotangent input per float output.
  std::map<int, int> cot;
  auto accumulate = [&](int v, int c) {
    if (c < 0 || !active.count(v)) return;
    c = b.fit(c, g.value(v).axes, g.value(v).dtype);
    auto [it, fresh] = cot.emplace(v, c);
    if (!fresh) it->second = b.elementwise(ops::Fn::Add, {it->second, c}, g.value(v).dtype);
  };
  for (int id : d.outputs) {
    const ir::Value &output = d.value(id);
    if (!is_real(output.dtype)) continue;
    const int seed = ir::add_value(g, fresh_value_name(g, "d_" + output.name), output.axes, output.dtype,
                                   output.location);
    g.value(seed).role = ir::Value::Role::Input;
    g.inputs.push_back(seed);
    accumulate(id, seed);
  }

  std::map<std::string, int> param_cot;  // param path → cotangent
  auto add_param = [&](const std::string &path, int c, std::vector<int> axes, ir::DType dtype) {
    c = b.fit(c, axes, dtype);
    auto [it, fresh] = param_cot.emplace(path, c);
    if (!fresh) it->second = b.elementwise(ops::Fn::Add, {it->second, c}, dtype);
  };

  std::map<int, std::vector<const ir::Op *>> readers;  // the ops of d reading each value
  for (const auto &op : d.body.ops)
    for (int operand : op->operands)
      if (readers[operand].empty() || readers[operand].back() != op.get()) readers[operand].push_back(op.get());

  // FlashAttention's saved state: a softmax read by one contraction over its axis is recomputed in
  // the backward from its rows' logsumexp (autodiff::attention_softmax).
  std::map<int, int> recomputed;  // softmax result → its recomputation
  std::vector<int> scores, row_stats;
  for (const auto &op : d.body.ops)
    if (op->kind == ir::OpKind::Normalize && op->function == ops::Fn::Softmax && active.count(op->results[0]) &&
        readers[op->results[0]].size() == 1 && !std::count(d.outputs.begin(), d.outputs.end(), op->results[0])) {
      b.location = op->location;
      int lse = -1;
      const int p = autodiff::recompute_softmax(b, *op, *readers[op->results[0]][0], lse);
      if (p >= 0) {
        recomputed[op->results[0]] = p;
        scores.push_back(op->operands[0]);
        row_stats.push_back(lse);
      }
    }

  // The reverse sweep, over the forward ops of d (their clones in g have the same ids and values).
  for (auto it = d.body.ops.rbegin(); it != d.body.ops.rend(); ++it) {
    const ir::Op &op = **it;
    std::vector<int> results;
    bool seeded = false;
    for (int result : op.results) {
      auto found = cot.find(result);
      results.push_back(found == cot.end() ? -1 : found->second);
      seeded |= found != cot.end();
    }
    if (!seeded) continue;
    b.location = op.location;
    // The cotangents of this op's results are complete: a named value's is d_NAME in the written file.
    for (size_t k = 0; k < op.results.size(); ++k)
      if (results[k] >= 0 && g.value(results[k]).name.empty() && !g.value(op.results[k]).name.empty() &&
          g.value(op.results[k]).name[0] != '%')
        b.name(results[k], "d_" + g.value(op.results[k]).name);
    if (auto p = recomputed.find(op.results[0]); p != recomputed.end() && op.kind == ir::OpKind::Normalize) {
      const ir::Op &consumer = *readers[op.results[0]][0];
      auto found = cot.find(consumer.results[0]);
      if (results[0] >= 0 && found != cot.end()) {
        accumulate(op.operands[0], autodiff::attention_softmax(b, op, p->second, results[0], consumer, found->second));
        continue;
      }
    }
    if (op.kind != ir::OpKind::Call) {
      // The backward reads attention's probabilities as recomputed from the logsumexp.
      ir::Op reading;
      const ir::Op *rule_op = &op;
      if (std::any_of(op.operands.begin(), op.operands.end(), [&](int v) { return recomputed.count(v) > 0; })) {
        reading.kind = op.kind;
        reading.function = op.function;
        reading.axes = op.axes;
        reading.results = op.results;
        reading.location = op.location;
        reading.operands = op.operands;
        for (int &v : reading.operands)
          if (recomputed.count(v)) v = recomputed[v];
        rule_op = &reading;
      }
      const std::vector<int> operands = autodiff::operand_cotangents(b, *rule_op, results);
      for (size_t i = 0; i < operands.size(); ++i) accumulate(op.operands[i], operands[i]);
      continue;
    }
    const ir::Diagram &callee = *program_.diagrams[static_cast<size_t>(op.callee)];
    std::map<int, int> bound;  // callee axis → caller axis
    for (auto [from, to] : op.bindings) bound[from] = to;
    // A lifted call of a diagram with params: its gradient is derived with the lifted axes as its own,
    // so that a param's gradient is summed over them inside one contraction.
    const ir::Diagram *target = &callee;
    std::vector<int> lifted = op.lifted;
    if (!op.lifted.empty() && ir::reaches_params(program_, callee)) {
      std::vector<std::vector<int>> carried;
      for (int operand : op.operands) {
        carried.emplace_back();
        for (int axis : op.lifted)
          if (std::count(g.value(operand).axes.begin(), g.value(operand).axes.end(), axis)) carried.back().push_back(axis);
      }
      auto &slot = lifted_[{&callee, carried}];
      if (!slot) slot = autodiff::lift_callee(callee, op.lifted, carried);
      if (slot) {
        target = slot.get();
        for (int axis : op.lifted) bound[axis] = axis;
        lifted.clear();
      }
    }
    // A param whose axes this call binds to one axis (a square weight) returns its gradient on a copy of the later ones.
    Primed call_primed;
    {
      const Derived &plain = callee_gradient(*target, {});
      for (size_t k = 0; k < plain.gradients.size(); ++k) {
        if (plain.gradients[k].input >= 0) continue;
        std::set<int> seen;
        const auto &axes = plain.diagram->value(plain.diagram->outputs[k]).axes;
        for (size_t i = 0; i < axes.size(); ++i) {
          const int to = bound.count(axes[i]) ? bound[axes[i]] : axes[i];
          if (!seen.insert(to).second) call_primed.insert({plain.gradients[k].path, i});
        }
      }
    }
    const Derived &grad = callee_gradient(*target, call_primed);
    auto grad_call = ir::make_op(g, ir::OpKind::Call, op.location);
    grad_call->callee = static_cast<int>(std::find_if(program_.diagrams.begin(), program_.diagrams.end(),
                                                      [&](const auto &x) { return x.get() == grad.diagram; }) -
                                         program_.diagrams.begin());
    grad_call->callee_name = grad.diagram->name;
    grad_call->bindings = op.bindings;
    if (lifted.empty())
      for (int axis : op.lifted) grad_call->bindings.push_back({axis, axis});
    grad_call->lifted = lifted;
    auto caller_axes = [&](const std::vector<int> &axes) {
      std::vector<int> out;
      for (int axis : axes) {
        auto found = bound.find(axis);
        if (found == bound.end() && copy_of_.count(axis) && bound.count(copy_of_[axis])) {
          // A primed axis: bound to a copy of the caller's axis, so that the two stay apart.
          const int copy = b.copy_axis(bound[copy_of_[axis]]);
          grad_call->bindings.push_back({axis, copy});
          bound[axis] = copy;
          out.push_back(copy);
        } else if (found == bound.end()) {
          // An internal axis of the callee (a param's) left unbound: the caller reads it as its own.
          grad_call->bindings.push_back({axis, axis});
          bound[axis] = axis;
          out.push_back(axis);
        } else {
          out.push_back(found->second);
        }
      }
      out.insert(out.end(), lifted.begin(), lifted.end());
      return out;
    };
    std::vector<int> arguments = op.operands;
    for (size_t k = 0; k < op.results.size(); ++k) {
      const ir::Value result = g.value(op.results[k]);
      if (!is_real(result.dtype)) continue;
      arguments.push_back(results[k] >= 0 ? results[k] : b.fit(b.constant(0), result.axes, result.dtype));
    }
    for (size_t k : grad.operands) grad_call->operands.push_back(arguments[k]);
    if (call_segment.count(&op)) {
      grad_call->label = call_segment[&op];
      for (auto &clone : g.body.ops)
        if (clone->id == op.id) clone->label = grad_call->label;
    }
    std::vector<int> outs;
    for (int id : grad.diagram->outputs) {
      const ir::Value &out = grad.diagram->value(id);
      outs.push_back(ir::add_value(g, "", caller_axes(out.axes), out.dtype, op.location));
    }
    ir::set_results(g, *grad_call, outs);
    g.body.ops.push_back(std::move(grad_call));
    for (size_t k = 0; k < grad.gradients.size(); ++k) {
      const GradientOf &of = grad.gradients[k];
      const int value = outs[k];
      if (of.input >= 0) {
        accumulate(op.operands[static_cast<size_t>(of.input)], value);
      } else {
        const std::string path = call_segment[&op] + "." + of.path;
        if (!wanted.wants(path)) continue;
        // A lifted call shares its params along the lifted axes: their gradient sums over them.
        std::vector<int> axes = g.value(value).axes;
        axes.resize(axes.size() - lifted.size());
        add_param(path, value, axes, g.value(value).dtype);
      }
    }
  }

  // The gradient outputs: inputs in order, then the diagram's own params, then the callees'.
  Derived derived;
  auto output = [&](int v, std::vector<int> axes, ir::DType dtype, const std::string &of) {
    if (v < 0) v = b.fit(b.constant(0), axes, dtype);
    if (!g.value(v).name.empty() || g.value(v).role != ir::Value::Role::Intermediate ||
        std::count(g.outputs.begin(), g.outputs.end(), v))
      v = b.elementwise(ops::Fn::Copy, {v}, dtype);
    g.value(v).name = fresh_value_name(g, "d_" + path_name(of));
    g.value(v).role = ir::Value::Role::Output;
    g.outputs.push_back(v);
  };
  auto prime = [&](int v, const std::string &path) {
    if (v < 0) return v;
    const std::vector<int> axes = g.value(v).axes;
    for (size_t i = 0; i < axes.size(); ++i)
      if (primed.count({path, i})) {
        const int copy = b.copy_axis(axes[i]);
        copy_of_[copy] = axes[i];
        v = b.rename(v, axes[i], copy);
      }
    return v;
  };
  b.location = d.location;
  for (size_t i = 0; i < d.inputs.size(); ++i) {
    const int id = d.inputs[i];
    if (!wanted.inputs.count(id)) continue;
    auto found = cot.find(id);
    output(found == cot.end() ? -1 : found->second, d.value(id).axes, d.value(id).dtype, d.value(id).name);
    derived.gradients.push_back({static_cast<int>(i), ""});
  }
  std::set<int> used;
  for (const auto &op : d.body.ops) used.insert(op->operands.begin(), op->operands.end());
  for (int id : d.params) {
    const ir::Value &param = d.value(id);
    if (!used.count(id) || !wanted.wants(param.name)) continue;
    auto found = cot.find(id);
    int v = prime(found == cot.end() ? b.fit(b.constant(0), param.axes, param.dtype) : found->second, param.name);
    output(v, g.value(v).axes, param.dtype, param.name);
    derived.gradients.push_back({-1, param.name});
  }
  for (auto &[path, value] : param_cot) {
    const int v = prime(value, path);
    output(v, g.value(v).axes, g.value(v).dtype, path);
    derived.gradients.push_back({-1, path});
  }

  // Drop what no output needs, and the params nothing reads any more.
  std::set<int> needed(g.outputs.begin(), g.outputs.end());
  for (auto it = g.body.ops.rbegin(); it != g.body.ops.rend(); ++it) {
    bool keep = false;
    for (int result : (*it)->results) keep |= needed.count(result) > 0;
    if (keep) needed.insert((*it)->operands.begin(), (*it)->operands.end());
  }
  ir::erase_ops(g.body, [&](const ir::Op &op) {
    return std::none_of(op.results.begin(), op.results.end(), [&](int r) { return needed.count(r) > 0; });
  });
  std::vector<int> params;
  for (int id : g.params)
    if (needed.count(id)) params.push_back(id);
  g.params = params;
  for (size_t k = 0; k < g.inputs.size(); ++k) derived.operands.push_back(k);
  if (!keep_outputs && !top_level) {
    // A callee's gradient: an input nothing reads is not passed (nor warned about).
    std::vector<int> inputs;
    derived.operands.clear();
    for (size_t k = 0; k < g.inputs.size(); ++k)
      if (needed.count(g.inputs[k])) {
        inputs.push_back(g.inputs[k]);
        derived.operands.push_back(k);
      } else {
        g.value(g.inputs[k]).role = ir::Value::Role::Intermediate;
      }
    g.inputs = inputs;
  }
  for (const ir::Value &v : g.values)
    if (v.role == ir::Value::Role::Param && !needed.count(v.id)) g.value(v.id).role = ir::Value::Role::Intermediate;

  program_.diagrams.push_back(std::move(owned));
  derived.diagram = program_.diagrams.back().get();
  derived.scores = scores;
  derived.row_stats = row_stats;
  derived.source = &d;
  return derived;
}

// Reads --wrt: "params", "inputs", input names and param paths.
bool parse_wanted(const ir::Program &program, const ir::Diagram &d, const std::vector<std::string> &wrt,
                  Wanted &wanted, GradientError &error) {
  std::vector<ParamInstance> params;
  std::string listing;
  if (!list_param_instances(program, d, params, listing)) {
    error = {d.location, listing};
    return false;
  }
  std::vector<std::string> candidates{"params", "inputs"};
  for (int id : d.inputs) candidates.push_back(d.value(id).name);
  for (const auto &param : params) candidates.push_back(param.path);
  auto all_inputs = [&] {
    for (int id : d.inputs)
      if (is_real(d.value(id).dtype)) wanted.inputs.insert(id);
  };
  if (wrt.empty()) {
    all_inputs();
    wanted.all_params = true;
    return true;
  }
  for (const std::string &name : wrt) {
    if (name == "params") {
      wanted.all_params = true;
      continue;
    }
    if (name == "inputs") {
      all_inputs();
      continue;
    }
    auto input = std::find_if(d.inputs.begin(), d.inputs.end(), [&](int id) { return d.value(id).name == name; });
    if (input != d.inputs.end()) {
      if (!is_real(d.value(*input).dtype)) {
        error = {d.value(*input).location, "input '" + name + "' is " + std::string(ir::dtype_name(d.value(*input).dtype)) +
                                               ": an integer or boolean input has no gradient"};
        return false;
      }
      wanted.inputs.insert(*input);
      continue;
    }
    auto param = std::find_if(params.begin(), params.end(), [&](const ParamInstance &p) { return p.path == name; });
    if (param != params.end()) {
      wanted.params.insert(name);
      continue;
    }
    error = {d.location, "'" + name + "' is neither an input nor a param of '" + d.name + "'" +
                             did_you_mean(name, candidates) + " (--wrt takes params, inputs, input names and param paths)"};
    return false;
  }
  return true;
}

// Gradients derived along the way that nothing calls (a callee's plain gradient, derived to find
// which of its weights a call binds square, when that call needs the other variant) are removed,
// and a variant left alone takes the plain name (`Mix_grad`, not `Mix_grad_2`).
void drop_unreached(ir::Program &program, size_t before, GradientResult &result) {
  std::set<const ir::Diagram *> reached;
  std::function<void(const ir::Diagram *)> reach = [&](const ir::Diagram *d) {
    if (!d || !reached.insert(d).second) return;
    ir::for_each_op(d->body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Call) reach(program.diagrams[static_cast<size_t>(op.callee)].get());
    });
  };
  for (const ir::Diagram *root : {result.grad, result.train, result.forward, result.backward}) reach(root);
  std::vector<int> index(program.diagrams.size(), -1);
  std::vector<std::unique_ptr<ir::Diagram>> kept;
  for (size_t i = 0; i < program.diagrams.size(); ++i)
    if (i < before || reached.count(program.diagrams[i].get())) {
      index[i] = static_cast<int>(kept.size());
      kept.push_back(std::move(program.diagrams[i]));
    }
  program.diagrams = std::move(kept);
  std::map<std::string, std::string> renamed;
  for (size_t i = before; i < program.diagrams.size(); ++i) {
    ir::Diagram &d = *program.diagrams[i];
    const size_t cut = d.name.rfind("_grad_");
    if (cut == std::string::npos || d.name.find_first_not_of("0123456789", cut + 6) != std::string::npos) continue;
    const std::string plain = d.name.substr(0, cut + 5);
    if (program.find_diagram(plain)) continue;
    renamed[d.name] = plain;
    d.name = plain;
  }
  std::function<void(ir::Region &)> remap = [&](ir::Region &region) {
    for (auto &op : region.ops) {
      if (op->kind == ir::OpKind::Call) {
        op->callee = index[static_cast<size_t>(op->callee)];
        if (auto it = renamed.find(op->callee_name); it != renamed.end()) op->callee_name = it->second;
      }
      if (op->body) remap(*op->body);
    }
  };
  for (auto &d : program.diagrams) remap(d->body);
}

}  // namespace

bool derive_gradient(ir::Program &program, const ir::Diagram &diagram, const GradientRequest &request,
                     GradientResult &result, GradientError &error) {
  Wanted wanted;
  if (!parse_wanted(program, diagram, request.wrt, wanted, error)) return false;
  const size_t before = program.diagrams.size();
  try {
    Deriver deriver(program);
    Derived grad = deriver.derive(diagram, ir::fresh_diagram_name(program, diagram.name + "_grad"), wanted, false);
    if (grad.gradients.empty())
      throw Failure{diagram.location, request.wrt.empty()
                                          ? "'" + diagram.name + "' has nothing to differentiate: no float input or param"
                                          : "--wrt selects no float input or param of '" + diagram.name +
                                                "' that it reads"};
    result.grad = grad.diagram;
    for (size_t k = 0; k < grad.gradients.size(); ++k) {
      const GradientOf &of = grad.gradients[k];
      const std::string what = of.input >= 0 ? diagram.value(diagram.inputs[static_cast<size_t>(of.input)]).name : of.path;
      result.gradients.push_back({grad.diagram->value(grad.diagram->outputs[k]).name, what});
    }
    if (request.train)
      result.train = deriver.derive(diagram, ir::fresh_diagram_name(program, diagram.name + "_train"), wanted, true).diagram;
    if (request.split) {
      const autodiff::StepParts parts{grad.source, grad.diagram, grad.scores, grad.row_stats};
      for (SavePolicy policy : {SavePolicy::None, SavePolicy::Flash, SavePolicy::All})
        result.choices.push_back(autodiff::split_step(program, parts, policy, policy == request.save, result.forward,
                                                      result.backward));
    }
  } catch (const Failure &failure) {
    program.diagrams.resize(before);
    error = {failure.location, failure.message};
    return false;
  }
  drop_unreached(program, before, result);
  if (auto problems = verify(program); !problems.empty()) {
    error = {diagram.location, "internal: a derived diagram is malformed: " + problems.front()};
    program.diagrams.resize(before);
    return false;
  }
  return true;
}

}  // namespace ncd
