// The CUDA generator's shared declarations: the runtime-axis tensor view (`Ten`),
// frames, kernel arguments and the Generator class. Its member functions are
// defined by concern: frame.cpp (walking the IR, calls, repeats, the host
// function and the file), the planner (plan_match.cpp, plan_attention.cpp,
// plan_fused.cpp, plan_routed.cpp; the plans are plan.h) and the printers by
// kernel family (print_gemm.cpp, print_generic.cpp, print_row.cpp,
// print_pointwise.cpp, print_attention.cpp, print_fused.cpp, print_routed.cpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "codegen.h"
#include "plan.h"
#include "size_expr.h"
#include "ncd/cost.h"
#include "ncd/hardware.h"
#include "ncd/instantiate.h"
#include "ncd/routing.h"
#include "ncd/tensor.h"

namespace ncd::cuda {

using ir::DType;
using ir::OpKind;

namespace detail {


struct GenError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

inline std::string str(int64_t v) { return std::to_string(v); }

// A float literal that nvcc reads back exactly.
inline std::string flit(double v) {
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
// A double literal (tile bounds over positions: exact for integers below 2^53).
inline std::string dlit(double v) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", v);
  std::string s = text;
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  if (s[0] == '-') s = "(" + s + ")";
  return s;
}

inline std::string ident(const std::string &text) {
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

inline bool is_16bit_float(DType t) { return t == DType::BF16 || t == DType::F16; }
// The operands of gemm_q8.cuh: i8, f8e4m3, f8e5m2 (two i8, or two fp8 of either kind).
inline bool is_8bit(DType t) { return t == DType::I8 || t == DType::F8E4M3 || t == DType::F8E5M2; }

inline bool same_axes(const std::vector<int> &a, const std::vector<int> &b) {
  return std::set<int>(a.begin(), a.end()) == std::set<int>(b.begin(), b.end());
}

inline bool sub_axes(const std::vector<int> &a, const std::vector<int> &b) {
  for (int x : a)
    if (std::find(b.begin(), b.end(), x) == b.end()) return false;
  return true;
}

// A value of a fused kernel rounded to its dtype, as the separate kernels would store it.
inline std::string rounded(DType dtype, const std::string &e) {
  return dtype == DType::F32 ? e : "ncd_f(ncd_to<" + element_type(dtype) + ">(" + e + "))";
}

// A value as generated code sees it: a buffer (strided view), a literal
// (constants, sizes; a runtime size is an expression), or the positions of
// one axis (axis_index).
struct Ten {
  enum class Kind { Buffer, Literal, Index };
  Kind kind = Kind::Buffer;
  DType dtype = DType::F32;
  std::vector<int> axes;  // runtime axes; for Buffer, with strides
  std::vector<Sz> strides;
  std::string ptr;  // Buffer: host expression of the base pointer
  double literal = 0;
  std::string literal_code;  // Literal: an expression of runtime sizes (then `literal` is its planning value)
  // A value of a fused kernel computed where a GEMM stages it (its prologue):
  // the IR value, laid out densely over `axes` for the planner; no pointer.
  int computed = -1;

  int find(int axis) const {
    for (size_t i = 0; i < axes.size(); ++i)
      if (axes[i] == axis) return static_cast<int>(i);
    return -1;
  }
  bool has(int axis) const { return find(axis) >= 0; }
  Sz stride(int axis) const {
    int d = find(axis);
    return d < 0 || kind != Kind::Buffer ? Sz(0) : strides[static_cast<size_t>(d)];
  }
  bool same_place(const Ten &other) const {
    if (kind != Kind::Buffer || other.kind != Kind::Buffer || ptr != other.ptr || dtype != other.dtype) return false;
    std::set<std::pair<int, std::string>> a, b;
    for (size_t i = 0; i < axes.size(); ++i) a.insert({axes[i], strides[i].code()});
    for (size_t i = 0; i < other.axes.size(); ++i) b.insert({other.axes[i], other.strides[i].code()});
    return a == b;
  }
};

struct Frame {
  const ir::Diagram *diagram = nullptr;
  Frame *caller = nullptr;  // at a call: the calling frame (its sizes bind the callee's axes)
  std::unique_ptr<Instance> instance;  // sizes, param naming and paths there
  std::map<int, int> rt;               // IR axis -> runtime axis
  std::map<int, Ten> values;
  std::map<int, Ten> dest;  // where a value must end up (outputs)
  std::map<int, Ten> hint;  // where a value had best be (a call result in the caller's layout)
  // Every repeat around this point, in this diagram or a caller: its host
  // loop variable and count (a param path's repeat segments are resolved here).
  std::map<const ir::Op *, std::pair<std::string, int64_t>> loops;
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

inline std::string x(int axis) { return "x" + str(axis); }

// A GEMM's fused epilogue: code applied to each f32 accumulator in place of the
// plain store (Generator::fused_gemm builds it).
struct GemmEpilogue {
  // Code for one element: the x<axis> of every output axis are declared, and
  // `acc` is the scaled f32 accumulator. Reads and writes go through `args`.
  std::function<std::string(KernelArgs &args, const std::string &acc, const std::string &pad)> body;
  std::map<int, int64_t> groups;  // runtime axis -> the schedule's group tile
  // A prologue operand's staging code: the bits of the computed operand (a
  // Ten with `computed` set) at the x<axis> of its axes, which are declared.
  std::function<std::string(KernelArgs &args, const Ten &operand, const std::string &pad)> prologue;
};

// A tensor-core GEMM as plan_gemm decides it (a kernel plan that needs the
// runtime layouts, so it lives beside Ten rather than in plan.h). The layouts
// have no pointers: the printer allocates the packed and split copies in the
// plan's order and gets these strides.
struct GemmPlan {
  std::vector<int> summed, m_axes, n_axes, k_axes, batch;  // runtime axes; each group ordered outermost first
  bool split = false, a_f32 = false, b_f32 = false;       // f32 beside bf16: the pairs, and which operand was f32
  bool pack_a = false, pack_b = false, unpack = false;    // copies before the kernel; a result through a packed tile
  Ten packed_a, packed_b;                                 // layouts of the packed operands
  Ten a, b, out;                                          // what the kernel reads and writes
  Sz sAm, sAk, sBk, sBn, sCm, sCn;  // merged strides
  Sz M, N, K, batches;
  int64_t BM = 128, BN = 128;  // block tiles
  std::string tiles;           // the tiles in words (fused kernels)
  int la = 0, lb = 0;          // staging of A and B: 0 element loads, 1 cp.async along K, 2 along M / N
  bool f16 = false;
  // 8-bit operands (device/gemm_q8.cuh): each operand's kind (gemm_q8.cuh's
  // kTA, kTB: 0 s8, 1 f8e4m3, 2 f8e5m2); s8 x s8 accumulates exactly in s32.
  bool q8 = false, integer = false;
  int ta = 0, tb = 0;
  std::string q8_note;  // why the target runs the fp8 products on f16 tensor cores (reported), or empty
};

// A routed contraction (ncd/routing.h) as plan_routed decides it
// (plan_routed.cpp): the routes are the positions of the routing index; the
// rows of A are the product of the other tensor operands at each route, over
// the summed axes; B is one expert's slice of the table. print_routed.cpp
// groups the routes by expert and runs the grouped product in one launch.
struct RoutedPlan {
  Ten index;               // the routing index (its axes, row-major, number the routes)
  Ten table;               // the table without its expert axis, its other axes renamed to the result's
  Sz expert_stride;        // elements between two experts' slices
  int64_t experts = 0;     // the table's extent along the expert axis
  std::vector<Ten> rows;   // tensor operands read per route: their product is a row of A
  std::vector<Ten> scalars;  // scalar factors (the epilogue's scale)
  std::vector<int> k_axes, n_axes;  // summed axes and the table's kept axes, outermost first in the table
  Ten out;
  Sz routes, K, N;
  bool mma = false;      // tensor cores (a 16-bit table); else the FMA kernel
  std::string fma_why;   // why the FMA kernel (reported as a fallback)
  bool split = false;    // A is an f32 product beside a bf16 table: bf16 hi + lo planes, two products summed
  DType a_dtype = DType::F32;  // the dtype of A's planes
  bool f16 = false;
  Sz sBk, sBn;           // merged strides of B (tensor cores)
  int64_t BM = 64, BN = 128;
  int la = 0, lb = 0;    // staging of A and B (gemm.cuh's kLA, kLB)
  int64_t route_blocks = 1;  // blocks of the routing steps
};

// The grouping of the routes of one routing index (print_routed.cpp), shared
// by the routed contractions of a host function that read the same index.
struct Routing {
  Ten offsets;  // int32 [experts + 2]: where each bucket's routes start (the last bucket: outside the table)
  Ten order;    // int32 [routes]: the routes, grouped by bucket, ascending within each
  // The planes of A already written in this grouping, by what they hold
  // (Mixtral's w1 and w3 both read X per route: one copy serves both).
  std::map<std::string, std::vector<Ten>> planes;
};

// How fexpr generates a value: the index of each runtime axis, the locals
// already declared in this scope, and the statements it adds.
struct ExprCtx {
  std::function<std::string(int)> index;
  std::map<int, std::string> memo;     // value -> local name or literal
  std::map<int, std::string> special;  // values the kernel computed itself (the accumulator, the normalised value)
  std::string code, pad;
  int *counter = nullptr;
};

// A fused kernel being printed: its comment and the tensors it stores.
struct FusedKernel {
  std::map<int, int64_t> groups;  // runtime axis -> the schedule's group tile
  std::string schedule, what;     // for the comment: the schedule, the ops in program order
  std::string header, outputs;    // the kernel's comment line; the names of its outputs
  std::vector<Ten> outs;          // where the outputs go
  int counter = 0;                // numbers the kernel's locals
};

class Generator {
 public:
  Generator(const EmitRequest &request, Limits limits)
      : request_(request), program_(*request.program), limits_(std::move(limits)) {
    if (auto it = request.options.find("runtime"); it != request.options.end()) {
      std::stringstream names(it->second);
      for (std::string name; std::getline(names, name, ',');) runtime_names_.insert(name);
    }
  }

  HarnessDiagram generate_diagram(const ir::Diagram &diagram);
  // For a rank program (rank_host.cpp): the host function takes the communicator `ncd_comm` first,
  // and after each op listed its result is combined across the ranks by an in-place ncclAllReduce.
  void reduce_across_ranks(std::map<const ir::Op *, ops::Fn> reductions) {
    reductions_ = std::move(reductions);
    communicates_ = true;
  }
  std::string kernels() const {
    std::string s;
    for (const auto &k : kernel_order_) s += k + "\n";
    return s;
  }
  std::string hosts() const { return hosts_; }
  // The runtime sizes of every diagram generated, as the struct host code and kernels read them.
  std::string size_struct() const {
    if (runtime_sizes_.empty()) return "";
    std::string s = "// Runtime sizes: docs/CUDA.md, \"Runtime sizes\".\nstruct NcdSizes {\n";
    for (const auto &[axis, member] : runtime_sizes_) s += "  int64_t " + member + ";\n";
    return s + "};\n\n";
  }

 private:
  // ------------------------------------------------ runtime axes
  int rt_axis(Frame &frame, int axis) {
    auto it = frame.rt.find(axis);
    if (it != frame.rt.end()) return it->second;
    Sz value = axis_size(frame, axis);
    int id = static_cast<int>(axis_sizes_.size());
    axis_sizes_.push_back(value);
    axis_names_.push_back(program_.axis(axis).name);
    frame.rt[axis] = id;
    return id;
  }
  // The size of an axis in a frame (runtime_sizes.cpp): the caller's at a
  // call, its definition for a derived axis, a runtime argument for an axis
  // without a size or named by --runtime, else its size.
  Sz axis_size(Frame &frame, int axis);
  // A runtime size in host code: the size struct's member the host function
  // fills; `planning` is the value choices of speed assume.
  Sz size_symbol(int axis, int64_t planning);
  // By value: axis_sizes_ grows as rt_axis meets new axes.
  Sz size(int rt) const { return axis_sizes_.at(static_cast<size_t>(rt)); }
  Sz numel(const std::vector<int> &axes) const {
    Sz n = 1;
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
    t.strides.assign(t.axes.size(), Sz(1));
    Sz stride = 1;
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
    Sz bytes = numel(axes) * Sz(copies * dtype_bytes(dtype));
    if (auto known = bytes.constant()) bytes = std::max<int64_t>(*known, 1);
    Ten t = dense(dtype, axes, "reinterpret_cast<" + element_type(dtype) + " *>(ncd_ws + " + str(ws_align()) + ")");
    workspace_ += bytes;
    return t;
  }
  // Rounds the workspace's end up to 256 bytes; a runtime offset is rounded
  // by the host code (a named offset in the host function's preamble).
  Sz ws_align() {
    if (auto known = workspace_.constant()) return workspace_ = (*known + 255) / 256 * 256;
    if (workspace_.multiple_of(256)) return workspace_;
    std::string name = "ncd_wo" + str(static_cast<int64_t>(ws_offsets_.size()));
    ws_offsets_.push_back("const int64_t " + name + " = (" + workspace_.code() + " + 255) / 256 * 256;");
    return workspace_ = Sz::symbol(name, (workspace_.hint() + 255) / 256 * 256);
  }
  // A kernel's signature and its grid-stride loop over the n positions of
  // `axes`, each position decomposed into the axes' index variables; the
  // caller appends the body and closes with "  }\n}\n".
  std::string grid_stride_loop(const Sz &n, const std::vector<int> &axes) {
    return "  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < " + str(n) +
           "; i += static_cast<int64_t>(gridDim.x) * blockDim.x) {\n" + decompose(axes, "i", "    ");
  }
  std::string grid_stride_kernel(const KernelArgs &args, const Sz &n, const std::vector<int> &axes) {
    return "__global__ void @NAME@(" + args.param_list() + ") {\n" + grid_stride_loop(n, axes);
  }
  std::string add_kernel(const std::string &stem, const std::string &text) {
    auto it = kernel_names_.find(text);
    if (it != kernel_names_.end()) return it->second;
    std::string name = "ncd_k" + str(static_cast<int64_t>(kernel_names_.size())) + "_" + ident(stem);
    std::string code = text;
    // A kernel that reads a runtime size takes the host function's size struct first.
    if (code.find("ncd_n.") != std::string::npos) {
      size_t open = code.find("@NAME@(");
      if (open == std::string::npos) throw GenError("internal: a kernel without a signature reads runtime sizes");
      bool none = code.compare(open + 7, 1, ")") == 0;
      code.insert(open + 7, none ? "const NcdSizes ncd_n" : "const NcdSizes ncd_n, ");
      sized_kernels_.insert(name);
    }
    for (size_t p; (p = code.find("@NAME@")) != std::string::npos;) code.replace(p, 6, name);
    kernel_names_[text] = name;
    kernel_order_.push_back(code);
    return name;
  }
  // The arguments of a launch of `kernel`: the size struct first when it reads runtime sizes.
  std::string launch_args(const std::string &kernel, const KernelArgs &args) const {
    if (!sized_kernels_.count(kernel)) return args.arg_list();
    return args.params.empty() ? "ncd_n" : "ncd_n, " + args.arg_list();
  }
  void launch(const std::string &kernel, const std::string &blocks, int threads, const KernelArgs &args,
              const std::string &what) {
    line("// " + what);
    line(kernel + "<<<" + blocks + ", " + str(threads) + ", 0, stream>>>(" + launch_args(kernel, args) + ");");
    line("NCD_LAUNCHED();");
  }
  // Blocks of a grid-stride kernel: enough for `work`, at most 2^20.
  static std::string grid_for(const Sz &work, int threads) {
    if (auto n = work.constant())
      return str(std::max<int64_t>(1, std::min<int64_t>((*n + threads - 1) / threads, int64_t{1} << 20)));
    return "ncd_grid(" + work.code() + ", " + str(threads) + ")";
  }
  // Grid dimensions over runtime sizes may exceed CUDA's limits (y and z: 65,535; x: 2^31 - 1): the host code checks.
  void grid_check(const std::vector<std::string> &dims, const std::string &what, int64_t limit = 65535) {
    for (const std::string &dim : dims)
      if (dim.find_first_not_of("0123456789") != std::string::npos)
        line("if (" + dim + " > " + str(limit) + ") return cudaErrorInvalidConfiguration;  // " + what +
             ": grid too large");
  }
  // A size as a float of device code.
  static std::string fsize(const Sz &n) {
    return n.known() ? flit(static_cast<double>(*n.constant())) : "static_cast<float>(" + n.code() + ")";
  }
  // " + log(n)" for logsumexp over n copies of a summed axis no operand has ("" for n = 1).
  static std::string log_term(const Sz &n) {
    if (n == 1) return "";
    if (n.known()) return " + " + flit(std::log(static_cast<double>(n.hint())));
    return " + logf(" + fsize(n) + ")";
  }
  // A grid dimension of tiles: ceil(extent / tile).
  static std::string tiles_for(const Sz &extent, int64_t tile) {
    if (auto n = extent.constant()) return str((*n + tile - 1) / tile);
    return "ncd_tiles(" + extent.code() + ", " + str(tile) + ")";
  }
  void note(const ir::Op *op, const std::string &text) {
    std::string where = op && request_.sources && op->location.valid() ? request_.sources->describe(op->location) + ": " : "";
    std::string full = where + text;
    if (notes_seen_.insert(full).second && request_.notes) request_.notes->push_back(full);
    line("// fallback: " + text);
  }

  // ------------------------------------------------ device expressions
  std::string load(KernelArgs &args, const Ten &t, const std::function<std::string(int)> &index) {
    if (t.kind == Ten::Kind::Literal)
      return t.literal_code.empty() ? flit(t.literal) : "static_cast<float>(" + t.literal_code + ")";
    if (t.kind == Ten::Kind::Index) return "static_cast<float>(" + index(t.axes.at(0)) + ")";
    std::string name = args.in(t);
    return "ncd_f(" + name + "[" + offset(t, index) + "])";
  }
  std::string load_int(KernelArgs &args, const Ten &t, const std::function<std::string(int)> &index) {
    if (t.kind == Ten::Kind::Literal)
      return t.literal_code.empty() ? str(static_cast<int64_t>(t.literal))
                                    : "static_cast<int64_t>(" + t.literal_code + ")";
    if (t.kind == Ten::Kind::Index) return "(" + index(t.axes.at(0)) + ")";
    if (ir::is_integer(t.dtype) || t.dtype == DType::Bool)
      return "static_cast<int64_t>(" + args.in(t) + "[" + offset(t, index) + "])";
    return "static_cast<int64_t>(" + load(args, t, index) + ")";
  }
  std::string offset(const Ten &t, const std::function<std::string(int)> &index) const {
    std::string s;
    for (size_t i = 0; i < t.axes.size(); ++i) {
      if (t.strides[i] == 0) continue;
      s += (s.empty() ? "" : " + ") + ("(" + index(t.axes[i]) + ")") +
           (t.strides[i] == 1 ? "" : " * " + str(t.strides[i]));
    }
    return s.empty() ? "0" : s;
  }
  // Declares x<axis> for each axis from the linear index `linear` (first axis outermost).
  std::string decompose(const std::vector<int> &axes, const std::string &linear, const std::string &pad) const {
    std::string s;
    Sz after = 1;
    for (size_t i = axes.size(); i-- > 0;) {
      std::string e = linear;
      if (after != 1) e = "(" + e + " / " + str(after) + ")";
      if (i > 0) e += " % " + str(size(axes[i]));
      s = pad + "const int64_t " + x(axes[i]) + " = " + e + ";\n" + s;
      after *= size(axes[i]);
    }
    return s;
  }
  // The row's CUDA spelling (ncd/ops.h) with the operands in place of $0 $1 $2.
  static std::string function_expr(ops::Fn fn, const std::vector<std::string> &a) {
    const ops::Info &row = ops::info(fn);
    if (row.cuda.empty()) throw GenError("the cuda backend has no elementwise function '" + std::string(row.name) + "'");
    if (a.size() != static_cast<size_t>(row.arity))
      throw GenError("elementwise '" + std::string(row.name) + "' takes " + str(row.arity) + " operands");
    std::string out;
    for (size_t i = 0; i < row.cuda.size(); ++i) {
      char c = row.cuda[i];
      if (c == '$' && i + 1 < row.cuda.size() && row.cuda[i + 1] >= '0' && row.cuda[i + 1] <= '2') {
        out += a.at(static_cast<size_t>(row.cuda[++i] - '0'));
      } else {
        out += c;
      }
    }
    return out;
  }

  // A position expression of device code (attention masks, score
  // modifications): int64 while every step is exact in integers (positions,
  // integral constants and sizes, their sums, differences, products and
  // comparisons), float after — a position past 2^24 is no float.
  struct PositionCode {
    std::string code;
    bool integer = false;
    std::string as_float{};  // an integer literal's float spelling
  };
  static std::string as_float(const PositionCode &e) {
    if (!e.as_float.empty()) return e.as_float;
    return e.integer ? "static_cast<float>(" + e.code + ")" : e.code;
  }
  static PositionCode position_constant(double c) {
    if (c == std::floor(c) && std::fabs(c) < 9007199254740992.0) {
      const auto n = static_cast<long long>(c);
      return {n < 0 ? "(" + std::to_string(n) + "LL)" : std::to_string(n) + "LL", true, flit(c)};
    }
    return {flit(c), false, ""};
  }
  static PositionCode position_function(ops::Fn fn, const std::vector<PositionCode> &a) {
    bool integers = !a.empty();
    for (const PositionCode &e : a) integers = integers && e.integer;
    std::vector<std::string> codes;
    if (integers) {
      for (const PositionCode &e : a) codes.push_back(e.code);
      if (fn == ops::Fn::Add || fn == ops::Fn::Sub || fn == ops::Fn::Mul || fn == ops::Fn::Neg)
        return {function_expr(fn, codes), true};
      if (fn == ops::Fn::Lt || fn == ops::Fn::Le || fn == ops::Fn::Gt || fn == ops::Fn::Ge || fn == ops::Fn::Eq ||
          fn == ops::Fn::Ne)
        return {function_expr(fn, codes), false};
      codes.clear();
    }
    for (const PositionCode &e : a) codes.push_back(as_float(e));
    return {function_expr(fn, codes), false};
  }

  // ------------------------------------------------ values
  Ten get(Frame &frame, int id);
  Ten param(Frame &frame, int id);
  std::string param_pointer(Frame &frame, const ParamPath &path, DType dtype);
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
  Ten scan(Frame &frame, const ir::Op &op);
  void select(Frame &frame, const ir::Op &op);  // both results into frame.values
  Ten access(Frame &frame, const ir::Op &op);
  Ten merge(Frame &frame, const ir::Op &op);
  void copy(const Ten &from, const Ten &to, const std::string &what);
  void all_reduce(Frame &frame, const ir::Op &op);  // (rank_host.cpp)
  void split_copy(const Ten &from, const Ten &to, bool split, const std::string &what);
  bool plan_gemm(Frame &frame, const ir::Op &o, const Ten &first, const Ten &second, const Ten &final_out,
                 const GemmEpilogue *epilogue, GemmPlan &p, std::string &why);
  bool plan_q8(const std::string &result, DType a, DType b, GemmPlan &p, std::string &why);
  bool gemm(Frame &frame, const ir::Op &op, const std::vector<Ten> &tensors, const std::vector<Ten> &scalars,
            const Ten &out, std::string &why, const GemmEpilogue *epilogue = nullptr);
  void generic_contract(Frame &frame, const ir::Op &op, const std::vector<Ten> &operands, const std::vector<int> &summed,
                        const Ten &out);
  // routed contractions (mixtures of experts): the host step (false: declined,
  // with a note; the caller materialises the gather), its planner and printers
  bool routed(Frame &frame, const ir::Op &op, const ir::Routed &routed);
  bool plan_routed(Frame &frame, const ir::Op &op, const ir::Routed &routed, RoutedPlan &p, std::string &why);
  Routing &routing(const RoutedPlan &p);
  void routed_rows(const std::string &name, const RoutedPlan &p, const Routing &r, const std::vector<Ten> &planes);
  void routed_gemm(const std::string &name, const RoutedPlan &p, const Routing &r, const std::vector<Ten> &planes);
  // A dense workspace buffer of `count` elements.
  Ten alloc_elements(DType dtype, const Sz &count) {
    Sz bytes = count * Sz(dtype_bytes(dtype));
    if (auto known = bytes.constant()) bytes = std::max<int64_t>(*known, 1);
    Ten t = dense(dtype, {}, "reinterpret_cast<" + element_type(dtype) + " *>(ncd_ws + " + str(ws_align()) + ")");
    workspace_ += bytes;
    return t;
  }

  // ------------------------------------------------ scheduled diagrams
  bool scheduled(Frame &frame, const ir::Diagram &diagram, const ir::Op *site);
  // streamed attention: the host step, its planner and its printer
  void attention(Frame &frame, const ir::Diagram &diagram, const AttentionMatch &m, const ir::Op *site);
  bool plan_attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const Ten &Q, const Ten &K, const Ten &V,
                      const Ten &O, AttentionPlan &p, std::string &why);
  // The mask of a streamed kernel as device code (plan_attention.cpp).
  struct MaskCode {
    std::string keep;                     // a predicate of q and k; empty when the mask reads tensors
    std::string live = "true", full = "true";  // of a tile [q0, q1] x [k0, k1]
    bool skipped = false;                 // live can rule tiles out
  };
  void mask_code(Frame &frame, const ir::Diagram &d, int mask, int q_axis, int k_axis, MaskCode &out);
  // An elementwise value of a kernel as a float device expression of its
  // leaves (named values), the positions (`position` of a runtime axis) and
  // inputs read there; `what` names it in the reasons it cannot be written.
  std::optional<std::string> element_expression(Frame &frame, const ir::Diagram &d, KernelArgs &args, int top,
                                                const std::function<std::optional<std::string>(int)> &position,
                                                const std::map<int, std::string> &leaves, const std::string &what,
                                                std::string &why);
  // The score modification as a device expression of `s` (the scaled score),
  // `q`, `k` and the batch positions, loading tensors through `args`; nullopt
  // with the reason when a part cannot be expressed in the kernel.
  std::optional<std::string> score_expression(Frame &frame, const ir::Diagram &d, const AttentionMatch &m,
                                               const AttentionPlan &p, KernelArgs &args, std::string &why);
  void print_attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const AttentionPlan &p, const Ten &Q,
                       const Ten &K, const Ten &V, const Ten &O, const Ten *L, const std::vector<int> &axes);
  // streamed grids (plan_grid.cpp): the host step, planning and printing
  void grid(Frame &frame, const ir::Diagram &diagram, const GridMatch &m, const ir::Op *site);
  // fused kernels: the host step, the layout planner, the printers per family
  void fused(Frame &frame, const ir::Diagram &diagram, const FusedMatch &m, const ir::Op *site);
  std::vector<int> fused_axes(Frame &frame, int id);
  bool plan_fused(Frame &frame, const ir::Diagram &d, const FusedMatch &m, FusedLayout &l, std::string &why);
  std::string fexpr(Frame &frame, KernelArgs &args, ExprCtx &c, int id);
  void fused_stores(Frame &frame, const ir::Diagram &d, FusedKernel &kernel, KernelArgs &args, ExprCtx &c);
  bool fused_gemm(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const FusedLayout &l, FusedKernel &kernel,
                  std::string &why);
  std::string fused_pointwise(Frame &frame, const ir::Diagram &d, const FusedLayout &l, FusedKernel &kernel,
                              KernelArgs &args, Sz &work, std::string &launch_what);
  std::string fused_row(Frame &frame, const ir::Diagram &d, const FusedMatch &m, const FusedLayout &l, FusedKernel &kernel,
                        KernelArgs &args, Sz &work, std::string &launch_what);
  void run_rest(Frame &frame, const ir::Diagram &diagram);

  const EmitRequest &request_;
  const ir::Program &program_;
  Limits limits_;
  std::vector<Sz> axis_sizes_;
  std::map<int, std::string> runtime_sizes_;  // program axis -> its member of the size struct
  std::set<std::string> sized_kernels_;       // kernels that take the size struct
  std::set<int> diagram_sizes_;               // the runtime sizes of the diagram being generated
  std::set<std::string> runtime_names_;       // axes made runtime sizes by --runtime
  std::vector<std::string> axis_names_;
  std::map<std::string, std::string> kernel_names_;
  std::vector<std::string> kernel_order_;
  std::set<std::string> notes_seen_;
  Namings namings_;
  std::string hosts_;
  // The diagram being generated.
  std::string body_;
  std::vector<std::string> preamble_;
  std::vector<std::string> ws_offsets_;  // workspace offsets over runtime sizes (host code; the size query repeats them)
  int indent_ = 2;
  Sz workspace_;
  int loop_counter_ = 0;
  std::map<std::string, std::pair<std::string, DType>> param_args_;  // path -> (host argument, dtype)
  std::map<std::string, std::string> param_arrays_;                  // array key -> array name
  // Routings computed in this host function, by index layout and number of
  // experts (forgotten at a repeat's bounds: its values change per iteration).
  std::map<std::string, Routing> routings_;
  std::map<const ir::Op *, ops::Fn> reductions_;  // reduce_across_ranks
  bool communicates_ = false;
};

// A rank program's part of the file (rank_host.cpp): its kernels and host function in a namespace
// of their own, the rank function around it and the param cutter. Throws GenError.
std::string rank_program_code(const EmitRequest &request, const Limits &limits, const RankPlan &plan);

}  // namespace detail
}  // namespace ncd::cuda
