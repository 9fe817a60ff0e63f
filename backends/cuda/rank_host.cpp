// The rank function of a sharded diagram (`ncd emit --cuda --nccl`, docs/SHARDING.md,
// "Emission"): one host function that runs the diagram's share on the calling rank of an
// NCCL communicator, with NCCL collectives on the caller's stream.
//
// Two ways, decided first (plan_rank), then printed:
//  - data parallelism, the plans whose devices communicate only to assemble the outputs
//    (`shard batch over N`): each rank runs the diagram's own host function at its local sizes
//    (the sharded axes are generated as runtime sizes, runtime_sizes.cpp), so one function serves
//    any count of ranks dividing them;
//  - any other plan a rank program states (ncd/rank_program.h: tensor parallelism's column- and
//    row-parallel products, all-reduces between operations): the rank program is generated as a
//    host function of its own, in a namespace of its own, that takes the communicator and calls
//    an in-place ncclAllReduce after each partial sum; it serves exactly the schedule's count.
// Either way the rank function writes each split output's slice in place into the rank's chunk
// of the whole output, then one grouped in-place ncclAllGather assembles them. Plans that need
// what neither states (an all-gather between operations, expert routing) are declined with the
// rank program's reason, so nothing is emitted that the plan does not say.
#include <algorithm>

#include "codegen.h"
#include "generator.h"
#include "ncd/instantiate.h"
#include "ncd/ir_edit.h"
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

const char *nccl_op(ops::Fn fn) {
  switch (fn) {
    case ops::Fn::Mean: return "ncclAvg";
    case ops::Fn::Max: return "ncclMax";
    case ops::Fn::Min: return "ncclMin";
    default: return "ncclSum";
  }
}

// The first param instance of `diagram` whose shape depends on one of `axes` (by name), or "": the
// params listed at the program's sizes and again with those axes one larger (derived sizes follow).
std::string param_on_axes(const ir::Program &program, const ir::Diagram &diagram,
                          const std::map<std::string, int64_t> &axes) {
  ir::Program other;
  other.axes = program.axes;
  other.modules = program.modules;
  other.root_module = program.root_module;
  for (const auto &d : program.diagrams) other.diagrams.push_back(ir::clone_diagram(*d, d->name));
  for (ir::Axis &axis : other.axes)
    if (axes.count(axis.name) && axis.size && !axis.derived) ++*axis.size;
  for (ir::Axis &axis : other.axes)
    if (axis.derived && axis.size)
      if (auto size = other.size_poly(axis.id).evaluate([&](int base) -> std::optional<double> {
            const auto &known = other.axes.at(static_cast<size_t>(base)).size;
            return known ? std::optional<double>(static_cast<double>(*known)) : std::nullopt;
          }))
        axis.size = static_cast<int64_t>(*size);
  const ir::Diagram *root = nullptr;
  for (size_t k = 0; k < program.diagrams.size(); ++k)
    if (program.diagrams[k].get() == &diagram) root = other.diagrams[k].get();
  std::vector<ParamInstance> before, after;
  std::string error;
  if (!root || !list_param_instances(program, diagram, before, error) ||
      !list_param_instances(other, *root, after, error) || before.size() != after.size())
    return "(listing the params failed)";
  for (size_t k = 0; k < before.size(); ++k)
    if (before[k].shape != after[k].shape) return before[k].path;
  return "";
}

// Data parallelism (see above), or nullopt with `why`.
std::optional<RankPlan> data_parallel(const ir::Program &program, const ir::Diagram &diagram, const ShardingPlan &plan,
                                      std::string &why) {
  // (Only the rank program's reasons reach the user: it states whatever this way does not.)
  for (const Collective &c : plan.collectives)
    if (c.kind != Collective::Kind::AllGather || c.op != nullptr) {
      why = "its devices communicate between operations";
      return std::nullopt;
    }
  if (!plan.params.empty()) {
    why = "it holds params in slices";
    return std::nullopt;
  }
  RankPlan rank;
  rank.devices = plan.devices;
  rank.diagram = diagram.name;
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
  // The diagram at its local sizes is a rank's share only if nothing held whole depends on a sharded
  // axis: no param (GPT-2's position table under `shard positions`), no input or output but along the
  // axis it is split by.
  if (std::string param = param_on_axes(program, diagram, rank.whole); !param.empty()) {
    why = "param " + param + " depends on a sharded axis";
    return std::nullopt;
  }
  const std::vector<int> &sharded = diagram.shards[0].axes;
  auto depends = [&](int axis) {  // a root axis is, or is sized by, a sharded axis
    for (int base : program.size_poly(axis).axes())
      if (std::find(sharded.begin(), sharded.end(), base) != sharded.end()) return true;
    return std::find(sharded.begin(), sharded.end(), axis) != sharded.end();
  };
  auto held_whole = [&](int value, const std::map<int, std::vector<AxisSplit>> &splits) {
    auto it = splits.find(value);
    for (int axis : diagram.value(value).axes)
      if (depends(axis) && (it == splits.end() || it->second.empty() || it->second.front().axis != axis)) return true;
    return false;
  };
  for (int input : diagram.inputs)
    if (held_whole(input, plan.inputs)) {
      why = "input " + diagram.value(input).name + " holds a sharded axis it is not split along";
      return std::nullopt;
    }
  for (int output : diagram.outputs)
    if (held_whole(output, plan.outputs)) {
      why = "output " + diagram.value(output).name + " holds a sharded axis it is not split along";
      return std::nullopt;
    }
  return rank;
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
  std::string not_data_parallel;
  if (std::optional<RankPlan> rank = data_parallel(program, diagram, plan, not_data_parallel)) return rank;
  std::optional<RankProgram> local = build_rank_program(program, diagram, plan, why);
  if (!local) return std::nullopt;
  RankPlan rank;
  rank.devices = plan.devices;
  rank.diagram = diagram.name;
  const ir::Diagram &root = *local->program.diagrams.at(static_cast<size_t>(local->root));
  for (int output : root.outputs) rank.split_outputs.push_back(local->slices.count({&root, output}) > 0);
  rank.program = std::make_shared<RankProgram>(std::move(*local));
  return rank;
}

std::string rank_code(const HarnessDiagram &info, const RankPlan &plan) {
  const std::string rank_function = "ncd_" + detail::ident(plan.diagram) + "_rank";
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
  // Whether `ranks` fails to divide a sharded axis (a rank program: is not the schedule's count).
  const std::string count = std::to_string(plan.devices);
  auto refused = [&](const std::string &ranks) {
    if (plan.program) return ranks + " != " + count;
    std::string test = ranks + " < 1";
    for (const auto &[axis, size] : plan.whole) test += " || " + std::to_string(size) + " % " + ranks + " != 0";
    return test;
  };
  std::string axes;
  for (const auto &[axis, size] : plan.whole)
    axes += (axes.empty() ? "" : ", ") + axis + " (" + std::to_string(size) + ")";
  std::string code =
      "// " + plan.diagram + " on one rank (docs/SHARDING.md, \"Emission\"): a communicator " +
      (plan.program ? "of exactly " + count + " ranks"
                    : "whose size divides " + axes + "\n// (the schedule's " + count + ")") +
      ", then the arguments of " + info.function + ", each split input the rank's slice" +
      (plan.program ? ",\n// each param the rank's slice (" + rank_function + "_params cuts them)" : "") +
      " and each output whole.\n" + "// Returns 0, a cudaError_t from " + info.function +
      ", or a negated ncclResult_t.\n";
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
  code += "  const int ncd_local = " + info.function + "(" + (plan.program ? "comm, " : "") + join(call, sizes_list) +
          (sizes_list.empty() ? "" : ", ") + "workspace, workspace_bytes, stream);\n";
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

namespace detail {

void Generator::all_reduce(Frame &frame, const ir::Op &o) {
  const int id = o.results.at(0);
  Ten t = get(frame, id);
  // NCCL reduces a contiguous buffer: the value in place when it is one, else a dense copy.
  const Ten packed = dense(t.dtype, t.axes, t.ptr);
  bool contiguous = t.kind == Ten::Kind::Buffer;
  for (size_t d = 0; contiguous && d < t.axes.size(); ++d) contiguous = t.strides[d].code() == packed.strides[d].code();
  const std::string name = frame.diagram->value(id).name;
  if (!contiguous) {
    Ten staged = alloc(t.dtype, t.axes);
    copy(t, staged, name + " (for the all-reduce)");
    t = staged;
  }
  line("// " + name + ": the ranks' partial results combined (all-reduce)");
  line("NCD_NCCL(ncclAllReduce(" + t.ptr + ", " + t.ptr + ", static_cast<size_t>(" + str(numel(t.axes)) + "), " +
       nccl_type(t.dtype) + ", " + nccl_op(reductions_.at(&o)) + ", ncd_comm, stream));");
  frame.values[id] = t;
}

std::string rank_program_code(const EmitRequest &request, const Limits &limits, const RankPlan &plan) {
  RankProgram &local = *plan.program;
  ir::Diagram &root = *local.program.diagrams.at(static_cast<size_t>(local.root));
  root.name = plan.diagram + "_rank_local";
  EmitRequest own = request;
  own.program = &local.program;
  own.diagrams = {&root};
  own.notes = nullptr;  // the diagram's own generation has noted its fallbacks
  Generator generator(own, limits);
  std::map<const ir::Op *, ops::Fn> reductions;
  for (const RankProgram::Reduction &r : local.reductions) reductions[r.op] = r.fn;
  generator.reduce_across_ranks(std::move(reductions));
  const HarnessDiagram info = generator.generate_diagram(root);
  const std::string space = "ncd_rank_" + ident(plan.diagram);
  std::string code =
      "#ifndef NCD_NCCL\n"
      "// A failed NCCL call in a rank program's host function: its result, returned negated.\n"
      "#define NCD_NCCL(call)                       \\\n"
      "  do {                                       \\\n"
      "    const ncclResult_t ncd_result_ = (call); \\\n"
      "    if (ncd_result_ != ncclSuccess) {        \\\n"
      "      ncd_nccl = ncd_result_;                \\\n"
      "      return cudaErrorUnknown;               \\\n"
      "    }                                        \\\n"
      "  } while (0)\n"
      "#endif\n\n";
  code += "// " + plan.diagram + "'s rank program (docs/SHARDING.md, \"Rank programs\"): each rank's share, " +
          std::to_string(local.devices) + " ranks.\nnamespace " + space + " {\nnamespace {\n\n" +
          generator.size_struct() + generator.kernels() + "}  // namespace\n\n" + generator.hosts() +
          rank_code(info, plan);
  // The param cutter: each sliced param's share, from the whole (host or device memory), as rows
  // of contiguous runs (rank_cut), one cudaMemcpy2DAsync each.
  const std::string function = "ncd_" + ident(plan.diagram) + "_rank_params";
  std::vector<std::string> wholes, slices, copies;
  for (const auto &[mine, whole] : local.params) {
    auto split = local.slices.find({mine.diagram, mine.value});
    if (split == local.slices.end()) continue;
    const ir::Value &value = whole.diagram->value(whole.value);
    const int dim =
        static_cast<int>(std::find(value.axes.begin(), value.axes.end(), split->second.axis) - value.axes.begin());
    const RankCut cut = rank_cut(whole.shape, dim, split->second, local.devices, 0);
    const std::string type = element_type(whole.dtype), bytes = "sizeof(" + type + ")", name = ident(whole.path);
    wholes.push_back("const " + type + " *whole_" + name);
    slices.push_back(type + " *p_" + name);
    copies.push_back("  NCD_TRY(cudaMemcpy2DAsync(p_" + name + ", " + str(cut.run) + " * " + bytes + ", whole_" + name +
                     " + static_cast<size_t>(rank) * " + str(cut.run) + ", " + str(cut.row) + " * " + bytes + ", " +
                     str(cut.run) + " * " + bytes + ", " + str(cut.rows) + ", cudaMemcpyDefault, stream));\n");
  }
  if (!copies.empty()) {
    code += "// The rank's slice of each param " + plan.diagram +
            " holds in slices, cut from the whole one (host or device memory), in the order of\n// the params of " +
            info.function + ", on `stream`: the whole params, then their slices. Returns a cudaError_t.\n";
    code += "extern \"C\" int " + function + "(int rank, ";
    for (const auto &w : wholes) code += w + ", ";
    for (const auto &p : slices) code += p + ", ";
    code += "cudaStream_t stream) {\n  if (rank < 0 || rank >= " + std::to_string(local.devices) +
            ") return static_cast<int>(cudaErrorInvalidValue);\n  auto body = [&]() -> cudaError_t {\n";
    for (const auto &c : copies) code += "  " + c;
    code += "    return cudaSuccess;\n  };\n  return static_cast<int>(body());\n}\n";
  }
  return code + "}  // namespace " + space + "\n\n";
}

}  // namespace detail

}  // namespace ncd::cuda
