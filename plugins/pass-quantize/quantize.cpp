// Pass `quantize=MODE`: rewrites a diagram's linear layers to low precision.
//
// A linear layer is a contraction of two tensors (scalar factors aside) over
// axes both carry, one of them a weight (a param, or a renaming, split or
// merge of one) and the other not, into a float result. MODE says what it
// becomes (docs/OPTIMIZE.md, "quantize"):
//
// - `w8a8`: int8 weights, one scale per output channel (the weight's axes
//   other than the summed ones), and int8 activations, one scale per token
//   (the activation's other axes), both symmetric: scale = max|x| / 127 and
//   q = quantize(x, scale, 0); the product is summed exactly in i32 and
//   scaled back in f32 (Acc · Sx · Sw) to the layer's dtype.
// - `w8a16`: the weights only, int8 per output channel, dequantized to the
//   weight's own dtype where they are read; the activations stay.
// - `fp8`: both operands f8e4m3 with one scale per tensor (max|x| / 448, the
//   largest e4m3 value), the product accumulated in f32 and scaled back.
//
// Scales are computed in the diagram from the values they scale (dynamic
// quantization; the weights' scales depend on params only and can be
// computed once). The pass is inexact by design: `ncd optimize --verify`
// measures the change against --tolerance.
//
// Preconditions: a verified diagram. Contractions with integer or 8-bit
// operands, of two weights or two activations, summing an axis one operand
// lacks, or reading a weight through a gather (an embedding, a routed
// contraction) are left alone; --explain says which were quantized.
#include <algorithm>
#include <set>

#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"

namespace {

using namespace ncd;

const std::vector<std::string> kModes = {"w8a8", "w8a16", "fp8"};

bool floating(ir::DType dtype) { return !ir::is_integer(dtype) && dtype != ir::DType::Bool; }
bool eight_bit(ir::DType dtype) { return ir::dtype_bytes(dtype) == 1; }

class Quantize : public Pass {
 public:
  std::string name() const override { return "quantize"; }
  std::string description() const override {
    return "Quantize linear layers (quantize=w8a8, w8a16 or fp8; inexact, opt-in)";
  }
  std::string check_argument(const std::string &argument) const override {
    if (std::find(kModes.begin(), kModes.end(), argument) != kModes.end()) return "";
    std::string modes = "quantize=w8a8 (int8 weights and activations), quantize=w8a16 (int8 weights only) or "
                        "quantize=fp8 (f8e4m3 weights and activations)";
    if (argument.empty()) return "pass 'quantize' needs a mode: " + modes;
    return "pass 'quantize' has no mode '" + argument + "': " + modes;
  }
  bool exact(const std::string &) const override { return false; }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    (void)program;
    PassResult result;
    mode_ = context.argument;
    // Weights: params, and views of them that are no gather.
    weights_.clear();
    for (int id : diagram.params) weights_.insert(id);
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Merge && weights_.count(op.operands.at(0))) weights_.insert(op.results.at(0));
      if (op.kind == ir::OpKind::Access && weights_.count(op.operands.at(0)) && op.operands.size() == 1)
        weights_.insert(op.results.at(0));
    });
    region(diagram, diagram.body, context, result);
    return result;
  }

 private:
  std::string mode_;
  std::set<int> weights_;

  void region(ir::Diagram &diagram, ir::Region &body, PassContext &context, PassResult &result) {
    std::vector<std::unique_ptr<ir::Op>> out;
    for (auto &entry : body.ops) {
      if (entry->body) region(diagram, *entry->body, context, result);
      if (entry->kind != ir::OpKind::Contract || !rewrite(diagram, entry, out, context)) {
        out.push_back(std::move(entry));
        continue;
      }
      result.changed = true;
    }
    body.ops = std::move(out);
  }

  int value(ir::Diagram &diagram, std::vector<int> axes, ir::DType dtype, const SourceLocation &location) {
    int id = ir::add_value(diagram, "", std::move(axes), dtype, location);
    diagram.value(id).name = "%" + std::to_string(id);
    return id;
  }

  int emit(ir::Diagram &diagram, std::vector<std::unique_ptr<ir::Op>> &out, ir::OpKind kind, ops::Fn fn,
           std::vector<int> operands, std::vector<int> axes, std::vector<int> result_axes, ir::DType dtype,
           const SourceLocation &location, int result = -1) {
    auto op = ir::make_op(diagram, kind, location);
    op->function = fn;
    op->operands = std::move(operands);
    op->axes = std::move(axes);
    if (result < 0) result = value(diagram, std::move(result_axes), dtype, location);
    ir::set_results(diagram, *op, {result});
    out.push_back(std::move(op));
    return result;
  }

  int constant(ir::Diagram &diagram, std::vector<std::unique_ptr<ir::Op>> &out, double x,
               const SourceLocation &location) {
    auto op = ir::make_op(diagram, ir::OpKind::Constant, location);
    op->constant = x;
    ir::set_results(diagram, *op, {value(diagram, {}, ir::DType::F32, location)});
    int id = op->results[0];
    out.push_back(std::move(op));
    return id;
  }

  // scale = max over `over` of |x| / limit, f32, over x's other axes.
  int scale(ir::Diagram &diagram, std::vector<std::unique_ptr<ir::Op>> &out, int x, const std::vector<int> &over,
            double limit, const SourceLocation &location) {
    const std::vector<int> axes = diagram.value(x).axes;
    std::vector<int> kept;
    for (int axis : axes)
      if (std::find(over.begin(), over.end(), axis) == over.end()) kept.push_back(axis);
    int magnitude = emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Abs, {x}, {}, axes, ir::DType::F32, location);
    int largest = emit(diagram, out, ir::OpKind::Reduce, ops::Fn::Max, {magnitude}, over, kept, ir::DType::F32, location);
    int bound = constant(diagram, out, limit, location);
    return emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Div, {largest, bound}, {}, kept, ir::DType::F32,
                location);
  }

  // x as int8 with `s` (quantize(x, s, 0), saturated by the i8 result).
  int to_int8(ir::Diagram &diagram, std::vector<std::unique_ptr<ir::Op>> &out, int x, int s,
              const SourceLocation &location) {
    int zero = constant(diagram, out, 0, location);
    return emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Quantize, {x, s, zero}, {}, diagram.value(x).axes,
                ir::DType::I8, location);
  }

  bool rewrite(ir::Diagram &diagram, std::unique_ptr<ir::Op> &entry, std::vector<std::unique_ptr<ir::Op>> &out,
               PassContext &context) {
    ir::Op &op = *entry;
    std::vector<int> tensors, scalars;
    for (int operand : op.operands) (diagram.value(operand).axes.empty() ? scalars : tensors).push_back(operand);
    const int result = op.results.at(0);
    if (tensors.size() != 2 || op.axes.empty() || !floating(diagram.value(result).dtype)) return false;
    int w = tensors[0], x = tensors[1];
    if (!weights_.count(w)) std::swap(w, x);
    if (!weights_.count(w) || weights_.count(x)) return false;
    // Copies: adding values below may move the diagram's value table.
    const ir::Value wv = diagram.value(w), xv = diagram.value(x);
    auto carries = [](const ir::Value &v, int axis) { return std::find(v.axes.begin(), v.axes.end(), axis) != v.axes.end(); };
    if (!floating(wv.dtype) || !floating(xv.dtype) || eight_bit(wv.dtype) || eight_bit(xv.dtype)) return false;
    for (int axis : op.axes)
      if (!carries(wv, axis) || !carries(xv, axis)) {
        context.note(op.location, "left '" + ir::value_label(diagram, result) +
                                      "' alone: it sums an axis that only one operand carries");
        return false;
      }
    const SourceLocation at = op.location;
    const std::vector<int> result_axes = diagram.value(result).axes;
    if (mode_ == "w8a16") {
      int sw = scale(diagram, out, w, op.axes, 127, at);
      int wq = to_int8(diagram, out, w, sw, at);
      int zero = constant(diagram, out, 0, at);
      int wd = emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Dequantize, {wq, sw, zero}, {}, wv.axes, wv.dtype, at);
      for (int &operand : op.operands)
        if (operand == w) operand = wd;
      out.push_back(std::move(entry));
      context.note(at, "'" + ir::value_label(diagram, x) + "' times '" + ir::value_label(diagram, w) +
                           "': the weights as int8, one scale per output channel, dequantized where read");
      return true;
    }
    const bool fp8 = mode_ == "fp8";
    int sx, sw, xq, wq;
    ir::DType accumulator = fp8 ? ir::DType::F32 : ir::DType::I32;
    if (fp8) {
      // One scale per tensor; the f8e4m3 result rounds and saturates x / scale.
      sx = scale(diagram, out, x, xv.axes, 448, at);
      sw = scale(diagram, out, w, wv.axes, 448, at);
      xq = emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Div, {x, sx}, {}, xv.axes, ir::DType::F8E4M3, at);
      wq = emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Div, {w, sw}, {}, wv.axes, ir::DType::F8E4M3, at);
    } else {
      sx = scale(diagram, out, x, op.axes, 127, at);
      sw = scale(diagram, out, w, op.axes, 127, at);
      xq = to_int8(diagram, out, x, sx, at);
      wq = to_int8(diagram, out, w, sw, at);
    }
    int acc = emit(diagram, out, ir::OpKind::Contract, ops::Fn::None, {xq, wq}, op.axes, result_axes, accumulator, at);
    // Scaled back in f32, the last product into the layer's own result value.
    std::vector<int> factors = {sx, sw};
    factors.insert(factors.end(), scalars.begin(), scalars.end());
    int running = acc;
    for (size_t i = 0; i < factors.size(); ++i) {
      bool last = i + 1 == factors.size();
      running = emit(diagram, out, ir::OpKind::Elementwise, ops::Fn::Mul, {running, factors[i]}, {}, result_axes,
                     last ? diagram.value(result).dtype : ir::DType::F32, at, last ? result : -1);
    }
    context.note(at, "'" + ir::value_label(diagram, x) + "' times '" + ir::value_label(diagram, w) + "': " +
                         (fp8 ? std::string("f8e4m3 weights and activations, one scale per tensor, f32 accumulation")
                              : std::string("int8 weights (one scale per output channel) and activations (one "
                                            "scale per token), exact i32 accumulation")));
    return true;
  }
};

int register_quantize(Registry *registry) { return registry->add_pass(std::make_unique<Quantize>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_quantize, "pass-quantize", "1.0.0", "Pass quantize: int8 and fp8 linear layers", register_quantize)
