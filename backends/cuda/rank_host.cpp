// The rank function of a sharded diagram (`ncd emit --cuda --nccl`, docs/SHARDING.md,
// "Emission"): one host function that runs the diagram's share on the calling rank of an
// NCCL communicator, then assembles the outputs with NCCL on the caller's stream.
//
// Built for plans whose devices need no communication before the outputs are assembled
// (data parallelism: `shard batch over N`). Then each rank runs the diagram itself at its
// local sizes: the sharded axes are generated as runtime sizes (runtime_sizes.cpp), the
// rank function calls the diagram's host function with size / N, its outputs written in
// place into the rank's chunk of the whole output, and an in-place ncclAllGather per split
// output puts every rank's chunk everywhere. Any other plan is declined with the first
// collective it would need (an all-reduce, a reduce-scatter, a gather before an operation,
// an all-to-all), so nothing is emitted that the plan does not say.
//
// Decided first (plan_rank: what is split, the local sizes, why not), then printed (rank_code).
#include <algorithm>

#include "codegen.h"
#include "ncd/instantiate.h"
#include "ncd/pass_manager.h"

namespace ncd::cuda {
namespace {

const char *nccl_type(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return "ncclFloat32";
    case ir::DType::F16: return "ncclFloat16";
    case ir::DType::BF16: return "ncclBfloat16";
    case ir::DType::F8E4M3: return "ncclFloat8e4m3";
    case ir::DType::F8E5M2: return "ncclFloat8e5m2";
    case ir::DType::I8: return "ncclInt8";
    case ir::DType::I32: return "ncclInt32";
    case ir::DType::Bool: return "ncclUint8";
  }
  return "ncclUint8";
}

}  // namespace

std::optional<RankPlan> plan_rank(const ir::Program &program, const ir::Diagram &diagram, std::string &why) {
  if (diagram.shards.empty()) {
    why = "it has no shard lines (docs/SHARDING.md)";
    return std::nullopt;
  }
  if (diagram.shards.size() > 1) {
    why = "its mesh has " + std::to_string(diagram.shards.size()) +
          " dimensions, and the rank function is built for one shard line";
    return std::nullopt;
  }
  const ShardingPlan plan = plan_sharding(program, diagram);
  // Communication before the outputs' assembly is not built: name the first the plan needs.
  for (const Collective &c : plan.collectives) {
    if (c.kind == Collective::Kind::AllGather && c.op == nullptr) continue;
    const std::string kind(collective_name(c.kind));
    why = "its plan needs " + std::string(kind[0] == 'a' ? "an " : "a ") + kind + " of " + c.value +
          (c.site.empty() ? "" : " at " + c.site) + " (" + c.reason +
          "), and the rank function is built only for plans whose devices communicate to assemble the outputs "
          "(data parallelism)";
    return std::nullopt;
  }
  if (!plan.params.empty()) {
    why = "its plan holds params in slices, and the rank function is built only for params whole on every rank";
    return std::nullopt;
  }
  RankPlan rank;
  rank.devices = plan.devices;
  const AxisSizes sizes(program);
  for (int axis : diagram.shards[0].axes) {
    const ir::Axis &a = program.axis(axis);
    std::optional<int64_t> whole = sizes.size(axis);
    if (a.derived || !whole) {
      why = "its sharded axis '" + a.name + "' " + (a.derived ? "is derived from others" : "has no size");
      return std::nullopt;
    }
    auto [it, fresh] = rank.whole.emplace(a.name, *whole);
    if (!fresh && it->second != *whole) {
      why = "two axes named '" + a.name + "' have different sizes";
      return std::nullopt;
    }
  }
  // A rank runs the diagram at its local sizes, so whatever reads a sharded axis's size or its
  // positions would read the rank's (the plan communicates nothing for them): refused.
  std::string reads;
  for (const ir::Diagram *d : reachable_diagrams(program, diagram))
    ir::for_each_op(d->body, [&](const ir::Op &op) {
      if ((op.kind != ir::OpKind::SizeOf && op.kind != ir::OpKind::AxisIndex) || op.axes.empty() || !reads.empty())
        return;
      const std::string &name = program.axis(op.axes[0]).name;
      if (rank.whole.count(name))
        reads =
            (op.kind == ir::OpKind::SizeOf ? "the size of '" : "positions along '") + name + "' (in " + d->name + ")";
    });
  if (!reads.empty()) {
    why = "it reads " + reads + ", which a rank would read at its own share";
    return std::nullopt;
  }
  // A split must be the plain one (rank r holds the r-th contiguous slice), and a split output's
  // slices must be contiguous in it (the axis outermost) for NCCL's all-gather to assemble it.
  auto plain = [&](const AxisSplit &split) {
    const std::optional<int64_t> size = sizes.size(split.axis);
    return split.stride == 1 && size && split.extent == *size;
  };
  for (const auto &[value, splits] : plan.inputs)
    for (const AxisSplit &split : splits)
      if (!plain(split)) {
        why = "input " + diagram.value(value).name + " is split inside a merged axis";
        return std::nullopt;
      }
  for (size_t k = 0; k < diagram.outputs.size(); ++k) {
    const int id = diagram.outputs[k];
    auto it = plan.outputs.find(id);
    if (it == plan.outputs.end() || it->second.empty()) {
      rank.split_outputs.push_back(false);
      continue;
    }
    const ir::Value &value = diagram.value(id);
    const AxisSplit &split = it->second.front();
    if (it->second.size() > 1 || !plain(split) || value.axes.empty() || value.axes.front() != split.axis) {
      why = "output " + value.name + " is split along '" + program.axis(split.axis).name +
            "', which is not its first axis, and NCCL's all-gather assembles contiguous slices only";
      return std::nullopt;
    }
    rank.split_outputs.push_back(true);
  }
  return rank;
}

std::string rank_code(const HarnessDiagram &info, const RankPlan &plan) {
  const std::string rank_function = info.function + "_rank";
  // The host function's sizes: a sharded axis at its size over the ranks (`ranks` names their
  // count), any other passed through.
  std::vector<std::string> through, members;
  auto call_sizes = [&](const std::string &ranks) {
    std::vector<std::string> sizes;
    for (const auto &size : info.sizes) {
      auto whole = plan.whole.find(size.axis);
      sizes.push_back(whole == plan.whole.end()
                          ? size.parameter
                          : "static_cast<int64_t>(" + std::to_string(whole->second) + ") / " + ranks);
    }
    return sizes;
  };
  for (const auto &size : info.sizes)
    if (!plan.whole.count(size.axis)) through.push_back("int64_t " + size.parameter);
  // Items each followed by ", ", then `tail`; list(): the items joined by ", ".
  auto join = [](const std::vector<std::string> &items, const std::string &tail) {
    std::string text;
    for (const auto &item : items) text += item + ", ";
    return text + tail;
  };
  auto list = [](const std::vector<std::string> &items) {
    std::string text;
    for (const auto &item : items) text += (text.empty() ? "" : ", ") + item;
    return text;
  };
  // Whether `ranks` fails to divide a sharded axis.
  auto refused = [&](const std::string &ranks) {
    std::string test = ranks + " < 1";
    for (const auto &[axis, size] : plan.whole) test += " || " + std::to_string(size) + " % " + ranks + " != 0";
    return test;
  };
  std::string axes;
  for (const auto &[axis, size] : plan.whole)
    axes += (axes.empty() ? "" : ", ") + axis + " (" + std::to_string(size) + ")";
  std::string code = "// " + info.name +
                     " on one rank (docs/SHARDING.md, \"Emission\"): a communicator whose size divides " + axes +
                     "\n// (the schedule's " + std::to_string(plan.devices) + "), then the arguments of " +
                     info.function + ", each split input the rank's slice and each output whole.\n" +
                     "// Returns 0, a cudaError_t from " + info.function + ", or a negated ncclResult_t.\n";
  code += "extern \"C\" size_t " + rank_function + "_workspace(" + join(through, "int ranks") + ") {\n  if (" +
          refused("ranks") + ") return 0;\n  return " + info.function + "_workspace(" + list(call_sizes("ranks")) +
          ");\n}\n";
  code += "extern \"C\" int " + rank_function + "(ncclComm_t comm, " + join(info.arguments, "") +
          join(through, "void *workspace, size_t workspace_bytes, cudaStream_t stream) {\n");
  code +=
      "  int ncd_ranks = 0, ncd_rank = 0;\n"
      "  ncclResult_t ncd_status = ncclCommCount(comm, &ncd_ranks);\n"
      "  if (ncd_status == ncclSuccess) ncd_status = ncclCommUserRank(comm, &ncd_rank);\n"
      "  if (ncd_status != ncclSuccess) return -static_cast<int>(ncd_status);\n"
      "  if (" +
      refused("ncd_ranks") + ") return -static_cast<int>(ncclInvalidUsage);\n";
  const std::vector<std::string> local = call_sizes("ncd_ranks");
  const std::string sizes_list = list(local);
  for (size_t k = 0; k < info.sizes.size(); ++k)
    members.push_back("  " + info.sizes[k].member + " = " + local[k] + ";\n");
  // The chunks read the local sizes as the generated code does, through the size struct.
  const bool gathers =
      std::find(plan.split_outputs.begin(), plan.split_outputs.end(), true) != plan.split_outputs.end();
  if (gathers && !info.sizes.empty()) {
    code += "  NcdSizes ncd_n{};\n";
    for (const auto &m : members) code += m;
  }
  // Each split output's chunk: its elements at the local sizes, which the rank writes in place.
  std::vector<std::string> call = info.pointers;
  const size_t first_output = info.pointers.size() - info.outputs.size();
  for (size_t k = 0; k < info.outputs.size(); ++k) {
    if (!plan.split_outputs[k]) continue;
    detail::Sz elements = 1;
    for (const auto &dim : info.outputs[k].shape) elements *= dim;
    const std::string chunk = "ncd_chunk" + std::to_string(k);
    code += "  const size_t " + chunk + " = static_cast<size_t>(" + str(elements) + ");\n";
    call[first_output + k] = info.pointers[first_output + k] + " + static_cast<size_t>(ncd_rank) * " + chunk;
  }
  code += "  const int ncd_local = " + info.function + "(" + join(call, sizes_list) + (sizes_list.empty() ? "" : ", ") +
          "workspace, workspace_bytes, stream);\n";
  code += "  if (ncd_local != 0) return ncd_local;\n";
  if (gathers) {
    // In place: rank r's chunk already sits at offset r * chunk, as NCCL's in-place all-gather asks.
    code += "  ncd_status = ncclGroupStart();\n";
    for (size_t k = 0; k < info.outputs.size(); ++k) {
      if (!plan.split_outputs[k]) continue;
      const std::string &out = info.pointers[first_output + k], chunk = "ncd_chunk" + std::to_string(k);
      code += "  if (ncd_status == ncclSuccess)\n    ncd_status = ncclAllGather(" + out +
              " + static_cast<size_t>(ncd_rank) * " + chunk + ", " + out + ", " + chunk + ", " +
              nccl_type(info.outputs[k].dtype) + ", comm, stream);\n";
    }
    code +=
        "  const ncclResult_t ncd_end = ncclGroupEnd();\n"
        "  if (ncd_status == ncclSuccess) ncd_status = ncd_end;\n";
  }
  code += "  return ncd_status == ncclSuccess ? 0 : -static_cast<int>(ncd_status);\n}\n\n";
  return code;
}

}  // namespace ncd::cuda
