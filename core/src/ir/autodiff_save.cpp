// Saving or recomputing (docs/AUTODIFF.md): a derived step split into its
// forward pass D_forward (D's outputs and the values it saves) and its
// backward pass D_backward (the gradients, from the saved values, recomputing
// the rest), for one of the policies of ncd/autodiff.h.
//
// Preconditions: `parts.grad` is the D_grad of `parts.original` as
// autodiff.cpp derives it: D's values keep their ids, D's ops come first with
// their ids (at most D's max_op_id) and every op after them belongs to the
// backward pass. A call is a checkpoint: its gradient recomputes the callee's
// values, so only values of D itself are saved.
#include <set>

#include "autodiff_impl.h"
#include "ncd/cost.h"
#include "ncd/ir_edit.h"

namespace ncd::autodiff {
namespace {

double value_bytes(const ir::Program &program, const ir::Value &value) {
  double bytes = ir::dtype_bytes(value.dtype);
  for (int axis : value.axes) bytes *= static_cast<double>(program.size(axis).value_or(0));
  return bytes;
}

// What the policy saves: forward values the backward reads (and, for what it
// recomputes, the forward values that recomputation reads), but for values
// free to recompute (constants, sizes, positions) and, under Flash, attention's
// scores and the score-shaped values they come from.
std::vector<int> saved_values(const StepParts &parts, SavePolicy policy) {
  const ir::Diagram &d = *parts.original, &g = *parts.grad;
  if (policy == SavePolicy::None) return {};
  std::map<int, const ir::Op *> forward;
  for (const auto &op : g.body.ops)
    if (op->id <= d.max_op_id || std::count(parts.row_stats.begin(), parts.row_stats.end(), op->results[0]))
      for (int r : op->results) forward[r] = op.get();
  std::set<int> recompute;
  if (policy == SavePolicy::Flash)
    for (int score : parts.scores) {
      const std::vector<int> &shape = g.value(score).axes;
      std::vector<int> stack{score};
      while (!stack.empty()) {
        const int v = stack.back();
        stack.pop_back();
        if (!forward.count(v) || !recompute.insert(v).second) continue;
        for (int u : forward[v]->operands) {
          const std::vector<int> &axes = g.value(u).axes;
          if (std::all_of(shape.begin(), shape.end(),
                          [&](int axis) { return std::find(axes.begin(), axes.end(), axis) != axes.end(); }))
            stack.push_back(u);
        }
      }
    }
  std::set<int> wanted;
  for (const auto &op : g.body.ops)
    if (!forward.count(op->results[0])) wanted.insert(op->operands.begin(), op->operands.end());
  for (int v : recompute) wanted.insert(forward[v]->operands.begin(), forward[v]->operands.end());
  std::set<int> out;
  for (int v : wanted)
    if (forward.count(v) && !recompute.count(v) && !ir::is_data_free(g, *forward[v])) {
      // The other results of an op with several (topk's values and positions) are saved with it:
      // the backward pass then needs none of its work.
      for (int r : forward[v]->results)
        if (wanted.count(r) || r == v) out.insert(r);
    }
  return std::vector<int>(out.begin(), out.end());
}

// The name a saved value has in both passes.
std::string saved_name(const ir::Diagram &g, int v, std::set<std::string> &taken) {
  const std::string &own = g.value(v).name;
  std::string name = !own.empty() && own[0] != '%' ? own : "act" + std::to_string(v);
  if (name != own)
    for (int k = 2; taken.count(name); ++k) name = "act" + std::to_string(v) + "_" + std::to_string(k);
  taken.insert(name);
  return name;
}

}  // namespace

SaveChoice split_step(ir::Program &program, const StepParts &parts, SavePolicy policy, bool add,
                      ir::Diagram *&forward, ir::Diagram *&backward) {
  const ir::Diagram &d = *parts.original, &g = *parts.grad;
  const std::vector<int> saved = saved_values(parts, policy);
  std::set<int> saved_set(saved.begin(), saved.end());
  std::set<std::string> taken;
  for (const ir::Value &v : g.values) taken.insert(v.name);
  std::map<int, std::string> names;
  for (int v : saved) names[v] = saved_name(g, v, taken);

  // The backward pass: D_grad with the saved values as inputs, and what no longer is needed dropped.
  auto b = ir::clone_diagram(g, ir::fresh_diagram_name(program, d.name + "_backward"));
  b->inputs.clear();
  b->params.clear();
  std::set<int> needed(g.outputs.begin(), g.outputs.end());
  for (auto it = b->body.ops.rbegin(); it != b->body.ops.rend(); ++it) {
    bool keep = false;
    for (int r : (*it)->results) keep |= needed.count(r) && !saved_set.count(r);
    if (keep) needed.insert((*it)->operands.begin(), (*it)->operands.end());
  }
  ir::erase_ops(b->body, [&](const ir::Op &op) {
    return std::none_of(op.results.begin(), op.results.end(),
                        [&](int r) { return needed.count(r) && !saved_set.count(r); });
  });
  for (int id : d.inputs)
    if (needed.count(id)) b->inputs.push_back(id);
  for (int v : saved) {
    ir::Value &value = b->value(v);
    value.role = ir::Value::Role::Input;
    value.producer = -1;
    value.name = names[v];
    b->inputs.push_back(v);
  }
  for (size_t k = d.inputs.size(); k < g.inputs.size(); ++k) b->inputs.push_back(g.inputs[k]);
  for (int id : g.inputs)
    if (!std::count(b->inputs.begin(), b->inputs.end(), id)) b->value(id).role = ir::Value::Role::Intermediate;
  for (int id : g.params)
    if (needed.count(id)) b->params.push_back(id);
  for (const ir::Value &v : b->values)
    if (v.role == ir::Value::Role::Param && !needed.count(v.id)) b->value(v.id).role = ir::Value::Role::Intermediate;

  SaveChoice choice;
  choice.policy = policy;
  for (int v : saved) {
    choice.saved.push_back(names[v]);
    choice.saved_bytes += value_bytes(program, g.value(v));
  }
  choice.backward_flops = count_flops(program, *b).value_or(0);
  if (!add) return choice;

  // The forward pass: D, also returning what it saves.
  auto f = ir::clone_diagram(d, ir::fresh_diagram_name(program, d.name + "_forward"));
  // Attention's row statistics are forward work when they are saved (FlashAttention's forward keeps them).
  for (const auto &op : g.body.ops)
    if (saved_set.count(op->results[0]) && op->id > d.max_op_id) {
      f->body.ops.push_back(ir::clone_op(*op));
      for (int id = static_cast<int>(f->values.size()); id <= op->results[0]; ++id) f->values.push_back(g.value(id));
    }
  for (int v : saved)
    if (!std::count(f->outputs.begin(), f->outputs.end(), v)) {
      f->value(v).role = ir::Value::Role::Output;
      f->value(v).name = names[v];
      f->outputs.push_back(v);
    }
  program.diagrams.push_back(std::move(f));
  forward = program.diagrams.back().get();
  program.diagrams.push_back(std::move(b));
  backward = program.diagrams.back().get();
  return choice;
}

}  // namespace ncd::autodiff

namespace ncd {

std::string save_policy_name(SavePolicy policy) {
  switch (policy) {
    case SavePolicy::None: return "none";
    case SavePolicy::Flash: return "flash";
    case SavePolicy::All: return "all";
  }
  return "";
}

}  // namespace ncd
