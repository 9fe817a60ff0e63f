// The streamed-attention kernel: the host step that lays out Q, K, V and O and
// asks the planner (plan_attention.cpp) for an AttentionPlan, and the printer
// that instantiates ncd_attention_block (device/attention.cuh) with the plan's
// tiles (compile-time) and sizes and strides (literals, or runtime sizes) and
// launches it with the plan's shape.
#include "generator.h"

namespace ncd::cuda::detail {

void Generator::attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const ir::Op *site) {
  AttentionPlan p;
  p.rq = rt_axis(frame, m.q_axis);
  p.rk = rt_axis(frame, m.k_axis);
  p.rd = rt_axis(frame, m.d_axis);
  p.re = rt_axis(frame, m.e_axis);
  Ten Q = get(frame, m.q_input), K = get(frame, m.k_input), V = get(frame, m.v_input);
  // Scalar factors (rsqrt(#d), ...) are computed first: folded, or tiny kernels.
  for (const auto &op : d.body.ops)
    if (op->kind != OpKind::Call && op->kind != OpKind::Repeat && d.value(op->results.at(0)).axes.empty())
      this->op(frame, *op);
  const ir::Value &result = d.value(m.output);
  for (const Ten *t : {&Q, &K, &V})
    for (int a : t->axes)
      if (a != p.rq && a != p.rk && a != p.rd && a != p.re &&
          std::find(p.batch.begin(), p.batch.end(), a) == p.batch.end())
        p.batch.push_back(a);
  std::vector<int> own, axes;
  for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
  for (int a : p.batch)
    if (std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
  axes.insert(axes.end(), own.begin(), own.end());
  Ten O = output(frame, m.output, result.dtype, axes);
  std::optional<Ten> L;  // the rows' logsumexp, when the diagram outputs it
  if (m.lse >= 0) {
    std::vector<int> lse_own, lse_axes;
    for (int axis : d.value(m.lse).axes) lse_own.push_back(rt_axis(frame, axis));
    for (int a : p.batch)
      if (std::find(lse_own.begin(), lse_own.end(), a) == lse_own.end()) lse_axes.push_back(a);
    lse_axes.insert(lse_axes.end(), lse_own.begin(), lse_own.end());
    L = output(frame, m.lse, d.value(m.lse).dtype, lse_axes);
  }
  std::string why;
  if (!plan_attention(frame, d, m, Q, K, V, O, p, why)) {
    note(site, "'" + d.name + "': " + why + "; its operations run as separate kernels");
    region(frame, d.body);
    return;
  }
  print_attention(frame, d, m, p, Q, K, V, O, L ? &*L : nullptr, axes);
  frame.values[m.output] = O;
  if (L) frame.values[m.lse] = *L;
}

void Generator::print_attention(Frame &frame, const ir::Diagram &d, const AttentionMatch &m, const AttentionPlan &p,
                                const Ten &Q, const Ten &K, const Ten &V, const Ten &O, const Ten *L,
                                const std::vector<int> &axes) {
  const ir::Value &result = d.value(m.output);
  KernelArgs args;
  std::string pq = args.in(Q), pk = args.in(K), pv = args.in(V);
  std::string scale = "1.f", out_scale = "1.f";
  for (int s : m.scale_values) scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  for (int s : m.out_scale_values) out_scale += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
  std::string r = args.out(O);
  const std::string lse_ptr = L ? args.out(*L) : "";
  std::string lse_value = "v";  // the row work after the logsumexp (a guard against -inf), of it
  if (L) {
    auto position = [&](int axis) -> std::optional<std::string> {
      if (axis == p.rq) return std::string("q");
      if (std::find(p.batch.begin(), p.batch.end(), axis) != p.batch.end()) return x(axis);
      return std::nullopt;
    };
    std::string lse_why;
    auto value = element_expression(frame, d, args, m.lse, position, {{m.lse_raw, "v"}}, "the logsumexp output", lse_why);
    if (!value) throw GenError(lse_why);
    lse_value = *value;
  }
  std::string why;  // the planner checked that the score modification can be written
  std::string score = p.score ? score_expression(frame, d, m, p, args, why).value_or("") : "s";
  if (score.empty()) throw GenError(why);
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : p.batch)
      if (t.stride(ax) != 0) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  std::string k;
  k += "// streamed attention (FlashAttention-2 style): " + p.tiles + "; " + str(p.threads) + " threads, " +
       str(p.smem) + " bytes of shared memory; K and V staged " +
       (p.async ? "by cp.async (double-buffered)" : "by element loads") + "\n";
  k += "// mask: " + (m.mask < 0 ? std::string("none") : p.mask_in_score ? "in the score modification" : p.keep) + "\n";
  k += "struct @NAME@_mask {\n";
  k += "  __device__ bool live(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + p.live + "; }\n";
  k += "  __device__ bool full(int64_t q0, int64_t q1, int64_t k0, int64_t k1) const { return " + p.full + "; }\n";
  k += "  __device__ bool keep(int64_t q, int64_t k) const { return " + p.keep + "; }\n";
  k += "};\n";
  k += "__global__ void __launch_bounds__(" + str(p.threads) + ") @NAME@(" + args.param_list() + ") {\n";
  if (!p.batch.empty()) k += "  const int64_t b = blockIdx.x;\n" + decompose(p.batch, "b", "  ");
  // Under a mask the last query tiles have the most keys: they start first (grid.y
  // counts down), so the short ones fill the tail of the schedule.
  const bool heaviest_first = p.tiles_skipped;
  const std::string q_tile = heaviest_first ? "(static_cast<int64_t>(gridDim.y) - 1 - blockIdx.y)"
                                            : "static_cast<int64_t>(blockIdx.y)";
  k += "  const float scale_log2 = " + scale + " * 1.4426950408889634f;\n";
  k += "  const float out_scale = " + out_scale + ";\n";
  k += "  auto score = [&](float s, int64_t q, int64_t k) -> float { return " + score + "; };\n";
  k += "  auto store = [&](int64_t q, int64_t e, float v) { " + r + "[q * " + str(O.stride(p.rq)) + " + e * " +
       str(O.stride(p.re)) + batch_offset(O) + "] = ncd_to<" + element_type(O.dtype) + ">(v * out_scale); };\n";
  if (L)
    k += "  auto store_lse = [&](int64_t q, float v) { " + lse_ptr + "[q * " + str(L->stride(p.rq)) +
         batch_offset(*L) + "] = ncd_to<" + element_type(L->dtype) + ">(" + lse_value + "); };\n";
  else
    k += "  auto store_lse = [](int64_t, float) {};\n";
  k += "  ncd_attention_block<" + std::string(p.f16 ? "true" : "false") + ", " + str(p.d) + ", " + str(p.e) + ", " +
       str(p.bq) + ", " + str(p.bk) + ", " + (p.async ? "true" : "false") + ", " + (p.score ? "true" : "false") + ", " +
       (L ? "true" : "false") + ">(\n";
  k += "      reinterpret_cast<const uint16_t *>(" + pq + batch_offset(Q) + "), reinterpret_cast<const uint16_t *>(" +
       pk + batch_offset(K) + "),\n      reinterpret_cast<const uint16_t *>(" + pv + batch_offset(V) + "), " +
       str(p.nq) + ", " + str(p.nk) + ", " + str(Q.stride(p.rq)) + ", " + str(Q.stride(p.rd)) + ", " +
       str(K.stride(p.rk)) + ", " + str(K.stride(p.rd)) + ", " + str(V.stride(p.rk)) + ", " + str(V.stride(p.re)) +
       ",\n      " + q_tile + " * " + str(p.bq) + ", scale_log2, @NAME@_mask{}, score, store, store_lse);\n";
  k += "}\n";
  std::string name = add_kernel("attention_" + d.name, k);
  line("// " + result.name + axis_list(axes) + " = streamed attention '" + d.name + "'");
  line("{");
  line("  static std::atomic<unsigned long long> ncd_smem_set{0};");
  line("  NCD_TRY(ncd_smem_limit(" + name + ", " + str(p.smem) + ", ncd_smem_set));");
  line("}");
  grid_check({str(p.batches)}, result.name, 2147483647);
  grid_check({tiles_for(p.nq, p.bq)}, result.name);
  line(name + "<<<dim3(" + str(p.batches) + ", " + tiles_for(p.nq, p.bq) + "), " + str(p.threads) + ", " +
       str(p.smem) + ", stream>>>(" + launch_args(name, args) + ");");
  line("NCD_LAUNCHED();");
}

}  // namespace ncd::cuda::detail
