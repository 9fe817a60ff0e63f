// The ONNX ops that compute (plugin import-onnx, docs/IMPORT.md): products
// (MatMul, Gemm, Einsum), sliding windows (Conv, MaxPool, AveragePool as
// affine reads), normalizations (LayerNormalization, BatchNormalization),
// reductions, and Squeeze/Unsqueeze; the rules say which dimensions are one
// axis and give the ncd expression. Preconditions: the operands were read by
// onnx_graph.cpp; every refusal names the node.
#include <algorithm>
#include <cctype>
#include <map>

#include "onnx_builder.h"

namespace ncd::onnx_import {

void Builder::matmul(const onnx::NodeProto &node) {
  int a = operand(node, 0), b = operand(node, 1);
  std::vector<Dim> A = dims(a), B = dims(b);
  if (A.empty() || B.empty()) throw Failure{where(node) + " multiplies a scalar"};
  const bool vector_a = A.size() == 1, vector_b = B.size() == 1;
  const Dim ka = A.back(), kb = vector_b ? B.back() : B[B.size() - 2];
  if (ka.axis < 0 || kb.axis < 0) throw Failure{where(node) + " sums over a broadcast dimension of size 1"};
  link(node, ka.axis, kb.axis);
  std::vector<Dim> out;
  // Batch dimensions broadcast as elementwise operands do.
  if (A.size() > 2 || B.size() > 2)
    out = broadcast(node, std::vector<std::vector<Dim>>{{A.begin(), A.end() - (vector_a ? 1 : 2)},
                                                        {B.begin(), B.end() - (vector_b ? 1 : 2)}});
  if (!vector_a) out.push_back(A[A.size() - 2]);
  const bool weights = value(g_.uses[static_cast<size_t>(b)].value).role == Role::Param ||
                       (is_view_of_param(b));
  if (!vector_b) {
    out.push_back(B.back());
    if (weights) name_by_module(node, B.back());
  }
  if (weights) name_param(node, b);
  else if (value(g_.uses[static_cast<size_t>(a)].value).role != Role::Param) head_contractions_.push_back(ka.axis);
  result(node, out, ref(a) + " * " + ref(b), dtype(a), true);
}

// Einsum: equal letters are one wire; letters not in the output are summed.
void Builder::einsum(const onnx::NodeProto &node) {
  const auto *a = attribute(node, "equation");
  std::string eq = a ? a->s() : "";
  eq.erase(std::remove(eq.begin(), eq.end(), ' '), eq.end());
  const size_t arrow = eq.find("->");
  if (arrow == std::string::npos || eq.find("...") != std::string::npos)
    throw Failure{where(node) + " has equation '" + eq + "'; ncd import reads explicit ones (\"ij,jk->ik\")"};
  std::vector<std::string> terms;
  for (size_t begin = 0;;) {
    const size_t comma = eq.find(',', begin);
    terms.push_back(eq.substr(begin, std::min(comma, arrow) - begin));
    if (comma == std::string::npos || comma > arrow) break;
    begin = comma + 1;
  }
  if (static_cast<int>(terms.size()) != node.input_size()) throw Failure{where(node) + " has an equation for other inputs"};
  std::map<char, int> letter;
  std::string expr;
  bool summed = false;
  const std::string output = eq.substr(arrow + 2);
  for (size_t k = 0; k < terms.size(); ++k) {
    const int u = operand(node, static_cast<int>(k));
    const std::vector<Dim> &D = dims(u);
    if (D.size() != terms[k].size()) throw Failure{where(node) + " names " + std::to_string(terms[k].size()) + " dimensions of a rank-" + std::to_string(D.size()) + " input"};
    for (size_t p = 0; p < D.size(); ++p) {
      if (D[p].axis < 0) continue;
      auto [it, fresh] = letter.emplace(terms[k][p], D[p].axis);
      if (!fresh) link(node, it->second, D[p].axis);
      summed = summed || output.find(terms[k][p]) == std::string::npos;
    }
    expr += (expr.empty() ? "" : " * ") + ref(u);
  }
  std::vector<Dim> out;
  for (char c : output) {
    auto it = letter.find(c);
    out.push_back(it == letter.end() ? make_dim(-1, 1, -1) : make_dim(it->second, g_.size_of(it->second), -1));
  }
  result(node, out, expr, dtype(static_cast<int>(g_.uses.size()) - 1), summed);
}

// Conv, MaxPool, AveragePool over [N, C, spatial...]: output position o reads the input at
// stride·o + dilation·k − pad for each window position k (positions outside read zero).
void Builder::window(const onnx::NodeProto &node) {
  const std::string &op = node.op_type();
  const int x = operand(node, 0);
  const std::vector<Dim> X = dims(x);
  if (X.size() < 3) throw Failure{where(node) + " takes a tensor [batch, channels, spatial...]"};
  const size_t spatial = X.size() - 2;
  auto ints = [&](const char *name, int64_t fallback, size_t count) { return int_list(node, name, fallback, count); };
  const int64_t groups = int_attribute(node, "group", 1);
  if (groups != 1 && op != "Conv") throw Failure{where(node) + " has groups; ncd import reads them on Conv only"};
  if (int_attribute(node, "ceil_mode", 0) != 0) throw Failure{where(node) + " rounds its output size up (ceil_mode)"};
  int w = -1;
  std::vector<Dim> W;
  std::vector<int64_t> kernel(spatial, 1);
  if (op == "Conv") {
    w = operand(node, 1);
    W = dims(w);
    if (W.size() != X.size()) throw Failure{where(node) + " has a weight of rank " + std::to_string(W.size())};
    for (size_t i = 0; i < spatial; ++i) kernel[i] = W[2 + i].axis >= 0 ? g_.size_of(W[2 + i].axis) : 1;
  } else {
    kernel = ints("kernel_shape", 1, spatial);
  }
  const std::vector<int64_t> strides = ints("strides", 1, spatial), dilations = ints("dilations", 1, spatial);
  std::vector<int64_t> pads = ints("pads", 0, 2 * spatial);
  // auto_pad: VALID pads nothing; SAME_UPPER and SAME_LOWER pad to ceil(size / stride) outputs, the
  // odd one at the end or at the start.
  if (const auto *a = attribute(node, "auto_pad"); a && a->s() != "NOTSET") {
    const std::string mode = a->s();
    if (mode != "VALID" && mode != "SAME_UPPER" && mode != "SAME_LOWER")
      throw Failure{where(node) + " pads with auto_pad " + mode + ", which ONNX does not define"};
    for (size_t i = 0; i < spatial; ++i) {
      const int64_t extent = X[2 + i].axis >= 0 ? g_.size_of(X[2 + i].axis) : 1;
      const int64_t span = dilations[i] * (kernel[i] - 1) + 1, stride = strides[i] < 1 ? 1 : strides[i];
      const int64_t total = mode == "VALID" ? 0 : std::max<int64_t>(((extent + stride - 1) / stride - 1) * stride + span - extent, 0);
      pads[i] = mode == "SAME_LOWER" ? total - total / 2 : total / 2;
      pads[spatial + i] = total - pads[i];
    }
  }
  // ncd reads zero outside an axis; a max pool pads with -inf, which is the same where no value is
  // negative (ResNet's stem pools a ReLU's output).
  const std::string &source = value(g_.uses[static_cast<size_t>(x)].value).op;
  const bool nonnegative = source == "Relu" || source == "Sigmoid" || source == "Softplus" || source == "Exp" ||
                           source == "Softmax";
  // An average that leaves the padding out divides by the positions inside (count_include_pad=0).
  const bool masked = (op == "MaxPool" && !nonnegative) ||
                      (op == "AveragePool" && int_attribute(node, "count_include_pad", 0) == 0);
  // Otherwise the padded positions are masked to -inf.
  std::string inside;
  std::vector<Dim> out = {X[0]};
  Use &in = g_.uses[static_cast<size_t>(x)];
  std::vector<int> window_axes;
  if (op == "Conv" && groups == 1) {
    if (X[1].axis < 0 || W[1].axis < 0) throw Failure{where(node) + " sums over a channel dimension of size 1"};
    link(node, X[1].axis, W[1].axis);
    out.push_back(W[0]);
    name_by_module(node, W[0]);
  } else if (op == "Conv") {
    grouped(node, X, W, groups);
    out.push_back(W[0]);
    name_by_module(node, W[0]);
  } else {
    out.push_back(X[1]);
  }
  for (size_t i = 0; i < spatial; ++i) {
    const int64_t extent = X[2 + i].axis >= 0 ? g_.size_of(X[2 + i].axis) : 1;
    if (extent == 0) throw Failure{where(node) + " slides over a dimension without a size"};
    const int64_t span = dilations[i] * (kernel[i] - 1) + 1;
    const int64_t size = (extent + pads[i] + pads[spatial + i] - span) / strides[i] + 1;
    if (size < 1 || strides[i] < 1 || dilations[i] < 1) throw Failure{where(node) + " has an empty output"};
    const int o = g_.new_axis(size);
    int k = -1;
    if (op == "Conv") {
      k = W[2 + i].axis;
    } else if (kernel[i] > 1) {
      k = g_.new_axis(kernel[i]);
      window_axes.push_back(k);
    }
    name_window(node, spatial, i, X[2 + i].axis, o, k);
    Dim &d = in.dims[2 + i];
    d.terms = {{strides[i], o}};
    if (k >= 0) d.terms.emplace_back(dilations[i], k);
    d.offset = -pads[i];
    out.push_back(make_dim(o, size, -1));
    if (masked && (pads[i] != 0 || pads[spatial + i] != 0)) {
      std::string at = (strides[i] == 1 ? "" : std::to_string(strides[i]) + " * ") + axis_ref(o);
      if (k >= 0) at += " + " + (dilations[i] == 1 ? "" : std::to_string(dilations[i]) + " * ") + axis_ref(k);
      if (pads[i] != 0) at += " - " + std::to_string(pads[i]);
      inside += (inside.empty() ? "" : " && ") + at + " >= 0 && " + at + " < " + std::to_string(extent);
    }
  }
  std::string expr;
  if (op == "Conv") {
    expr = ref(x) + " * " + ref(w);
    if (has_operand(node, 2)) {
      const int b = operand(node, 2);
      if (dims(b).size() != 1 || dims(b)[0].axis < 0) throw Failure{where(node) + " has a bias that is not one per channel"};
      link(node, dims(b)[0].axis, W[0].axis);
      expr += " + " + ref(b);
      name_param(node, b, "_bias");  // a batch norm folded into the conv by the exporter
    }
    name_param(node, w);
  } else {
    std::string slot;
    for (int k : window_axes) slot += (slot.empty() ? "" : ", ") + axis_ref(k);
    if (inside.empty() || slot.empty())
      expr = slot.empty() ? ref(x) : (op == "MaxPool" ? "max[" : "mean[") + slot + "](" + ref(x) + ")";
    else if (op == "MaxPool")
      expr = "max[" + slot + "](where(" + inside + ", " + ref(x) + ", -inf))";
    else
      expr = "sum[" + slot + "](" + ref(x) + ") / sum[" + slot + "](where(" + inside + ", 1.0, 0.0))";
  }
  result(node, out, expr, dtype(x), op == "Conv");
}

// The axes of a window by role: an image's are `h` and `w` (`l` in 1-D, `d, h, w` in 3-D), a
// layer's output positions and kernel taps take its name (`conv1_h`, `conv1_kh`).
void Builder::name_window(const onnx::NodeProto &node, size_t spatial, size_t i, int in, int out, int tap) {
  static const char *const kRoles[3][3] = {{"l", "", ""}, {"h", "w", ""}, {"d", "h", "w"}};
  if (spatial < 1 || spatial > 3) return;
  const std::string role = kRoles[spatial - 1][i];
  std::string module = module_of(node.name());
  if (module.empty() || list_item(module)) {
    module = node.op_type();
    for (char &c : module) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (in >= 0) g_.hint(in, role, 2);
  g_.hint(out, module + "_" + role, 2);
  if (tap >= 0) g_.hint(tap, module + "_k" + role, 2);
}

std::vector<int64_t> int_list(const onnx::NodeProto &node, const std::string &name, int64_t fallback, size_t count) {
  std::vector<int64_t> v(count, fallback);
  if (const auto *a = attribute(node, name)) v.assign(a->ints().begin(), a->ints().end());
  if (v.size() != count) throw Failure{where(node) + " has " + std::to_string(v.size()) + " " + name};
  return v;
}

// ConvTranspose: output position o takes input i through kernel tap k where o + pad = stride·i + k.
// Writing o + pad = stride·q + r (q, r a split of the output), Z[q, r] = Σ X[q - m] · W[stride·m + r]
// with the kernel read as zero past its end; Y[o] is Z at o + pad (`o + 0`: a prefix), a second
// statement when the pad or the sizes make the two differ.
void Builder::transposed(const onnx::NodeProto &node) {
  const int x = operand(node, 0), w = operand(node, 1);
  const std::vector<Dim> X = dims(x), W = dims(w);
  if (X.size() < 3 || W.size() != X.size()) throw Failure{where(node) + " takes a tensor [batch, channels, spatial...] and a weight of its rank"};
  const size_t spatial = X.size() - 2;
  if (const auto *a = attribute(node, "auto_pad"); a && a->s() != "NOTSET")
    throw Failure{where(node) + " pads with auto_pad " + a->s() + "; ncd import reads explicit pads"};
  if (attribute(node, "output_shape")) throw Failure{where(node) + " gives output_shape; ncd import reads pads and output_padding"};
  if (int_attribute(node, "group", 1) != 1) throw Failure{where(node) + " is a grouped transposed convolution; ncd import reads group 1"};
  for (int64_t d : int_list(node, "dilations", 1, spatial))
    if (d != 1) throw Failure{where(node) + " is dilated; ncd import reads transposed convolutions without dilation"};
  const std::vector<int64_t> strides = int_list(node, "strides", 1, spatial), pads = int_list(node, "pads", 0, 2 * spatial),
                             extra = int_list(node, "output_padding", 0, spatial);
  if (X[1].axis < 0 || W[0].axis < 0) throw Failure{where(node) + " sums over a channel dimension of size 1"};
  link(node, X[1].axis, W[0].axis);
  std::vector<Dim> zdims = {X[0], W[1]}, ydims = {X[0], W[1]};
  std::vector<std::pair<int, int64_t>> reads;  // per spatial dimension: Y's position node, the offset it reads Z at
  bool plain = true;
  for (size_t i = 0; i < spatial; ++i) {
    const int64_t in = X[2 + i].axis >= 0 ? g_.size_of(X[2 + i].axis) : 1;
    const int64_t k = W[2 + i].axis >= 0 ? g_.size_of(W[2 + i].axis) : 1, s = strides[i], pad = pads[i];
    if (in == 0) throw Failure{where(node) + " slides over a dimension without a size"};
    if (s < 1 || pad < 0 || pads[spatial + i] < 0 || extra[i] < 0 || extra[i] >= s)
      throw Failure{where(node) + " has strides, pads or output_padding out of range"};
    const int64_t size = s * (in - 1) + k - pad - pads[spatial + i] + extra[i];
    if (size < 1) throw Failure{where(node) + " has an empty output"};
    const int64_t blocks = (size + pad + s - 1) / s;
    const int q = g_.new_axis(blocks);
    const int r = s > 1 ? g_.new_axis(s) : -1;
    Dim &xd = g_.uses[static_cast<size_t>(x)].dims[2 + i];
    Dim &wd = g_.uses[static_cast<size_t>(w)].dims[2 + i];
    xd.terms = {{1, q}};
    if (wd.axis >= 0 && k > s) {
      const int m = g_.new_axis((k + s - 1) / s);
      xd.terms.emplace_back(-1, m);
      wd.terms = {{s, m}};
      if (r >= 0) wd.terms.emplace_back(1, r);
    } else if (wd.axis >= 0) {  // one tap per output position: the kernel is read at r
      wd.terms = {{1, r}};
    }
    int z = q;
    if (r >= 0) {
      z = g_.new_axis(blocks * s);
      if (!g_.factorize(z, {q, r})) throw Failure{where(node) + " has an output split differently elsewhere"};
      pending_regroups_.push_back(Regroup{z, {make_dim(q, blocks), make_dim(r, s)}});
    }
    zdims.push_back(make_dim(z, blocks * s));
    const int o = g_.new_axis(size);
    name_window(node, spatial, i, X[2 + i].axis, o, -1);
    ydims.push_back(make_dim(o, size));
    reads.emplace_back(o, pad);
    if (pad != 0 || blocks * s != size) plain = false;
  }
  // The bias is per output channel: linked to the channel of the statement that adds it.
  auto bias = [&](int channel) -> std::string {
    if (!has_operand(node, 2)) return "";
    const int b = operand(node, 2);
    if (dims(b).size() != 1 || dims(b)[0].axis < 0 || channel < 0)
      throw Failure{where(node) + " has a bias that is not one per channel"};
    link(node, dims(b)[0].axis, channel);
    name_param(node, b, "_bias");
    return " + " + ref(b);
  };
  name_param(node, w);
  if (plain) {
    result(node, zdims, ref(x) + " * " + ref(w) + bias(W[1].axis), dtype(x), true);
    return;
  }
  const int full = result(node, zdims, ref(x) + " * " + ref(w), dtype(x), true);
  g_.values[static_cast<size_t>(full)].merged = true;
  const int u = read(full);
  for (size_t i = 0; i < spatial; ++i) {
    Dim &d = g_.uses[static_cast<size_t>(u)].dims[2 + i];
    d.terms = {{1, reads[i].first}};
    d.offset = reads[i].second;
  }
  ydims[0] = g_.uses[static_cast<size_t>(u)].dims[0];
  ydims[1] = g_.uses[static_cast<size_t>(u)].dims[1];
  const std::string b = bias(ydims[1].axis);
  result(node, ydims, ref(u) + b, dtype(x), false);
}

// A grouped convolution (depthwise when each group is one channel): the input channels are
// (group, per group), the output channels (group, per group), the weight's second dimension the
// input channels of one group; a statement writes the channels as these parts.
void Builder::grouped(const onnx::NodeProto &node, const std::vector<Dim> &X, const std::vector<Dim> &W, int64_t groups) {
  if (X[1].axis < 0 || W[0].axis < 0) throw Failure{where(node) + " has one channel"};
  const int64_t in = g_.size_of(X[1].axis), out = g_.size_of(W[0].axis);
  const int64_t per = W[1].axis >= 0 ? g_.size_of(W[1].axis) : 1;
  if (groups < 1 || in == 0 || in != groups * per || out % groups != 0)
    throw Failure{where(node) + " has " + std::to_string(in) + " input and " + std::to_string(out) +
                  " output channels, which do not divide into " + std::to_string(groups) + " groups"};
  int group = X[1].axis;  // one channel per group: the channels are the groups
  if (per > 1) {
    group = g_.new_axis(groups);
    g_.hint(group, "groups", 2);
    if (!g_.factorize(X[1].axis, {group, W[1].axis}))
      throw Failure{where(node) + " groups channels that are split differently elsewhere"};
    pending_regroups_.push_back(Regroup{X[1].axis, {make_dim(group, groups), make_dim(W[1].axis, per)}});
  }
  if (out == groups) {
    link(node, group, W[0].axis);
    return;
  }
  const int each = g_.new_axis(out / groups);
  if (!g_.factorize(W[0].axis, {group, each}))
    throw Failure{where(node) + " groups channels that are split differently elsewhere"};
  pending_regroups_.push_back(Regroup{W[0].axis, {make_dim(group, groups), make_dim(each, out / groups)}});
}

// BatchNormalization (inference): (x - mean) / sqrt(var + eps) * scale + bias, per channel (dim 1).
void Builder::batchnorm(const onnx::NodeProto &node) {
  if (int_attribute(node, "training_mode", 0) != 0 || node.output_size() > 1)
    throw Failure{where(node) + " is in training mode; ncd import reads inference batch norms"};
  const int x = operand(node, 0);
  const std::vector<Dim> X = dims(x);
  if (X.size() < 2 || X[1].axis < 0) throw Failure{where(node) + " takes a tensor [batch, channels, ...]"};
  int u[4];
  for (int k = 0; k < 4; ++k) {
    u[k] = operand(node, k + 1);
    if (dims(u[k]).size() != 1 || dims(u[k])[0].axis < 0) throw Failure{where(node) + " has parameters that are not one per channel"};
    link(node, dims(u[k])[0].axis, X[1].axis);
  }
  const double eps = float_attribute(node, "epsilon", 1e-5);
  const std::string expr = "(" + ref(x) + " - " + ref(u[2]) + ") / sqrt(" + ref(u[3]) + " + " + number(eps) + ") * " +
                           ref(u[0]) + " + " + ref(u[1]);
  result(node, X, expr, dtype(x), false);
}

void Builder::gemm(const onnx::NodeProto &node) {
  int a = operand(node, 0), b = operand(node, 1);
  const bool ta = int_attribute(node, "transA", 0) != 0, tb = int_attribute(node, "transB", 0) != 0;
  const double alpha = float_attribute(node, "alpha", 1.0), beta = float_attribute(node, "beta", 1.0);
  const auto &A = dims(a), &B = dims(b);
  if (A.size() != 2 || B.size() != 2) throw Failure{where(node) + " takes two matrices"};
  Dim m = ta ? A[1] : A[0], ka = ta ? A[0] : A[1], kb = tb ? B[1] : B[0], n = tb ? B[0] : B[1];
  if (ka.axis < 0 || kb.axis < 0) throw Failure{where(node) + " sums over a broadcast dimension of size 1"};
  name_by_module(node, n);
  name_param(node, b);
  link(node, ka.axis, kb.axis);
  std::string expr = ref(a) + " * " + ref(b) + (alpha != 1.0 ? " * " + number(alpha) : "");
  std::vector<Dim> out = {m, n};
  if (has_operand(node, 2) && beta != 0.0) {
    int c = operand(node, 2);
    out = broadcast(node, std::vector<std::vector<Dim>>{out, dims(c)});
    expr += " + " + ref(c) + (beta != 1.0 ? " * " + number(beta) : "");
  }
  result(node, out, expr, dtype(a), true);
}

bool Builder::is_view_of_param(int use) const {
  for (int id = g_.uses[static_cast<size_t>(use)].value;;) {
    const Value &v = value(id);
    if (v.role == Role::Param) return true;
    if (v.role != Role::Inline || v.uses.size() != 1 || v.expr != ref(v.uses[0])) return false;
    id = g_.uses[static_cast<size_t>(v.uses[0])].value;
  }
}

// torch writes a Linear's weight transposed for MatMul as a new initializer ("onnx::MatMul_131"):
// it takes the layer's path instead ("/attn/c_attn/MatMul" -> attn_c_attn_weight).
void Builder::name_param(const onnx::NodeProto &node, int use, const std::string &suffix) {
  Value &v = g_.values[static_cast<size_t>(g_.uses[static_cast<size_t>(use)].value)];
  const size_t slash = node.name().rfind('/');
  if (v.role != Role::Param || v.onnx_name.rfind("onnx::", 0) != 0 || slash == std::string::npos || slash == 0) return;
  v.name = node.name().substr(1, slash - 1) + suffix;
}

// The features a layer makes take the layer's name: torch names nodes by module path ("/fc1/Gemm": fc1).
void Builder::name_by_module(const onnx::NodeProto &node, const Dim &dim) {
  const std::string module = module_of(node.name());
  // An item of a module list ("h.0": a node of a local function called there) is no name for features.
  if (list_item(module)) return;
  if (dim.axis >= 0 && !module.empty()) g_.hint(dim.axis, module, 1);
}

// Unsqueeze adds broadcast placeholders; Squeeze drops size-1 dimensions (a real axis of size 1
// is summed away in a statement of its own: the sum of one element).
void Builder::squeeze(const onnx::NodeProto &node) {
  int x = operand(node, 0);
  const auto &X = dims(x);
  std::vector<int64_t> axes;
  if (const auto *a = attribute(node, "axes")) axes.assign(a->ints().begin(), a->ints().end());
  else if (has_operand(node, 1)) axes = constant_list(node, 1);
  std::vector<Dim> out;
  bool real = false;
  if (node.op_type() == "Unsqueeze") {
    auto at = positions(node, axes, X.size() + axes.size());
    size_t next = 0;
    for (size_t p = 0; p < X.size() + axes.size(); ++p)
      out.push_back(std::find(at.begin(), at.end(), p) != at.end() ? make_dim(-1, 1, -1) : X[next++]);
  } else {
    std::vector<size_t> at;
    if (axes.empty()) {
      for (size_t p = 0; p < X.size(); ++p)
        if (X[p].size == 1) at.push_back(p);
    } else {
      at = positions(node, axes, X.size());
    }
    for (size_t p = 0; p < X.size(); ++p) {
      if (std::find(at.begin(), at.end(), p) == at.end()) {
        out.push_back(X[p]);
      } else if (X[p].size != 1) {
        throw Failure{where(node) + " squeezes a dimension of size " + std::to_string(X[p].size)};
      } else if (X[p].axis >= 0) {
        real = true;
      }
    }
  }
  result(node, out, ref(x), dtype(x), real);
}

void Builder::layernorm(const onnx::NodeProto &node) {
  int x = operand(node, 0);
  const auto &X = dims(x);
  int64_t axis = int_attribute(node, "axis", -1);
  if (axis < 0) axis += static_cast<int64_t>(X.size());
  if (axis < 0 || axis >= static_cast<int64_t>(X.size())) throw Failure{where(node) + " has axis out of range"};
  std::vector<size_t> at;
  for (size_t p = static_cast<size_t>(axis); p < X.size(); ++p) at.push_back(p);
  const double eps = float_attribute(node, "epsilon", 1e-5);
  std::string expr = "layernorm[" + axes_slot(X, at, node) + "](" + ref(x) + ", eps = " + number(eps) + ")";
  std::vector<int> uses = {x};
  if (has_operand(node, 1)) {
    int s = operand(node, 1);
    uses.push_back(s);
    expr += " * " + ref(s);
  }
  if (has_operand(node, 2)) {
    int b = operand(node, 2);
    uses.push_back(b);
    expr += " + " + ref(b);
  }
  for (int k = 1; k < node.output_size(); ++k)
    if (!node.output(k).empty()) throw Failure{where(node) + ": its mean and inverse deviation outputs are not read"};
  result(node, broadcast_uses(node, uses), expr, dtype(x), false);
}

void Builder::reduce(const onnx::NodeProto &node) {
  int x = operand(node, 0);
  const auto &X = dims(x);
  std::vector<int64_t> axes;
  if (const auto *a = attribute(node, "axes")) {
    axes.assign(a->ints().begin(), a->ints().end());
  } else if (has_operand(node, 1)) {
    axes = constant_list(node, 1);
  } else {
    for (size_t p = 0; p < X.size(); ++p) axes.push_back(static_cast<int64_t>(p));
  }
  auto at = positions(node, axes, X.size());
  const bool keep = int_attribute(node, "keepdims", 1) != 0;
  std::vector<Dim> out;
  for (size_t p = 0; p < X.size(); ++p) {
    bool reduced = std::find(at.begin(), at.end(), p) != at.end();
    if (!reduced) out.push_back(X[p]);
    else if (keep) out.push_back(make_dim(-1, 1, -1));  // kept as a broadcast placeholder
  }
  const std::string fn = node.op_type() == "ReduceMean"  ? "mean"
                         : node.op_type() == "ReduceSum" ? "sum"
                         : node.op_type() == "ReduceMax" ? "max"
                                                         : "min";
  // Over a broadcast the expression does not carry (x.expand(B, H, T).sum(1)), the value is the
  // same at every position: a sum is it times the count, a mean, max or min is it.
  std::vector<size_t> carried;
  std::string count;
  for (size_t p : at) {
    if (!X[p].spread || X[p].axis < 0) carried.push_back(p);
    else if (fn == "sum") count += " * #" + axis_ref(X[p].axis);
  }
  const std::string reduced = carried.empty() ? ref(x) : fn + "[" + axes_slot(X, carried, node) + "](" + ref(x) + ")";
  result(node, out, count.empty() || carried.empty() ? reduced + count : "(" + reduced + ")" + count, dtype(x), false);
}

}  // namespace ncd::onnx_import
