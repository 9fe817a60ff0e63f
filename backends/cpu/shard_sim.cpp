// The simulation of a sharded run (`ncd run --devices N`, docs/SHARDING.md,
// "Simulation"): the CPU reference runs the diagram as the sharding plan
// (ncd/sharding.h) says each device would, and assembles the outputs.
//
// Every device's copy of a value lives in one tensor with one extra runtime
// axis per mesh dimension, the device's coordinate there; a value the same on
// every device keeps that axis as a broadcast (stride 0), so replicated work is
// done once. What a device does not hold is poisoned with NaN: its inputs and
// params outside its slices, and each result outside the slice the plan says
// it keeps. So a plan that lets a device read what it lacks shows up as NaN
// in (or a disagreement between the devices on) the assembled output, which
// the caller compares with the unsharded run. Collectives act along the mesh
// axes: an all-gather takes each position from the device that holds it; a
// partial sum masks every operand carrying the summed split axis to the
// reduction's identity outside the device's slice, runs, and the all-reduce
// folds the devices' results in device order (the same bits whatever the
// thread count). A reduce-scatter is that all-reduce followed by the result's
// split. Integers are never poisoned (an index must stay in range), only
// masked for partial sums. Expert parallelism: a routed contraction runs once
// (the grouped product of routed.cpp) and its rows are then cut to the
// devices of their experts (NaN elsewhere), which is what each device
// computes with its experts' rows of the table; the dispatch moves tokens
// that every device already holds whole, and the combine takes each routed
// row from the device its routing index names.
#include <cmath>
#include <cstring>
#include <limits>

#include "executor.h"

namespace ncd::cpu {
namespace {

// The device coordinate that holds position i along a split axis.
int64_t holder(int64_t i, const AxisSplit &split, int64_t devices) {
  if (split.stride < 1 || split.extent < devices || split.extent % devices != 0)
    throw RunError("internal: a split of " + std::to_string(split.extent) + " positions over " +
                   std::to_string(devices) + " devices");
  return ((i / split.stride) % split.extent) / (split.extent / devices);
}

// A dense copy of t with `first` (sizes `first_sizes`) leading, then t's other axes in order.
RtTensor leading(const RtTensor &t, const std::vector<int> &first, const std::vector<int64_t> &first_sizes) {
  std::vector<int> axes = first;
  std::vector<int64_t> sizes = first_sizes;
  for (size_t d = 0; d < t.axes.size(); ++d)
    if (std::find(first.begin(), first.end(), t.axes[d]) == first.end()) {
      axes.push_back(t.axes[d]);
      sizes.push_back(t.sizes[d]);
    }
  return materialize(t, axes, sizes);
}

// The identity of the reduction a partial sum runs, and whether one exists.
bool identity(ops::Fn fn, float &value) {
  switch (fn) {
    case ops::Fn::None:  // a contraction
    case ops::Fn::Sum:
    case ops::Fn::Mean: value = 0; return true;
    case ops::Fn::Max:
    case ops::Fn::LogSumExp: value = -std::numeric_limits<float>::infinity(); return true;
    case ops::Fn::Min: value = std::numeric_limits<float>::infinity(); return true;
    case ops::Fn::Prod: value = 1; return true;
    default: return false;
  }
}

float fold(ops::Fn fn, float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::numeric_limits<float>::quiet_NaN();
  switch (fn) {
    case ops::Fn::Max: return std::max(a, b);
    case ops::Fn::Min: return std::min(a, b);
    case ops::Fn::Prod: return a * b;
    case ops::Fn::LogSumExp: {
      float m = std::max(a, b);
      if (m == -std::numeric_limits<float>::infinity()) return m;
      return m + std::log(std::exp(a - m) + std::exp(b - m));
    }
    default: return a + b;
  }
}

}  // namespace

RtTensor Executor::sim_hold(const RtTensor &t, int axis, const AxisSplit &split, float fill) const {
  const int a = t.find(axis);
  if (a < 0 || (t.is_int() && fill != 0)) return t;
  const int mesh_axis = mesh_axes_.at(static_cast<size_t>(split.mesh));
  const int64_t devices = axis_sizes_[static_cast<size_t>(mesh_axis)], n = t.sizes[static_cast<size_t>(a)];
  RtTensor out = leading(t, {mesh_axis, axis}, {devices, n});
  const int64_t rest = out.numel() / (devices * n);
  for (int64_t c = 0; c < devices; ++c)
    for (int64_t i = 0; i < n; ++i) {
      if (holder(i, split, devices) == c) continue;
      const int64_t at = (c * n + i) * rest;
      if (out.is_int())
        std::fill(out.idata() + at, out.idata() + at + rest, 0);
      else
        std::fill(out.fdata() + at, out.fdata() + at + rest, fill);
    }
  return out;
}

RtTensor Executor::sim_gather(const RtTensor &t, int axis, const AxisSplit &split) const {
  const int mesh_axis = mesh_axes_.at(static_cast<size_t>(split.mesh));
  const int a = t.find(axis);
  if (a < 0 || t.find(mesh_axis) < 0) return t;  // the same on every device already
  const int64_t devices = axis_sizes_[static_cast<size_t>(mesh_axis)], n = t.sizes[static_cast<size_t>(a)];
  RtTensor in = leading(t, {mesh_axis, axis}, {devices, n});
  RtTensor out = make_tensor(t.dtype, {in.axes.begin() + 1, in.axes.end()}, {in.sizes.begin() + 1, in.sizes.end()});
  const int64_t rest = out.numel() / n;
  const char *from = static_cast<const char *>(in.buffer->data);
  char *to = static_cast<char *>(out.buffer->data);
  for (int64_t i = 0; i < n; ++i)
    std::memcpy(to + i * rest * 4, from + (holder(i, split, devices) * n + i) * rest * 4, static_cast<size_t>(rest) * 4);
  return out;
}

RtTensor Executor::sim_combine(const RtTensor &t, int mesh, ops::Fn fn) const {
  const int mesh_axis = mesh_axes_.at(static_cast<size_t>(mesh));
  if (t.find(mesh_axis) < 0) throw RunError("internal: a partial result is the same on every device");
  const int64_t devices = axis_sizes_[static_cast<size_t>(mesh_axis)];
  RtTensor in = leading(t, {mesh_axis}, {devices});
  RtTensor out = make_tensor(t.dtype, {in.axes.begin() + 1, in.axes.end()}, {in.sizes.begin() + 1, in.sizes.end()});
  const int64_t rest = out.numel();
  for (int64_t j = 0; j < rest; ++j) {
    if (in.is_int()) {
      int32_t sum = 0;
      for (int64_t c = 0; c < devices; ++c) sum += in.idata()[c * rest + j];
      out.idata()[j] = sum;
      continue;
    }
    float acc = in.fdata()[j];
    for (int64_t c = 1; c < devices; ++c) acc = fold(fn, acc, in.fdata()[c * rest + j]);
    out.fdata()[j] = acc;
  }
  return out;
}

RtTensor Executor::sim_route(const RtTensor &t, const RtTensor &index, const AxisSplit &experts, bool hold) const {
  const int mesh_axis = mesh_axes_.at(static_cast<size_t>(experts.mesh));
  if (!hold && t.find(mesh_axis) < 0) return t;  // the same on every device already
  for (int other : mesh_axes_)
    if (int d = index.find(other); d >= 0 && index.strides[static_cast<size_t>(d)] != 0)
      throw RunError("internal: a routing index differs between devices");
  std::vector<int> axes{mesh_axis};
  std::vector<int64_t> sizes{axis_sizes_[static_cast<size_t>(mesh_axis)]};
  std::vector<int> index_axes;
  std::vector<int64_t> index_sizes;
  for (size_t d = 0; d < index.axes.size(); ++d) {
    if (std::find(mesh_axes_.begin(), mesh_axes_.end(), index.axes[d]) != mesh_axes_.end()) continue;
    if (t.find(index.axes[d]) < 0) throw RunError("internal: a routed value lacks an axis of its routing index");
    index_axes.push_back(index.axes[d]);
    index_sizes.push_back(index.sizes[d]);
  }
  axes.insert(axes.end(), index_axes.begin(), index_axes.end());
  sizes.insert(sizes.end(), index_sizes.begin(), index_sizes.end());
  RtTensor in = leading(t, axes, sizes);
  RtTensor chosen = materialize(index, index_axes, index_sizes);
  const int64_t devices = sizes[0], rows = chosen.numel(), rest = in.numel() / std::max<int64_t>(devices * rows, 1);
  auto expert_device = [&](int64_t j) {
    const int64_t expert = chosen.is_int() ? chosen.idata()[j] : static_cast<int64_t>(chosen.fdata()[j]);
    if (expert < 0 || expert >= experts.extent) throw RunError("a routing index names no expert");
    return holder(expert, experts, devices);
  };
  if (hold) {
    if (in.is_int()) return in;
    for (int64_t j = 0; j < rows; ++j)
      for (int64_t c = 0, mine = expert_device(j); c < devices; ++c)
        if (c != mine)
          std::fill(in.fdata() + (c * rows + j) * rest, in.fdata() + (c * rows + j + 1) * rest,
                    std::numeric_limits<float>::quiet_NaN());
    return in;
  }
  RtTensor out = make_tensor(t.dtype, {in.axes.begin() + 1, in.axes.end()}, {in.sizes.begin() + 1, in.sizes.end()});
  const char *from = static_cast<const char *>(in.buffer->data);
  char *to = static_cast<char *>(out.buffer->data);
  for (int64_t j = 0; j < rows; ++j)
    std::memcpy(to + j * rest * 4, from + (expert_device(j) * rows + j) * rest * 4, static_cast<size_t>(rest) * 4);
  return out;
}

void Executor::sim_skipped(Frame &frame, const ir::Op &gather) {
  auto found = request_.sharding->steps.find({frame.chain, &gather});
  if (found != request_.sharding->steps.end()) sim_keep(frame, found->second);
}

void Executor::sim_keep(Frame &frame, const ShardStep &step) {
  for (int value : step.keep) routing_[{frame.chain, value}] = get(frame, value);
}

void Executor::sim_op(Frame &frame, const ir::Op &op, const ir::Routed *routed) {
  auto run = [&] {
    if (routed) {
      if (!run_routed(frame, op, *routed)) {
        sim_op(frame, *routed->gather);  // the tensors do not fit: gather, then contract
        run_op(frame, op);
      }
    } else if (op.kind == ir::OpKind::Call)
      run_call(frame, op);
    else if (op.kind == ir::OpKind::Repeat)
      run_repeat(frame, op);
    else
      run_op(frame, op);
  };
  auto found = request_.sharding->steps.find({frame.chain, &op});
  if (found == request_.sharding->steps.end()) return run();
  const ShardStep &step = found->second;
  auto decline = [&](const std::string &what) {
    throw RunError("'" + frame.diagram->name + "': " + what + " is not simulated; run it without --devices");
  };
  if (step.undecided_route) decline("an all-to-all combine of rows routed in another diagram");
  for (int value : step.dispatch) {
    const RtTensor t = get(frame, value);
    for (int mesh_axis : mesh_axes_)
      if (int d = t.find(mesh_axis); d >= 0 && t.strides[static_cast<size_t>(d)] != 0)
        decline("an all-to-all dispatch of tokens that the devices hold in slices");
  }
  for (const auto &[value, split] : step.gathers)
    set(frame, value, sim_gather(get(frame, value), rt_axis(frame, split.axis), split));
  for (const ShardStep::Route &route : step.combines) {
    auto index = routing_.find({frame.chain, route.index});
    if (index == routing_.end()) decline("an all-to-all combine without its routing index");
    set(frame, route.value, sim_route(get(frame, route.value), index->second, route.experts, false));
  }
  // Partial sums: each device reduces over its slice of a summed split axis.
  std::vector<std::pair<int, RtTensor>> saved;
  float fill = 0;
  if (!step.partial.empty() && !identity(op.function, fill))
    throw RunError("'" + frame.diagram->name + "': a sharded " + std::string(ops::name(op.function)) +
                   " over a split axis is not simulated");
  for (int operand : op.operands) {
    if (step.partial.empty() || std::any_of(saved.begin(), saved.end(), [&](auto &s) { return s.first == operand; }))
      continue;
    RtTensor whole = get(frame, operand), masked = whole;
    for (const AxisSplit &split : step.partial) masked = sim_hold(masked, rt_axis(frame, split.axis), split, fill);
    if (masked.buffer == whole.buffer) continue;
    saved.push_back({operand, whole});
    set(frame, operand, std::move(masked));
  }
  run();
  sim_keep(frame, step);
  for (const ShardStep::Route &route : step.routed) {
    auto index = routing_.find({frame.chain, route.index});
    if (index == routing_.end()) decline("a routed contraction without its routing index");
    set(frame, route.value, sim_route(get(frame, route.value), index->second, route.experts, true));
  }
  for (auto &[operand, whole] : saved) set(frame, operand, std::move(whole));
  std::vector<int> combined;
  for (const AxisSplit &split : step.partial) {
    if (std::find(combined.begin(), combined.end(), split.mesh) != combined.end()) continue;
    combined.push_back(split.mesh);
    for (int result : op.results) set(frame, result, sim_combine(get(frame, result), split.mesh, op.function));
  }
  for (const auto &[value, splits] : step.results) {
    if (splits.empty()) continue;
    RtTensor t = get(frame, value);
    for (const AxisSplit &split : splits)
      t = sim_hold(t, rt_axis(frame, split.axis), split, std::numeric_limits<float>::quiet_NaN());
    set(frame, value, std::move(t));
  }
}

void Executor::sim_yields(Frame &frame, const ir::Op &repeat) {
  auto found = request_.sharding->steps.find({frame.chain, &repeat});
  if (found == request_.sharding->steps.end()) return;
  for (const auto &[value, split] : found->second.yield_gathers)
    set(frame, value, sim_gather(get(frame, value), rt_axis(frame, split.axis), split));
}

RtTensor Executor::sim_param(Frame &frame, int id, RtTensor t) {
  auto found = request_.sharding->params.find({frame.chain, id});
  if (found == request_.sharding->params.end()) return t;
  for (const AxisSplit &split : found->second)
    t = sim_hold(t, rt_axis(frame, split.axis), split, std::numeric_limits<float>::quiet_NaN());
  return t;
}

RtTensor Executor::sim_input(Frame &frame, int id, RtTensor t) {
  auto found = request_.sharding->inputs.find(id);
  if (found == request_.sharding->inputs.end()) return t;
  for (const AxisSplit &split : found->second)
    t = sim_hold(t, rt_axis(frame, split.axis), split, std::numeric_limits<float>::quiet_NaN());
  return t;
}

RtTensor Executor::sim_output(Frame &frame, int id, RtTensor t) {
  if (auto found = request_.sharding->outputs.find(id); found != request_.sharding->outputs.end())
    for (const AxisSplit &split : found->second) t = sim_gather(t, rt_axis(frame, split.axis), split);
  // Whole now: every device must hold the same values (else the plan let them drift apart).
  for (size_t m = 0; m < mesh_axes_.size(); ++m) {
    const int d = t.find(mesh_axes_[m]);
    if (d < 0) continue;
    const int64_t devices = axis_sizes_[static_cast<size_t>(mesh_axes_[m])];
    RtTensor in = leading(t, {mesh_axes_[m]}, {devices});
    const int64_t rest = in.numel() / devices;
    const char *data = static_cast<const char *>(in.buffer->data);
    for (int64_t c = 1; c < devices; ++c)
      if (std::memcmp(data, data + c * rest * 4, static_cast<size_t>(rest) * 4) != 0)
        throw RunError("the devices disagree on output '" + frame.diagram->value(id).name + "' (mesh dimension " +
                       std::to_string(m) + ", device 0 and " + std::to_string(c) +
                       "): the sharding plan is wrong for this diagram");
    t = std::move(in);
    t.axes.erase(t.axes.begin());
    t.sizes.erase(t.sizes.begin());
    t.strides.erase(t.strides.begin());
  }
  return t;
}

}  // namespace ncd::cpu
