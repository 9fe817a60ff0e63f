// The CUDA code generator (docs/CUDA.md).
//
// Like the CPU interpreter (backends/cpu/executor.cpp), it walks each diagram
// instance with a Frame that maps IR axes to fresh *runtime axes*, so calls are
// inlined: a callee's values keep the caller's lifted axes as extra runtime
// axes, and every kernel treats them as batch dimensions. A value at run time
// is a strided view over runtime axes (`Ten`); sizes and strides are known at
// generation time and are baked into each kernel as constants. Repeats become
// host loops; params reached inside them are picked from per-iteration arrays.
//
// Kernels: a fused tensor-core kernel for a scheduled diagram that is streamed
// attention (softmax form or explicit online-softmax form); for the other
// kernels `ncd optimize` writes, one fused kernel each: a GEMM with its
// elementwise epilogue on the accumulators, a warp-per-row normalisation or
// reduction with elementwise work before and after it, or a pointwise chain of
// elementwise and access ops (match_fused / fused); tensor-core GEMM
// for 16-bit two-operand contractions; warp-per-row reductions and
// normalisations; grid-stride elementwise, access and merge kernels; and a
// generic loop kernel for any other contraction, reported as a fallback.
#include "codegen.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <set>
#include <sstream>
#include <stdexcept>

#include "ncd/cost.h"
#include "ncd/hardware.h"
#include "ncd/instances.h"
#include "ncd/tensor.h"
#include "prelude.h"

namespace ncd::cuda {

using ir::DType;
using ir::OpKind;

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

namespace {

struct GenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string str(int64_t v) { return std::to_string(v); }

// A float literal that nvcc reads back exactly.
std::string flit(double v) {
  if (std::isnan(v)) return "NAN";
  if (std::isinf(v)) return v > 0 ? "INFINITY" : "(-INFINITY)";
  char text[64];
  std::snprintf(text, sizeof text, "%.9g", static_cast<double>(static_cast<float>(v)));
  std::string s = text;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  s += "f";
  if (s[0] == '-') s = "(" + s + ")";
  return s;
}

std::string ident(const std::string &text) {
  std::string out;
  for (char c : text) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')
      out += c;
    else if (c == '@')
      out += "_at";
    else
      out += '_';
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out = "_" + out;
  return out;
}

bool is_16bit_float(DType t) { return t == DType::BF16 || t == DType::F16; }

// A value as generated code sees it: a buffer (strided view), a literal
// (constants, sizes), or the positions of one axis (axis_index).
struct Ten {
  enum class Kind { Buffer, Literal, Index };
  Kind kind = Kind::Buffer;
  DType dtype = DType::F32;
  std::vector<int> axes;  // runtime axes; for Buffer, with strides
  std::vector<int64_t> strides;
  std::string ptr;  // Buffer: host expression of the base pointer
  double literal = 0;

  int find(int axis) const {
    for (size_t i = 0; i < axes.size(); ++i)
      if (axes[i] == axis) return static_cast<int>(i);
    return -1;
  }
  bool has(int axis) const { return find(axis) >= 0; }
  int64_t stride(int axis) const {
    int d = find(axis);
    return d < 0 || kind != Kind::Buffer ? 0 : strides[static_cast<size_t>(d)];
  }
  bool same_place(const Ten &other) const {
    if (kind != Kind::Buffer || other.kind != Kind::Buffer || ptr != other.ptr || dtype != other.dtype) return false;
    std::set<std::pair<int, int64_t>> a, b;
    for (size_t i = 0; i < axes.size(); ++i) a.insert({axes[i], strides[i]});
    for (size_t i = 0; i < other.axes.size(); ++i) b.insert({other.axes[i], other.strides[i]});
    return a == b;
  }
};

// One segment of a param path: literal text (with its trailing '.'), or the
// iteration of a host loop.
struct PathPart {
  std::string text;
  const ParamNaming *naming = nullptr;
  const ir::Op *repeat = nullptr;
  std::string var;
  int64_t count = 0;
};

struct Frame {
  const ir::Diagram *diagram = nullptr;
  std::unique_ptr<AxisSizes> sizes;
  const ParamNaming *naming = nullptr;
  std::map<int, int> rt;  // IR axis -> runtime axis
  std::map<int, Ten> values;
  std::map<int, Ten> dest;  // where a value must end up (outputs)
  std::map<int, Ten> hint;  // where a value had best be (a call result in the caller's layout)
  std::vector<PathPart> prefix;
  std::map<const ir::Op *, std::pair<std::string, int64_t>> loops;  // repeat -> (host loop variable, count)
};

// Collects a kernel's parameters and the host expressions passed for them.
struct KernelArgs {
  std::vector<std::string> params, args;
  std::map<std::string, std::string> seen;
  std::string in(const Ten &t) {
    std::string key = "in|" + t.ptr + "|" + element_type(t.dtype);
    if (auto it = seen.find(key); it != seen.end()) return it->second;
    std::string name = "a" + str(static_cast<int64_t>(params.size()));
    params.push_back("const " + element_type(t.dtype) + " *__restrict__ " + name);
    args.push_back(t.ptr);
    seen[key] = name;
    return name;
  }
  std::string out(const Ten &t) {
    std::string name = "r" + str(static_cast<int64_t>(params.size()));
    params.push_back(element_type(t.dtype) + " *__restrict__ " + name);
    args.push_back(t.ptr);
    return name;
  }
  std::string param_list() const {
    std::string s;
    for (size_t i = 0; i < params.size(); ++i) s += (i ? ", " : "") + params[i];
    return s;
  }
  std::string arg_list() const {
    std::string s;
    for (size_t i = 0; i < args.size(); ++i) s += (i ? ", " : "") + args[i];
    return s;
  }
};

std::string x(int axis) { return "x" + str(axis); }

// Attention pattern found in a scheduled diagram (IR value ids of its diagram).
struct AttentionMatch {
  int q_input = -1, k_input = -1, v_input = -1, output = -1;
  int q_axis = -1, k_axis = -1, d_axis = -1, e_axis = -1;  // IR axes
  std::vector<int> scale_values;                           // scalar factors of the scores
  std::vector<int> out_scale_values;                       // scalar factors of the P.V contraction
  int mask = -1;                                           // condition value, -1: none
  int64_t bq = 0, bk = 0;
};

// A GEMM's fused epilogue: code applied to each f32 accumulator in place of the
// plain store (Generator::fused_gemm builds it).
struct GemmEpilogue {
  // Code for one element: the x<axis> of every output axis are declared, and
  // `acc` is the scaled f32 accumulator. Reads and writes go through `args`.
  std::function<std::string(KernelArgs &args, const std::string &acc, const std::string &pad)> body;
  std::map<int, int64_t> groups;  // runtime axis -> the schedule's group tile
};

// A scheduled diagram that is a fused GEMM + epilogue, a row kernel
// (normalisation or reduction with elementwise work around it) or a pointwise
// chain (elementwise and access ops): docs/CUDA.md, "Fused kernels".
struct FusedMatch {
  enum class Kind { Gemm, Row, Pointwise };
  Kind kind = Kind::Pointwise;
  const ir::Op *main = nullptr;          // the contraction, normalisation or reduction
  std::vector<const ir::Op *> before;    // scalar arithmetic computed first (folded or tiny kernels)
  std::set<int> after;                   // values computed from main's result
};

class Generator {
 public:
  Generator(const EmitRequest &request, std::string arch)
      : request_(request), program_(*request.program), arch_(std::move(arch)) {}

  HarnessDiagram generate_diagram(const ir::Diagram &diagram);
  std::string kernels() const {
    std::string s;
    for (const auto &k : kernel_order_) s += k + "\n";
    return s;
  }
  std::string hosts() const { return hosts_; }

 private:
  // ------------------------------------------------ runtime axes
  int rt_axis(Frame &frame, int axis) {
    auto it = frame.rt.find(axis);
    if (it != frame.rt.end()) return it->second;
    auto size = frame.sizes->size(axis);
    if (!size) throw GenError("diagram '" + frame.diagram->name + "': " + frame.sizes->missing_message(axis));
    int id = static_cast<int>(axis_sizes_.size());
    axis_sizes_.push_back(*size);
    axis_names_.push_back(program_.axis(axis).name);
    frame.rt[axis] = id;
    return id;
  }
  int64_t size(int rt) const { return axis_sizes_.at(static_cast<size_t>(rt)); }
  int64_t numel(const std::vector<int> &axes) const {
    int64_t n = 1;
    for (int a : axes) n *= size(a);
    return n;
  }
  std::string axis_list(const std::vector<int> &axes) const {
    std::string s;
    for (int a : axes) s += (s.empty() ? "" : ", ") + axis_names_[static_cast<size_t>(a)];
    return "[" + s + "]";
  }

  // ------------------------------------------------ host code
  void line(const std::string &text) { body_ += std::string(static_cast<size_t>(indent_ * 2), ' ') + text + "\n"; }
  // A row-major tensor over `axes` at `ptr`.
  Ten dense(DType dtype, std::vector<int> axes, std::string ptr) {
    Ten t;
    t.dtype = dtype;
    t.axes = std::move(axes);
    t.strides.assign(t.axes.size(), 1);
    int64_t stride = 1;
    for (size_t i = t.axes.size(); i-- > 0;) {
      t.strides[i] = stride;
      stride *= size(t.axes[i]);
    }
    t.ptr = std::move(ptr);
    return t;
  }
  // A row-major tensor holding `value` of `frame`, at `ptr`.
  Ten dense(Frame &frame, const ir::Value &value, std::string ptr) {
    std::vector<int> axes;
    for (int axis : value.axes) axes.push_back(rt_axis(frame, axis));
    return dense(value.dtype, std::move(axes), std::move(ptr));
  }
  // A dense workspace tensor; with `copies` > 1, room for that many (the
  // caller spaces them out by scaling the strides).
  Ten alloc(DType dtype, const std::vector<int> &axes, int64_t copies = 1) {
    int64_t elements = copies;
    for (int axis : axes) elements *= size(axis);
    workspace_ = (workspace_ + 255) / 256 * 256;
    Ten t = dense(dtype, axes, "reinterpret_cast<" + element_type(dtype) + " *>(ncd_ws + " + str(workspace_) + ")");
    workspace_ += std::max<int64_t>(elements * dtype_bytes(dtype), 1);
    return t;
  }
  // A kernel's signature and its grid-stride loop over the n positions of
  // `axes`, each position decomposed into the axes' index variables; the
  // caller appends the body and closes with "  }\n}\n".
  std::string grid_stride_loop(int64_t n, const std::vector<int> &axes) {
    return "  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < " + str(n) +
           "; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n" + decompose(axes, "i", "    ");
  }
  std::string grid_stride_kernel(const KernelArgs &args, int64_t n, const std::vector<int> &axes) {
    return "__global__ void @NAME@(" + args.param_list() + ") {\n" + grid_stride_loop(n, axes);
  }
  std::string add_kernel(const std::string &stem, const std::string &text) {
    auto it = kernel_names_.find(text);
    if (it != kernel_names_.end()) return it->second;
    std::string name = "ncd_k" + str(static_cast<int64_t>(kernel_names_.size())) + "_" + ident(stem);
    std::string code = text;
    for (size_t p; (p = code.find("@NAME@")) != std::string::npos;) code.replace(p, 6, name);
    kernel_names_[text] = name;
    kernel_order_.push_back(code);
    return name;
  }
  void launch(const std::string &kernel, int64_t blocks, int threads, const KernelArgs &args, const std::string &what) {
    line("// " + what);
    line(kernel + "<<<" + str(blocks) + ", " + str(threads) + ", 0, stream>>>(" + args.arg_list() + ");");
    line("NCD_LAUNCHED();");
  }
  static int64_t grid_for(int64_t work, int threads) {
    return std::max<int64_t>(1, std::min<int64_t>((work + threads - 1) / threads, int64_t{1} << 20));
  }
  void note(const ir::Op *op, const std::string &text) {
    std::string where = op && request_.sources && op->location.valid() ? request_.sources->describe(op->location) + ": " : "";
    std::string full = where + text;
    if (notes_seen_.insert(full).second && request_.notes) request_.notes->push_back(full);
    line("// fallback: " + text);
  }

  // ------------------------------------------------ device expressions
  std::string load(KernelArgs &args, const Ten &t, const std::function<std::string(int)> &index) {
    if (t.kind == Ten::Kind::Literal) return flit(t.literal);
    if (t.kind == Ten::Kind::Index) return "static_cast<float>(" + index(t.axes.at(0)) + ")";
    std::string name = args.in(t);
    return "ncd_f(" + name + "[" + offset(t, index) + "])";
  }
  std::string load_int(KernelArgs &args, const Ten &t, const std::function<std::string(int)> &index) {
    if (t.kind == Ten::Kind::Literal) return str(static_cast<int64_t>(t.literal));
    if (t.kind == Ten::Kind::Index) return "(" + index(t.axes.at(0)) + ")";
    if (ir::is_integer(t.dtype) || t.dtype == DType::Bool)
      return "static_cast<int64_t>(" + args.in(t) + "[" + offset(t, index) + "])";
    return "static_cast<int64_t>(" + load(args, t, index) + ")";
  }
  std::string offset(const Ten &t, const std::function<std::string(int)> &index) const {
    std::string s;
    for (size_t i = 0; i < t.axes.size(); ++i) {
      if (t.strides[i] == 0) continue;
      s += (s.empty() ? "" : " + ") + ("(" + index(t.axes[i]) + ")") + (t.strides[i] == 1 ? "" : " * " + str(t.strides[i]));
    }
    return s.empty() ? "0" : s;
  }
  // Declares x<axis> for each axis from the linear index `linear` (first axis outermost).
  std::string decompose(const std::vector<int> &axes, const std::string &linear, const std::string &pad) const {
    std::string s;
    int64_t after = 1;
    for (size_t i = axes.size(); i-- > 0;) {
      std::string e = linear;
      if (after != 1) e = "(" + e + " / " + str(after) + ")";
      if (i > 0) e += " % " + str(size(axes[i]));
      s = pad + "const int64_t " + x(axes[i]) + " = " + e + ";\n" + s;
      after *= size(axes[i]);
    }
    return s;
  }
  static std::string function_expr(const std::string &fn, const std::vector<std::string> &a, DType result) {
    auto need = [&](size_t n) {
      if (a.size() != n) throw GenError("elementwise '" + fn + "' takes " + str(static_cast<int64_t>(n)) + " operands");
    };
    static const std::map<std::string, std::string> unary = {
        {"exp", "expf"},     {"log", "logf"},        {"sqrt", "sqrtf"},        {"rsqrt", "ncd_rsqrt"}, {"tanh", "tanhf"},
        {"sigmoid", "ncd_sigmoid"}, {"sin", "sinf"}, {"cos", "cosf"},          {"erf", "erff"},        {"relu", "ncd_relu"},
        {"gelu", "ncd_gelu"}, {"silu", "ncd_silu"},  {"softplus", "ncd_softplus"}, {"abs", "fabsf"},   {"floor", "floorf"},
        {"ceil", "ceilf"},   {"log1p", "log1pf"},    {"expm1", "expm1f"}};
    if (auto it = unary.find(fn); it != unary.end()) {
      need(1);
      return it->second + "(" + a[0] + ")";
    }
    static const std::map<std::string, std::string> binary = {{"add", "+"}, {"sub", "-"}, {"mul", "*"}, {"div", "/"}};
    if (auto it = binary.find(fn); it != binary.end()) {
      need(2);
      return "(" + a[0] + " " + it->second + " " + a[1] + ")";
    }
    static const std::map<std::string, std::string> compare = {{"lt", "<"}, {"le", "<="}, {"gt", ">"},
                                                               {"ge", ">="}, {"eq", "=="}, {"ne", "!="}};
    if (auto it = compare.find(fn); it != compare.end()) {
      need(2);
      return "(" + a[0] + " " + it->second + " " + a[1] + " ? 1.f : 0.f)";
    }
    if (fn == "and") return need(2), "((" + a[0] + " != 0.f && " + a[1] + " != 0.f) ? 1.f : 0.f)";
    if (fn == "or") return need(2), "((" + a[0] + " != 0.f || " + a[1] + " != 0.f) ? 1.f : 0.f)";
    if (fn == "not") return need(1), "(" + a[0] + " == 0.f ? 1.f : 0.f)";
    if (fn == "neg") return need(1), "(-" + a[0] + ")";
    if (fn == "recip") return need(1), "(1.f / " + a[0] + ")";
    if (fn == "square") return need(1), "(" + a[0] + " * " + a[0] + ")";
    if (fn == "pow") return need(2), "powf(" + a[0] + ", " + a[1] + ")";
    if (fn == "minimum" || fn == "min") return need(2), "ncd_min(" + a[0] + ", " + a[1] + ")";
    if (fn == "maximum" || fn == "max") return need(2), "ncd_max(" + a[0] + ", " + a[1] + ")";
    if (fn == "where") return need(3), "(" + a[0] + " != 0.f ? " + a[1] + " : " + a[2] + ")";
    if (fn == "copy" || fn == "cast" || ir::parse_dtype(fn)) return need(1), a[0];
    (void)result;
    throw GenError("the cuda backend has no elementwise function '" + fn + "'");
  }

  // ------------------------------------------------ values
  Ten get(Frame &frame, int id);
  Ten param(Frame &frame, int id);
  std::string param_pointer(Frame &frame, const std::vector<PathPart> &parts, DType dtype);
  std::vector<int> result_axes(Frame &frame, const ir::Value &result, const std::vector<const Ten *> &operands,
                               const std::set<int> &drop);
  Ten output(Frame &frame, int value, DType dtype, const std::vector<int> &axes);

  // ------------------------------------------------ ops
  void region(Frame &frame, const ir::Region &region);
  void op(Frame &frame, const ir::Op &op);
  void call(Frame &frame, const ir::Op &op);
  void repeat(Frame &frame, const ir::Op &op);
  Ten elementwise(Frame &frame, const ir::Op &op);
  Ten contract(Frame &frame, const ir::Op &op);
  Ten reduce(Frame &frame, const ir::Op &op);
  Ten normalize(Frame &frame, const ir::Op &op);
  Ten access(Frame &frame, const ir::Op &op);
  Ten merge(Frame &frame, const ir::Op &op);
  void copy(const Ten &from, const Ten &to, const std::string &what);
  void split_copy(const Ten &from, const Ten &to, bool split, const std::string &what);
  bool gemm(Frame &frame, const ir::Op &op, const std::vector<Ten> &tensors, const std::vector<Ten> &scalars,
            const Ten &out, std::string &why, const GemmEpilogue *epilogue = nullptr);
  void generic_contract(Frame &frame, const ir::Op &op, const std::vector<Ten> &operands, const std::vector<int> &summed,
                        const Ten &out);

  // ------------------------------------------------ fused kernels
  bool scheduled(Frame &frame, const ir::Diagram &diagram, const ir::Op *site);
  bool match_attention(const ir::Diagram &diagram, AttentionMatch &m, std::string &why) const;
  bool match_fused(const ir::Diagram &diagram, FusedMatch &m, std::string &why) const;
  void fused(Frame &frame, const ir::Diagram &diagram, const FusedMatch &m, const ir::Op *site);
  struct ExprCtx;
  std::string fexpr(Frame &frame, KernelArgs &args, ExprCtx &c, int id);
  std::vector<int> fused_axes(Frame &frame, int id);
  void run_rest(Frame &frame, const ir::Diagram &diagram);
  void attention(Frame &frame, const ir::Diagram &diagram, const AttentionMatch &m, const ir::Op *site);

  const EmitRequest &request_;
  const ir::Program &program_;
  std::string arch_;
  std::vector<int64_t> axis_sizes_;
  std::vector<std::string> axis_names_;
  std::map<std::string, std::string> kernel_names_;
  std::vector<std::string> kernel_order_;
  std::set<std::string> notes_seen_;
  std::map<const ir::Diagram *, std::unique_ptr<ParamNaming>> naming_;
  std::string hosts_;
  // The diagram being generated.
  std::string body_;
  std::vector<std::string> preamble_;
  int indent_ = 2;
  int64_t workspace_ = 0;
  int loop_counter_ = 0;
  std::map<std::string, std::pair<std::string, DType>> param_args_;  // path -> (host argument, dtype)
  std::map<std::string, std::string> param_arrays_;                  // array key -> array name

  const ParamNaming &naming(const ir::Diagram &diagram) {
    auto &slot = naming_[&diagram];
    if (!slot) slot = std::make_unique<ParamNaming>(diagram);
    return *slot;
  }
};

// ---------------------------------------------------------------- values

std::string Generator::param_pointer(Frame &frame, const std::vector<PathPart> &parts, DType dtype) {
  (void)frame;
  std::vector<const PathPart *> loops;
  for (const PathPart &part : parts)
    if (!part.var.empty()) loops.push_back(&part);
  auto path_at = [&](const std::vector<int64_t> &iteration) {
    std::string path;
    size_t k = 0;
    for (const PathPart &part : parts) {
      if (part.var.empty())
        path += part.text;
      else
        path += part.naming->repeat_segment(part.repeat, iteration[k++]) + ".";
    }
    return path;
  };
  auto argument = [&](const std::string &path) {
    auto it = param_args_.find(path);
    if (it == param_args_.end()) throw GenError("internal: param '" + path + "' is not among the diagram's params");
    return it->second.first;
  };
  if (loops.empty()) return argument(path_at({}));
  std::string key;
  for (const PathPart &part : parts) key += part.var.empty() ? part.text : "{" + part.var + "}";
  auto it = param_arrays_.find(key);
  if (it == param_arrays_.end()) {
    std::string name = "ncd_pa" + str(static_cast<int64_t>(param_arrays_.size()));
    std::string list;
    std::vector<int64_t> iteration(loops.size(), 0);
    for (bool more = true; more;) {
      list += (list.empty() ? "" : ", ") + argument(path_at(iteration));
      more = false;
      for (size_t k = loops.size(); k-- > 0;) {
        if (++iteration[k] < loops[k]->count) {
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
    index = k == 0 ? loops[k]->var : "(" + index + ") * " + str(loops[k]->count) + " + " + loops[k]->var;
  return it->second + "[" + index + "]";
}

Ten Generator::param(Frame &frame, int id) {
  const ir::Value &value = frame.diagram->value(id);
  std::vector<PathPart> parts = frame.prefix;
  for (const ir::Op *r : frame.naming->param_repeats(id)) {
    PathPart part;
    part.naming = frame.naming;
    part.repeat = r;
    auto loop = frame.loops.at(r);
    part.var = loop.first;
    part.count = loop.second;
    parts.push_back(part);
  }
  PathPart last;
  last.text = value.name;
  parts.push_back(last);
  std::vector<int> axes;  // before the pointer: both number runtime axes as they first meet them
  for (int axis : value.axes) axes.push_back(rt_axis(frame, axis));
  std::string pointer = param_pointer(frame, parts, value.dtype);
  return dense(value.dtype, std::move(axes), std::move(pointer));
}

Ten Generator::get(Frame &frame, int id) {
  auto it = frame.values.find(id);
  if (it != frame.values.end()) return it->second;
  const ir::Value &value = frame.diagram->value(id);
  if (value.role == ir::Value::Role::Param) {
    Ten t = param(frame, id);
    if (frame.naming->param_repeats(id).empty()) frame.values[id] = t;
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
  for (const auto &o : region.ops) op(frame, *o);
}

void Generator::op(Frame &frame, const ir::Op &o) {
  const ir::Diagram &diagram = *frame.diagram;
  if (o.kind == OpKind::Call) return call(frame, o);
  if (o.kind == OpKind::Repeat) return repeat(frame, o);
  const ir::Value &result = diagram.value(o.results.at(0));
  Ten out;
  switch (o.kind) {
    case OpKind::Constant:
      out.kind = Ten::Kind::Literal;
      out.dtype = result.dtype;
      out.literal = convert_float(static_cast<float>(o.constant), result.dtype);
      break;
    case OpKind::SizeOf:
      out.kind = Ten::Kind::Literal;
      out.dtype = result.dtype;
      out.literal = convert_float(static_cast<float>(size(rt_axis(frame, o.axes.at(0)))), result.dtype);
      break;
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
    case OpKind::Access: out = access(frame, o); break;
    case OpKind::Merge: out = merge(frame, o); break;
    default: throw GenError("internal: unexpected op kind");
  }
  frame.values[o.results[0]] = out;
}

// Folds a function of literals at generation time (float32 arithmetic, as the
// reference computes it; rsqrt in float64), or returns nullopt.
std::optional<double> fold(const std::string &f, const std::vector<Ten> &operands) {
  std::vector<float> v;
  for (const Ten &t : operands) {
    if (t.kind != Ten::Kind::Literal) return std::nullopt;
    v.push_back(static_cast<float>(t.literal));
  }
  if (v.size() == 1) {
    if (f == "neg") return -v[0];
    if (f == "rsqrt") return 1.0 / std::sqrt(static_cast<double>(v[0]));
    if (f == "sqrt") return std::sqrt(v[0]);
    if (f == "recip") return 1.f / v[0];
    if (f == "square") return v[0] * v[0];
    if (f == "copy" || f == "cast") return v[0];
  } else if (v.size() == 2) {
    if (f == "add") return v[0] + v[1];
    if (f == "sub") return v[0] - v[1];
    if (f == "mul") return v[0] * v[1];
    if (f == "div") return v[0] / v[1];
  }
  return std::nullopt;
}

Ten Generator::elementwise(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::vector<Ten> operands;
  for (int id : o.operands) operands.push_back(get(frame, id));
  if (auto folded = fold(o.function, operands); folded && result.axes.empty()) {
    Ten t;
    t.kind = Ten::Kind::Literal;
    t.dtype = result.dtype;
    t.literal = convert_float(static_cast<float>(*folded), result.dtype);
    return t;
  }
  std::vector<const Ten *> ptrs;
  for (const Ten &t : operands) ptrs.push_back(&t);
  std::vector<int> axes = result_axes(frame, result, ptrs, {});
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<std::string> loads;
  for (const Ten &t : operands) loads.push_back(load(args, t, index));
  std::string expr = function_expr(o.function, loads, result.dtype);
  std::string r = args.out(out);
  int64_t n = numel(axes);
  std::string k = grid_stride_kernel(args, n, axes);
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + expr + ");\n  }\n}\n";
  std::string name = add_kernel(o.function + "_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(axes) + " = " + o.function);
  return out;
}

Ten Generator::reduce(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten in = get(frame, o.operands.at(0));
  std::vector<int> present;
  int64_t missing = 1;
  std::set<int> drop;
  for (int axis : o.axes) {
    int r = rt_axis(frame, axis);
    drop.insert(r);
    if (in.has(r))
      present.push_back(r);
    else
      missing *= size(r);
  }
  std::vector<int> axes = result_axes(frame, result, {&in}, drop);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, in, index);
  std::string r = args.out(out);
  int64_t rows = numel(axes), extent = numel(present);
  const std::string &fn = o.function;
  std::string k = "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(axes, "row", "    ");
  std::string loop = "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(present, "j", "      ");
  std::string value;
  if (fn == "sum" || fn == "mean") {
    k += "    float acc = 0.f;\n" + loop + "      acc += " + v + ";\n    }\n    acc = ncd_warp_sum(acc);\n";
    value = fn == "sum" ? (missing == 1 ? "acc" : "acc * " + flit(static_cast<double>(missing)))
                        : "acc / " + flit(static_cast<double>(extent));
  } else if (fn == "prod") {
    k += "    float acc = 1.f;\n" + loop + "      acc *= " + v + ";\n    }\n    acc = ncd_warp_prod(acc);\n";
    value = missing == 1 ? "acc" : "powf(acc, " + flit(static_cast<double>(missing)) + ")";
  } else if (fn == "max" || fn == "min") {
    k += "    float acc = " + std::string(fn == "max" ? "-INFINITY" : "INFINITY") + ";\n" + loop + "      acc = ncd_" + fn +
         "(acc, " + v + ");\n    }\n    acc = ncd_warp_" + fn + "(acc);\n";
    value = "acc";
  } else if (fn == "logsumexp") {
    k += "    float m = -INFINITY;\n" + loop + "      m = ncd_max(m, " + v + ");\n    }\n    m = ncd_warp_max(m);\n";
    k += "    const float mu = m == -INFINITY ? 0.f : m;\n";
    k += "    float acc = 0.f;\n" + loop + "      acc += expf(" + v + " - mu);\n    }\n    acc = ncd_warp_sum(acc);\n";
    value = "mu + logf(acc)" + (missing == 1 ? std::string() : " + " + flit(std::log(static_cast<double>(missing))));
  } else {
    throw GenError("the cuda backend has no reduction '" + fn + "'");
  }
  k += "    if (lane == 0) " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + value +
       ");\n  }\n}\n";
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(rows * 32, 256), 256, args, result.name + axis_list(axes) + " = " + fn + axis_list(present));
  return out;
}

Ten Generator::normalize(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten in = get(frame, o.operands.at(0));
  std::vector<int> along;
  for (int axis : o.axes) along.push_back(rt_axis(frame, axis));
  std::vector<int> axes = result_axes(frame, result, {&in}, {});
  for (int a : along)
    if (std::find(axes.begin(), axes.end(), a) == axes.end()) axes.push_back(a);
  std::vector<int> row_axes;
  for (int a : axes)
    if (std::find(along.begin(), along.end(), a) == along.end()) row_axes.push_back(a);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, in, index);
  std::string r = args.out(out);
  int64_t rows = numel(row_axes), extent = numel(along);
  const std::string &fn = o.function;
  double eps = o.options.count("eps") ? o.options.at("eps") : (fn == "rmsnorm" ? 1e-6 : 1e-5);
  std::string k = "__global__ void @NAME@(" + args.param_list() + ") {\n";
  k += "  const int lane = threadIdx.x % 32;\n";
  k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
       "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
  k += decompose(row_axes, "row", "    ");
  std::string loop = "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(along, "j", "      ");
  std::string store = "      " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(";
  std::string n = flit(static_cast<double>(extent));
  if (fn == "softmax" || fn == "logsoftmax") {
    k += "    float m = -INFINITY;\n" + loop + "      m = ncd_max(m, " + v + ");\n    }\n    m = ncd_warp_max(m);\n";
    k += "    float s = 0.f;\n" + loop + "      s += expf(" + v + " - m);\n    }\n    s = ncd_warp_sum(s);\n";
    k += loop + store + (fn == "softmax" ? "expf(" + v + " - m) / s" : v + " - m - logf(s)") + ");\n    }\n";
  } else if (fn == "layernorm") {
    k += "    float s = 0.f;\n" + loop + "      s += " + v + ";\n    }\n    const float mean = ncd_warp_sum(s) / " + n + ";\n";
    k += "    float q = 0.f;\n" + loop + "      const float c = " + v +
         " - mean;\n      q += c * c;\n    }\n    const float var = ncd_warp_sum(q) / " + n + ";\n";
    k += "    const float denom = sqrtf(var + " + flit(eps) + ");\n";
    k += loop + store + "(" + v + " - mean) / denom);\n    }\n";
  } else if (fn == "rmsnorm") {
    k += "    float q = 0.f;\n" + loop + "      const float c = " + v +
         ";\n      q += c * c;\n    }\n    const float denom = sqrtf(ncd_warp_sum(q) / " + n + " + " + flit(eps) + ");\n";
    k += loop + store + v + " / denom);\n    }\n";
  } else {
    throw GenError("the cuda backend has no normalisation '" + fn + "'");
  }
  k += "  }\n}\n";
  std::string name = add_kernel(fn + "_" + result.name, k);
  launch(name, grid_for(rows * 32, 256), 256, args, result.name + axis_list(axes) + " = " + fn + axis_list(along));
  return out;
}

Ten Generator::access(Frame &frame, const ir::Op &o) {
  const ir::Diagram &diagram = *frame.diagram;
  const ir::Value &result = diagram.value(o.results[0]);
  Ten source = get(frame, o.operands.at(0));
  const ir::Value &source_value = diagram.value(o.operands[0]);
  if (o.access.size() != source_value.axes.size()) throw GenError("internal: access with the wrong number of indices");
  std::vector<int> positions;
  std::vector<Ten> gathers(o.access.size());
  for (size_t i = 0; i < o.access.size(); ++i) {
    positions.push_back(rt_axis(frame, source_value.axes[i]));
    if (o.access[i].kind == ir::AccessIndex::Kind::Gather)
      gathers[i] = get(frame, o.operands.at(static_cast<size_t>(o.access[i].gather_operand)));
  }
  std::vector<int> axes;
  auto add = [&](int a) {
    if (std::find(axes.begin(), axes.end(), a) == axes.end()) axes.push_back(a);
  };
  for (int a : source.axes)
    if (std::find(positions.begin(), positions.end(), a) == positions.end()) add(a);
  for (size_t i = 0; i < o.access.size(); ++i)
    if (o.access[i].kind == ir::AccessIndex::Kind::Gather)
      for (int a : gathers[i].axes) add(a);
  for (int axis : result.axes) add(rt_axis(frame, axis));
  // Result axes last (innermost) in their declared order.
  std::vector<int> own;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  std::vector<int> ordered;
  for (int a : axes)
    if (std::find(own.begin(), own.end(), a) == own.end()) ordered.push_back(a);
  ordered.insert(ordered.end(), own.begin(), own.end());
  Ten out = output(frame, o.results[0], result.dtype, ordered);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string body, valid;
  for (size_t i = 0; i < o.access.size(); ++i) {
    const ir::AccessIndex &ix = o.access[i];
    std::string p = "p" + str(static_cast<int64_t>(i));
    std::string e;
    if (ix.kind == ir::AccessIndex::Kind::Affine) {
      for (auto [axis, coefficient] : ix.terms)
        e += (e.empty() ? "" : " + ") + (coefficient == 1 ? "" : str(coefficient) + " * ") + x(rt_axis(frame, axis));
      if (ix.offset != 0 || e.empty()) e += (e.empty() ? "" : " + ") + ("(" + str(ix.offset) + ")");
    } else if (ix.kind == ir::AccessIndex::Kind::Split) {
      int64_t weight = 1;
      for (size_t j = ix.split.size(); j-- > 0;) {
        int r = rt_axis(frame, ix.split[j]);
        e = x(r) + (weight == 1 ? "" : " * " + str(weight)) + (e.empty() ? "" : " + " + e);
        weight *= size(r);
      }
    } else {
      e = load_int(args, gathers[i], index);
    }
    body += "    const int64_t " + p + " = " + e + ";\n";
    valid += (valid.empty() ? "" : " && ") + ("(" + p + " >= 0 && " + p + " < " + str(size(positions[i])) + ")");
  }
  auto source_index = [&](int a) {
    for (size_t i = 0; i < positions.size(); ++i)
      if (positions[i] == a) return "p" + str(static_cast<int64_t>(i));
    return x(a);
  };
  std::string v = load(args, source, source_index);
  std::string r = args.out(out);
  int64_t n = numel(ordered);
  std::string k = grid_stride_kernel(args, n, ordered) + body;
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" +
       (valid.empty() ? v : "(" + valid + ") ? " + v + " : 0.f") + ");\n  }\n}\n";
  std::string name = add_kernel("access_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(ordered) + " = access");
  return out;
}

Ten Generator::merge(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  Ten source = get(frame, o.operands.at(0));
  std::map<int, std::string> source_index;  // merged source axis -> expression
  std::set<int> merged;
  std::vector<int> own;
  for (size_t j = 0; j < result.axes.size(); ++j) {
    int target = rt_axis(frame, result.axes[j]);
    own.push_back(target);
    if (j >= o.merges.size()) continue;
    std::vector<int> group;
    for (int axis : o.merges[j]) group.push_back(rt_axis(frame, axis));
    if (group.size() == 1 && group[0] == target) continue;
    int64_t after = 1;
    for (size_t i = group.size(); i-- > 0;) {
      std::string e = after == 1 ? x(target) : "(" + x(target) + " / " + str(after) + ")";
      if (i > 0) e += " % " + str(size(group[i]));
      source_index[group[i]] = "(" + e + ")";
      merged.insert(group[i]);
      after *= size(group[i]);
    }
  }
  std::vector<int> axes;
  for (int a : source.axes)
    if (!merged.count(a) && std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  axes.insert(axes.end(), own.begin(), own.end());
  Ten out = output(frame, o.results[0], result.dtype, axes);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  auto sindex = [&](int a) {
    auto it = source_index.find(a);
    return it == source_index.end() ? x(a) : it->second;
  };
  std::string v = load(args, source, sindex);
  std::string r = args.out(out);
  int64_t n = numel(axes);
  std::string k = grid_stride_kernel(args, n, axes);
  k += "    " + r + "[" + offset(out, index) + "] = ncd_to<" + element_type(out.dtype) + ">(" + v + ");\n  }\n}\n";
  std::string name = add_kernel("merge_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(axes) + " = merge");
  return out;
}

void Generator::copy(const Ten &from, const Ten &to, const std::string &what) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  for (int a : from.axes)
    if (from.kind == Ten::Kind::Buffer && from.stride(a) != 0 && !to.has(a))
      throw GenError("internal: copy of " + what + " drops axis '" + axis_names_[static_cast<size_t>(a)] + "'");
  std::string v = load(args, from, index);
  std::string r = args.out(to);
  int64_t n = numel(to.axes);
  std::string k = grid_stride_kernel(args, n, to.axes);
  k += "    " + r + "[" + offset(to, index) + "] = ncd_to<" + element_type(to.dtype) + ">(" + v + ");\n  }\n}\n";
  std::string name = add_kernel("copy", k);
  launch(name, grid_for(n, 256), 256, args, "copy " + what);
}

// Writes `from` into the bf16 pairs of `to` (strides spaced by two): with
// `split`, the pair is hi = bf16(v) and lo = bf16(v - hi), so hi + lo holds
// about 16 significant bits of v (all of a product of two bf16 values);
// without, the value twice.
void Generator::split_copy(const Ten &from, const Ten &to, bool split, const std::string &what) {
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::string v = load(args, from, index);
  std::string r = args.out(to);
  int64_t n = numel(to.axes);
  std::string k = grid_stride_kernel(args, n, to.axes);
  k += "    const float v = " + v + ";\n";
  k += "    const __nv_bfloat16 hi = __float2bfloat16_rn(v);\n";
  k += "    const int64_t o = " + offset(to, index) + ";\n";
  k += "    " + r + "[o] = hi;\n";
  k += "    " + r + "[o + 1] = " + (split ? "__float2bfloat16_rn(v - __bfloat162float(hi))" : std::string("hi")) +
       ";\n  }\n}\n";
  std::string name = add_kernel(split ? "split" : "twice", k);
  launch(name, grid_for(n, 256), 256, args, (split ? "split " : "twice ") + what);
}

// ---------------------------------------------------------------- contractions

Ten Generator::contract(Frame &frame, const ir::Op &o) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::vector<Ten> operands, tensors, scalars;
  for (int id : o.operands) {
    operands.push_back(get(frame, id));
    (operands.back().axes.empty() ? scalars : tensors).push_back(operands.back());
  }
  std::vector<int> summed;
  std::set<int> drop;
  for (int axis : o.axes) {
    summed.push_back(rt_axis(frame, axis));
    drop.insert(summed.back());
  }
  std::vector<const Ten *> ptrs;
  for (const Ten &t : operands) ptrs.push_back(&t);
  std::vector<int> axes = result_axes(frame, result, ptrs, drop);
  Ten out = output(frame, o.results[0], result.dtype, axes);
  std::string why;
  if (tensors.size() == 2 && !summed.empty()) {
    if (gemm(frame, o, tensors, scalars, out, why)) return out;
    note(&o, "generic kernel for contraction '" + result.name + "' in '" + frame.diagram->name + "' (" + why + ")");
  }
  generic_contract(frame, o, operands, summed, out);
  return out;
}

void Generator::generic_contract(Frame &frame, const ir::Op &o, const std::vector<Ten> &operands,
                                 const std::vector<int> &summed, const Ten &out) {
  const ir::Value &result = frame.diagram->value(o.results[0]);
  KernelArgs args;
  auto index = [](int a) { return x(a); };
  std::vector<int> loops;
  int64_t factor = 1;
  for (int a : summed) {
    bool used = false;
    for (const Ten &t : operands) used = used || t.has(a);
    if (used)
      loops.push_back(a);
    else
      factor *= size(a);
  }
  std::string product;
  for (const Ten &t : operands) product += (product.empty() ? "" : " * ") + load(args, t, index);
  if (product.empty()) product = "1.f";
  std::string r = args.out(out);
  int64_t n = numel(out.axes);
  std::string k = grid_stride_kernel(args, n, out.axes);
  // An integer result is summed in float64 (exact for i8 operands and values
  // below 2^24; docs/CUDA.md), then truncated and saturated once.
  const bool integer = ir::is_integer(out.dtype);
  k += integer ? "    double acc = 0.0;\n" : "    float acc = 0.f;\n";
  std::string pad = "    ";
  for (int a : loops) {
    k += pad + "for (int64_t " + x(a) + " = 0; " + x(a) + " < " + str(size(a)) + "; ++" + x(a) + ")\n";
    pad += "  ";
  }
  if (integer) {
    std::string factors;
    for (const Ten &t : operands) factors += (factors.empty() ? "" : " * ") + std::string("static_cast<double>(") + load(args, t, index) + ")";
    k += pad + "acc += " + (factors.empty() ? std::string("1.0") : factors) + ";\n";
  } else {
    k += pad + "acc += " + product + ";\n";
  }
  std::string value = factor == 1 ? "acc" : "acc * " + flit(static_cast<double>(factor));
  k += "    " + r + "[" + offset(out, index) + "] = " + (integer ? "ncd_to_int<" : "ncd_to<") + element_type(out.dtype) +
       ">(" + value + ");\n  }\n}\n";
  std::string name = add_kernel("contract_" + result.name, k);
  launch(name, grid_for(n, 256), 256, args, result.name + axis_list(out.axes) + " = contract" + axis_list(summed));
}

// The axes of `group` as one dimension of `t`: they must be adjacent in
// memory, first outermost. Returns the stride of the merged dimension (0 when
// the group is empty or `t` lacks every axis of it), or -1 when not mergeable.
int64_t merged_stride(const Ten &t, const std::vector<int> &group, const std::vector<int64_t> &sizes) {
  if (group.empty()) return 0;
  for (size_t i = 0; i + 1 < group.size(); ++i)
    if (t.stride(group[i]) != t.stride(group[i + 1]) * sizes[i + 1]) return -1;
  return t.stride(group.back());
}

bool Generator::gemm(Frame &frame, const ir::Op &o, const std::vector<Ten> &tensors, const std::vector<Ten> &scalars,
                     const Ten &final_out, std::string &why, const GemmEpilogue *epilogue) {
  Ten a = tensors[0], b = tensors[1], out = final_out;
  // An f32 operand beside a bf16 one (a pairwise step of a longer product
  // keeps its partial products in f32) is split into bf16 hi + lo terms and
  // multiplied over twice the summed length, against the other operand
  // twice: the products are those of the f32 value to about 16 bits (exact
  // for a product of two bf16 values), still on tensor cores.
  const bool split = (a.dtype == DType::F32 && b.dtype == DType::BF16) || (a.dtype == DType::BF16 && b.dtype == DType::F32);
  if (!split && (!is_16bit_float(a.dtype) || a.dtype != b.dtype)) {
    why = std::string("operands are ") + std::string(ir::dtype_name(a.dtype)) + " and " +
          std::string(ir::dtype_name(b.dtype)) + "; tensor cores take two bf16, two f16, or f32 with bf16";
    return false;
  }
  if (a.kind != Ten::Kind::Buffer || b.kind != Ten::Kind::Buffer) {
    why = "an operand is not stored";
    return false;
  }
  std::vector<int> summed;
  for (int axis : o.axes) summed.push_back(rt_axis(frame, axis));
  std::vector<int> m_axes, n_axes, k_axes, batch;
  for (int ax : a.axes) {
    bool in_b = b.has(ax), summed_ax = std::find(summed.begin(), summed.end(), ax) != summed.end();
    if (summed_ax && in_b)
      k_axes.push_back(ax);
    else if (summed_ax) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed in one operand only";
      return false;
    } else if (in_b)
      batch.push_back(ax);
    else
      m_axes.push_back(ax);
  }
  for (int ax : b.axes) {
    if (a.has(ax)) continue;
    if (std::find(summed.begin(), summed.end(), ax) != summed.end()) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed in one operand only";
      return false;
    }
    n_axes.push_back(ax);
  }
  for (int ax : out.axes)
    if (!a.has(ax) && !b.has(ax)) {
      why = "the result is broadcast along '" + axis_names_[static_cast<size_t>(ax)] + "'";
      return false;
    }
  for (int ax : summed)
    if (!a.has(ax)) {
      why = "axis '" + axis_names_[static_cast<size_t>(ax)] + "' is summed but no operand has it";
      return false;
    }
  // Order each group by A's (M, K) or B's (N) layout, outermost first, so that contiguous groups merge.
  auto by_stride = [](const Ten &t, std::vector<int> &group) {
    std::stable_sort(group.begin(), group.end(), [&](int p, int q) { return t.stride(p) > t.stride(q); });
  };
  by_stride(a, m_axes);
  by_stride(a, k_axes);
  by_stride(b, n_axes);
  auto sizes_of = [&](const std::vector<int> &group) {
    std::vector<int64_t> s;
    for (int ax : group) s.push_back(size(ax));
    return s;
  };
  if (numel(batch) > 65535 || (numel(m_axes) + 63) / 64 > 65535) {
    why = "the grid would be too large";
    return false;
  }
  int64_t sAm = merged_stride(a, m_axes, sizes_of(m_axes)), sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  int64_t sBk = merged_stride(b, k_axes, sizes_of(k_axes)), sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  int64_t sCm = merged_stride(out, m_axes, sizes_of(m_axes)), sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  // Operands whose M, N or K axes are not adjacent in memory are packed first
  // (one copy), and such a result is written to a packed tile and copied out.
  auto concat = [](std::vector<int> x1, const std::vector<int> &x2, const std::vector<int> &x3) {
    x1.insert(x1.end(), x2.begin(), x2.end());
    x1.insert(x1.end(), x3.begin(), x3.end());
    return x1;
  };
  const ir::Value &result_value = frame.diagram->value(o.results[0]);
  if (sAm < 0 || sAk < 0) {
    Ten packed = alloc(a.dtype, concat(batch, m_axes, k_axes));
    copy(a, packed, "operand of " + result_value.name + ", packed for tensor cores");
    a = packed;
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));
    sAk = merged_stride(a, k_axes, sizes_of(k_axes));
  }
  if (sBk < 0 || sBn < 0) {
    Ten packed = alloc(b.dtype, concat(batch, n_axes, k_axes));
    copy(b, packed, "operand of " + result_value.name + ", packed for tensor cores");
    b = packed;
    sBk = merged_stride(b, k_axes, sizes_of(k_axes));
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
  }
  if (split) {
    // Pairs interleaved along K: A'[.., m, 2k + s], B'[.., n, 2k + s].
    auto spaced = [&](const Ten &from, const std::vector<int> &rows, bool f32, const char *what) {
      Ten t = alloc(DType::BF16, concat(batch, rows, k_axes), 2);
      for (int64_t &stride : t.strides) stride *= 2;
      split_copy(from, t, f32, std::string(what) + " of " + result_value.name + " for tensor cores");
      return t;
    };
    a = spaced(a, m_axes, a.dtype == DType::F32, a.dtype == DType::F32 ? "f32 operand" : "operand");
    b = spaced(b, n_axes, b.dtype == DType::F32, b.dtype == DType::F32 ? "f32 operand" : "operand");
    sAm = merged_stride(a, m_axes, sizes_of(m_axes));  // 2K: one row of pairs
    sBn = merged_stride(b, n_axes, sizes_of(n_axes));
    sAk = sBk = 1;
  }
  bool unpack = !epilogue && (sCm < 0 || sCn < 0);
  if (unpack) {
    out = alloc(out.dtype, concat(batch, m_axes, n_axes));
    sCm = merged_stride(out, m_axes, sizes_of(m_axes));
    sCn = merged_stride(out, n_axes, sizes_of(n_axes));
  }
  int64_t M = numel(m_axes), N = numel(n_axes), K = numel(k_axes) * (split ? 2 : 1), batches = numel(batch);
  // Block tiles: 128 x 128, or for a fused kernel the schedule's group tiles
  // of the innermost M and N axes, each the nearest of the supported 64 and 128.
  int64_t BM = 128, BN = 128;
  std::string tiles;
  if (epilogue) {
    // The rows of the schedule's tile along a merged dimension: the innermost
    // axis's group, times the next one's while the inner group is the whole axis.
    auto pick = [&](const std::vector<int> &group, int64_t extent, int64_t &tile, const char *what) {
      int64_t asked = 1;
      std::string said;
      for (size_t i = group.size(); i-- > 0;) {
        auto it = epilogue->groups.find(group[i]);
        if (it == epilogue->groups.end()) break;
        asked *= it->second;
        said = "group " + axis_names_[static_cast<size_t>(group[i])] + " by " + str(it->second) +
               (said.empty() ? "" : " x " + said);
        if (it->second < size(group[i])) break;
      }
      if (extent <= 64) {
        tile = 64;
        said = "the dimension has " + str(extent) + (said.empty() ? "" : "; " + said);
      } else if (said.empty()) {
        tile = 128;
        said = "not grouped";
      } else {
        tile = asked <= 90 ? 64 : 128;
        if (said.find(" x ") != std::string::npos) said += " = " + str(asked);
        if (asked != tile) said += ": the nearest supported tile";
      }
      tiles += std::string(tiles.empty() ? "" : ", ") + what + " " + str(tile) + " (" + said + ")";
    };
    pick(m_axes, numel(m_axes), BM, "BM");
    pick(n_axes, numel(n_axes), BN, "BN");
  }
  // How each operand is staged: cp.async along its contiguous dimension when rows are 16-byte aligned.
  auto aligned = [&](const Ten &t, int64_t other_stride, int64_t extent) {
    if (other_stride % 8 != 0 || extent % 8 != 0) return false;
    for (int ax : batch)
      if (t.stride(ax) % 8 != 0) return false;
    return true;
  };
  int la = 0, lb = 0;
  if (sAk == 1 && aligned(a, sAm, K))
    la = 1;
  else if (sAm == 1 && aligned(a, sAk, M))
    la = 2;
  if (sBk == 1 && aligned(b, sBn, K))
    lb = 1;
  else if (sBn == 1 && aligned(b, sBk, N))
    lb = 2;

  KernelArgs args;
  std::string pa = args.in(a), pb = args.in(b);
  std::string scale;
  for (const Ten &s : scalars) scale += " * " + load(args, s, [](int) { return std::string("0"); });
  std::string r = epilogue ? std::string() : args.out(out);
  bool f16 = a.dtype == DType::F16;
  auto index = [](int ax) { return x(ax); };
  std::string k = "// GEMM " + axis_list(m_axes) + " x " + axis_list(n_axes) + ", summed " + axis_list(k_axes) +
                  (batch.empty() ? "" : ", batched over " + axis_list(batch)) + "; A staged " +
                  (la == 1 ? "by cp.async along K" : la == 2 ? "by cp.async along M" : "by element loads") +
                  ", B staged " + (lb == 1 ? "by cp.async along K" : lb == 2 ? "by cp.async along N" : "by element loads") +
                  (split ? "; the f32 operand split into bf16 hi + lo pairs along K" : "") + "\n";
  if (epilogue) k += "// tiles: " + tiles + "\n";
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax)) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  // The per-element code; an epilogue's reads and writes join args after A, B and the scalars.
  std::string store;
  const std::string pad = "        ";
  if (epilogue) {
    store = decompose(m_axes, "m", pad) + decompose(n_axes, "n", pad);
    store += epilogue->body(args, "acc[i][j][c] * scale", pad);
  } else {
    store = pad + r + "[m * " + str(sCm) + " + n * " + str(sCn) + batch_offset(out) + "] = ncd_to<" +
            element_type(out.dtype) + ">(acc[i][j][c] * scale);\n";
  }
  const bool default_tiles = BM == 128 && BN == 128;
  k += "__global__ void __launch_bounds__(256) @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.z;\n" + decompose(batch, "b", "  ");
  k += "  const uint16_t *A = reinterpret_cast<const uint16_t *>(" + pa + batch_offset(a) + ");\n";
  k += "  const uint16_t *B = reinterpret_cast<const uint16_t *>(" + pb + batch_offset(b) + ");\n";
  k += "  const int64_t m0 = static_cast<int64_t>(blockIdx.y) * " + str(BM) + ", n0 = static_cast<int64_t>(blockIdx.x) * " +
       str(BN) + ";\n";
  k += "  float acc[" + str(BM / 32) + "][" + str(BN / 32) + "][4];\n";
  k += "  ncd_gemm_tile<" + std::string(f16 ? "true" : "false") + ", " + str(M) + ", " + str(N) + ", " + str(K) + ", " +
       str(sAm) + ", " + str(sAk) + ", " + str(sBk) + ", " + str(sBn) + ", " + str(la) + ", " + str(lb) +
       (default_tiles ? std::string() : ", " + str(BM) + ", " + str(BN)) + ">(A, B, m0, n0, acc);\n";
  k += "  const float scale = 1.f" + scale + ";\n";
  k += "  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;\n";
  k += "  for (int i = 0; i < " + str(BM / 32) + "; ++i)\n    for (int j = 0; j < " + str(BN / 32) +
       "; ++j)\n      for (int c = 0; c < 4; ++c) {\n";
  k += "        const int64_t m = m0 + (warp / 4) * " + str(BM / 2) + " + i * 16 + lane / 4 + (c >= 2 ? 8 : 0);\n";
  k += "        const int64_t n = n0 + (warp % 4) * " + str(BN / 4) + " + j * 8 + (lane % 4) * 2 + (c & 1);\n";
  k += "        if (m >= " + str(M) + " || n >= " + str(N) + ") continue;\n";
  k += store;
  k += "      }\n}\n";
  (void)index;
  const ir::Value &result = frame.diagram->value(o.results[0]);
  std::string name = add_kernel((epilogue ? "gemm_fused_" : "gemm_") + result.name, k);
  line("// " + result.name + axis_list(out.axes) + " = contract" + axis_list(summed) + " on tensor cores" +
       (epilogue ? " with its fused epilogue" : ""));
  line(name + "<<<dim3(" + str((N + BN - 1) / BN) + ", " + str((M + BM - 1) / BM) + ", " + str(batches) +
       "), 256, 0, stream>>>(" + args.arg_list() + ");");
  line("NCD_LAUNCHED();");
  if (unpack) copy(out, final_out, result.name + " from its packed tile");
  return true;
}

// ---------------------------------------------------------------- calls and repeats

void Generator::call(Frame &frame, const ir::Op &o) {
  const ir::Diagram &callee = *program_.diagrams.at(static_cast<size_t>(o.callee));
  Frame inner;
  inner.diagram = &callee;
  inner.sizes = std::make_unique<AxisSizes>(program_, o, *frame.sizes);
  inner.naming = &naming(callee);
  inner.prefix = frame.prefix;
  for (const ir::Op *r : frame.naming->enclosing_repeats(&o)) {
    PathPart part;
    part.naming = frame.naming;
    part.repeat = r;
    auto loop = frame.loops.at(r);
    part.var = loop.first;
    part.count = loop.second;
    inner.prefix.push_back(part);
  }
  PathPart label;
  label.text = frame.naming->call_label(&o) + ".";
  inner.prefix.push_back(label);
  std::map<int, int> binding(o.bindings.begin(), o.bindings.end());
  auto caller_axis = [&](int callee_axis) {
    auto it = binding.find(callee_axis);
    if (it == binding.end())
      throw GenError("internal: axis '" + program_.axis(callee_axis).name + "' of '" + callee.name + "' is not bound");
    return rt_axis(frame, it->second);
  };
  for (size_t k = 0; k < callee.inputs.size(); ++k) {
    Ten t = get(frame, o.operands.at(k));
    const ir::Value &input = callee.value(callee.inputs[k]);
    std::vector<int> renamed = t.axes;
    for (int axis : input.axes) {
      int from = caller_axis(axis);
      int to = rt_axis(inner, axis);
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
    const ir::Value &out = callee.value(callee.outputs[k]);
    if (t.dtype != out.dtype) continue;
    std::set<int> seen;
    bool ok = true;
    for (int axis : out.axes) {
      int from = caller_axis(axis);
      ok = ok && seen.insert(from).second;
      int d = t.find(from);
      if (d >= 0) t.axes[static_cast<size_t>(d)] = rt_axis(inner, axis);
    }
    if (ok) (hard ? inner.dest : inner.hint)[callee.outputs[k]] = t;
  }
  line("// call " + callee.name);
  bool fused = !callee.schedules.empty() && scheduled(inner, callee, &o);
  if (!fused) region(inner, callee.body);
  for (size_t k = 0; k < callee.outputs.size(); ++k) {
    Ten t = get(inner, callee.outputs[k]);
    const ir::Value &output = callee.value(callee.outputs[k]);
    for (int axis : output.axes) {
      int from = rt_axis(inner, axis);
      int to = caller_axis(axis);
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
    if (!frame.naming->param_repeats(id).empty()) frame.values.erase(id);
  --indent_;
  line("}");
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
  AttentionMatch m;
  std::string why;
  if (match_attention(diagram, m, why)) {
    attention(frame, diagram, m, site);
    return true;
  }
  FusedMatch f;
  std::string fused_why;
  if (match_fused(diagram, f, fused_why)) {
    fused(frame, diagram, f, site);
    return true;
  }
  // The reason of the matcher that got further: attention when the diagram streams an axis.
  bool streams = false;
  for (const ir::ScheduleDirective &dir : diagram.schedules.front().directives)
    streams = streams || dir.kind == ir::ScheduleDirective::Kind::Stream;
  bool has_softmax = false;
  for (const auto &op : diagram.body.ops) has_softmax = has_softmax || (op->kind == OpKind::Normalize && op->function == "softmax");
  if (!(streams && has_softmax)) why = fused_why;
  const ir::Op *where = site ? site : (diagram.body.ops.empty() ? nullptr : diagram.body.ops.front().get());
  note(where, "'" + diagram.name + "' has a schedule but is not a fused kernel the cuda backend knows (" + why +
                  "); its operations run as separate kernels");
  return false;
}

namespace {

// A scalar computed from literals alone (constants, sizes, arithmetic), if it is one.
std::optional<double> scalar_value(const ir::Diagram &d, int id, const std::function<int64_t(int)> &axis_size) {
  const ir::Op *op = const_cast<ir::Diagram &>(d).producer(id);
  if (!op) return std::nullopt;
  if (op->kind == OpKind::Constant) return op->constant;
  if (op->kind == OpKind::SizeOf) return static_cast<double>(axis_size(op->axes.at(0)));
  if (op->kind != OpKind::Elementwise) return std::nullopt;
  std::vector<double> v;
  for (int operand : op->operands) {
    auto s = scalar_value(d, operand, axis_size);
    if (!s) return std::nullopt;
    v.push_back(*s);
  }
  const std::string &f = op->function;
  if (v.size() == 1) {
    if (f == "neg") return -v[0];
    if (f == "rsqrt") return 1 / std::sqrt(v[0]);
    if (f == "sqrt") return std::sqrt(v[0]);
    if (f == "recip") return 1 / v[0];
    if (f == "copy" || f == "cast") return v[0];
  } else if (v.size() == 2) {
    if (f == "add") return v[0] + v[1];
    if (f == "sub") return v[0] - v[1];
    if (f == "mul") return v[0] * v[1];
    if (f == "div") return v[0] / v[1];
  }
  return std::nullopt;
}

int uses(const ir::Diagram &d, int value) {
  int n = 0;
  ir::for_each_op(d.body, [&](const ir::Op &op) {
    for (int operand : op.operands) n += operand == value;
  });
  for (int out : d.outputs) n += out == value;
  return n;
}

}  // namespace

bool Generator::match_attention(const ir::Diagram &d, AttentionMatch &m, std::string &why) const {
  auto &dd = const_cast<ir::Diagram &>(d);
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat) {
      why = "it calls or repeats";
      return false;
    }
  int group = -1, stream = -1;
  for (const ir::ScheduleDirective &dir : d.schedules.front().directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Group) {
      if (group >= 0) {
        why = "it groups more than one axis";
        return false;
      }
      group = dir.axis;
      m.bq = dir.amount;
    } else if (dir.kind == ir::ScheduleDirective::Kind::Stream) {
      if (stream >= 0) {
        why = "it streams more than one axis";
        return false;
      }
      stream = dir.axis;
      m.bk = dir.amount;
    }
  }
  if (group < 0 || stream < 0) {
    why = "attention needs `group` of the queries and `stream` of the keys";
    return false;
  }
  if (d.outputs.size() != 1) {
    why = "it has " + str(static_cast<int64_t>(d.outputs.size())) + " outputs";
    return false;
  }
  m.q_axis = group;
  m.k_axis = stream;
  m.output = d.outputs[0];
  auto is_input = [&](int v) { return std::find(d.inputs.begin(), d.inputs.end(), v) == d.inputs.end() ? false : true; };
  auto has = [&](int v, int axis) {
    const auto &axes = d.value(v).axes;
    return std::find(axes.begin(), axes.end(), axis) != axes.end();
  };
  std::set<const ir::Op *> matched;
  // The scores: contract(Q, K, scalars...) over one axis d, optionally masked.
  auto scores = [&](int s_value, std::string &reason) -> bool {
    const ir::Op *op = dd.producer(s_value);
    if (op && op->kind == OpKind::Elementwise && op->function == "where") {
      auto other = scalar_value(d, op->operands.at(2), [&](int) -> int64_t { return 0; });
      if (!other || !std::isinf(*other) || *other > 0) {
        reason = "the mask's other value is not -inf";
        return false;
      }
      m.mask = op->operands[0];
      matched.insert(op);
      s_value = op->operands[1];
      op = dd.producer(s_value);
    }
    if (!op || op->kind != OpKind::Contract || op->axes.size() != 1) {
      reason = "the scores are not a contraction over one axis";
      return false;
    }
    matched.insert(op);
    m.d_axis = op->axes[0];
    for (int operand : op->operands) {
      if (d.value(operand).axes.empty()) {
        m.scale_values.push_back(operand);
      } else if (has(operand, m.q_axis) && is_input(operand) && m.q_input < 0) {
        m.q_input = operand;
      } else if (has(operand, m.k_axis) && is_input(operand) && m.k_input < 0) {
        m.k_input = operand;
      } else {
        reason = "the scores are not Q * K of two inputs";
        return false;
      }
    }
    if (m.q_input < 0 || m.k_input < 0) {
      reason = "the scores are not Q * K of two inputs";
      return false;
    }
    return true;
  };
  const ir::Op *out_op = dd.producer(m.output);
  if (!out_op) {
    why = "its output is an input";
    return false;
  }
  int p_value = -1;
  const ir::Op *pv = nullptr;
  const ir::Op *denominator = nullptr;
  if (out_op->kind == OpKind::Contract) {
    pv = out_op;  // form (a): O = softmax[k](S) * V
  } else if (out_op->kind == OpKind::Elementwise && out_op->function == "div") {
    pv = dd.producer(out_op->operands.at(0));  // form (b): O = A / L
    denominator = dd.producer(out_op->operands.at(1));
    matched.insert(out_op);
  }
  if (!pv || pv->kind != OpKind::Contract || pv->axes.size() != 1 || pv->axes[0] != m.k_axis) {
    why = "its output is not a contraction over the streamed axis";
    return false;
  }
  matched.insert(pv);
  for (int operand : pv->operands) {
    if (d.value(operand).axes.empty())
      m.out_scale_values.push_back(operand);
    else if (is_input(operand) && m.v_input < 0 && has(operand, m.k_axis))
      m.v_input = operand;
    else if (p_value < 0)
      p_value = operand;
    else {
      why = "the output contraction is not P * V";
      return false;
    }
  }
  if (m.v_input < 0 || p_value < 0) {
    why = "the output contraction is not P * V";
    return false;
  }
  const ir::Op *p_op = dd.producer(p_value);
  if (!denominator) {
    if (!p_op || p_op->kind != OpKind::Normalize || p_op->function != "softmax" || p_op->axes != std::vector<int>{m.k_axis}) {
      why = "P is not softmax over the streamed axis";
      return false;
    }
    matched.insert(p_op);
    if (!scores(p_op->operands.at(0), why)) return false;
  } else {
    // E = exp(S - M), M = max[k](S), L = sum[k](E)
    if (!p_op || p_op->kind != OpKind::Elementwise || p_op->function != "exp") {
      why = "the numerator is not exp(S - M)";
      return false;
    }
    const ir::Op *sub = dd.producer(p_op->operands.at(0));
    if (!sub || sub->kind != OpKind::Elementwise || sub->function != "sub") {
      why = "the numerator is not exp(S - M)";
      return false;
    }
    const ir::Op *mx = dd.producer(sub->operands.at(1));
    if (!mx || mx->kind != OpKind::Reduce || mx->function != "max" || mx->axes != std::vector<int>{m.k_axis} ||
        mx->operands.at(0) != sub->operands.at(0)) {
      why = "M is not max over the streamed axis of the scores";
      return false;
    }
    if (!denominator || denominator->kind != OpKind::Reduce || denominator->function != "sum" ||
        denominator->axes != std::vector<int>{m.k_axis} || denominator->operands.at(0) != p_value) {
      why = "L is not sum over the streamed axis of the numerator";
      return false;
    }
    matched.insert(p_op);
    matched.insert(sub);
    matched.insert(mx);
    matched.insert(denominator);
    if (!scores(sub->operands.at(0), why)) return false;
  }
  // The V axis e: V's axis that is neither k nor on Q.
  for (int axis : d.value(m.v_input).axes)
    if (axis != m.k_axis && !has(m.q_input, axis) && has(m.output, axis)) m.e_axis = axis;
  if (m.e_axis < 0 && has(m.output, m.d_axis) && has(m.v_input, m.d_axis)) m.e_axis = m.d_axis;
  if (m.e_axis < 0) {
    why = "V has no value axis";
    return false;
  }
  // Everything else must be scalar or mask arithmetic that only feeds the pattern.
  for (const auto &op : d.body.ops) {
    if (matched.count(op.get())) continue;
    bool scalar_or_mask = op->kind == OpKind::Constant || op->kind == OpKind::SizeOf || op->kind == OpKind::AxisIndex ||
                          op->kind == OpKind::Elementwise;
    for (int r : op->results)
      scalar_or_mask = scalar_or_mask && std::find(d.outputs.begin(), d.outputs.end(), r) == d.outputs.end();
    if (!scalar_or_mask) {
      why = "it computes more than attention ('" + d.value(op->results.at(0)).name + "')";
      return false;
    }
  }
  // Intermediates of the pattern must not be read outside it.
  for (const ir::Op *op : matched)
    for (int r : op->results) {
      if (r == m.output) continue;
      int inside = 0;
      for (const ir::Op *user : matched)
        for (int operand : user->operands) inside += operand == r;
      if (uses(d, r) != inside) {
        why = "the intermediate '" + d.value(r).name + "' is used elsewhere";
        return false;
      }
    }
  DType t = d.value(m.q_input).dtype;
  if (!is_16bit_float(t) || d.value(m.k_input).dtype != t || d.value(m.v_input).dtype != t) {
    why = "Q, K and V must all be bf16 or all f16 for tensor cores";
    return false;
  }
  return true;
}

// An affine form cq*q + ck*k + c of the query and key positions.
struct Affine {
  double q = 0, k = 0, c = 0;
};

void Generator::attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const ir::Op *site) {
  auto &dd = const_cast<ir::Diagram &>(d);
  int rq = rt_axis(frame, m.q_axis), rk = rt_axis(frame, m.k_axis), rd = rt_axis(frame, m.d_axis),
      re = rt_axis(frame, m.e_axis);
  Ten Q = get(frame, m.q_input), K = get(frame, m.k_input), V = get(frame, m.v_input);
  // Scalar factors (rsqrt(#d), ...) are computed first: folded, or tiny kernels.
  for (const auto &op : d.body.ops)
    if (op->kind != OpKind::Call && op->kind != OpKind::Repeat && d.value(op->results.at(0)).axes.empty())
      this->op(frame, *op);
  const ir::Value &result = d.value(m.output);
  std::vector<int> batch;
  for (const Ten *t : {&Q, &K, &V})
    for (int a : t->axes)
      if (a != rq && a != rk && a != rd && a != re && std::find(batch.begin(), batch.end(), a) == batch.end())
        batch.push_back(a);
  std::vector<int> own, axes;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  for (int a : batch)
    if (std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  axes.insert(axes.end(), own.begin(), own.end());
  Ten O = output(frame, m.output, result.dtype, axes);
  int64_t NQ = size(rq), NK = size(rk), D = size(rd), E = size(re), batches = numel(batch);
  std::vector<std::string> notes;
  bool stored = Q.kind == Ten::Kind::Buffer && K.kind == Ten::Kind::Buffer && V.kind == Ten::Kind::Buffer;
  bool ok = D % 16 == 0 && E % 16 == 0 && D <= 256 && E <= 256 && batches <= 65535 && stored;
  if (!ok) {
    note(site, "'" + d.name + "': " +
                   (stored ? "head widths " + str(D) + " and " + str(E) + " must be multiples of 16 up to 256"
                           : std::string("Q, K and V must be stored tensors")) +
                   " for the attention kernel; its operations run as separate kernels");
    region(frame, d.body);
    return;
  }
  // Tiles: the schedule's, rounded to what the kernel supports and fitted to shared memory.
  int64_t bq = std::clamp<int64_t>(m.bq / 16 * 16, 16, 128), bk = std::clamp<int64_t>(m.bk / 16 * 16, 16, 128);
  const int64_t smem_limit = arch_ == "sm_90" ? 227 * 1024 : 163 * 1024;
  auto smem = [&](int64_t q, int64_t k) { return (q * (D + 8) + 2 * k * (D + 8) + 2 * k * (E + 8)) * 2; };
  while (smem(bq, bk) > smem_limit && bk > 16) bk /= 2;
  while (smem(bq, bk) > smem_limit && bq > 16) bq /= 2;
  std::string tiles = "group " + axis_names_[static_cast<size_t>(rq)] + " by " + str(bq) + ", stream " +
                      axis_names_[static_cast<size_t>(rk)] + " by " + str(bk);
  if (bq != m.bq || bk != m.bk)
    tiles += " (the schedule says " + str(m.bq) + " and " + str(m.bk) + "; rounded to multiples of 16 that fit)";
  // The mask: a float expression of the positions q and k, and its linear conjuncts for skipping tiles.
  std::string keep = "true";
  std::vector<std::pair<Affine, std::string>> conjuncts;  // f(q, k) REL 0
  bool pure = true;                                       // the mask is exactly the conjunction
  std::function<std::optional<std::string>(int)> expr = [&](int v) -> std::optional<std::string> {
    const ir::Op *op = dd.producer(v);
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return flit(op->constant);
    if (op->kind == OpKind::SizeOf) return flit(static_cast<double>(size(rt_axis(frame, op->axes.at(0)))));
    if (op->kind == OpKind::AxisIndex) {
      if (op->axes.at(0) == m.q_axis) return std::string("static_cast<float>(q)");
      if (op->axes.at(0) == m.k_axis) return std::string("static_cast<float>(k)");
      return std::nullopt;
    }
    if (op->kind != OpKind::Elementwise) return std::nullopt;
    std::vector<std::string> args;
    for (int operand : op->operands) {
      auto e = expr(operand);
      if (!e) return std::nullopt;
      args.push_back(*e);
    }
    try {
      return function_expr(op->function, args, d.value(v).dtype);
    } catch (const GenError &) {
      return std::nullopt;
    }
  };
  std::function<std::optional<Affine>(int)> affine = [&](int v) -> std::optional<Affine> {
    const ir::Op *op = dd.producer(v);
    if (!op) return std::nullopt;
    if (op->kind == OpKind::Constant) return Affine{0, 0, op->constant};
    if (op->kind == OpKind::SizeOf) return Affine{0, 0, static_cast<double>(size(rt_axis(frame, op->axes.at(0))))};
    if (op->kind == OpKind::AxisIndex) {
      if (op->axes.at(0) == m.q_axis) return Affine{1, 0, 0};
      if (op->axes.at(0) == m.k_axis) return Affine{0, 1, 0};
      return std::nullopt;
    }
    if (op->kind != OpKind::Elementwise) return std::nullopt;
    const std::string &f = op->function;
    if (f == "copy" || f == "cast") return affine(op->operands.at(0));
    if (f == "neg") {
      auto a = affine(op->operands.at(0));
      if (!a) return std::nullopt;
      return Affine{-a->q, -a->k, -a->c};
    }
    if (f == "add" || f == "sub") {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (!a || !b) return std::nullopt;
      double s = f == "add" ? 1 : -1;
      return Affine{a->q + s * b->q, a->k + s * b->k, a->c + s * b->c};
    }
    if (f == "mul") {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (!a || !b) return std::nullopt;
      if (a->q == 0 && a->k == 0) return Affine{a->c * b->q, a->c * b->k, a->c * b->c};
      if (b->q == 0 && b->k == 0) return Affine{b->c * a->q, b->c * a->k, b->c * a->c};
    }
    return std::nullopt;
  };
  std::function<void(int)> split = [&](int v) {
    const ir::Op *op = dd.producer(v);
    if (op && op->kind == OpKind::Elementwise && op->function == "and") {
      split(op->operands.at(0));
      split(op->operands.at(1));
      return;
    }
    static const std::set<std::string> rel = {"lt", "le", "gt", "ge"};
    if (op && op->kind == OpKind::Elementwise && rel.count(op->function)) {
      auto a = affine(op->operands.at(0)), b = affine(op->operands.at(1));
      if (a && b) {
        conjuncts.push_back({Affine{a->q - b->q, a->k - b->k, a->c - b->c}, op->function});
        return;
      }
    }
    pure = false;
  };
  if (m.mask >= 0) {
    auto e = expr(m.mask);
    if (!e) {
      note(site, "'" + d.name + "': the attention mask is not a function of the query and key positions; its operations run as separate kernels");
      region(frame, d.body);
      return;
    }
    keep = "(" + *e + ") != 0.f";
    split(m.mask);
  }
  // live: some element of the tile may be kept (every conjunct can hold at its best corner);
  // full: every element is kept (the mask is the conjunction and each holds at its worst corner).
  auto corner = [](const Affine &a, bool best_high) {
    auto pick = [&](double coefficient, const char *lo, const char *hi) {
      if (coefficient == 0) return std::string();
      bool high = (coefficient > 0) == best_high;
      return " + " + flit(coefficient) + " * static_cast<float>(" + (high ? hi : lo) + ")";
    };
    return "(" + flit(a.c) + pick(a.q, "q0", "q1") + pick(a.k, "k0", "k1") + ")";
  };
  std::string live = "true", full = pure ? "true" : "false";
  for (auto &[a, rel] : conjuncts) {
    bool upper = rel == "gt" || rel == "ge";  // f > 0: best is the maximum
    std::string op = rel == "gt" ? " > 0.f" : rel == "ge" ? " >= 0.f" : rel == "lt" ? " < 0.f" : " <= 0.f";
    live += " && " + corner(a, upper) + op;
    if (pure) full += " && " + corner(a, !upper) + op;
  }
  KernelArgs args;
  std::string pq = args.in(Q), pk = args.in(K), pv = args.in(V);
  std::string scale = "1.f", out_scale = "1.f";
  for (int s : m.scale_values) scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  for (int s : m.out_scale_values) out_scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  std::string r = args.out(O);
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax)) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  bool async = Q.stride(rd) == 1 && K.stride(rd) == 1 && V.stride(re) == 1;
  for (const Ten *t : {&Q, &K, &V}) {
    async = async && (t == &Q ? Q.stride(rq) : t == &K ? K.stride(rk) : V.stride(rk)) % 8 == 0;
    for (int ax : batch) async = async && t->stride(ax) % 8 == 0;
  }
  bool f16 = Q.dtype == DType::F16;
  int64_t threads = bq / 16 * 32;
  std::string k;
  k += "// streamed attention (FlashAttention-2 style): " + tiles + "; " + str(threads) + " threads, " +
       str(smem(bq, bk)) + " bytes of shared memory; K and V staged " +
       (async ? "by cp.async (double-buffered)" : "by element loads") + "\n";
  k += "// mask: " + (m.mask < 0 ? std::string("none") : keep) + "\n";
  k += "struct @NAME@_mask {\n";
  k += "  __device__ bool live(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + live + "; }\n";
  k += "  __device__ bool full(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + full + "; }\n";
  k += "  __device__ bool keep(int64_t q, int64_t k) const { return " + keep + "; }\n";
  k += "};\n";
  k += "__global__ void __launch_bounds__(" + str(threads) + ") @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.y;\n" + decompose(batch, "b", "  ");
  k += "  const float scale_log2 = " + scale + " * 1.4426950408889634f;\n";
  k += "  const float out_scale = " + out_scale + ";\n";
  k += "  auto store = [&](int64_t q, int64_t e, float v) { " + r + "[q * " + str(O.stride(rq)) + " + e * " +
       str(O.stride(re)) + batch_offset(O) + "] = ncd_to<" + element_type(O.dtype) + ">(v * out_scale); };\n";
  k += "  ncd_attention_block<" + std::string(f16 ? "true" : "false") + ", " + str(D) + ", " + str(E) + ", " + str(bq) +
       ", " + str(bk) + ", " + str(NQ) + ", " + str(NK) + ", " + str(Q.stride(rq)) + ", " + str(Q.stride(rd)) + ", " +
       str(K.stride(rk)) + ", " + str(K.stride(rd)) + ", " + str(V.stride(rk)) + ", " + str(V.stride(re)) + ", " +
       (async ? "true" : "false") + ">(\n";
  k += "      reinterpret_cast<const uint16_t *>(" + pq + batch_offset(Q) + "), reinterpret_cast<const uint16_t *>(" + pk +
       batch_offset(K) + "),\n      reinterpret_cast<const uint16_t *>(" + pv + batch_offset(V) +
       "), static_cast<int64_t>(blockIdx.x) * " + str(bq) + ", scale_log2, @NAME@_mask{}, store);\n";
  k += "}\n";
  std::string name = add_kernel("attention_" + d.name, k);
  line("// " + result.name + axis_list(axes) + " = streamed attention '" + d.name + "'");
  line("NCD_TRY(cudaFuncSetAttribute(" + name + ", cudaFuncAttributeMaxDynamicSharedMemorySize, " + str(smem(bq, bk)) +
       "));");
  line(name + "<<<dim3(" + str((NQ + bq - 1) / bq) + ", " + str(batches) + "), " + str(threads) + ", " +
       str(smem(bq, bk)) + ", stream>>>(" + args.arg_list() + ");");
  line("NCD_LAUNCHED();");
  frame.values[m.output] = O;
}

// ---------------------------------------------------------------- fused kernels (GEMM + epilogue, rows, pointwise)

namespace {

std::string rounded(DType dtype, const std::string &e) {
  return dtype == DType::F32 ? e : "ncd_f(ncd_to<" + element_type(dtype) + ">(" + e + "))";
}

bool same_axes(const std::vector<int> &a, const std::vector<int> &b) {
  return std::set<int>(a.begin(), a.end()) == std::set<int>(b.begin(), b.end());
}

bool sub_axes(const std::vector<int> &a, const std::vector<int> &b) {
  for (int x : a)
    if (std::find(b.begin(), b.end(), x) == b.end()) return false;
  return true;
}

const char *kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::Contract: return "contraction";
    case OpKind::Reduce: return "reduction";
    case OpKind::Normalize: return "normalisation";
    case OpKind::Access: return "access";
    case OpKind::Merge: return "merge";
    case OpKind::Call: return "call";
    case OpKind::Repeat: return "repeat";
    default: return "operation";
  }
}

}  // namespace

// How fexpr generates a value: the index of each runtime axis, the locals
// already declared in this scope, and the statements it adds.
struct Generator::ExprCtx {
  std::function<std::string(int)> index;
  std::map<int, std::string> memo;     // value -> local name or literal
  std::map<int, std::string> special;  // values the kernel computed itself (the accumulator, the normalised value)
  std::string code, pad;
  int *counter = nullptr;
};

bool Generator::match_fused(const ir::Diagram &d, FusedMatch &m, std::string &why) const {
  auto &dd = const_cast<ir::Diagram &>(d);
  auto name = [&](const ir::Op &op) { return d.value(op.results.at(0)).name; };
  auto data_free = [](const ir::Op &op) {
    return op.kind == OpKind::Constant || op.kind == OpKind::SizeOf || op.kind == OpKind::AxisIndex;
  };
  for (const auto &op : d.body.ops)
    if (op->kind == OpKind::Call || op->kind == OpKind::Repeat || op->kind == OpKind::Merge) {
      why = std::string("it has a ") + kind_name(op->kind) + (op->kind == OpKind::Merge ? " ('" + name(*op) + "')" : "");
      return false;
    }
  // Data-free ops and scalar arithmetic on them come first (literals, or tiny kernels).
  std::set<int> early;
  for (const auto &op : d.body.ops) {
    bool ok = data_free(*op);
    if (!ok && op->kind == OpKind::Elementwise && d.value(op->results.at(0)).axes.empty()) {
      ok = true;
      for (int operand : op->operands) {
        const ir::Op *p = dd.producer(operand);
        ok = ok && d.value(operand).axes.empty() && (!p || early.count(operand));
      }
    }
    if (ok) {
      early.insert(op->results.at(0));
      m.before.push_back(op.get());
    }
  }
  for (const auto &op : d.body.ops) {
    if (op->kind != OpKind::Contract && op->kind != OpKind::Reduce && op->kind != OpKind::Normalize) continue;
    if (m.main) {
      why = "it has more than one contraction, reduction or normalisation ('" + name(*m.main) + "' and '" + name(*op) + "')";
      return false;
    }
    m.main = op.get();
  }
  std::set<int> upstream;
  if (m.main) {
    m.after.insert(m.main->results.at(0));
    for (const auto &op : d.body.ops)
      for (int operand : op->operands)
        if (m.after.count(operand)) m.after.insert(op->results.begin(), op->results.end());
    std::function<void(int)> up = [&](int v) {
      if (!upstream.insert(v).second) return;
      if (const ir::Op *p = dd.producer(v))
        for (int operand : p->operands) up(operand);
    };
    for (int operand : m.main->operands) up(operand);
  }
  int work = 0;
  for (const auto &op : d.body.ops) {
    if (op.get() == m.main || early.count(op->results.at(0))) continue;
    if (op->kind != OpKind::Elementwise && op->kind != OpKind::Access) {
      why = std::string("it has a ") + kind_name(op->kind) + " ('" + name(*op) + "')";
      return false;
    }
    ++work;
    int r = op->results.at(0);
    if (!m.main) continue;
    if (m.after.count(r)) {
      if (op->kind == OpKind::Access) {
        why = "the access '" + name(*op) + "' reads the result of '" + name(*m.main) + "' at other positions";
        return false;
      }
      const auto &main_axes = d.value(m.main->results.at(0)).axes;
      if (!sub_axes(d.value(r).axes, main_axes)) {
        why = "'" + name(*op) + "' is broadcast beyond the result of '" + name(*m.main) + "'";
        return false;
      }
    } else if (m.main->kind == OpKind::Contract) {
      why = "the contraction '" + name(*m.main) + "' has a prologue ('" + name(*op) + "'); only epilogues are fused";
      return false;
    } else if (!upstream.count(r)) {
      why = "'" + name(*op) + "' is neither before nor after the " + kind_name(m.main->kind) + " '" + name(*m.main) + "'";
      return false;
    }
  }
  for (int out : d.outputs) {
    if (!dd.producer(out)) {
      why = "its output '" + d.value(out).name + "' is an input";
      return false;
    }
    if (m.main && m.main->kind != OpKind::Normalize && !m.after.count(out)) {
      why = "its output '" + d.value(out).name + "' is not computed from the " + kind_name(m.main->kind);
      return false;
    }
  }
  if (!m.main) {
    if (work == 0) {
      why = "it has no tensor operations";
      return false;
    }
    m.kind = FusedMatch::Kind::Pointwise;
    return true;
  }
  const ir::Op &op = *m.main;
  if (d.value(op.results.at(0)).axes.empty()) {
    why = "the " + std::string(kind_name(op.kind)) + " '" + name(op) + "' has no axes left";
    return false;
  }
  if (op.kind == OpKind::Contract) {
    std::vector<int> tensors;
    for (int operand : op.operands) {
      if (d.value(operand).axes.empty()) continue;
      if (dd.producer(operand)) {
        why = "an operand of the contraction '" + name(op) + "' is computed in the kernel";
        return false;
      }
      tensors.push_back(operand);
    }
    if (tensors.size() != 2 || op.axes.empty()) {
      why = "the contraction '" + name(op) + "' is not a product of two tensors over summed axes";
      return false;
    }
    DType a = d.value(tensors[0]).dtype, b = d.value(tensors[1]).dtype;
    if (!is_16bit_float(a) || a != b) {
      why = std::string("the contraction's operands are ") + std::string(ir::dtype_name(a)) + " and " +
            std::string(ir::dtype_name(b)) + "; tensor cores take two bf16 or two f16";
      return false;
    }
    m.kind = FusedMatch::Kind::Gemm;
    return true;
  }
  static const std::set<std::string> reductions = {"sum", "mean", "max", "min", "prod", "logsumexp"};
  static const std::set<std::string> norms = {"softmax", "logsoftmax", "layernorm", "rmsnorm"};
  if (!(op.kind == OpKind::Reduce ? reductions : norms).count(op.function)) {
    why = "the cuda backend has no " + std::string(kind_name(op.kind)) + " '" + op.function + "'";
    return false;
  }
  m.kind = FusedMatch::Kind::Row;
  return true;
}

// The runtime axes of a value of a fused kernel, as the per-op kernels would lay it out.
std::vector<int> Generator::fused_axes(Frame &frame, int id) {
  if (auto it = frame.values.find(id); it != frame.values.end())
    return it->second.kind == Ten::Kind::Literal ? std::vector<int>{} : it->second.axes;
  const ir::Diagram &d = *frame.diagram;
  const ir::Op *op = const_cast<ir::Diagram &>(d).producer(id);
  if (!op) return get(frame, id).axes;
  std::vector<int> own, from;
  for (int axis : d.value(id).axes) own.push_back(rt_axis(frame, axis));
  std::set<int> drop;
  auto add = [&](const std::vector<int> &axes) { from.insert(from.end(), axes.begin(), axes.end()); };
  switch (op->kind) {
    case OpKind::Constant:
    case OpKind::SizeOf: return {};
    case OpKind::AxisIndex: return {rt_axis(frame, op->axes.at(0))};
    case OpKind::Access: {
      const ir::Value &source = d.value(op->operands.at(0));
      std::vector<int> axes = fused_axes(frame, op->operands[0]);
      for (int axis : source.axes) drop.insert(rt_axis(frame, axis));
      add(axes);
      for (const ir::AccessIndex &ix : op->access)
        if (ix.kind == ir::AccessIndex::Kind::Gather) add(fused_axes(frame, op->operands.at(static_cast<size_t>(ix.gather_operand))));
      break;
    }
    default:
      for (int operand : op->operands) add(fused_axes(frame, operand));
      if (op->kind == OpKind::Contract || op->kind == OpKind::Reduce)
        for (int axis : op->axes) drop.insert(rt_axis(frame, axis));
  }
  std::vector<int> extra;
  for (int a : from)
    if (!drop.count(a) && std::find(own.begin(), own.end(), a) == own.end() &&
        std::find(extra.begin(), extra.end(), a) == extra.end())
      extra.push_back(a);
  extra.insert(extra.end(), own.begin(), own.end());
  if (op->kind == OpKind::Normalize)
    for (int axis : op->axes)
      if (std::find(extra.begin(), extra.end(), rt_axis(frame, axis)) == extra.end()) extra.push_back(rt_axis(frame, axis));
  return extra;
}

// A float expression of value `id` of a fused kernel at the positions c.index
// gives; locals for the ops it goes through are appended to c.code.
std::string Generator::fexpr(Frame &frame, KernelArgs &args, ExprCtx &c, int id) {
  if (auto it = c.memo.find(id); it != c.memo.end()) return it->second;
  if (auto it = c.special.find(id); it != c.special.end()) return it->second;
  const ir::Diagram &d = *frame.diagram;
  const ir::Value &value = d.value(id);
  auto local = [&](const std::string &e) {
    std::string n = "e_v" + str(id) + "_" + str((*c.counter)++);
    c.code += c.pad + "const float " + n + " = " + e + ";\n";
    c.memo[id] = n;
    return n;
  };
  const ir::Op *op = const_cast<ir::Diagram &>(d).producer(id);
  if (frame.values.count(id) || !op) {
    Ten t = get(frame, id);
    std::string e = load(args, t, c.index);
    if (t.kind != Ten::Kind::Buffer) return c.memo[id] = e;
    return local(e);
  }
  if (op->kind == OpKind::Elementwise) {
    std::vector<std::string> operands;
    for (int operand : op->operands) operands.push_back(fexpr(frame, args, c, operand));
    return local(rounded(value.dtype, function_expr(op->function, operands, value.dtype)));
  }
  if (op->kind != OpKind::Access) throw GenError("internal: a fused kernel computes '" + value.name + "' inline");
  const ir::Value &source = d.value(op->operands.at(0));
  if (op->access.size() != source.axes.size()) throw GenError("internal: access with the wrong number of indices");
  std::string u = str((*c.counter)++);
  std::vector<int> positions;
  std::vector<std::string> names;
  std::string valid;
  for (size_t i = 0; i < op->access.size(); ++i) positions.push_back(rt_axis(frame, source.axes[i]));
  for (size_t i = 0; i < op->access.size(); ++i) {
    const ir::AccessIndex &ix = op->access[i];
    std::string e;
    if (ix.kind == ir::AccessIndex::Kind::Affine) {
      for (auto [axis, coefficient] : ix.terms)
        e += (e.empty() ? "" : " + ") + (coefficient == 1 ? "" : str(coefficient) + " * ") + "(" +
             c.index(rt_axis(frame, axis)) + ")";
      if (ix.offset != 0 || e.empty()) e += (e.empty() ? "" : " + ") + ("(" + str(ix.offset) + ")");
    } else if (ix.kind == ir::AccessIndex::Kind::Split) {
      int64_t weight = 1;
      for (size_t j = ix.split.size(); j-- > 0;) {
        int r = rt_axis(frame, ix.split[j]);
        e = "(" + c.index(r) + ")" + (weight == 1 ? "" : " * " + str(weight)) + (e.empty() ? "" : " + " + e);
        weight *= size(r);
      }
    } else {
      int g = op->operands.at(static_cast<size_t>(ix.gather_operand));
      if (frame.values.count(g) || !const_cast<ir::Diagram &>(d).producer(g))
        e = load_int(args, get(frame, g), c.index);
      else
        e = "static_cast<int64_t>(" + fexpr(frame, args, c, g) + ")";
    }
    names.push_back("e_p" + u + "_" + str(static_cast<int64_t>(i)));
    c.code += c.pad + "const int64_t " + names.back() + " = " + e + ";\n";
    valid += (valid.empty() ? "" : " && ") +
             ("(" + names.back() + " >= 0 && " + names.back() + " < " + str(size(positions[i])) + ")");
  }
  std::string ok = "e_ok" + u;
  c.code += c.pad + "const bool " + ok + " = " + (valid.empty() ? "true" : valid) + ";\n";
  // The source at the accessed positions (clamped to 0 where out of range, then masked).
  ExprCtx inner;
  inner.pad = c.pad;
  inner.counter = c.counter;
  auto parent = c.index;
  inner.index = [&, parent](int a) {
    for (size_t i = 0; i < positions.size(); ++i)
      if (positions[i] == a) return "(" + ok + " ? " + names[i] + " : 0)";
    return parent(a);
  };
  std::string v = fexpr(frame, args, inner, op->operands[0]);
  c.code += inner.code;
  return local(rounded(value.dtype, "(" + ok + " ? " + v + " : 0.f)"));
}

void Generator::run_rest(Frame &frame, const ir::Diagram &d) {
  for (const auto &o : d.body.ops)
    if (o->results.empty() || !frame.values.count(o->results[0])) op(frame, *o);
}

void Generator::fused(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const ir::Op *site) {
  const ir::Op *where = site ? site : d.body.ops.front().get();
  auto decline = [&](const std::string &why) {
    note(where, "'" + d.name + "' has a schedule but is not a fused kernel the cuda backend knows (" + why +
                    "); its operations run as separate kernels");
    run_rest(frame, d);
  };
  for (const ir::Op *o : m.before) op(frame, *o);
  std::map<int, int64_t> groups;
  std::string schedule;
  for (const ir::ScheduleDirective &dir : d.schedules.front().directives) {
    if (dir.kind == ir::ScheduleDirective::Kind::Level) continue;
    bool group = dir.kind == ir::ScheduleDirective::Kind::Group;
    if (group) groups[rt_axis(frame, dir.axis)] = dir.amount;
    schedule += (schedule.empty() ? "" : ", ") + std::string(group ? "group " : "stream ") + program_.axis(dir.axis).name +
                " by " + str(dir.amount);
  }
  // What the kernel does, in program order, for its comment.
  std::string what;
  for (const auto &o : d.body.ops) {
    if (o->kind == OpKind::Constant || o->kind == OpKind::SizeOf || o->kind == OpKind::AxisIndex) continue;
    if (std::find(m.before.begin(), m.before.end(), o.get()) != m.before.end()) continue;
    std::string fn = o->kind == OpKind::Contract ? "contract" : o->kind == OpKind::Access ? "access" : o->function;
    what += (what.empty() ? "" : ", ") + fn + " " + d.value(o->results.at(0)).name;
  }
  std::vector<int> space = fused_axes(frame, m.main ? m.main->results.at(0) : d.outputs.at(0));
  std::vector<int> row_axes, loop_axes;  // Row: the rows, and the axes a warp walks
  int64_t missing = 1;
  if (m.kind == FusedMatch::Kind::Row) {
    std::vector<int> in_axes = fused_axes(frame, m.main->operands.at(0));
    std::vector<int> along;
    for (int axis : m.main->axes) along.push_back(rt_axis(frame, axis));
    if (m.main->kind == OpKind::Normalize) {
      loop_axes = along;
      for (int a : space)
        if (std::find(along.begin(), along.end(), a) == along.end()) row_axes.push_back(a);
    } else {
      row_axes = space;
      for (int a : along)
        if (std::find(in_axes.begin(), in_axes.end(), a) != in_axes.end())
          loop_axes.push_back(a);
        else
          missing *= size(a);
    }
  }
  std::vector<Ten> outs;
  for (int id : d.outputs) {
    std::vector<int> axes = fused_axes(frame, id);
    if (!same_axes(axes, space))
      return decline("its output '" + d.value(id).name + "' has axes " + axis_list(axes) + ", not those of the kernel " +
                     axis_list(space));
  }
  for (int id : m.after)
    if (!sub_axes(fused_axes(frame, id), space))
      return decline("'" + d.value(id).name + "' is broadcast beyond the kernel's axes " + axis_list(space));
  for (int id : d.outputs) outs.push_back(output(frame, id, d.value(id).dtype, fused_axes(frame, id)));
  auto identity = [](int a) { return x(a); };
  int counter = 0;
  // Stores every output at the positions of `c` (the main value, if any, is c.special).
  auto stores = [&](KernelArgs &args, ExprCtx &c) {
    for (size_t k = 0; k < outs.size(); ++k) {
      std::string v = fexpr(frame, args, c, d.outputs[k]);
      std::string r = args.out(outs[k]);
      c.code += c.pad + r + "[" + offset(outs[k], identity) + "] = ncd_to<" + element_type(outs[k].dtype) + ">(" + v + ");\n";
    }
  };
  std::string outputs;
  for (int id : d.outputs) outputs += (outputs.empty() ? "" : ", ") + d.value(id).name;
  std::string header = "// fused kernel for '" + d.name + "' (" + (schedule.empty() ? "no tiles" : schedule) + "): " + what +
                       "; stores " + outputs + "\n";
  if (m.kind == FusedMatch::Kind::Gemm) {
    const ir::Op &c = *m.main;
    std::vector<Ten> tensors, scalars;
    for (int id : c.operands) {
      Ten t = get(frame, id);
      (d.value(id).axes.empty() ? scalars : tensors).push_back(t);
    }
    const ir::Value &cv = d.value(c.results.at(0));
    Ten cten;
    cten.dtype = cv.dtype;
    cten.axes = space;
    cten.strides.assign(space.size(), 1);
    for (size_t i = space.size(), stride = 1; i-- > 0;) {
      cten.strides[i] = static_cast<int64_t>(stride);
      stride *= static_cast<size_t>(size(space[i]));
    }
    GemmEpilogue epilogue;
    epilogue.groups = groups;
    epilogue.body = [&](KernelArgs &args, const std::string &acc, const std::string &pad) {
      ExprCtx ctx;
      ctx.pad = pad;
      ctx.counter = &counter;
      ctx.index = identity;
      ctx.code += pad + "const float e_acc = " + rounded(cv.dtype, acc) + ";  // " + cv.name + "\n";
      ctx.special[c.results[0]] = "e_acc";
      stores(args, ctx);
      return ctx.code;
    };
    std::string why;
    size_t mark = kernel_order_.size();
    if (!gemm(frame, c, tensors, scalars, cten, why, &epilogue)) return decline(why);
    if (kernel_order_.size() > mark && kernel_order_.back().find("_gemm_fused_") != std::string::npos)
      kernel_order_.back() = header + kernel_order_.back();
    for (size_t k = 0; k < outs.size(); ++k) frame.values[d.outputs[k]] = outs[k];
    return;
  }
  KernelArgs args;
  std::string k = header + "__global__ void @NAME@(" + "@PARAMS@" + ") {\n";
  std::string launch_what;
  int64_t work = 0;
  if (m.kind == FusedMatch::Kind::Pointwise) {
    ExprCtx c;
    c.pad = "    ";
    c.counter = &counter;
    c.index = identity;
    stores(args, c);
    int64_t n = numel(space);
    k += grid_stride_loop(n, space) + c.code + "  }\n}\n";
    work = n;
    launch_what = "pointwise";
  } else {
    const ir::Op &o = *m.main;
    const ir::Value &result = d.value(o.results.at(0));
    int64_t rows = numel(row_axes), extent = numel(loop_axes);
    auto pass = [&](const std::function<std::string(ExprCtx &, const std::string &)> &f) {
      ExprCtx c;
      c.pad = "      ";
      c.counter = &counter;
      c.index = identity;
      std::string in = fexpr(frame, args, c, o.operands.at(0));
      std::string stmt = f(c, in);
      return "    for (int64_t j = lane; j < " + str(extent) + "; j += 32) {\n" + decompose(loop_axes, "j", "      ") + c.code +
             stmt + "    }\n";
    };
    k += "  const int lane = threadIdx.x % 32;\n";
    k += "  for (int64_t row = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32; row < " + str(rows) +
         "; row += static_cast<int64_t>(gridDim.x) * blockDim.x / 32) {\n";
    k += decompose(row_axes, "row", "    ");
    const std::string &fn = o.function;
    std::string n = flit(static_cast<double>(extent));
    // The final value of the main op, from the statistics; per element for a normalisation.
    std::string value;
    if (o.kind == OpKind::Normalize) {
      double eps = o.options.count("eps") ? o.options.at("eps") : (fn == "rmsnorm" ? 1e-6 : 1e-5);
      if (fn == "softmax" || fn == "logsoftmax") {
        k += "    float m = -INFINITY;\n" + pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
             "    m = ncd_warp_max(m);\n";
        k += "    float s = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      s += expf(" + v + " - m);\n"; }) +
             "    s = ncd_warp_sum(s);\n";
      } else if (fn == "layernorm") {
        k += "    float s = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      s += " + v + ";\n"; }) +
             "    const float mean = ncd_warp_sum(s) / " + n + ";\n";
        k += "    float q = 0.f;\n" +
             pass([](ExprCtx &, const std::string &v) { return "      const float e_c = " + v + " - mean;\n      q += e_c * e_c;\n"; }) +
             "    const float var = ncd_warp_sum(q) / " + n + ";\n";
        k += "    const float denom = sqrtf(var + " + flit(eps) + ");\n";
      } else {  // rmsnorm
        k += "    float q = 0.f;\n" +
             pass([](ExprCtx &, const std::string &v) { return "      const float e_c = " + v + ";\n      q += e_c * e_c;\n"; }) +
             "    const float denom = sqrtf(ncd_warp_sum(q) / " + n + " + " + flit(eps) + ");\n";
      }
      k += pass([&](ExprCtx &c, const std::string &v) {
        std::string e = fn == "softmax"      ? "expf(" + v + " - m) / s"
                        : fn == "logsoftmax" ? v + " - m - logf(s)"
                        : fn == "layernorm"  ? "(" + v + " - mean) / denom"
                                             : v + " / denom";
        c.code += c.pad + "const float e_n = " + rounded(result.dtype, e) + ";  // " + result.name + "\n";
        c.special[o.results[0]] = "e_n";
        stores(args, c);
        return std::string();
      });
    } else {
      if (fn == "sum" || fn == "mean") {
        k += "    float acc = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc += " + v + ";\n"; }) +
             "    acc = ncd_warp_sum(acc);\n";
        value = fn == "sum" ? (missing == 1 ? "acc" : "acc * " + flit(static_cast<double>(missing))) : "acc / " + flit(static_cast<double>(extent));
      } else if (fn == "prod") {
        k += "    float acc = 1.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc *= " + v + ";\n"; }) +
             "    acc = ncd_warp_prod(acc);\n";
        value = missing == 1 ? "acc" : "powf(acc, " + flit(static_cast<double>(missing)) + ")";
      } else if (fn == "max" || fn == "min") {
        k += "    float acc = " + std::string(fn == "max" ? "-INFINITY" : "INFINITY") + ";\n" +
             pass([&](ExprCtx &, const std::string &v) { return "      acc = ncd_" + fn + "(acc, " + v + ");\n"; }) +
             "    acc = ncd_warp_" + fn + "(acc);\n";
        value = "acc";
      } else {  // logsumexp
        k += "    float m = -INFINITY;\n" + pass([](ExprCtx &, const std::string &v) { return "      m = ncd_max(m, " + v + ");\n"; }) +
             "    m = ncd_warp_max(m);\n    const float mu = m == -INFINITY ? 0.f : m;\n";
        k += "    float acc = 0.f;\n" + pass([](ExprCtx &, const std::string &v) { return "      acc += expf(" + v + " - mu);\n"; }) +
             "    acc = ncd_warp_sum(acc);\n";
        value = "mu + logf(acc)" + (missing == 1 ? std::string() : " + " + flit(std::log(static_cast<double>(missing))));
      }
      ExprCtx c;
      c.pad = "      ";
      c.counter = &counter;
      c.index = identity;
      c.code += c.pad + "const float e_n = " + rounded(result.dtype, value) + ";  // " + result.name + "\n";
      c.special[o.results[0]] = "e_n";
      stores(args, c);
      k += "    if (lane == 0) {\n" + c.code + "    }\n";
    }
    k += "  }\n}\n";
    work = rows * 32;
    launch_what = fn + " rows";
  }
  k.replace(k.find("@PARAMS@"), 8, args.param_list());
  std::string name = add_kernel("fused_" + d.name, k);
  launch(name, grid_for(work, 256), 256, args, outputs + " = fused '" + d.name + "' (" + launch_what + "): " + what);
  for (size_t i = 0; i < outs.size(); ++i) frame.values[d.outputs[i]] = outs[i];
}

// ---------------------------------------------------------------- diagrams

HarnessDiagram Generator::generate_diagram(const ir::Diagram &diagram) {
  body_.clear();
  preamble_.clear();
  indent_ = 2;
  workspace_ = 0;
  loop_counter_ = 0;
  param_args_.clear();
  param_arrays_.clear();

  HarnessDiagram info;
  info.name = diagram.name;
  info.function = "ncd_" + ident(diagram.name);
  Frame root;
  root.diagram = &diagram;
  root.sizes = std::make_unique<AxisSizes>(program_);
  root.naming = &naming(diagram);

  std::vector<std::string> signature;
  std::set<std::string> used_names;
  auto unique = [&](std::string name) {
    std::string base = name;
    for (int i = 2; !used_names.insert(name).second; ++i) name = base + "_" + std::to_string(i);
    return name;
  };
  std::string doc = "// " + diagram.name + ": inputs";
  for (int id : diagram.inputs) {
    const ir::Value &value = diagram.value(id);
    std::string name = unique("in_" + ident(value.name));
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
    signature.push_back("const " + element_type(p.dtype) + " *" + name);
    param_args_[p.path] = {name, p.dtype};
    info.params.push_back({p.path, p.dtype, p.shape});
  }
  for (int id : diagram.outputs) {
    const ir::Value &value = diagram.value(id);
    std::string name = unique("out_" + ident(value.name));
    signature.push_back(element_type(value.dtype) + " *" + name);
    root.dest[id] = dense(root, value, name);
    HarnessTensor h{value.name, value.dtype, {}};
    for (int a : root.dest[id].axes) h.shape.push_back(size(a));
    info.outputs.push_back(h);
  }
  bool fused = !diagram.schedules.empty() && scheduled(root, diagram, nullptr);
  if (!fused) region(root, diagram.body);
  for (int id : diagram.outputs) {
    Ten t = get(root, id);
    if (!t.same_place(root.dest.at(id))) copy(t, root.dest.at(id), "output " + diagram.value(id).name);
  }

  std::string host;
  host += "// " + diagram.name + " (" + diagram.module + "): arguments in this order: inputs";
  for (const auto &h : info.inputs) host += " " + h.name;
  host += info.params.empty() ? "" : "; params (docs/RUN.md paths)";
  for (const auto &h : info.params) host += " " + h.name;
  host += "; outputs";
  for (const auto &h : info.outputs) host += " " + h.name;
  host += "; the stream.\n// Every tensor is dense, row-major in its declared axis order. Returns a cudaError_t (0: success).\n";
  host += "extern \"C\" int " + info.function + "(";
  for (const std::string &s : signature) host += s + ", ";
  host += "cudaStream_t stream) {\n";
  for (const auto &pre : preamble_) host += "  " + pre + "\n";
  host += "  char *ncd_ws = nullptr;\n";
  host += "  const size_t ncd_ws_bytes = " + str(std::max<int64_t>(workspace_, 1)) + ";\n";
  host += "  cudaError_t status = cudaMallocAsync(reinterpret_cast<void **>(&ncd_ws), ncd_ws_bytes, stream);\n";
  host += "  if (status != cudaSuccess) return static_cast<int>(status);\n";
  host += "  auto body = [&]() -> cudaError_t {\n" + body_ + "    return cudaSuccess;\n  };\n";
  host += "  status = body();\n";
  host += "  const cudaError_t freed = cudaFreeAsync(ncd_ws, stream);\n";
  host += "  return static_cast<int>(status != cudaSuccess ? status : freed);\n}\n\n";
  hosts_ += host;
  (void)doc;

  // ncd's FLOP count, for the harness's TFLOP/s.
  SourceManager sources;
  DiagnosticEngine quiet(sources);
  if (auto hardware = load_hardware("h100-sxm", sources, quiet)) {
    CostOptions options;
    options.use_schedules = false;
    options.search_tiles = false;
    if (auto report = price(program_, diagram, *hardware, options)) info.flops = report->total.flops.value;
  }
  return info;
}

}  // namespace

bool generate(const EmitRequest &request, std::string &output, std::string &error) {
  if (!request.program || request.diagrams.empty()) {
    error = "no diagram to generate";
    return false;
  }
  std::string arch = "sm_80";
  bool harness = false;
  for (const auto &[key, value] : request.options) {
    if (key == "arch") {
      if (value != "sm_80" && value != "sm_90") {
        error = "unknown --arch '" + value + "'; expected sm_80 or sm_90";
        return false;
      }
      arch = value;
    } else if (key == "harness") {
      harness = value == "1";
    } else {
      error = "the cuda backend has no option '" + key + "'";
      return false;
    }
  }
  Generator generator(request, arch);
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
  std::string names;
  for (const auto &info : infos) names += (names.empty() ? "" : ", ") + info.name;
  output = "// Generated by `ncd emit --cuda` for " + arch + " from " + request.program->modules.at(0).path + ": " +
           names + ".\n";
  output += "// Self-contained: needs only the CUDA toolkit. Build: nvcc -std=c++17 -O3 -arch=" + arch +
            (harness ? " -o prog FILE.cu" : " -c FILE.cu") + "\n";
  output += "// Host functions, layouts and dtypes: docs/CUDA.md in the ncd sources.\n";
  output += kPrelude;
  output += "\nnamespace {\n\n" + generator.kernels() + "}  // namespace\n\n" + generator.hosts();
  if (harness) output += harness_code(infos);
  return true;
}

}  // namespace ncd::cuda
