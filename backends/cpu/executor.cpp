// The CPU backend's interpreter of the core IR (see executor.h).
#include "executor.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <set>

#include "ncd/tensor.h"

namespace ncd::cpu {
namespace {

bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::string role_name(const ir::Value &value) {
  switch (value.role) {
    case ir::Value::Role::Input: return "input";
    case ir::Value::Role::Param: return "param";
    case ir::Value::Role::Output: return "output";
    default: return "value";
  }
}

}  // namespace

Executor::Executor(const ExecuteRequest &request) : request_(request), program_(*request.program) {
  if (request.sharding)
    for (int64_t devices : request.sharding->mesh) {
      mesh_axes_.push_back(static_cast<int>(axis_sizes_.size()));
      axis_sizes_.push_back(devices);
    }
}

int Executor::rt_axis(Frame &frame, int axis) {
  auto it = frame.rt.find(axis);
  if (it != frame.rt.end()) return it->second;
  auto size = frame.instance->sizes().size(axis);
  if (!size) throw RunError("diagram '" + frame.diagram->name + "': " + frame.instance->sizes().missing_message(axis));
  int id = static_cast<int>(axis_sizes_.size());
  axis_sizes_.push_back(*size);
  frame.rt[axis] = id;
  return id;
}

RtTensor Executor::wrap(Frame &frame, const ir::Value &value, const Tensor &tensor, const std::string &what) {
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  for (int axis : value.axes) {
    axes.push_back(rt_axis(frame, axis));
    sizes.push_back(axis_sizes_[static_cast<size_t>(axes.back())]);
  }
  if (tensor.shape != sizes)
    throw RunError(what + " has shape " + shape_text(tensor.shape) + ", expected " + shape_text(sizes));
  if (tensor.dtype != value.dtype)
    throw RunError(what + " has dtype " + std::string(ir::dtype_name(tensor.dtype)) + ", expected " +
                   std::string(ir::dtype_name(value.dtype)));
  RtTensor t;
  t.dtype = value.dtype;
  t.axes = axes;
  t.sizes = sizes;
  t.strides.assign(axes.size(), 1);
  int64_t stride = 1;
  for (size_t i = axes.size(); i-- > 0;) {
    t.strides[i] = stride;
    stride *= sizes[i];
  }
  t.buffer = tensor.is_int() ? Buffer::wrap(tensor.ints.data(), stride) : Buffer::wrap(tensor.values.data(), stride);
  return t;
}

RtTensor Executor::load_param(Frame &frame, int id) {
  const ir::Value &value = frame.diagram->value(id);
  std::string path = path_text(frame.instance->param_path(id), [&](const ir::Op *repeat) { return iterations_.at(repeat); });
  auto it = request_.params ? request_.params->find(path) : decltype(request_.params->end()){};
  if (!request_.params || it == request_.params->end()) throw RunError("param '" + path + "' was not given");
  return wrap(frame, value, it->second, "param '" + path + "'");
}

RtTensor Executor::get(Frame &frame, int id) {
  if (frame.defined[static_cast<size_t>(id)]) return frame.values[static_cast<size_t>(id)];
  const ir::Value &value = frame.diagram->value(id);
  if (value.role == ir::Value::Role::Param) {
    RtTensor t = load_param(frame, id);
    if (request_.sharding) t = sim_param(frame, id, std::move(t));
    // A param shared by every iteration is looked up once; per-iteration params on every use.
    if (frame.instance->naming().param_repeats(id).empty()) set(frame, id, t);
    return t;
  }
  throw RunError("internal: " + role_name(value) + " '" + value.name + "' of '" + frame.diagram->name +
                 "' is read before it is computed");
}

void Executor::set(Frame &frame, int id, RtTensor tensor) {
  frame.values[static_cast<size_t>(id)] = std::move(tensor);
  frame.defined[static_cast<size_t>(id)] = 1;
}

// `repeat` is the op whose body `region` is (nullptr for a diagram's body): its
// yields must survive the iteration.
const Executor::RegionPlan &Executor::plan(const ir::Diagram &diagram, const ir::Region &region, const ir::Op *repeat) {
  const bool top = repeat == nullptr;
  auto it = plans_.find(&region);
  if (it != plans_.end()) return it->second;
  RegionPlan p;
  p.release.resize(region.ops.size());
  std::set<int> owned;
  std::set<int> keep(diagram.outputs.begin(), diagram.outputs.end());
  for (int id : diagram.params) keep.insert(id);
  if (repeat) keep.insert(repeat->body_yields.begin(), repeat->body_yields.end());
  if (top)
    for (int id : diagram.inputs) owned.insert(id);
  for (const auto &op : region.ops)
    for (int r : op->results) owned.insert(r);
  std::function<void(const ir::Op &, std::set<int> &)> uses = [&](const ir::Op &op, std::set<int> &out) {
    out.insert(op.operands.begin(), op.operands.end());
    if (op.body) {
      for (const auto &inner : op.body->ops) uses(*inner, out);
      out.insert(op.body_yields.begin(), op.body_yields.end());
    }
  };
  // Routed contractions read their gathered table in place: the gather, in
  // this region and read by nothing else, is never materialised.
  p.skip.assign(region.ops.size(), 0);
  {
    const ir::ProducerIndex producers(diagram);
    const std::vector<int> uses = ir::use_counts(diagram);
    for (size_t i = 0; i < region.ops.size(); ++i) {
      const ir::Op &op = *region.ops[i];
      if (op.kind != ir::OpKind::Contract) continue;
      auto routed = ir::routed_operand(diagram, program_, op, producers, uses);
      if (!routed || keep.count(op.operands[routed->operand])) continue;
      for (size_t j = 0; j < i; ++j)
        if (region.ops[j].get() == routed->gather) {
          p.skip[j] = 1;
          p.routed.emplace(i, *routed);
        }
    }
  }
  std::map<int, size_t> last;
  std::map<int, int> use_count;  // ops of this region that use the value
  for (size_t i = 0; i < region.ops.size(); ++i) {
    for (int r : region.ops[i]->results) last[r] = i;  // an unused result is freed at once
    std::set<int> used;
    uses(*region.ops[i], used);
    if (auto routed = p.routed.find(i); routed != p.routed.end())  // it reads the gather's operands itself
      used.insert(routed->second.gather->operands.begin(), routed->second.gather->operands.end());
    for (int v : used) {
      ++use_count[v];
      if (owned.count(v)) last[v] = i;
    }
  }
  // A contraction into f32 (no rounding before the add) whose only use is an
  // `add` right after it, of a value already known: the add can ride on the product.
  p.add_into_product.assign(region.ops.size(), 0);
  for (size_t i = 0; i + 1 < region.ops.size(); ++i) {
    const ir::Op &op = *region.ops[i], &next = *region.ops[i + 1];
    if (op.kind != ir::OpKind::Contract || next.kind != ir::OpKind::Elementwise || next.function != ops::Fn::Add ||
        next.operands.size() != 2)
      continue;
    const int product = op.results.at(0);
    if ((next.operands[0] == product) == (next.operands[1] == product) || reduced(op))
      continue;  // the add of something else, or product + product; or a partial sum the ranks combine first
    if (use_count[product] != 1 || keep.count(product) || diagram.value(product).dtype != ir::DType::F32 ||
        p.routed.count(i))
      continue;
    p.add_into_product[i] = 1;
  }
  if (top)
    for (int id : diagram.inputs)
      if (!last.count(id) && !region.ops.empty()) last[id] = 0;
  for (auto &[v, i] : last)
    if (!keep.count(v)) p.release[i].push_back(v);
  return plans_.emplace(&region, std::move(p)).first->second;
}

void Executor::run_region(Frame &frame, const ir::Region &region, const ir::Op *repeat) {
  const RegionPlan &p = plan(*frame.diagram, region, repeat);
  auto release = [&](size_t i) {
    for (int v : p.release[i]) {
      frame.values[static_cast<size_t>(v)] = RtTensor{};
      frame.defined[static_cast<size_t>(v)] = 0;
    }
  };
  for (size_t i = 0; i < region.ops.size(); ++i) {
    const ir::Op &op = *region.ops[i];
    if (request_.sharding) {  // each op as the plan runs it; only routed contractions fused
      if (p.skip[i])
        sim_skipped(frame, op);
      else
        sim_op(frame, op, p.routed.count(i) ? &p.routed.at(i) : nullptr);
      release(i);
      continue;
    }
    if (p.skip[i]) {  // read in place by a routed contraction
      release(i);
      continue;
    }
    if (auto routed = p.routed.find(i); routed != p.routed.end()) {
      if (!run_routed(frame, op, routed->second)) {
        run_op(frame, *routed->second.gather);  // the tensors do not fit: gather, then contract
        run_op(frame, op);
      }
      if (reduced(op)) reduce_across_ranks(frame, op);
      release(i);
      continue;
    }
    if (p.add_into_product[i] && run_contract_add(frame, op, *region.ops[i + 1])) {
      release(i);
      release(++i);
      continue;
    }
    run_op(frame, op);
    if (reduced(op)) reduce_across_ranks(frame, op);
    release(i);
  }
}

bool Executor::run_contract_add(Frame &frame, const ir::Op &contraction, const ir::Op &add) {
  const ir::Diagram &diagram = *frame.diagram;
  const int product = contraction.results.at(0);
  const int other = add.operands[0] == product ? add.operands[1] : add.operands[0];
  const ir::Value &other_value = diagram.value(other);
  if (!frame.defined[static_cast<size_t>(other)] && other_value.role != ir::Value::Role::Param) return false;
  if (ir::is_integer(diagram.value(product).dtype)) return false;  // exact integer products: contract_exact
  auto start = std::chrono::steady_clock::now();
  std::vector<RtTensor> operands;
  for (int id : contraction.operands) operands.push_back(get(frame, id));
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  summed_axes(frame, contraction, axes, sizes);
  RtTensor out;
  if (!contract_add(operands, axes, sizes, get(frame, other), out)) return false;
  store_result(frame, add, finish(std::move(out), diagram.value(add.results.at(0)).dtype));
  profile("contract+add", start);
  return true;
}

void Executor::summed_axes(Frame &frame, const ir::Op &contraction, std::vector<int> &axes,
                           std::vector<int64_t> &sizes) {
  for (int axis : contraction.axes) {
    axes.push_back(rt_axis(frame, axis));
    sizes.push_back(axis_sizes_[static_cast<size_t>(axes.back())]);
  }
}

void Executor::store_result(Frame &frame, const ir::Op &op, RtTensor out) {
  // Every IR axis of the result is present (a broadcast axis as stride 0).
  for (int axis : frame.diagram->value(op.results.at(0)).axes) {
    int r = rt_axis(frame, axis);
    if (out.find(r) >= 0) continue;
    out.axes.push_back(r);
    out.sizes.push_back(axis_sizes_[static_cast<size_t>(r)]);
    out.strides.push_back(0);
  }
  set(frame, op.results[0], std::move(out));
}

void Executor::profile(const std::string &key, std::chrono::steady_clock::time_point start) {
  if (!request_.options.profile) return;
  profile_seconds_[key] += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  profile_counts_[key] += 1;
}

RtTensor Executor::finish(RtTensor t, ir::DType dtype) {
  if (t.dtype == dtype) return t;
  if (dtype != ir::DType::I32 && !t.is_int() && t.dtype == ir::DType::F32 && t.is_contiguous() &&
      t.buffer.use_count() == 1 && t.buffer->owned && t.offset == 0) {
    t.dtype = dtype;
    round_in_place(t);
    return t;
  }
  return convert(t, dtype);
}

void Executor::run_op(Frame &frame, const ir::Op &op) {
  const ir::Diagram &diagram = *frame.diagram;
  if (op.kind == ir::OpKind::Call) return run_call(frame, op);
  if (op.kind == ir::OpKind::Repeat) return run_repeat(frame, op);
  if (op.kind == ir::OpKind::Select) return run_select(frame, op);
  auto start = std::chrono::steady_clock::now();
  const ir::Value &result = diagram.value(op.results.at(0));
  RtTensor out;
  switch (op.kind) {
    case ir::OpKind::Constant: out = make_scalar(static_cast<float>(op.constant), result.dtype); break;
    case ir::OpKind::SizeOf:
      out = make_scalar(static_cast<float>(axis_sizes_[static_cast<size_t>(rt_axis(frame, op.axes.at(0)))]),
                        result.dtype);
      break;
    case ir::OpKind::AxisIndex: {
      int axis = rt_axis(frame, op.axes.at(0));
      int64_t n = axis_sizes_[static_cast<size_t>(axis)];
      out = make_tensor(ir::DType::I32, {axis}, {n});
      int32_t *p = out.idata();
      for (int64_t i = 0; i < n; ++i) p[i] = static_cast<int32_t>(i);
      out = finish(out, result.dtype);
      break;
    }
    case ir::OpKind::Elementwise: {
      if (ops::info(op.function).kind == ops::Kind::Cast) {
        RtTensor t = get(frame, op.operands.at(0));
        for (int axis : result.axes) {
          int r = rt_axis(frame, axis);
          if (t.find(r) >= 0) continue;
          t.axes.push_back(r);
          t.sizes.push_back(axis_sizes_[static_cast<size_t>(r)]);
          t.strides.push_back(0);
        }
        out = convert(t, result.dtype);
        break;
      }
      std::vector<RtTensor> operands;
      for (int id : op.operands) operands.push_back(get(frame, id));
      std::vector<int> order;
      for (int axis : result.axes) order.push_back(rt_axis(frame, axis));
      out = elementwise(op.function, operands, result.dtype, order);
      break;
    }
    case ir::OpKind::Contract: {
      std::vector<RtTensor> operands;
      for (int id : op.operands) operands.push_back(get(frame, id));
      std::vector<int> axes;
      std::vector<int64_t> sizes;
      summed_axes(frame, op, axes, sizes);
      out = finish(ir::is_integer(result.dtype) ? contract_exact(operands, axes, sizes, result.dtype)
                                            : contract(operands, axes, sizes),
                   result.dtype);
      break;
    }
    case ir::OpKind::Reduce: {
      const RtTensor t = get(frame, op.operands.at(0));
      std::vector<int> axes;
      int64_t missing = 1;
      for (int axis : op.axes) {
        int r = rt_axis(frame, axis);
        if (t.find(r) >= 0)
          axes.push_back(r);
        else
          missing *= axis_sizes_[static_cast<size_t>(r)];
      }
      if (op.function == ops::Fn::Sum && ir::is_integer(result.dtype)) {
        std::vector<int> summed;
        std::vector<int64_t> sizes;
        summed_axes(frame, op, summed, sizes);
        out = finish(contract_exact({t}, summed, sizes, result.dtype), result.dtype);
      } else {
        out = finish(reduce(op.function, t, axes, missing), result.dtype);
      }
      break;
    }
    case ir::OpKind::Normalize: {
      RtTensor t = get(frame, op.operands.at(0));
      std::vector<int> axes;
      for (int axis : op.axes) {
        int r = rt_axis(frame, axis);
        axes.push_back(r);
        if (t.find(r) < 0) {  // normalised along an axis it does not vary on: make it explicit
          t.axes.push_back(r);
          t.sizes.push_back(axis_sizes_[static_cast<size_t>(r)]);
          t.strides.push_back(0);
        }
      }
      double eps = op.options.count("eps") ? op.options.at("eps") : ops::info(op.function).default_eps;
      out = finish(normalize(op.function, t, axes, eps), result.dtype);
      break;
    }
    case ir::OpKind::Scan: {
      std::vector<RtTensor> operands;
      for (int id : op.operands) operands.push_back(get(frame, id));
      // The result's axes, after the axes of a call it is lifted over (which the operands carry and it does not).
      std::vector<int> own, order;
      for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
      for (const RtTensor &t : operands)
        for (int r : t.axes)
          if (std::find(own.begin(), own.end(), r) == own.end() &&
              std::find(order.begin(), order.end(), r) == order.end())
            order.push_back(r);
      order.insert(order.end(), own.begin(), own.end());
      std::vector<int64_t> sizes;
      for (int r : order) sizes.push_back(axis_sizes_[static_cast<size_t>(r)]);
      out = finish(scan(op.function, operands, rt_axis(frame, op.axes.at(0)), order, sizes), result.dtype);
      break;
    }
    case ir::OpKind::Access: out = finish(run_access(frame, op), result.dtype); break;
    case ir::OpKind::Merge: out = finish(run_merge(frame, op), result.dtype); break;
    default: throw RunError("internal: unexpected op kind");
  }
  store_result(frame, op, std::move(out));
  if (request_.options.profile) {
    std::string key = std::string(ir::op_kind_name(op.kind));
    if (op.kind == ir::OpKind::Elementwise || op.kind == ir::OpKind::Reduce || op.kind == ir::OpKind::Normalize ||
        op.kind == ir::OpKind::Scan)
      key += " " + std::string(ops::name(op.function));
    profile(key, start);
  }
}

void Executor::run_select(Frame &frame, const ir::Op &op) {
  auto start = std::chrono::steady_clock::now();
  const ir::Diagram &diagram = *frame.diagram;
  RtTensor t = get(frame, op.operands.at(0));
  const int along = rt_axis(frame, op.axes.at(0)), kept = rt_axis(frame, op.axes.at(1));
  const int64_t n = axis_sizes_[static_cast<size_t>(along)], count = axis_sizes_[static_cast<size_t>(kept)];
  const std::string name(ops::name(op.function));
  // Sizes a caller binds are checked here; sema checks the ones it knows.
  if (ops::info(op.function).whole ? count != n : count > n)
    throw RunError("'" + name + "' takes " + std::to_string(count) + " of the " + std::to_string(n) +
                   " positions of '" + program_.axis(op.axes[0]).name + "'");
  if (t.find(along) < 0) {  // constant along the axis: make it explicit
    t.axes.push_back(along);
    t.sizes.push_back(n);
    t.strides.push_back(0);
  }
  RtTensor values, positions;
  select(op.function, t, along, kept, count, values, positions);
  set(frame, op.results.at(0), finish(std::move(values), diagram.value(op.results[0]).dtype));
  set(frame, op.results.at(1), std::move(positions));
  profile("select " + name, start);
}

bool Executor::run_routed(Frame &frame, const ir::Op &op, const ir::Routed &routed) {
  auto start = std::chrono::steady_clock::now();
  const ir::Diagram &diagram = *frame.diagram;
  const ir::Value &table_value = diagram.value(routed.table);
  RoutedRead read;
  read.index = get(frame, routed.index);
  RtTensor table = get(frame, routed.table);
  // The table's positions in runtime terms: the expert axis, and each other
  // position renamed to the result axis it is read as.
  read.expert = rt_axis(frame, table_value.axes[routed.expert]);
  for (size_t position = 0; position < table_value.axes.size(); ++position) {
    if (position == routed.expert) continue;
    int from = rt_axis(frame, table_value.axes[position]), to = rt_axis(frame, routed.renamed[position]);
    int d = table.find(from);
    if (d < 0 || table.sizes[static_cast<size_t>(d)] != axis_sizes_[static_cast<size_t>(to)]) return false;
    if (read.index.find(to) >= 0 || (from != to && table.find(to) >= 0)) return false;
    table.axes[static_cast<size_t>(d)] = to;
  }
  if (table.find(read.expert) < 0) return false;
  read.table = std::move(table);
  std::vector<RtTensor> operands;
  for (size_t k = 0; k < op.operands.size(); ++k)
    operands.push_back(k == routed.operand ? RtTensor{} : get(frame, op.operands[k]));
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  summed_axes(frame, op, axes, sizes);
  for (int axis : read.index.axes)
    if (std::find(axes.begin(), axes.end(), axis) != axes.end()) return false;
  // A runtime axis of its own for the gathered rows.
  const int rows = static_cast<int>(axis_sizes_.size());
  axis_sizes_.push_back(0);
  const ir::Value &result = diagram.value(op.results.at(0));
  RtTensor out = routed_contract(std::move(operands), routed.operand, read, axes, sizes, rows, result.dtype);
  store_result(frame, op, finish(std::move(out), result.dtype));
  profile("contract routed", start);
  return true;
}

RtTensor Executor::run_access(Frame &frame, const ir::Op &op) {
  const ir::Diagram &diagram = *frame.diagram;
  const RtTensor source = get(frame, op.operands.at(0));
  const ir::Value &source_value = diagram.value(op.operands[0]);
  const ir::Value &result = diagram.value(op.results[0]);
  if (op.access.size() != source_value.axes.size()) throw RunError("internal: access with the wrong number of indices");
  std::vector<int> positions;
  std::vector<RtIndex> indices;
  for (size_t i = 0; i < op.access.size(); ++i) {
    const ir::AccessIndex &index = op.access[i];
    positions.push_back(rt_axis(frame, source_value.axes[i]));
    RtIndex rt;
    switch (index.kind) {
      case ir::AccessIndex::Kind::Affine:
        for (auto [axis, coefficient] : index.terms) rt.terms.push_back({rt_axis(frame, axis), coefficient});
        rt.offset = index.offset;
        break;
      case ir::AccessIndex::Kind::Split: {
        int64_t weight = 1;
        for (size_t j = index.split.size(); j-- > 0;) {
          int r = rt_axis(frame, index.split[j]);
          rt.terms.insert(rt.terms.begin(), {r, weight});
          weight *= axis_sizes_[static_cast<size_t>(r)];
        }
        break;
      }
      case ir::AccessIndex::Kind::Gather:
        rt.gather = true;
        rt.index = get(frame, op.operands.at(static_cast<size_t>(index.gather_operand)));
        break;
    }
    indices.push_back(std::move(rt));
  }
  std::vector<int> axes;
  std::vector<int64_t> sizes;
  auto add = [&](int axis, int64_t size) {
    if (contains(axes, axis)) return;
    axes.push_back(axis);
    sizes.push_back(size);
  };
  for (int axis : result.axes) {
    int r = rt_axis(frame, axis);
    add(r, axis_sizes_[static_cast<size_t>(r)]);
  }
  for (int d = 0; d < source.rank(); ++d)
    if (!contains(positions, source.axes[static_cast<size_t>(d)]))
      add(source.axes[static_cast<size_t>(d)], source.sizes[static_cast<size_t>(d)]);
  for (const RtIndex &index : indices)
    if (index.gather)
      for (int d = 0; d < index.index.rank(); ++d)
        add(index.index.axes[static_cast<size_t>(d)], index.index.sizes[static_cast<size_t>(d)]);
  return access(source, positions, indices, axes, sizes);
}

RtTensor Executor::run_merge(Frame &frame, const ir::Op &op) {
  const ir::Diagram &diagram = *frame.diagram;
  const RtTensor source = get(frame, op.operands.at(0));
  const ir::Value &result = diagram.value(op.results[0]);
  std::vector<std::vector<int>> groups;
  std::vector<int> merged;
  for (size_t j = 0; j < op.merges.size() && j < result.axes.size(); ++j) {
    int target = rt_axis(frame, result.axes[j]);
    std::vector<int> group;
    for (int axis : op.merges[j]) group.push_back(rt_axis(frame, axis));
    if (group.size() == 1 && group[0] == target) continue;  // passes through
    groups.push_back(group);
    merged.push_back(target);
  }
  return merge(source, groups, merged);
}

void Executor::run_call(Frame &frame, const ir::Op &op) {
  const ir::Diagram &callee = *program_.diagrams.at(static_cast<size_t>(op.callee));
  Frame inner;
  inner.diagram = &callee;
  inner.instance = std::make_unique<Instance>(*frame.instance, op);
  if (request_.sharding) {  // a ShardStep's key; unsharded runs need no chain
    inner.chain = frame.chain;
    inner.chain.push_back(&op);
  }
  inner.values.resize(callee.values.size());
  inner.defined.assign(callee.values.size(), 0);
  const CallBinding &binding = *inner.instance->binding();
  auto caller_axis = [&](const CallBinding::AxisPair &pair) {
    if (pair.caller < 0) throw RunError(binding.unbound_message(pair.callee));
    return rt_axis(frame, pair.caller);
  };
  for (size_t k = 0; k < callee.inputs.size(); ++k) {
    RtTensor t = get(frame, op.operands.at(k));
    for (const CallBinding::AxisPair &pair : binding.input_axes(k)) {
      const int axis = pair.callee;
      int from = caller_axis(pair);
      int to = rt_axis(inner, axis);
      int d = t.find(from);
      if (d < 0) {
        // A broadcast (stride 0) axis: the argument does not vary along it.
        t.axes.push_back(to);
        t.sizes.push_back(axis_sizes_[static_cast<size_t>(to)]);
        t.strides.push_back(0);
        continue;
      }
      if (t.sizes[static_cast<size_t>(d)] != axis_sizes_[static_cast<size_t>(to)])
        throw RunError("axis sizes disagree at a call of '" + callee.name + "': '" + program_.axis(axis).name + "'");
      t.axes[static_cast<size_t>(d)] = to;
    }
    set(inner, callee.inputs[k], std::move(t));
  }
  run_region(inner, callee.body);
  for (size_t k = 0; k < callee.outputs.size(); ++k) {
    RtTensor t = get(inner, callee.outputs[k]);
    for (const CallBinding::AxisPair &pair : binding.output_axes(k)) {
      int from = rt_axis(inner, pair.callee);
      int to = caller_axis(pair);
      int d = t.find(from);
      if (d >= 0) t.axes[static_cast<size_t>(d)] = to;
    }
    const ir::Value &result = frame.diagram->value(op.results.at(k));
    for (int axis : result.axes) {
      int r = rt_axis(frame, axis);
      if (t.find(r) >= 0) continue;
      t.axes.push_back(r);
      t.sizes.push_back(axis_sizes_[static_cast<size_t>(r)]);
      t.strides.push_back(0);
    }
    set(frame, op.results[k], finish(std::move(t), result.dtype));
  }
}

void Executor::run_repeat(Frame &frame, const ir::Op &op) {
  std::vector<RtTensor> carried;
  for (int id : op.operands) carried.push_back(get(frame, id));
  // The body's yields must survive to the end of each iteration.
  for (int64_t i = 0; i < op.count; ++i) {
    iterations_[&op] = i;
    for (size_t k = 0; k < op.body_arguments.size(); ++k) set(frame, op.body_arguments[k], carried[k]);
    run_region(frame, *op.body, &op);
    if (request_.sharding) sim_yields(frame, op);
    for (size_t k = 0; k < op.body_yields.size(); ++k) carried[k] = get(frame, op.body_yields[k]);
    // Clear what the iteration left behind.
    ir::for_each_op(*op.body, [&](const ir::Op &inner) {
      for (int r : inner.results) {
        frame.values[static_cast<size_t>(r)] = RtTensor{};
        frame.defined[static_cast<size_t>(r)] = 0;
      }
    });
    for (int id : op.body_arguments) {
      frame.values[static_cast<size_t>(id)] = RtTensor{};
      frame.defined[static_cast<size_t>(id)] = 0;
    }
  }
  for (size_t k = 0; k < op.results.size(); ++k) set(frame, op.results[k], carried[k]);
}

void Executor::run(std::map<std::string, Tensor> &outputs) {
  const ir::Diagram &diagram = *request_.diagram;
  Frame root;
  root.diagram = &diagram;
  root.instance = std::make_unique<Instance>(program_, diagram, namings_);
  root.values.resize(diagram.values.size());
  root.defined.assign(diagram.values.size(), 0);
  for (int id : diagram.inputs) {
    const ir::Value &value = diagram.value(id);
    auto it = request_.inputs ? request_.inputs->find(value.name) : decltype(request_.inputs->end()){};
    if (!request_.inputs || it == request_.inputs->end()) throw RunError("input '" + value.name + "' was not given");
    RtTensor t = wrap(root, value, it->second, "input '" + value.name + "'");
    set(root, id, request_.sharding ? sim_input(root, id, std::move(t)) : std::move(t));
  }
  run_region(root, diagram.body);
  for (int id : diagram.outputs) {
    const ir::Value &value = diagram.value(id);
    RtTensor t = convert(request_.sharding ? sim_output(root, id, get(root, id)) : get(root, id), value.dtype);
    std::vector<int> axes;
    std::vector<int64_t> sizes;
    for (int axis : value.axes) {
      axes.push_back(rt_axis(root, axis));
      sizes.push_back(axis_sizes_[static_cast<size_t>(axes.back())]);
    }
    const bool in_order = t.axes == axes && t.is_contiguous();
    RtTensor dense = in_order ? t : materialize(t, axes, sizes);
    Tensor out;
    out.dtype = value.dtype;
    out.shape = sizes;
    const int64_t n = dense.numel();
    if (out.is_int())
      out.ints.assign(dense.idata(), dense.idata() + n);
    else
      out.values.assign(dense.fdata(), dense.fdata() + n);
    outputs[value.name] = std::move(out);
  }
  if (request_.options.profile && request_.options.log) {
    std::vector<std::pair<double, std::string>> rows;
    double total = 0;
    for (auto &[key, seconds] : profile_seconds_) {
      rows.push_back({seconds, key});
      total += seconds;
    }
    std::sort(rows.rbegin(), rows.rend());
    std::ostream &log = *request_.options.log;
    char line[160];
    std::snprintf(line, sizeof line, "%-28s %8s %10s %6s\n", "op", "count", "ms", "%");
    log << line;
    for (auto &[seconds, key] : rows) {
      std::snprintf(line, sizeof line, "%-28s %8lld %10.3f %6.1f\n", key.c_str(),
                    static_cast<long long>(profile_counts_[key]), seconds * 1e3,
                    total > 0 ? 100 * seconds / total : 0.0);
      log << line;
    }
    std::snprintf(line, sizeof line, "%-28s %8s %10.3f\n", "total", "", total * 1e3);
    log << line;
  }
}

}  // namespace ncd::cpu
