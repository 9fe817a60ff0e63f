// Rank programs (ncd/rank_program.h): the IR one device of a sharded diagram runs.
//
// Preconditions: `diagram` is a root diagram of `program` with its sizes known and `plan` is
// plan_sharding's for it. The program itself is not changed; the result is a new program.
//
// The walk follows the plan's: each diagram reached from the root is copied once per call site
// (its chain), the splits of its values read from the plan's steps (results), params (slices)
// and, for a callee's inputs, from the caller's operands through the call's bindings, as the
// planner hands them on. Then each value's split axis becomes its twin, and each op's own axis
// references (summed axes, access indices, merges, lifted axes) follow its values. A call binds
// each twin its callee uses to the caller's twin of the same split, so a twin of a callee's
// unsized axis takes its size from the call site, as the axis itself does.
#include "ncd/rank_program.h"

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>

#include "ncd/ir_edit.h"
#include "ncd/verifier.h"

namespace ncd {
namespace {

using Splits = std::map<int, AxisSplit>;  // value id → its one split axis

struct Declined {
  std::string why;
};

class Builder {
 public:
  Builder(const ir::Program &program, const ShardingPlan &plan) : p_(program), plan_(plan) {}

  RankProgram build(const ir::Diagram &root) {
    if (plan_.mesh.size() != 1)
      throw Declined{"its mesh has " + std::to_string(plan_.mesh.size()) +
                     " dimensions, and a rank program is built for one shard line"};
    out_.devices = plan_.devices;
    out_.program.axes = p_.axes;
    out_.program.modules = p_.modules;
    out_.program.root_module = p_.root_module;
    Splits inputs;
    for (const auto &[value, splits] : plan_.inputs)
      if (!splits.empty()) inputs[value] = one(root, value, splits, root.name);
    out_.root = copy(root, {}, inputs, root.name);
    const ir::Diagram &copied = *out_.program.diagrams[static_cast<size_t>(out_.root)];
    for (const auto &[value, split] : inputs) out_.slices[{&copied, value}] = split;
    // A split output is assembled by rank: its slices must be contiguous, one per rank, in order.
    for (int output : root.outputs) {
      auto it = plan_.outputs.find(output);
      if (it == plan_.outputs.end() || it->second.empty()) continue;
      const AxisSplit split = one(root, output, it->second, root.name);
      const ir::Value &value = root.value(output);
      if (split.stride != 1 || p_.size(split.axis) != split.extent || value.axes.front() != split.axis)
        throw Declined{"output " + value.name + " is split along '" + p_.axis(split.axis).name +
                       "', not as the first axis's plain slices, and the ranks assemble an output from contiguous "
                       "slices in rank order"};
      out_.slices[{&copied, output}] = split;
    }
    for (const auto &[where, axis] : reads_)
      for (const auto &[twin, whole] : out_.twin_of)
        if (whole == axis) throw Declined{"it reads " + where + ", which a rank would read at its own share"};
    std::vector<std::string> errors = verify(out_.program);
    if (!errors.empty()) throw Declined{"internal: the rank program fails verification: " + errors.front()};
    std::vector<ParamInstance> local, whole;
    std::string error;
    if (!list_param_instances(out_.program, copied, local, error) || !list_param_instances(p_, root, whole, error))
      throw Declined{"internal: " + error};
    if (local.size() != whole.size()) throw Declined{"internal: the rank program's params differ in number"};
    for (size_t k = 0; k < local.size(); ++k) out_.params.emplace_back(local[k], whole[k]);
    return std::move(out_);
  }

 private:
  std::string site(const CallChain &chain) const {
    std::string text;
    for (const ir::Op *call : chain)
      text += (text.empty() ? "" : ".") + (call->label.empty() ? call->callee_name : call->label);
    return text;
  }

  AxisSplit one(const ir::Diagram &d, int value, const std::vector<AxisSplit> &splits, const std::string &where) {
    if (splits.size() != 1)
      throw Declined{d.value(value).name + " (in " + where + ") is split along " + std::to_string(splits.size()) +
                     " axes"};
    return splits.front();
  }

  int twin(const AxisSplit &split) {
    const auto key = std::make_tuple(split.axis, split.stride, split.extent);
    if (auto it = twins_.find(key); it != twins_.end()) return it->second;
    const ir::Axis &whole = p_.axis(split.axis);
    ir::Axis t = whole;
    t.id = static_cast<int>(out_.program.axes.size());
    t.name = whole.name + "_local";
    t.derived = false;
    t.alias_of = -1;
    t.formula = nullptr;
    t.definition = Poly::axis(t.id);
    t.overridden = false;
    t.size = t.default_size = std::nullopt;
    if (whole.size) {
      if (*whole.size % out_.devices != 0)
        throw Declined{std::to_string(out_.devices) + " does not divide the size of '" + whole.name + "'"};
      t.size = t.default_size = *whole.size / out_.devices;
    } else if (whole.derived || whole.formula) {
      throw Declined{"'" + whole.name + "', derived from others, is split where it has no size of its own"};
    }
    if (split.extent % out_.devices != 0)
      throw Declined{std::to_string(out_.devices) + " does not divide the slices of '" + whole.name + "'"};
    out_.program.axes.push_back(t);
    out_.twin_of[t.id] = split.axis;
    twin_split_[t.id] = split;
    twins_[key] = t.id;
    return t.id;
  }

  // A copy of `d` for the call chain `chain` (its inputs split as `inputs`); its index.
  int copy(const ir::Diagram &d, const CallChain &chain, const Splits &inputs, const std::string &name) {
    auto owned = ir::clone_diagram(d, name);
    ir::Diagram &c = *owned;
    const int index = static_cast<int>(out_.program.diagrams.size());
    out_.program.diagrams.push_back(std::move(owned));
    Splits st = inputs;
    for (int param : d.params)
      if (auto it = plan_.params.find({chain, param}); it != plan_.params.end() && !it->second.empty())
        st[param] = one(d, param, it->second, site(chain));
    const ParamNaming naming(d);
    bool reduces = false;
    walk(d, c, chain, d.body, c.body, st, naming, reduces);
    if (reduces) c.schedules.clear();  // a fused kernel would run through the reduction
    for (const auto &[value, split] : st) {
      std::vector<int> &axes = c.value(value).axes;
      auto at = std::find(axes.begin(), axes.end(), split.axis);
      if (at == axes.end()) throw Declined{"internal: a split of an axis " + c.value(value).name + " lacks"};
      *at = twin(split);
    }
    for (int param : d.params)
      if (auto it = st.find(param); it != st.end()) out_.slices[{&c, param}] = it->second;
    return index;
  }

  void walk(const ir::Diagram &d, ir::Diagram &c, const CallChain &chain, const ir::Region &region, ir::Region &into,
            Splits &st, const ParamNaming &naming, bool &reduces) {
    for (size_t i = 0; i < region.ops.size(); ++i) {
      const ir::Op &o = *region.ops[i];
      ir::Op &k = *into.ops[i];
      const std::string where = site(chain).empty() ? d.name : site(chain);
      auto found = plan_.steps.find({chain, &o});
      const ShardStep *step = found == plan_.steps.end() ? nullptr : &found->second;
      if (step) {
        const std::string what = o.results.empty() ? "" : " " + value_label(d, o.results.front());
        if (!step->gathers.empty() || !step->yield_gathers.empty())
          throw Declined{"its plan all-gathers before" + what + " at " + where +
                         ", and a rank program states only reductions between operations"};
        if (!step->keep.empty() || !step->dispatch.empty() || !step->combines.empty() || !step->routed.empty() ||
            step->undecided_route)
          throw Declined{"its plan routes tokens to experts' devices at" + what + " in " + where +
                         " (all-to-all), and a rank program states only reductions between operations"};
        for (const auto &[result, splits] : step->results)
          if (!splits.empty()) st[result] = one(d, result, splits, where);
      }
      if (step && !step->partial.empty()) {
        const int result = o.results.at(0);
        if (st.count(result))
          throw Declined{"its plan reduce-scatters " + value_label(d, result) + " at " + where +
                         ", and a rank program states only all-reduces"};
        ops::Fn fn = ops::Fn::Sum;
        if (o.kind == ir::OpKind::Reduce) fn = o.function;
        if (o.kind != ir::OpKind::Contract &&
            !(o.kind == ir::OpKind::Reduce &&
              (fn == ops::Fn::Sum || fn == ops::Fn::Mean || fn == ops::Fn::Max || fn == ops::Fn::Min)))
          throw Declined{"its plan combines partial results of " + value_label(d, result) + " at " + where +
                         " in a way NCCL does not reduce"};
        out_.reductions.push_back({&k, &c, result, fn, where});
        reduces = true;
      }
      if (o.kind == ir::OpKind::Repeat) {
        for (size_t j = 0; j < o.operands.size() && j < o.body_arguments.size(); ++j)
          if (auto it = st.find(o.operands[j]); it != st.end()) st[o.body_arguments[j]] = it->second;
        walk(d, c, chain, *o.body, *k.body, st, naming, reduces);
      } else if (o.kind == ir::OpKind::Call) {
        call(chain, o, k, st, naming);
      } else {
        if ((o.kind == ir::OpKind::SizeOf || o.kind == ir::OpKind::AxisIndex) && !o.axes.empty())
          reads_.emplace_back((o.kind == ir::OpKind::SizeOf ? "the size of '" : "positions along '") +
                                  p_.axis(o.axes[0]).name + "' (in " + d.name + ")",
                              o.axes[0]);
        rewrite(d, o, k, st, where);
      }
    }
  }

  // The op's own axis references follow its values' twins; a value read whole beside a slice of the
  // same axis would need the rank's share cut from it, which nothing in the plan does.
  void rewrite(const ir::Diagram &d, const ir::Op &o, ir::Op &k, const Splits &st, const std::string &where) {
    std::map<int, int> to;
    std::vector<int> values = o.operands;
    values.insert(values.end(), o.results.begin(), o.results.end());
    for (int v : values)
      if (auto it = st.find(v); it != st.end()) {
        const int t = twin(it->second);
        auto [at, fresh] = to.emplace(it->second.axis, t);
        if (!fresh && at->second != t)
          throw Declined{"at " + where + ", two values hold different shares of '" + p_.axis(it->second.axis).name +
                         "'"};
      }
    for (int v : values)
      for (int axis : d.value(v).axes) {
        auto it = st.find(v);
        if (to.count(axis) && (it == st.end() || it->second.axis != axis))
          throw Declined{"at " + where + ", " + value_label(d, v) + " is read whole along '" + p_.axis(axis).name +
                         "' beside a rank's share of it, which the plan does not cut"};
      }
    auto map = [&](int &axis) {
      if (auto it = to.find(axis); it != to.end()) axis = it->second;
    };
    for (int &axis : k.axes) map(axis);
    for (ir::AccessIndex &index : k.access) {
      for (auto &term : index.terms) map(term.first);
      for (int &axis : index.split) map(axis);
    }
    for (auto &group : k.merges)
      for (int &axis : group) map(axis);
  }

  void call(const CallChain &chain, const ir::Op &o, ir::Op &k, const Splits &st, const ParamNaming &naming) {
    const ir::Diagram &callee = *p_.diagrams.at(static_cast<size_t>(o.callee));
    std::map<int, int> bound;
    for (auto [from, to] : o.bindings) bound[from] = to;
    // The callee's inputs split as the planner hands them on: along a bound axis the operand holds
    // split, unless the call is lifted over it.
    Splits inputs;
    for (size_t i = 0; i < o.operands.size() && i < callee.inputs.size(); ++i) {
      auto it = st.find(o.operands[i]);
      if (it == st.end() || std::find(o.lifted.begin(), o.lifted.end(), it->second.axis) != o.lifted.end()) continue;
      for (int axis : callee.value(callee.inputs[i]).axes) {
        auto b = bound.find(axis);
        if ((b == bound.end() ? axis : b->second) != it->second.axis) continue;
        AxisSplit split = it->second;
        split.axis = axis;
        inputs[callee.inputs[i]] = split;
      }
    }
    CallChain inner = chain;
    inner.push_back(&o);
    // Copies are distinct callees: an unnamed call site keeps its params' name by taking its label.
    if (o.label.empty() && naming.call_label(&o) != o.callee_name) k.label = naming.call_label(&o);
    k.callee = copy(callee, inner, inputs, callee.name);
    const ir::Diagram &copied = *out_.program.diagrams[static_cast<size_t>(k.callee)];
    // Lifted axes the operands hold split become their twins.
    for (int &axis : k.lifted)
      for (int operand : o.operands)
        if (auto it = st.find(operand); it != st.end() && it->second.axis == axis) {
          axis = twin(it->second);
          break;
        }
    // Each twin the copy uses, of a bound axis, is bound to the caller's twin of the same split.
    std::set<int> used;
    for (const ir::Value &value : copied.values)
      for (int axis : value.axes)
        if (out_.twin_of.count(axis)) used.insert(axis);
    for (int t : used) {
      auto b = bound.find(out_.twin_of.at(t));
      if (b == bound.end()) continue;
      AxisSplit split = twin_split_.at(t);
      split.axis = b->second;
      k.bindings.emplace_back(t, twin(split));
    }
  }

  const ir::Program &p_;
  const ShardingPlan &plan_;
  RankProgram out_;
  std::map<std::tuple<int, int64_t, int64_t>, int> twins_;  // (axis, stride, extent) → twin
  std::map<int, AxisSplit> twin_split_;                     // twin → the split it is the share of
  std::vector<std::pair<std::string, int>> reads_;          // sizes and positions read, and of which axis
};

}  // namespace

std::optional<RankProgram> build_rank_program(const ir::Program &program, const ir::Diagram &diagram,
                                              const ShardingPlan &plan, std::string &why) {
  try {
    return Builder(program, plan).build(diagram);
  } catch (const Declined &declined) {
    why = declined.why;
  } catch (const std::exception &e) {  // a plan this walk does not expect: declined, not a crash
    why = std::string("internal: ") + e.what();
  }
  return std::nullopt;
}

RankCut rank_cut(const std::vector<int64_t> &shape, int dim, const AxisSplit &split, int64_t devices, int64_t rank) {
  int64_t prefix = 1, inner = 1;
  for (int d = 0; d < dim; ++d) prefix *= shape.at(static_cast<size_t>(d));
  for (size_t d = static_cast<size_t>(dim) + 1; d < shape.size(); ++d) inner *= shape[d];
  const int64_t size = shape.at(static_cast<size_t>(dim));
  RankCut cut;
  cut.rows = prefix * (size / (split.stride * split.extent));
  cut.row = split.extent * split.stride * inner;
  cut.run = split.extent / devices * split.stride * inner;
  cut.offset = rank * cut.run;
  return cut;
}

namespace {

// Copies, for each run of `cut`, its elements between the whole and the slice (`to_slice`: whole → slice).
void copy_runs(const RankCut &cut, const Tensor &from, Tensor &to, bool to_slice) {
  for (int64_t r = 0; r < cut.rows; ++r) {
    const size_t whole = static_cast<size_t>(r * cut.row + cut.offset), slice = static_cast<size_t>(r * cut.run);
    const size_t at = to_slice ? whole : slice, into = to_slice ? slice : whole, count = static_cast<size_t>(cut.run);
    if (from.is_int())
      std::copy_n(from.ints.begin() + static_cast<std::ptrdiff_t>(at), count,
                  to.ints.begin() + static_cast<std::ptrdiff_t>(into));
    else
      std::copy_n(from.values.begin() + static_cast<std::ptrdiff_t>(at), count,
                  to.values.begin() + static_cast<std::ptrdiff_t>(into));
  }
}

}  // namespace

Tensor cut_for_rank(const Tensor &whole, int dim, const AxisSplit &split, int64_t devices, int64_t rank) {
  std::vector<int64_t> shape = whole.shape;
  shape.at(static_cast<size_t>(dim)) /= devices;
  Tensor slice = Tensor::zeros(whole.dtype, shape);
  copy_runs(rank_cut(whole.shape, dim, split, devices, rank), whole, slice, true);
  return slice;
}

Tensor assemble_ranks(const std::vector<Tensor> &slices, const std::vector<int64_t> &whole_shape, int dim,
                      const AxisSplit &split) {
  Tensor whole = Tensor::zeros(slices.at(0).dtype, whole_shape);
  const int64_t devices = static_cast<int64_t>(slices.size());
  for (int64_t rank = 0; rank < devices; ++rank)
    copy_runs(rank_cut(whole_shape, dim, split, devices, rank), slices[static_cast<size_t>(rank)], whole, false);
  return whole;
}

}  // namespace ncd
