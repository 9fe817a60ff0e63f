// The built-in advisor's high level (docs/ADVISOR.md, "The built-in advisor"):
// a catalogue of known algebraic rewrites, each found where it applies in the
// input's diagram, written optimized by the -O2 pipeline, and handed to the
// referee with the published conversion of its params, so that the error it
// measures is the rewrite's own:
//
//   grouped-/multi-query attention (Ainslie et al. 2023): a call lifted over a
//        heads axis whose key/value operands are projections of params with
//        that axis; the projections shrink to kv heads (params mean-pooled
//        over each group of consecutive heads) and the call is lifted over
//        (kv heads, group) instead, the queries split to match;
//   low-rank factorisation: a large, square-ish param only contracted, as
//        U[rows, rank] V[rank, cols] (rows: the axes the contraction sums),
//        from the truncated SVD, at rank min(rows, cols) / 4 and / 8;
//   tied embeddings: an output projection of the same axes as an embedding
//        table (a param read by a gather) reads the table instead.
//
// Preconditions: the context's input compiles and holds the diagram; the
// rewrites apply to the params of that diagram itself (not of its callees).
#include <algorithm>
#include <functional>
#include <set>

#include "advisor.h"
#include "ncd/frontend.h"
#include "ncd/instantiate.h"
#include "ncd/ir_edit.h"

namespace ncd::cli {
namespace {

constexpr int64_t kSmallestSide = 64;  // a weight below this is not worth factorising
constexpr int64_t kWidestRatio = 4;    // "square-ish": the longer side at most this times the shorter

struct Edit {
  std::string rationale;
  std::vector<ParamConversion> params;
};

// An edit of a fresh compilation of the input: false when it does not apply.
using Rewrite = std::function<bool(ir::Program &, ir::Diagram &, Edit &)>;

// `base`, or `base_2`, `base_3`, ...: the first that `taken` lacks.
std::string fresh_name(const std::set<std::string> &taken, const std::string &base) {
  std::string name = base;
  for (int i = 2; taken.count(name); ++i) name = base + "_" + std::to_string(i);
  return name;
}

std::string fresh_axis_name(const ir::Program &program, const std::string &base) {
  std::set<std::string> taken;
  for (const ir::Axis &axis : program.axes) taken.insert(axis.name);
  return fresh_name(taken, base);
}

std::string fresh_value_name(const ir::Diagram &diagram, const std::string &base) {
  std::set<std::string> taken;
  for (const ir::Value &value : diagram.values) taken.insert(value.name);
  return fresh_name(taken, base);
}

int add_axis(ir::Program &program, const ir::Diagram &diagram, const std::string &base, int64_t size,
             std::optional<Poly> derived) {
  ir::Axis axis;
  axis.id = static_cast<int>(program.axes.size());
  axis.name = fresh_axis_name(program, base);
  axis.module = diagram.module;
  axis.location = diagram.location;
  axis.derived = derived.has_value();
  axis.definition = derived ? *derived : Poly::axis(axis.id);
  axis.default_size = size;
  axis.size = size;
  program.axes.push_back(axis);
  return axis.id;
}

int add_param(ir::Diagram &diagram, const std::string &base, std::vector<int> axes, ir::DType dtype,
              const SourceLocation &location) {
  int id = ir::add_value(diagram, fresh_value_name(diagram, base), std::move(axes), dtype, location);
  diagram.value(id).role = ir::Value::Role::Param;
  diagram.value(id).producer = -1;
  return id;
}

// The paths of the instances of param `value` of the root diagram (one: its name).
std::string param_path(const ir::Diagram &diagram, int value) { return diagram.value(value).name; }

// Every op of the diagram (nested regions too) that reads `value`.
std::vector<ir::Op *> readers(ir::Diagram &diagram, int value) {
  std::vector<ir::Op *> out;
  std::function<void(ir::Region &)> walk = [&](ir::Region &region) {
    for (auto &op : region.ops) {
      if (std::find(op->operands.begin(), op->operands.end(), value) != op->operands.end()) out.push_back(op.get());
      if (op->body) walk(*op->body);
    }
  };
  walk(diagram.body);
  return out;
}

bool in_top_level(const ir::Diagram &diagram, const ir::Op *op) {
  for (const auto &top : diagram.body.ops)
    if (top.get() == op) return true;
  return false;
}

bool is_float(ir::DType dtype) { return !ir::is_integer(dtype) && dtype != ir::DType::Bool; }

int64_t product(const ir::Program &program, const std::vector<int> &axes) {
  int64_t out = 1;
  for (int axis : axes) out *= program.size(axis).value_or(0);
  return out;
}

void remove_param(ir::Diagram &diagram, int value) {
  diagram.params.erase(std::remove(diagram.params.begin(), diagram.params.end(), value), diagram.params.end());
}

// ---------------------------------------------------------------- low rank

// The contracted (row) axes of param `w` when every reader is a top-level
// contraction summing the same axes of it, and rows and columns are large and
// square-ish; empty otherwise.
std::vector<int> factorisable_rows(ir::Program &program, ir::Diagram &diagram, int w) {
  const ir::Value &value = diagram.value(w);
  if (value.axes.size() < 2 || !is_float(value.dtype) || value.instances != 1) return {};
  std::vector<ir::Op *> ops = readers(diagram, w);
  if (ops.empty()) return {};
  std::vector<int> rows;
  for (size_t i = 0; i < ops.size(); ++i) {
    const ir::Op &op = *ops[i];
    if (op.kind != ir::OpKind::Contract || !in_top_level(diagram, &op) ||
        std::count(op.operands.begin(), op.operands.end(), w) != 1)
      return {};
    std::vector<int> summed;
    for (int axis : value.axes)
      if (std::find(op.axes.begin(), op.axes.end(), axis) != op.axes.end()) summed.push_back(axis);
    if (i == 0) rows = summed;
    if (summed != rows) return {};
  }
  std::vector<int> cols;
  for (int axis : value.axes)
    if (std::find(rows.begin(), rows.end(), axis) == rows.end()) cols.push_back(axis);
  const int64_t m = product(program, rows), n = product(program, cols);
  if (rows.empty() || cols.empty() || std::min(m, n) < kSmallestSide || std::max(m, n) > kWidestRatio * std::min(m, n))
    return {};
  return rows;
}

Rewrite low_rank(const std::string &name, int64_t divisor) {
  return [name, divisor](ir::Program &program, ir::Diagram &diagram, Edit &edit) {
    int w = -1;
    for (int param : diagram.params)
      if (diagram.value(param).name == name) w = param;
    if (w < 0) return false;
    const std::vector<int> rows = factorisable_rows(program, diagram, w);
    if (rows.empty()) return false;
    const ir::Value value = diagram.value(w);
    std::vector<int> cols;
    for (int axis : value.axes)
      if (std::find(rows.begin(), rows.end(), axis) == rows.end()) cols.push_back(axis);
    const int64_t m = product(program, rows), n = product(program, cols);
    const int64_t rank = std::min(m, n) / divisor;
    if (rank < 1 || std::min(m, n) % divisor != 0) return false;
    // The rank is a fraction of the shorter side, so that it shrinks with it
    // when verification shrinks the axes.
    Poly side = Poly::constant(1);
    for (int axis : (m <= n ? rows : cols)) side = side * program.size_poly(axis);
    std::optional<Poly> definition = side.divide(Poly::constant(static_cast<double>(divisor)));
    const int rank_axis = add_axis(program, diagram, name + "_rank", rank, definition);
    std::vector<int> u_axes = rows, v_axes = cols;
    u_axes.push_back(rank_axis);
    v_axes.insert(v_axes.begin(), rank_axis);
    const int u = add_param(diagram, name + "_u", u_axes, value.dtype, value.location);
    const int v = add_param(diagram, name + "_v", v_axes, value.dtype, value.location);
    for (ir::Op *op : readers(diagram, w)) {
      auto at = std::find(op->operands.begin(), op->operands.end(), w);
      *at = u;
      op->operands.insert(at + 1, v);
      op->axes.push_back(rank_axis);
    }
    auto position = std::find(diagram.params.begin(), diagram.params.end(), w);
    *position = v;
    diagram.params.insert(position, u);
    const std::string rank_name = program.axis(rank_axis).name;
    edit.params.push_back(
        {ParamConversion::Op::SvdLeft, diagram.value(u).name, param_path(diagram, w), "", "", rank_name});
    edit.params.push_back(
        {ParamConversion::Op::SvdRight, diagram.value(v).name, param_path(diagram, w), "", "", rank_name});
    edit.rationale = "low-rank factorisation of '" + name + "' (" + std::to_string(m) + " x " + std::to_string(n) +
                     ") at rank " + std::to_string(rank) + " (truncated SVD): " + std::to_string(m * n) + " -> " +
                     std::to_string(rank * (m + n)) + " weights";
    return true;
  };
}

// ---------------------------------------------------------------- tied embeddings

bool is_embedding(ir::Diagram &diagram, int table) {
  for (ir::Op *op : readers(diagram, table))
    if (op->kind == ir::OpKind::Access && !op->operands.empty() && op->operands[0] == table)
      for (const ir::AccessIndex &index : op->access)
        if (index.kind == ir::AccessIndex::Kind::Gather) return true;
  return false;
}

Rewrite tied_embedding(const std::string &head_name, const std::string &table_name) {
  return [head_name, table_name](ir::Program &program, ir::Diagram &diagram, Edit &edit) {
    int head = -1, table = -1;
    for (int param : diagram.params) {
      if (diagram.value(param).name == head_name) head = param;
      if (diagram.value(param).name == table_name) table = param;
    }
    if (head < 0 || table < 0 || head == table || !is_embedding(diagram, table)) return false;
    const ir::Value &h = diagram.value(head), &t = diagram.value(table);
    if (ir::axis_set(h) != ir::axis_set(t) || h.dtype != t.dtype || h.instances != 1 || t.instances != 1) return false;
    std::vector<ir::Op *> ops = readers(diagram, head);
    if (ops.empty()) return false;
    for (ir::Op *op : ops)
      if (op->kind != ir::OpKind::Contract || std::count(op->operands.begin(), op->operands.end(), table)) return false;
    ir::replace_uses(diagram, head, table);
    remove_param(diagram, head);
    edit.rationale = "tied embeddings: '" + head_name + "' is the embedding '" + table_name + "' (" +
                     std::to_string(product(program, t.axes)) + " weights fewer)";
    return true;
  };
}

// ---------------------------------------------------------------- grouped-query attention

// The values carrying `heads` that `value` is computed from, when they are
// params or top-level elementwise functions and contractions (of those and
// of values without `heads`); false otherwise. The caller checks that the
// chain is read by nothing else.
bool projection_chain(ir::Diagram &diagram, int value, int heads, std::set<int> &values, std::set<ir::Op *> &ops) {
  const ir::Value &v = diagram.value(value);
  if (std::find(v.axes.begin(), v.axes.end(), heads) == v.axes.end() || values.count(value)) return true;
  values.insert(value);
  if (v.role == ir::Value::Role::Param) return is_float(v.dtype) && v.instances == 1;
  if (v.role != ir::Value::Role::Intermediate) return false;
  ir::Op *producer = diagram.producer(value);
  if (!producer || !in_top_level(diagram, producer) || producer->results.size() != 1 ||
      std::find(producer->axes.begin(), producer->axes.end(), heads) != producer->axes.end())
    return false;
  if (producer->kind == ir::OpKind::Access) {
    // A renaming read (`bk[heads, d]` read as laid out): heads must stay heads.
    for (const ir::AccessIndex &index : producer->access) {
      if (index.kind != ir::AccessIndex::Kind::Affine) return false;
      for (auto [axis, coefficient] : index.terms)
        if (axis == heads && (index.terms.size() != 1 || coefficient != 1 || index.offset != 0)) return false;
    }
  } else if (producer->kind != ir::OpKind::Contract && producer->kind != ir::OpKind::Elementwise) {
    return false;
  }
  ops.insert(producer);
  for (int operand : producer->operands)
    if (!projection_chain(diagram, operand, heads, values, ops)) return false;
  return true;
}

// The call's operands that play keys and values: inputs of the callee with
// an axis none of its outputs has (attention's k).
std::vector<size_t> key_operands(const ir::Program &program, const ir::Op &call) {
  const ir::Diagram &callee = *program.diagrams.at(static_cast<size_t>(call.callee));
  std::set<int> output_axes;
  for (int out : callee.outputs)
    for (int axis : callee.value(out).axes) output_axes.insert(axis);
  std::vector<size_t> out;
  for (size_t i = 0; i < callee.inputs.size() && i < call.operands.size(); ++i)
    for (int axis : callee.value(callee.inputs[i]).axes)
      if (!output_axes.count(axis)) {
        out.push_back(i);
        break;
      }
  return out;
}

// A value `source` read with `heads` split into (kv, group): a new value made
// by an access op inserted before `before`.
int split_heads(ir::Diagram &diagram, int source, int heads, int kv, int group, ir::Op *before) {
  const ir::Value original = diagram.value(source);
  std::vector<int> axes;
  auto op = ir::make_op(diagram, ir::OpKind::Access, before->location);
  op->operands = {source};
  for (int axis : original.axes) {
    ir::AccessIndex index;
    if (axis == heads) {
      index.kind = ir::AccessIndex::Kind::Split;
      index.split = {kv, group};
      axes.push_back(kv);
      axes.push_back(group);
    } else {
      index.terms = {{axis, 1}};
      axes.push_back(axis);
    }
    op->access.push_back(index);
  }
  const int result = ir::add_value(diagram, "", axes, original.dtype, before->location);
  diagram.value(result).name = "%" + std::to_string(result);
  ir::set_results(diagram, *op, {result});
  auto at = std::find_if(diagram.body.ops.begin(), diagram.body.ops.end(),
                         [&](const std::unique_ptr<ir::Op> &o) { return o.get() == before; });
  diagram.body.ops.insert(at, std::move(op));
  return result;
}

std::vector<int> with_split(const std::vector<int> &axes, int heads, int kv, int group) {
  std::vector<int> out;
  for (int axis : axes) {
    if (axis == heads) {
      out.push_back(kv);
      out.push_back(group);
    } else {
      out.push_back(axis);
    }
  }
  return out;
}

Rewrite grouped_query(int call_id, int heads, int64_t kv_count) {
  return [call_id, heads, kv_count](ir::Program &program, ir::Diagram &diagram, Edit &edit) {
    ir::Op *call = nullptr;
    for (auto &op : diagram.body.ops)
      if (op->id == call_id && op->kind == ir::OpKind::Call) call = op.get();
    if (!call || std::find(call->lifted.begin(), call->lifted.end(), heads) == call->lifted.end() ||
        call->results.size() != 1)
      return false;
    const int64_t size = program.size(heads).value_or(0);
    if (kv_count < 1 || kv_count >= size || size % kv_count != 0) return false;
    auto uses = ir::users(diagram);
    std::set<int> chain;
    std::set<ir::Op *> chain_ops;
    std::vector<size_t> keys = key_operands(program, *call);
    int reduced = 0;
    for (size_t i : keys) {
      const ir::Value &operand = diagram.value(call->operands[i]);
      if (std::find(operand.axes.begin(), operand.axes.end(), heads) == operand.axes.end()) continue;
      if (!projection_chain(diagram, call->operands[i], heads, chain, chain_ops)) return false;
      ++reduced;
    }
    if (!reduced) return false;
    // The chain's values are read only by the chain and the call.
    for (int value : chain) {
      auto it = uses.find(value);
      if (it != uses.end())
        for (ir::Op *user : it->second)
          if (user != call && !chain_ops.count(user)) return false;
    }
    // The call's result feeds only contractions over heads, and is not an output.
    const int result = call->results[0];
    if (ir::escaping_values(diagram).count(result)) return false;
    std::vector<ir::Op *> consumers = uses.count(result) ? uses[result] : std::vector<ir::Op *>{};
    if (consumers.empty()) return false;
    for (ir::Op *consumer : consumers)
      if (consumer->kind != ir::OpKind::Contract ||
          std::find(consumer->axes.begin(), consumer->axes.end(), heads) == consumer->axes.end())
        return false;
    const std::string heads_name = program.axis(heads).name;
    // The side that is not a constant is declared from the heads, so that both
    // shrink with them when verification shrinks the axes.
    const int64_t group_size = size / kv_count;
    const Poly whole = program.size_poly(heads);
    int kv, group;
    if (kv_count == 1) {
      kv = add_axis(program, diagram, "kv_" + heads_name, 1, std::nullopt);
      group = add_axis(program, diagram, "group_" + heads_name, size, whole);
    } else {
      group = add_axis(program, diagram, "group_" + heads_name, group_size, std::nullopt);
      kv = add_axis(program, diagram, "kv_" + heads_name, kv_count,
                    whole.divide(Poly::constant(static_cast<double>(group_size))));
    }
    // The projections run at kv heads; their params become the pooled ones.
    for (int value : chain)
      for (int &axis : diagram.value(value).axes)
        if (axis == heads) axis = kv;
    for (ir::Op *op : chain_ops)
      for (ir::AccessIndex &index : op->access)
        for (auto &term : index.terms)
          if (term.first == heads) term.first = kv;
    for (int value : chain)
      if (diagram.value(value).role == ir::Value::Role::Param)
        edit.params.push_back({ParamConversion::Op::Mean, diagram.value(value).name, param_path(diagram, value),
                               heads_name, program.axis(kv).name, ""});
    // The other operands with heads (the queries) are read split.
    for (int &operand : call->operands)
      if (!chain.count(operand)) {
        const ir::Value &v = diagram.value(operand);
        if (std::find(v.axes.begin(), v.axes.end(), heads) != v.axes.end())
          operand = split_heads(diagram, operand, heads, kv, group, call);
      }
    auto lifted = std::find(call->lifted.begin(), call->lifted.end(), heads);
    *lifted = kv;
    call->lifted.insert(lifted + 1, group);
    const ir::Value old = diagram.value(result);
    const int split_result = ir::add_value(diagram, fresh_value_name(diagram, old.name + "_grouped"),
                                           with_split(old.axes, heads, kv, group), old.dtype, old.location);
    ir::set_results(diagram, *call, {split_result});
    for (ir::Op *consumer : consumers) {
      for (int &operand : consumer->operands) {
        if (operand == result) {
          operand = split_result;
          continue;
        }
        const ir::Value &v = diagram.value(operand);
        if (std::find(v.axes.begin(), v.axes.end(), heads) != v.axes.end())
          operand = split_heads(diagram, operand, heads, kv, group, consumer);
      }
      consumer->axes = with_split(consumer->axes, heads, kv, group);
    }
    const bool multi = kv_count == 1;
    edit.rationale = std::string(multi ? "multi-query" : "grouped-query") +
                     " attention from multi-head: " + std::to_string(kv_count) + " key/value head" +
                     (multi ? "" : "s") + " for " + std::to_string(size) + " '" + heads_name +
                     "' (projections mean-pooled per group)";
    return true;
  };
}

// The sites of the catalogue in the input's diagram, as rewrites to apply to fresh compilations.
std::vector<Rewrite> find_sites(ir::Program &program, ir::Diagram &diagram) {
  std::vector<Rewrite> out;
  for (auto &op : diagram.body.ops) {
    if (op->kind != ir::OpKind::Call || op->callee < 0) continue;
    for (int heads : op->lifted) {
      const int64_t size = program.size(heads).value_or(0);
      // Grouped (half and a quarter of the heads) and multi-query attention.
      // Whether it applies is decided when it is applied (to a fresh compilation).
      for (int64_t kv : {size / 2, size / 4, int64_t{1}})
        if (kv >= 1 && kv < size && size % kv == 0) out.push_back(grouped_query(op->id, heads, kv));
    }
  }
  for (int w : diagram.params)
    if (!factorisable_rows(program, diagram, w).empty())
      for (int64_t divisor : {4, 8}) out.push_back(low_rank(diagram.value(w).name, divisor));
  for (int table : diagram.params)
    if (is_embedding(diagram, table))
      for (int head : diagram.params)
        if (head != table && ir::axis_set(diagram.value(head)) == ir::axis_set(diagram.value(table)))
          out.push_back(tied_embedding(diagram.value(head).name, diagram.value(table).name));
  return out;
}

}  // namespace

void catalogue_candidates(const AdvisorContext &context, const std::vector<std::string> &pipeline,
                          std::vector<AdvisorCandidate> &out) {
  Compilation survey;
  survey.diagnostics.set_warnings_enabled(false);
  if (!compile_file(context.input, advisor_compile_options(context), survey)) return;
  ir::Diagram *diagram = survey.program.find_diagram(context.diagram);
  if (!diagram) return;
  std::set<std::string> seen;
  for (const Rewrite &rewrite : find_sites(survey.program, *diagram)) {
    Compilation compilation;
    compilation.diagnostics.set_warnings_enabled(false);
    if (!compile_file(context.input, advisor_compile_options(context), compilation)) return;
    ir::Diagram *root = compilation.program.find_diagram(context.diagram);
    Edit edit;
    if (!root || !rewrite(compilation.program, *root, edit)) continue;
    std::string text;
    if (!optimize_and_write(context, compilation, *root, pipeline, "a candidate of the built-in advisor", text))
      continue;
    if (!seen.insert(text).second) continue;
    out.push_back({text, "", edit.rationale, edit.params, ""});
  }
}

}  // namespace ncd::cli
