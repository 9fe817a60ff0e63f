// The host frame of the CUDA generator (docs/CUDA.md): one extern "C" host
// function per diagram, the walk of its IR and the file around the kernels.
//
// Like the CPU interpreter (backends/cpu/executor.cpp), it walks each diagram
// instance with a Frame that maps IR axes to fresh *runtime axes*, so calls are
// inlined: a callee's values keep the caller's lifted axes as extra runtime
// axes, and every kernel treats them as batch dimensions. A value at run time
// is a strided view over runtime axes (`Ten`); sizes and strides are baked
// into each kernel as constants, or, for an axis without a size, as
// expressions in the host function's size arguments (runtime_sizes.cpp). Repeats become
// host loops; params reached inside them are picked from per-iteration arrays.
//
// A scheduled diagram is planned first (plan_match.cpp: streamed attention, or
// a fused GEMM, row or pointwise kernel, or a decline with its reason); every
// other op is a kernel of its family: print_gemm.cpp (tensor cores),
// print_routed.cpp (routed contractions: a mixture of experts' grouped GEMM),
// print_generic.cpp (any other contraction), print_row.cpp (reductions and
// normalisations), print_pointwise.cpp (elementwise, access, merge, copies),
// print_attention.cpp and print_fused.cpp (the scheduled kernels).
#include "codegen.h"

#include "device_code.h"
#include "generator.h"
#include "targets.h"

namespace ncd::cuda {

std::string element_type(DType dtype) {
  switch (dtype) {
    case DType::F32: return "float";
    case DType::F16: return "__half";
    case DType::BF16: return "__nv_bfloat16";
    case DType::F8E4M3: return "__nv_fp8_e4m3";
    case DType::F8E5M2: return "__nv_fp8_e5m2";
    case DType::I8: return "int8_t";
    case DType::I32: return "int32_t";
    case DType::Bool: return "bool";
  }
  return "float";
}

namespace detail {

// ---------------------------------------------------------------- values

std::string Generator::param_pointer(Frame &frame, const ParamPath &path, DType dtype) {
  // The repeat segments become host loops: one array of pointers per path,
  // indexed by the loop variables.
  std::vector<std::pair<std::string, int64_t>> loops;
  std::map<const ir::Op *, size_t> loop_of;
  for (const PathSegment &segment : path)
    if (segment.repeat) {
      loop_of[segment.repeat] = loops.size();
      loops.push_back(frame.loops.at(segment.repeat));
    }
  auto path_at = [&](const std::vector<int64_t> &iteration) {
    return path_text(path, [&](const ir::Op *repeat) { return iteration[loop_of.at(repeat)]; });
  };
  auto argument = [&](const std::string &text) {
    auto it = param_args_.find(text);
    if (it == param_args_.end()) throw GenError("internal: param '" + text + "' is not among the diagram's params");
    return it->second.first;
  };
  if (loops.empty()) return argument(path_at({}));
  std::string key;
  for (const PathSegment &segment : path) key += segment.repeat ? "{" + frame.loops.at(segment.repeat).first + "}" : segment.text;
  auto it = param_arrays_.find(key);
  if (it == param_arrays_.end()) {
    std::string name = "ncd_pa" + str(static_cast<int64_t>(param_arrays_.size()));
    std::string list;
    std::vector<int64_t> iteration(loops.size(), 0);
    for (bool more = true; more;) {
      list += (list.empty() ? "" : ", ") + argument(path_at(iteration));
      more = false;
      for (size_t k = loops.size(); k-- > 0;) {
        if (++iteration[k] < loops[k].second) {
          more = true;
          break;
        }
        iteration[k] = 0;
      }
    }
    preamble_.push_back("const " + element_type(dtype) + " *const " + name + "[] = {" + list + "};");
    it = param_arrays_.emplace(key, name).first;
  }
  std::string index;
  for (size_t k = 0; k < loops.size(); ++k)
    index = k == 0 ? loops[k].first : "(" + index + ") * " + str(loops[k].second) + " + " + loops[k].first;
  return it->second + "[" + index + "]";
}

Ten Generator::param(Frame &frame, int id) {
  const ir::Value &value = frame.diagram->value(id);
  std::vector<int> axes;  // before the pointer: both number runtime axes as they first meet them
  for (int axis : value.axes) axes.push_back(rt_axis(frame, axis));
  std::string pointer = param_pointer(frame, frame.instance->param_path(id), value.dtype);
  return dense(value.dtype, std::move(axes), std::move(pointer));
}

Ten Generator::get(Frame &frame, int id) {
  auto it = frame.values.find(id);
  if (it != frame.values.end()) return it->second;
  const ir::Value &value = frame.diagram->value(id);
  if (value.role == ir::Value::Role::Param) {
    Ten t = param(frame, id);
    if (frame.instance->naming().param_repeats(id).empty()) frame.values[id] = t;
    return t;
  }
  throw GenError("internal: value '" + value.name + "' of '" + frame.diagram->name + "' is read before it is computed");
}

// The runtime axes of an op's result: the operands' axes that are not dropped
// and not IR axes of the result (lifted axes) outermost, then the result's own.
std::vector<int> Generator::result_axes(Frame &frame, const ir::Value &result, const std::vector<const Ten *> &operands,
                                        const std::set<int> &drop) {
  std::vector<int> own, extra;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  for (const Ten *t : operands)
    for (int a : t->axes)
      if (!drop.count(a) && std::find(own.begin(), own.end(), a) == own.end() &&
          std::find(extra.begin(), extra.end(), a) == extra.end())
        extra.push_back(a);
  extra.insert(extra.end(), own.begin(), own.end());
  return extra;
}

Ten Generator::output(Frame &frame, int value, DType dtype, const std::vector<int> &axes) {
  for (const auto *places : {&frame.dest, &frame.hint}) {
    auto it = places->find(value);
    if (it != places->end() && it->second.dtype == dtype) {
      std::set<int> want(axes.begin(), axes.end()), have(it->second.axes.begin(), it->second.axes.end());
      if (want == have) return it->second;
    }
  }
  return alloc(dtype, axes);
}

// ---------------------------------------------------------------- ops

void Generator::region(Frame &frame, const ir::Region &region) {
  // Routed contractions (ncd/routing.h, plan_routed.cpp) read their gathered
  // table in place: the gather, in this region and read by nothing else, is
  // deferred to its contraction and materialised only if that declines.
  const ir::Diagram &diagram = *frame.diagram;
  std::map<const ir::Op *, ir::Routed> routed_ops;
  std::set<const ir::Op *> deferred;
  bool contracts = false;
  for (const auto &o : region.ops) contracts = contracts || o->kind == OpKind::Contract;
  if (contracts) {
    const ir::ProducerIndex producers(diagram);
    const std::vector<int> uses = ir::use_counts(diagram);
    std::set<const ir::Op *> before;
    for (const auto &o : region.ops) {
      if (o->kind == OpKind::Contract)
        if (auto r = ir::routed_operand(diagram, program_, *o, producers, uses); r && before.count(r->gather)) {
          routed_ops.emplace(o.get(), *r);
          deferred.insert(r->gather);
        }
      before.insert(o.get());
    }
  }
  for (const auto &o : region.ops) {
    if (deferred.count(o.get())) continue;
    auto it = routed_ops.find(o.get());
    if (it != routed_ops.end() && !routed(frame, *o, it->second)) {
      frame.values[it->second.gather->results.at(0)] = access(frame, *it->second.gather);
      it = routed_ops.end();
    }
    if (it == routed_ops.end()) op(frame, *o);
    if (reductions_.count(o.get())) all_reduce(frame, *o);
  }
}

void Generator::op(Frame &frame, const ir::Op &o) {
  const ir::Diagram &diagram = *frame.diagram;
  if (o.kind == OpKind::Call) return call(frame, o);
  if (o.kind == OpKind::Repeat) return repeat(frame, o);
  if (o.kind == OpKind::Select) return select(frame, o);
  const ir::Value &result = diagram.value(o.results.at(0));
  Ten out;
  switch (o.kind) {
    case OpKind::Constant:
      out.kind = Ten::Kind::Literal;
      out.dtype = result.dtype;
      out.literal = convert_float(static_cast<float>(o.constant), result.dtype);
      break;
    case OpKind::SizeOf: {
      const Sz &n = size(rt_axis(frame, o.axes.at(0)));
      out.kind = Ten::Kind::Literal;
      out.dtype = result.dtype;
      out.literal = convert_float(static_cast<float>(n.hint()), result.dtype);
      if (!n.known()) out.literal_code = n.code();
      break;
    }
    case OpKind::AxisIndex:
      out.kind = Ten::Kind::Index;
      out.dtype = result.dtype;
      out.axes = {rt_axis(frame, o.axes.at(0))};
      out.strides = {0};
      break;
    case OpKind::Elementwise: out = elementwise(frame, o); break;
    case OpKind::Contract: out = contract(frame, o); break;
    case OpKind::Reduce: out = reduce(frame, o); break;
    case OpKind::Normalize: out = normalize(frame, o); break;
    case OpKind::Scan: out = scan(frame, o); break;
    case OpKind::Access: out = access(frame, o); break;
    case OpKind::Merge: out = merge(frame, o); break;
    default: throw GenError("internal: unexpected op kind");
  }
  frame.values[o.results[0]] = out;
}

void Generator::call(Frame &frame, const ir::Op &o) {
  const ir::Diagram &callee = *program_.diagrams.at(static_cast<size_t>(o.callee));
  Frame inner;
  inner.diagram = &callee;
  inner.instance = std::make_unique<Instance>(*frame.instance, o);
  inner.caller = &frame;
  inner.loops = frame.loops;
  const CallBinding &binding = *inner.instance->binding();
  auto caller_axis = [&](const CallBinding::AxisPair &pair) {
    if (pair.caller < 0) throw GenError(binding.unbound_message(pair.callee));
    return rt_axis(frame, pair.caller);
  };
  for (size_t k = 0; k < callee.inputs.size(); ++k) {
    Ten t = get(frame, o.operands.at(k));
    std::vector<int> renamed = t.axes;
    for (const CallBinding::AxisPair &pair : binding.input_axes(k)) {
      int from = caller_axis(pair);
      int to = rt_axis(inner, pair.callee);
      int d = t.find(from);
      if (d < 0) {
        if (t.kind == Ten::Kind::Buffer) {
          renamed.push_back(to);
          t.strides.push_back(0);
        }
        continue;
      }
      if (size(from) != size(to)) throw GenError("axis sizes disagree at a call of '" + callee.name + "'");
      renamed[static_cast<size_t>(d)] = to;
    }
    t.axes = renamed;
    inner.values[callee.inputs[k]] = t;
  }
  // Results with a destination (outputs of the root) are computed in place;
  // the others, when they can, in the layout the caller declared for them.
  for (size_t k = 0; k < callee.outputs.size(); ++k) {
    auto it = frame.dest.find(o.results.at(k));
    bool hard = it != frame.dest.end();
    Ten t;
    if (hard) {
      t = it->second;
    } else {
      const ir::Value &result = frame.diagram->value(o.results[k]);
      std::vector<int> axes;
      for (int axis : result.axes) axes.push_back(rt_axis(frame, axis));
      t = alloc(result.dtype, axes);
    }
    if (t.dtype != callee.value(callee.outputs[k]).dtype) continue;
    std::set<int> seen;
    bool ok = true;
    for (const CallBinding::AxisPair &pair : binding.output_axes(k)) {
      int from = caller_axis(pair);
      ok = ok && seen.insert(from).second;
      int d = t.find(from);
      if (d >= 0) t.axes[static_cast<size_t>(d)] = rt_axis(inner, pair.callee);
    }
    if (ok) (hard ? inner.dest : inner.hint)[callee.outputs[k]] = t;
  }
  line("// call " + callee.name);
  bool fused = !callee.schedules.empty() && scheduled(inner, callee, &o);
  if (!fused) region(inner, callee.body);
  for (size_t k = 0; k < callee.outputs.size(); ++k) {
    Ten t = get(inner, callee.outputs[k]);
    for (const CallBinding::AxisPair &pair : binding.output_axes(k)) {
      int from = rt_axis(inner, pair.callee);
      int to = caller_axis(pair);
      int d = t.find(from);
      if (d >= 0) t.axes[static_cast<size_t>(d)] = to;
    }
    const ir::Value &result = frame.diagram->value(o.results.at(k));
    auto dest = frame.dest.find(o.results[k]);
    if (dest != frame.dest.end() && !t.same_place(dest->second)) {
      copy(t, dest->second, result.name);
      t = dest->second;
    } else if (t.dtype != result.dtype || t.kind != Ten::Kind::Buffer) {
      std::vector<int> axes = t.axes;
      for (int axis : result.axes)
        if (std::find(axes.begin(), axes.end(), rt_axis(frame, axis)) == axes.end()) axes.push_back(rt_axis(frame, axis));
      Ten converted = alloc(result.dtype, axes);
      copy(t, converted, result.name);
      t = converted;
    }
    frame.values[o.results[k]] = t;
  }
}

void Generator::repeat(Frame &frame, const ir::Op &o) {
  std::vector<Ten> carried;
  for (size_t k = 0; k < o.operands.size(); ++k) {
    Ten t = get(frame, o.operands[k]);
    const ir::Value &arg = frame.diagram->value(o.body_arguments.at(k));
    std::vector<int> axes = t.kind == Ten::Kind::Buffer ? t.axes : std::vector<int>{};
    for (int axis : arg.axes)
      if (std::find(axes.begin(), axes.end(), rt_axis(frame, axis)) == axes.end()) axes.push_back(rt_axis(frame, axis));
    Ten slot = alloc(arg.dtype, axes);
    copy(t, slot, arg.name + " (into the repeat)");
    carried.push_back(slot);
  }
  routings_.clear();  // an index inside the body changes per iteration
  std::string var = "it" + str(loop_counter_++);
  frame.loops[&o] = {var, o.count};
  line("for (int " + var + " = 0; " + var + " < " + str(o.count) + "; ++" + var + ") {");
  ++indent_;
  for (size_t k = 0; k < o.body_arguments.size(); ++k) frame.values[o.body_arguments[k]] = carried[k];
  region(frame, *o.body);
  // A yield that is another position's argument is read before any is overwritten.
  std::vector<Ten> yields;
  for (size_t k = 0; k < o.body_yields.size(); ++k) {
    Ten y = get(frame, o.body_yields[k]);
    bool is_argument = false;
    for (size_t j = 0; j < carried.size(); ++j) is_argument = is_argument || (j != k && y.same_place(carried[j]));
    if (is_argument) {
      Ten staged = alloc(carried[k].dtype, carried[k].axes);
      copy(y, staged, "yield (staged)");
      y = staged;
    }
    yields.push_back(y);
  }
  for (size_t k = 0; k < yields.size(); ++k)
    if (!yields[k].same_place(carried[k])) copy(yields[k], carried[k], frame.diagram->value(o.body_yields[k]).name);
  // Values of the body are per iteration: forget them.
  ir::for_each_op(*o.body, [&](const ir::Op &inner) {
    for (int r : inner.results) frame.values.erase(r);
  });
  for (int id : frame.diagram->params)
    if (!frame.instance->naming().param_repeats(id).empty()) frame.values.erase(id);
  --indent_;
  line("}");
  routings_.clear();
  for (size_t k = 0; k < o.results.size(); ++k) {
    auto dest = frame.dest.find(o.results[k]);
    if (dest != frame.dest.end()) {
      copy(carried[k], dest->second, frame.diagram->value(o.results[k]).name);
      frame.values[o.results[k]] = dest->second;
    } else {
      frame.values[o.results[k]] = carried[k];
    }
  }
}

// ---------------------------------------------------------------- scheduled diagrams

bool Generator::scheduled(Frame &frame, const ir::Diagram &diagram, const ir::Op *site) {
  ScheduledPlan plan = plan_scheduled(diagram, diagram.schedules.front());
  if (plan.kind == ScheduledPlan::Kind::Attention) {
    attention(frame, diagram, plan.attention, site);
    return true;
  }
  if (plan.kind == ScheduledPlan::Kind::Grid) {
    grid(frame, diagram, plan.grid, site);
    return true;
  }
  if (plan.kind == ScheduledPlan::Kind::Fused) {
    fused(frame, diagram, plan.fused, site);
    return true;
  }
  const ir::Op *where = site ? site : (diagram.body.ops.empty() ? nullptr : diagram.body.ops.front().get());
  note(where, "'" + diagram.name + "' has a schedule but is not a fused kernel the cuda backend knows (" + plan.reason +
                  "); its operations run as separate kernels");
  return false;
}

HarnessDiagram Generator::generate_diagram(const ir::Diagram &diagram) {
  body_.clear();
  preamble_.clear();
  ws_offsets_.clear();
  indent_ = 2;
  workspace_ = 0;
  loop_counter_ = 0;
  param_args_.clear();
  param_arrays_.clear();
  diagram_sizes_.clear();
  routings_.clear();

  HarnessDiagram info;
  info.name = diagram.name;
  info.function = "ncd_" + ident(diagram.name);
  Frame root;
  root.diagram = &diagram;
  root.instance = std::make_unique<Instance>(program_, diagram, namings_);

  std::vector<std::string> signature, pointers;  // the tensor arguments, and their names
  std::set<std::string> used_names;
  auto unique = [&](std::string name) {
    std::string base = name;
    for (int i = 2; !used_names.insert(name).second; ++i) name = base + "_" + std::to_string(i);
    return name;
  };
  for (int id : diagram.inputs) {
    const ir::Value &value = diagram.value(id);
    std::string name = unique("in_" + ident(value.name));
    pointers.push_back(name);
    signature.push_back("const " + element_type(value.dtype) + " *" + name);
    root.values[id] = dense(root, value, name);
    HarnessTensor h{value.name, value.dtype, {}};
    for (int a : root.values[id].axes) h.shape.push_back(size(a));
    info.inputs.push_back(h);
  }
  std::vector<ParamInstance> params;
  std::string error;
  if (!list_param_instances(program_, diagram, params, error)) throw GenError(error);
  for (const ParamInstance &p : params) {
    std::string name = unique("p_" + ident(p.path));
    pointers.push_back(name);
    signature.push_back("const " + element_type(p.dtype) + " *" + name);
    param_args_[p.path] = {name, p.dtype};
    info.params.push_back({p.path, p.dtype, std::vector<Sz>(p.shape.begin(), p.shape.end())});
  }
  for (int id : diagram.outputs) {
    const ir::Value &value = diagram.value(id);
    std::string name = unique("out_" + ident(value.name));
    pointers.push_back(name);
    signature.push_back(element_type(value.dtype) + " *" + name);
    root.dest[id] = dense(root, value, name);
    HarnessTensor h{value.name, value.dtype, {}};
    for (int a : root.dest[id].axes) h.shape.push_back(size(a));
    info.outputs.push_back(h);
  }
  info.arguments = signature;
  info.pointers = pointers;
  if (communicates_) signature.insert(signature.begin(), "ncclComm_t ncd_comm");
  bool fused = !diagram.schedules.empty() && scheduled(root, diagram, nullptr);
  if (!fused) region(root, diagram.body);
  for (int id : diagram.outputs) {
    Ten t = get(root, id);
    if (!t.same_place(root.dest.at(id))) copy(t, root.dest.at(id), "output " + diagram.value(id).name);
  }

  std::string host;
  host += "// " + diagram.name + " (" + diagram.module +
          "): arguments in this order: " + (communicates_ ? "the communicator; " : "") + "inputs";
  for (const auto &h : info.inputs) host += " " + h.name;
  host += info.params.empty() ? "" : "; params (docs/RUN.md paths)";
  for (const auto &h : info.params) host += " " + h.name;
  host += "; outputs";
  for (const auto &h : info.outputs) host += " " + h.name;
  // Runtime sizes follow the outputs, in the order the program declares the axes.
  std::vector<std::string> size_params, size_names;
  std::string sizes_doc;
  for (int axis : diagram_sizes_) {
    const std::string &member = runtime_sizes_.at(axis);
    std::string name = unique("n_" + member);
    size_params.push_back("int64_t " + name);
    size_names.push_back(name);
    sizes_doc += " " + program_.axis(axis).name;
    HarnessDiagram::Size size{program_.axis(axis).name, "ncd_n." + member, -1, -1, name};
    for (size_t i = 0; i < info.inputs.size() && size.tensor < 0; ++i)
      for (size_t j = 0; j < info.inputs[i].shape.size() && size.tensor < 0; ++j)
        if (info.inputs[i].shape[j].code() == size.member) size.tensor = static_cast<int>(i), size.dim = static_cast<int>(j);
    info.sizes.push_back(size);
  }
  if (!sizes_doc.empty()) host += "; runtime sizes" + sizes_doc;
  host +=
      "; the workspace and its bytes; the stream.\n// Every tensor is dense, row-major in its declared axis order, "
      "16-byte aligned. Returns a cudaError_t (0: success)" +
      (communicates_ ? std::string(", or a negated ncclResult_t") : std::string()) + ".\n";
  std::string sizes_list;
  for (const std::string &s : size_params) sizes_list += (sizes_list.empty() ? "" : ", ") + s;
  // The sizes into the struct (refusing one below 1 with `refusal`), then the workspace offsets over them:
  // shared by the query and the host function.
  auto sizes_and_offsets = [&](const std::string &refusal) {
    std::string text = size_names.empty() ? "" : "  NcdSizes ncd_n{};\n";
    for (size_t k = 0; k < size_names.size(); ++k)
      text += "  if (" + size_names[k] + " < 1) return " + refusal + ";\n  " + info.sizes[k].member + " = " +
              size_names[k] + ";\n";
    for (const auto &line : ws_offsets_) text += "  " + line + "\n";
    return text;
  };
  const std::string ws_function = info.function + "_workspace";
  Sz ws_bytes = workspace_;
  if (auto known = ws_bytes.constant()) ws_bytes = std::max<int64_t>(*known, 0);
  // The query answers 0 for sizes the host function refuses; it needs the struct only when the bytes read it.
  std::string ws_query = ws_bytes.known() ? "" : sizes_and_offsets("0");
  for (size_t k = 0; ws_bytes.known() && k < size_names.size(); ++k) ws_query += "  (void)" + size_names[k] + ";\n";
  host += "// The workspace " + info.function + " needs, in bytes (0: none; pass nullptr).\n";
  host += "extern \"C\" size_t " + ws_function + "(" + sizes_list + ") {\n" + ws_query +
          "  return static_cast<size_t>(" + str(ws_bytes) + ");\n}\n";
  host += "extern \"C\" int " + info.function + "(";
  for (const std::string &s : signature) host += s + ", ";
  for (const std::string &s : size_params) host += s + ", ";
  host += "void *workspace, size_t workspace_bytes, cudaStream_t stream) {\n" +
          sizes_and_offsets("static_cast<int>(cudaErrorInvalidValue)");
  std::string aligned;
  for (const std::string &name : pointers) aligned += name + ", ";
  host += "  if (!ncd_aligned({" + aligned + "workspace})) return static_cast<int>(cudaErrorMisalignedAddress);\n";
  host += "  const size_t ncd_ws_bytes = " + str(ws_bytes) + ";\n";
  host += "  if (ncd_ws_bytes > 0 && (workspace == nullptr || workspace_bytes < ncd_ws_bytes))\n"
          "    return static_cast<int>(cudaErrorInvalidValue);\n";
  host += "  char *const ncd_ws = static_cast<char *>(workspace);\n  (void)ncd_ws;\n";
  for (const auto &pre : preamble_) host += "  " + pre + "\n";
  if (communicates_) host += "  ncclResult_t ncd_nccl = ncclSuccess;  // NCD_NCCL's\n";
  host += "  auto body = [&]() -> cudaError_t {\n" + body_ + "    return cudaSuccess;\n  };\n";
  if (communicates_)
    host +=
        "  const cudaError_t ncd_status = body();\n"
        "  return ncd_nccl != ncclSuccess ? -static_cast<int>(ncd_nccl) : static_cast<int>(ncd_status);\n}\n\n";
  else
    host += "  return static_cast<int>(body());\n}\n\n";
  hosts_ += host;

  // ncd's FLOP count (the unfused baseline of `ncd cost`), for the harness's TFLOP/s.
  info.flops = count_flops(program_, diagram).value_or(0);
  return info;
}

}  // namespace detail

using detail::Generator;
using detail::GenError;


bool check_options(const std::map<std::string, std::string> &options, std::string &error) {
  for (const auto &[key, value] : options) {
    if (key == "arch") {
      if (!check_arch(value, error)) return false;
    } else if (key != "harness" && key != "runtime" && key != "nccl") {
      error = "the cuda backend has no option '" + key + "'";
      return false;
    }
  }
  return true;
}

bool generate(const EmitRequest &request, std::string &output, std::string &error,
              std::vector<HarnessDiagram> *infos_out) {
  if (!request.program || request.diagrams.empty()) {
    error = "no diagram to generate";
    return false;
  }
  std::string arch = default_arch();
  bool harness = false, nccl = false;
  if (!check_options(request.options, error)) return false;
  for (const auto &[key, value] : request.options) {
    if (key == "arch") arch = value;
    if (key == "harness") harness = value == "1";
    if (key == "nccl") nccl = value == "1";
  }
  // --nccl: each diagram's rank function (rank_host.cpp): under data parallelism its sharded axes
  // made runtime sizes, so that one host function serves every rank at the local sizes; otherwise
  // its rank program, generated after the diagrams.
  std::vector<RankPlan> ranks;
  EmitRequest sharded = request;
  for (size_t k = 0; nccl && k < request.diagrams.size(); ++k) {
    std::string why;
    std::optional<RankPlan> rank = plan_rank(*request.program, *request.diagrams[k], why);
    if (!rank) {
      error = "cannot generate '" + request.diagrams[k]->name + "' with NCCL: " + why;
      return false;
    }
    for (const auto &[axis, size] : rank->whole)
      sharded.options["runtime"] += (sharded.options["runtime"].empty() ? "" : ",") + axis;
    ranks.push_back(std::move(*rank));
  }
  Generator generator(sharded, target_limits(arch));
  std::vector<HarnessDiagram> infos;
  for (const ir::Diagram *diagram : request.diagrams) {
    try {
      infos.push_back(generator.generate_diagram(*diagram));
    } catch (const GenError &e) {
      std::string reason = e.what(), self = "diagram '" + diagram->name + "': ";
      if (reason.rfind(self, 0) == 0) reason = reason.substr(self.size());
      error = "cannot generate '" + diagram->name + "': " + reason;
      return false;
    }
  }
  // Each diagram has a host function and its workspace query: no two of them may share a name.
  std::map<std::string, std::string> functions;
  for (const auto &info : infos)
    for (const std::string &function : {info.function, info.function + "_workspace"})
      if (!functions.emplace(function, info.name).second) {
        error = "cannot generate '" + info.name + "': its host functions would be named like those of '" +
                functions.at(function) + "' (" + function + ")";
        return false;
      }
  std::string names;
  for (const auto &info : infos) names += (names.empty() ? "" : ", ") + info.name;
  output = "// Generated by `ncd emit --cuda` for " + arch + " from " + request.program->modules.at(0).path + ": " +
           names + ".\n";
  if (nccl)
    output += "// Needs the CUDA toolkit and NCCL. Build: nvcc -std=c++17 -O3 -arch=" + arch +
              (harness ? " -o prog FILE.cu -lnccl" : " -c FILE.cu") + "\n";
  else
    output += "// Self-contained: needs only the CUDA toolkit. Build: nvcc -std=c++17 -O3 -arch=" + arch +
              (harness ? " -o prog FILE.cu" : " -c FILE.cu") + "\n";
  output += "// Host functions, layouts and dtypes: docs/CUDA.md in the ncd sources.\n";
  if (nccl) output += "#include <nccl.h>\n";
  for (const char *text : {device::prelude, device::gemm, device::gemm_q8, device::routed, device::attention, device::grid, device::prelude_end}) output += text;
  output += "\nnamespace {\n\n" + generator.size_struct() + generator.kernels() + "}  // namespace\n\n" +
            generator.hosts();
  for (size_t k = 0; k < ranks.size(); ++k) {
    if (!ranks[k].program) {
      output += rank_code(infos[k], ranks[k]);
      continue;
    }
    try {
      output += detail::rank_program_code(request, target_limits(arch), ranks[k]);
    } catch (const GenError &e) {
      error = "cannot generate the rank program of '" + request.diagrams[k]->name + "': " + e.what();
      return false;
    }
  }
  if (harness) output += harness_code(infos);
  if (infos_out) *infos_out = std::move(infos);
  return true;
}

}  // namespace ncd::cuda
