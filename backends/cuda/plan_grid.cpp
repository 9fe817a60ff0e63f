// Streamed grid kernels (GridMatch, plan.h): the tiles (fit_grid_tiles, which
// plan_shape.cpp reports to `tile` and `ncd cost`), and the host step that
// lays out the operands, writes the grid's elementwise work and the mask's
// tile bounds as device expressions, and instantiates ncd_grid_block
// (device/grid.cuh); or declines with the reason (the operations then run as
// separate kernels).
#include "generator.h"

namespace ncd::cuda::detail {

namespace {

// Registers a thread needs, roughly: X fragments, raw and grid values, accumulators.
int64_t grid_registers(int64_t bs, const std::vector<int64_t> &c_widths, const std::vector<int64_t> &e_widths) {
  int64_t r = 0;
  for (int64_t c : c_widths) r += c / 4 + bs / 2;
  for (int64_t e : e_widths) r += bs / 4 + e / 2;
  return r;
}

int64_t grid_smem(int64_t bg, int64_t bs, const std::vector<int64_t> &c_widths, const std::vector<int64_t> &e_widths) {
  int64_t elements = 0;
  for (int64_t c : c_widths) elements += (bg + bs) * (c + 8);
  for (int64_t e : e_widths) elements += bs * (e + 8);
  return elements * 2;
}

}  // namespace

GridTiles fit_grid_tiles(int64_t asked_g, int64_t asked_s, const std::vector<int64_t> &c_widths,
                         const std::vector<int64_t> &e_widths, int64_t smem_limit) {
  auto power = [](int64_t asked, int64_t lo, int64_t hi) {
    int64_t t = lo;
    while (t * 2 <= std::min(asked, hi)) t *= 2;
    return t;
  };
  int64_t bg = power(asked_g, 16, 128), bs = power(asked_s, 16, 64);
  // Within about 160 registers a thread where a smaller chunk gets there.
  while (bs > 16 && grid_registers(bs, c_widths, e_widths) > 160) bs /= 2;
  while (grid_smem(bg, bs, c_widths, e_widths) > smem_limit && bs > 16) bs /= 2;
  while (grid_smem(bg, bs, c_widths, e_widths) > smem_limit && bg > 16) bg /= 2;
  return {bg, bs, grid_smem(bg, bs, c_widths, e_widths), bg / 16 * 32};
}

void Generator::grid(Frame &frame, const ir::Diagram &d, const GridMatch &m, const ir::Op *site) {
  const int rg = rt_axis(frame, m.g_axis), rs = rt_axis(frame, m.s_axis);
  // Scalar factors (rsqrt(#d), ...) are computed first: folded, or tiny kernels.
  for (const auto &op : d.body.ops)
    if (op->kind != OpKind::Call && op->kind != OpKind::Repeat && d.value(op->results.at(0)).axes.empty())
      this->op(frame, *op);
  auto decline = [&](const std::string &why) {
    note(site, "'" + d.name + "': " + why + "; its operations run as separate kernels");
    region(frame, d.body);
  };
  std::vector<Ten> X, Y, Z;
  std::vector<int> widths_c, widths_e;  // runtime axes
  std::vector<int64_t> c_widths, e_widths;
  for (const auto &p : m.producers) {
    X.push_back(get(frame, p.x));
    Y.push_back(get(frame, p.y));
    widths_c.push_back(rt_axis(frame, p.c_axis));
  }
  for (const auto &c : m.consumers) {
    Z.push_back(get(frame, c.z));
    widths_e.push_back(rt_axis(frame, c.e_axis));
  }
  for (const std::vector<Ten> *list : {&X, &Y, &Z})
    for (const Ten &t : *list)
      if (t.kind != Ten::Kind::Buffer) return decline("the grid's operands must be stored tensors");
  for (auto [axes, widths] : {std::pair{&widths_c, &c_widths}, std::pair{&widths_e, &e_widths}})
    for (int axis : *axes) {
      auto n = size(axis).constant();
      if (!n || !grid_width_fits(*n))
        return decline("the width '" + axis_names_[static_cast<size_t>(axis)] +
                       "' must be a known multiple of 16 up to 128 for the grid kernel");
      widths->push_back(*n);
    }
  // Batch axes: every other axis of the operands; one position per block on the grid's x.
  std::vector<int> batch;
  auto known = [&](int a) {
    return a == rg || a == rs || std::find(widths_c.begin(), widths_c.end(), a) != widths_c.end() ||
           std::find(widths_e.begin(), widths_e.end(), a) != widths_e.end() ||
           std::find(batch.begin(), batch.end(), a) != batch.end();
  };
  for (const std::vector<Ten> *list : {&X, &Y, &Z})
    for (const Ten &t : *list)
      for (int a : t.axes)
        if (!known(a)) batch.push_back(a);
  if (limits_.block_smem <= 0) throw GenError(limits_.unknown);
  const GridTiles tiles = fit_grid_tiles(m.bg, m.bs, c_widths, e_widths, limits_.block_smem);
  const Sz ng = size(rg), ns = size(rs), batches = numel(batch);
  const int64_t g_tiles = ng.known() ? (*ng.constant() + tiles.bg - 1) / tiles.bg : 0;
  if (g_tiles > 65535 || (batches.known() && *batches.constant() > 2147483647))
    return decline("the grid kernel's launch grid would be too large");

  KernelArgs args;
  auto position = [&](int axis) -> std::optional<std::string> {
    if (axis == rg) return std::string("g");
    if (axis == rs) return std::string("s");
    if (std::find(batch.begin(), batch.end(), axis) != batch.end()) return x(axis);
    return std::nullopt;
  };
  auto scale_of = [&](const std::vector<int> &scales) {
    std::string out = "1.f";
    for (int s : scales) out += " * " + load(args, get(frame, s), [](int) { return std::string("0"); });
    return out;
  };
  std::map<int, std::string> leaves;
  for (size_t i = 0; i < m.producers.size(); ++i)
    leaves[m.producers[i].value] = "(r" + std::to_string(i) + " * " + scale_of(m.producers[i].scales) + ")";
  std::vector<std::string> values;
  for (const auto &c : m.consumers) {
    std::string why;
    auto e = element_expression(frame, d, args, c.grid, position, leaves, "the grid", why);
    if (!e) return decline(why);
    values.push_back(*e);
  }
  MaskCode mask;
  if (m.mask >= 0) mask_code(frame, d, m.mask, m.g_axis, m.s_axis, mask);

  // Outputs: the batch axes first, then the consumer's own axes.
  std::vector<Ten> O;
  std::vector<std::vector<int>> out_axes;
  for (const auto &c : m.consumers) {
    const ir::Value &result = d.value(c.output);
    std::vector<int> own, axes;
    for (int axis : result.axes) own.push_back(rt_axis(frame, axis));
    for (int a : batch)
      if (std::find(own.begin(), own.end(), a) == own.end()) axes.push_back(a);
    axes.insert(axes.end(), own.begin(), own.end());
    O.push_back(output(frame, c.output, result.dtype, axes));
    out_axes.push_back(axes);
  }
  auto batch_offset = [&](const Ten &t) {
    std::string s;
    for (int ax : batch)
      if (t.stride(ax) != 0) s += " + " + x(ax) + " * " + str(t.stride(ax));
    return s;
  };
  const bool f16 = X[0].dtype == DType::F16;
  std::string operands;
  auto operand = [&](const Ten *t, int row_axis, int col_axis) {
    if (!t) return std::string("static_cast<const uint16_t *>(nullptr), 0, 0");
    return "reinterpret_cast<const uint16_t *>(" + args.in(*t) + batch_offset(*t) + "), " + str(t->stride(row_axis)) +
           ", " + str(t->stride(col_axis));
  };
  for (size_t i = 0; i < 2; ++i) {
    const bool here = i < m.producers.size();
    operands += operand(here ? &X[i] : nullptr, rg, here ? widths_c[i] : -1) + ",\n      ";
    operands += operand(here ? &Y[i] : nullptr, rs, here ? widths_c[i] : -1) + ",\n      ";
  }
  for (size_t i = 0; i < 2; ++i) {
    const bool here = i < m.consumers.size();
    operands += operand(here ? &Z[i] : nullptr, rs, here ? widths_e[i] : -1) + ",\n      ";
  }
  std::string store;
  for (size_t j = 0; j < m.consumers.size(); ++j) {
    const GridMatch::Consumer &c = m.consumers[j];
    const std::string r = args.out(O[j]);
    const std::string v = rounded(d.value(c.value).dtype, "v * " + scale_of(c.scales));
    store += "    if (j == " + std::to_string(j) + ") " + r + "[g * " + str(O[j].stride(rg)) + " + e * " +
             str(O[j].stride(widths_e[j])) + batch_offset(O[j]) + "] = ncd_to<" + element_type(O[j].dtype) + ">(" + v +
             ");\n";
  }
  std::string tiles_text = "group " + axis_names_[static_cast<size_t>(rg)] + " by " + str(tiles.bg) + ", stream " +
                           axis_names_[static_cast<size_t>(rs)] + " by " + str(tiles.bs);
  std::string k;
  k += "// streamed grid (FlashAttention-2's backward form): " + tiles_text + "; " + str(tiles.threads) + " threads, " +
       str(tiles.smem) + " bytes of shared memory\n";
  k += "__global__ void __launch_bounds__(" + str(tiles.threads) + ") @NAME@(" + args.param_list() + ") {\n";
  if (!batch.empty()) k += "  const int64_t b = blockIdx.x;\n" + decompose(batch, "b", "  ");
  k += "  auto live = [&](int64_t q0, int64_t q1, int64_t k0, int64_t k1) -> bool { return " + mask.live + "; };\n";
  k += "  auto elem = [&](float r0, float r1, int64_t g, int64_t s, float &o0, float &o1) {\n";
  k += "    o0 = " + values[0] + ";\n";
  if (values.size() > 1) k += "    o1 = " + values[1] + ";\n";
  k += "  };\n";
  k += "  auto store = [&](int j, int64_t g, int64_t e, float v) {\n" + store + "  };\n";
  k += "  ncd_grid_block<" + std::string(f16 ? "true" : "false") + ", " + str(tiles.bg) + ", " + str(tiles.bs) + ", " +
       str(c_widths[0]) + ", " + str(c_widths.size() > 1 ? c_widths[1] : 0) + ", " + str(e_widths[0]) + ", " +
       str(e_widths.size() > 1 ? e_widths[1] : 0) + ">(\n      " + operands + str(ng) + ", " + str(ns) +
       ", static_cast<int64_t>(blockIdx.y) * " + str(tiles.bg) + ", live, elem, store);\n";
  k += "}\n";
  std::string name = add_kernel("grid_" + d.name, k);
  std::string results;
  for (size_t j = 0; j < m.consumers.size(); ++j)
    results += (j ? ", " : "") + d.value(m.consumers[j].output).name + axis_list(out_axes[j]);
  line("// " + results + " = streamed grid '" + d.name + "'");
  line("{");
  line("  static std::atomic<unsigned long long> ncd_smem_set{0};");
  line("  NCD_TRY(ncd_smem_limit(" + name + ", " + str(tiles.smem) + ", ncd_smem_set));");
  line("}");
  grid_check({str(batches)}, d.value(m.consumers[0].output).name, 2147483647);
  grid_check({tiles_for(ng, tiles.bg)}, d.value(m.consumers[0].output).name);
  line(name + "<<<dim3(" + str(batches) + ", " + tiles_for(ng, tiles.bg) + "), " + str(tiles.threads) + ", " +
       str(tiles.smem) + ", stream>>>(" + launch_args(name, args) + ");");
  line("NCD_LAUNCHED();");
  for (size_t j = 0; j < m.consumers.size(); ++j) frame.values[m.consumers[j].output] = O[j];
}

}  // namespace ncd::cuda::detail
