// The cost report as text (for people) and as JSON (for tools; the schema is
// documented in docs/COST.md and versioned by kCostJsonVersion).
#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cost_format.h"
#include "ncd/cost.h"

namespace ncd {
namespace {

using costfmt::bytes;
using costfmt::flops;
using costfmt::seconds;

std::string where(const SourceManager &sources, SourceLocation location) {
  return location.valid() ? sources.describe(location) : "";
}

std::string line_col(SourceLocation location) {
  return location.valid() ? std::to_string(location.line) + ":" + std::to_string(location.column) : "";
}

// A left-aligned text table with two spaces between columns.
class Table {
 public:
  void row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  std::string render(const std::string &indent) const {
    std::vector<size_t> widths;
    for (const auto &row : rows_)
      for (size_t i = 0; i < row.size(); ++i) {
        if (widths.size() <= i) widths.push_back(0);
        widths[i] = std::max(widths[i], display_width(row[i]));
      }
    std::string out;
    for (const auto &row : rows_) {
      std::string line = indent;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(widths[i] - display_width(row[i]) + 2, ' ');
      }
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  static size_t display_width(const std::string &text) {
    size_t width = 0;
    for (unsigned char ch : text)
      if ((ch & 0xC0) != 0x80) ++width;
    return width;
  }
  std::vector<std::vector<std::string>> rows_;
};

std::string intensity_text(double intensity) { return intensity > 0 ? costfmt::number(intensity) : "-"; }

void op_rows(Table &table, const OpCost &op, const std::string &indent) {
  std::string label = op.name.empty() ? op.what : op.name + " = " + op.what;
  table.row({indent + label, line_col(op.location), flops(op.flops.value), bytes(op.traffic.empty() ? 0 : op.traffic[0].read.value),
             bytes(op.traffic.empty() ? 0 : op.traffic[0].write.value), intensity_text(op.intensity),
             op.unit.empty() ? "-" : op.unit, op.bound.empty() ? "-" : op.bound, seconds(op.time)});
  for (const OpCost &child : op.children) op_rows(table, child, indent + "  ");
}

// "max(compute, level, ...)" in seconds; a sum of operations: the sum of theirs.
std::string time_formula(const CostReport &report, const OpCost &op) {
  if (op.roofline.empty()) {
    std::string out;
    for (const OpCost &child : op.children) {
      std::string term = time_formula(report, child);
      if (term != "0") out += (out.empty() ? "" : " + ") + term;
    }
    return out.empty() ? "0" : out;
  }
  std::vector<std::string> terms;
  for (const Formula &term : op.roofline)
    if (!term.is_zero()) terms.push_back(report.text(term));
  std::string out;
  if (terms.size() == 1) {
    out = terms[0];
  } else if (terms.size() > 1) {
    out = "max(";
    for (size_t i = 0; i < terms.size(); ++i) out += (i ? ", " : "") + terms[i];
    out += ")";
  }
  if (!out.empty() && op.efficiency < 1) out = (terms.size() == 1 ? "(" + out + ")" : out) + "/" + costfmt::sci(op.efficiency);
  if (op.launch > 0) out += (out.empty() ? "" : " + ") + costfmt::sci(op.launch);
  return out.empty() ? "0" : out;
}

std::string kernel_time_formula(const CostReport &report, const KernelCost &k) {
  OpCost op;
  op.efficiency = k.efficiency;
  op.launch = k.launch;
  for (const auto &[unit, seconds] : k.unit_times) op.roofline.push_back(seconds.formula);
  for (size_t l = 0; l < k.traffic.size() && l < report.bandwidths.size(); ++l)
    if (report.bandwidths[l] > 0)
      op.roofline.push_back((k.traffic[l].read.formula + k.traffic[l].write.formula).scaled(1.0 / report.bandwidths[l]));
  return time_formula(report, op);
}

std::string intensity_formula(const CostReport &report, const OpCost &op) {
  if (op.traffic.empty()) return "";
  Formula bytes = op.traffic[0].read.formula + op.traffic[0].write.formula;
  if (bytes.is_zero()) return "";
  return "(" + report.text(op.flops.formula) + ")/(" + report.text(bytes) + ")";
}

void collect_routed(const OpCost &op, std::vector<const OpCost *> &out) {
  if (op.routing) out.push_back(&op);
  for (const OpCost &child : op.children) collect_routed(child, out);
}

// The routed contractions (mixtures of experts): their rows and how routing spreads them.
void routing_text(std::ostringstream &out, const CostReport &report) {
  std::vector<const OpCost *> routed;
  for (const OpCost &op : report.ops) collect_routed(op, routed);
  if (routed.empty()) return;
  out << "  Routed contractions (mixtures of experts): each route multiplies one expert's weights; the FLOPs\n"
         "  above are routed work, the weight bytes those of every expert that can receive a route.\n";
  for (const OpCost *op : routed) {
    const Routing &r = *op->routing;
    out << "    " << op->name << " reads '" << r.table << "' through '" << r.index << "': "
        << costfmt::number(r.routes.value) << " routes over " << costfmt::number(r.experts.value) << " experts; per expert "
        << costfmt::number(r.rows_uniform.value) << " at uniform routing (" << costfmt::number(r.experts_touched)
        << " experts reached on average: " << costfmt::bytes(r.experts_touched * r.expert_bytes.value)
        << " of weights, of " << costfmt::bytes(std::min(r.routes.value, r.experts.value) * r.expert_bytes.value)
        << " at most), up to " << costfmt::number(r.rows_skewed.value) << " when skewed";
    if (r.dense_flops.value > 0)
      out << "; dense equivalent " << costfmt::flops(r.dense_flops.value) << " ("
          << costfmt::number(r.dense_flops.value / std::max(op->flops.value, 1.0)) << "x)";
    out << "\n";
  }
  out << "\n";
}

void op_formulas(std::ostringstream &out, const CostReport &report, const OpCost &op, const std::string &indent) {
  std::string label = op.name.empty() ? op.what : op.name;
  out << indent << label << ": FLOPs = " << report.text(op.flops.formula);
  if (!op.traffic.empty() && (!op.traffic[0].read.formula.is_zero() || !op.traffic[0].write.formula.is_zero()))
    out << "; " << report.levels[0] << " read = " << report.text(op.traffic[0].read.formula) << ", write = "
        << report.text(op.traffic[0].write.formula);
  if (!op.roofline.empty()) out << "; time = " << time_formula(report, op) << " s";
  out << "\n";
  for (const OpCost &child : op.children) op_formulas(out, report, child, indent + "  ");
}

void energy_text(std::ostringstream &out, const CostReport &report, const Energy &energy, const std::string &indent) {
  out << indent << "energy " << costfmt::joules(energy.total) << " = compute " << costfmt::joules(energy.compute);
  for (size_t l = 0; l < energy.levels.size(); ++l)
    if (energy.levels[l] > 0) out << " + " << report.levels[l] << " " << costfmt::joules(energy.levels[l]);
  out << "\n";
  out << indent << "  = " << report.text(energy.formula) << " J\n";
  out << indent << "Landauer bound at " << costfmt::number(energy.temperature) << " K: " << costfmt::sci(energy.erased_bits)
      << " bits erased x k*T*ln 2 = " << costfmt::sci(energy.landauer) << " J; the estimate is " << costfmt::sci(energy.ratio)
      << " times the bound\n";
}

}  // namespace

std::string format_report(const CostReport &report, const SourceManager &sources) {
  std::ostringstream out;
  out << "ncd cost: " << report.diagram << " (" << where(sources, report.location) << ") on " << report.hardware;
  if (!report.hardware_description.empty()) out << ", " << report.hardware_description;
  out << "\n";
  out << "sizes:";
  for (size_t i = 0; i < report.sizes.size(); ++i)
    out << (i ? ", " : " ") << report.sizes[i].first << " = " << report.sizes[i].second;
  out << "\n\n";

  const std::string &top = report.levels.empty() ? std::string("memory") : report.levels[0];
  out << "Unfused baseline: every operation reads its inputs from " << top << " and writes its outputs to " << top
      << ";\nthe levels below " << top << " carry the same bytes.\n\n";
  Table table;
  table.row({"operation", "at", "FLOPs", top + " read", top + " write", "FLOP/B", "unit", "bound", "time"});
  for (const OpCost &op : report.ops) op_rows(table, op, "");
  OpCost total = report.total;
  total.name = "";
  total.what = "total";
  total.location = {};
  op_rows(table, total, "");
  out << table.render("  ") << "\n";
  out << "  formulas (FLOPs; bytes at " << top << "):\n";
  for (const OpCost &op : report.ops) op_formulas(out, report, op, "    ");
  out << "    total: FLOPs = " << report.text(report.total.flops.formula) << "\n";
  if (!report.total.traffic.empty())
    out << "           " << top << " read = " << report.text(report.total.traffic[0].read.formula) << "\n"
        << "           " << top << " write = " << report.text(report.total.traffic[0].write.formula) << "\n";
  if (std::string f = intensity_formula(report, report.total); !f.empty())
    out << "           FLOP/B = " << f << "\n";
  if (report.params_only) {
    const OpCost &prepared = *report.params_only;
    out << "  of which on params alone (no input: e.g. quantizing the weights), work a deployment does once,\n"
           "  when it loads the params: "
        << costfmt::flops(prepared.flops.value) << ", " << top << " read "
        << costfmt::bytes(prepared.traffic.empty() ? 0 : prepared.traffic[0].read.value) << ", write "
        << costfmt::bytes(prepared.traffic.empty() ? 0 : prepared.traffic[0].write.value) << ", "
        << costfmt::seconds(prepared.time) << " in " << prepared.children.size() << " operation"
        << (prepared.children.size() == 1 ? "" : "s") << "\n";
  }
  out << "\n";
  routing_text(out, report);
  energy_text(out, report, report.energy, "  ");
  if (!report.declined.empty())
    out << "\nThe schedule is not built as one kernel (" << report.declined << "): its operations are priced above, each its own kernel.\n";

  if (report.kernel) {
    const KernelCost &k = *report.kernel;
    const std::string tile = k.tile_level >= 0 && k.tile_level < static_cast<int>(report.levels.size())
                                 ? report.levels[static_cast<size_t>(k.tile_level)]
                                 : "?";
    out << "\nSchedule" << (k.target.empty() ? "" : " for \"" + k.target + "\"") << " (" << where(sources, k.location)
        << "): one fused kernel, the Napkin model\n";
    for (const Partition &partition : k.partitions) {
      if (partition.implicit) continue;
      if (partition.stream)
        out << "  stream " << partition.axis << " by " << partition.amount << ": " << costfmt::number(partition.count.value)
            << (partition.count.value == 1 ? " step per block (" : " steps per block (") << report.text(partition.count.formula) << "), accumulator: "
            << (partition.accumulator.empty() ? "-" : partition.accumulator) << "\n";
      else
        out << "  group " << partition.axis << " by " << partition.amount << ": " << costfmt::number(partition.count.value)
            << (partition.count.value == 1 ? " group (" : " groups (") << report.text(partition.count.formula) << ")\n";
    }
    out << "  blocks: " << costfmt::number(k.blocks.value) << " = " << report.text(k.blocks.formula) << "\n";
    out << "  transfers into " << tile << " from " << top << " (size x reload multiplicity):\n";
    Table transfers;
    for (const TileTransfer &transfer : k.transfers)
      transfers.row({transfer.tensor + " " + transfer.shape, bytes(transfer.bytes.value),
                     "x" + costfmt::number(transfer.reloads.value), transfer.why, "= " + report.text(transfer.bytes.formula)});
    out << transfers.render("    ");
    out << "  traffic per level (bytes):\n";
    Table traffic;
    for (size_t l = 0; l < k.traffic.size(); ++l)
      traffic.row({report.levels[l], "read " + bytes(k.traffic[l].read.value), "write " + bytes(k.traffic[l].write.value),
                   "read = " + report.text(k.traffic[l].read.formula) + ", write = " + report.text(k.traffic[l].write.formula)});
    out << traffic.render("    ");
    out << "  memory per block:\n";
    for (const LevelMemory &m : k.memory) {
      out << "    " << report.levels[static_cast<size_t>(m.level)] << ": " << costfmt::capacity(m.bytes.value) << " of "
          << costfmt::memory(m.capacity) << (m.fits ? ", fits" : ", DOES NOT FIT") << "; = "
          << report.text(m.bytes.formula) << " bytes\n";
      for (const auto &[label, figure] : m.tiles) out << "      " << label << ": " << costfmt::capacity(figure.value) << "\n";
    }
    out << "  FLOPs " << flops(k.flops.value) << " = " << report.text(k.flops.formula) << "\n";
    if (k.rescale_flops.value > 0)
      out << "    of which online-softmax rescaling " << flops(k.rescale_flops.value) << " = "
          << report.text(k.rescale_flops.formula) << "\n";
    const double busiest = std::ceil(k.blocks.value / static_cast<double>(std::max<int64_t>(1, k.instances)));
    out << "  parallelism: " << costfmt::number(k.blocks.value) << " blocks on " << k.instances << " " << tile << " instances";
    if (k.occupancy > 0)
      out << ", " << k.occupancy << " resident per instance, " << costfmt::number(k.waves) << (k.waves == 1 ? " wave" : " waves");
    out << "; efficiency " << costfmt::number(k.efficiency) << " (the busiest instance runs " << costfmt::number(busiest)
        << (busiest == 1 ? " block" : " blocks");
    if (k.warp_share < 1) out << "; its warps fill " << costfmt::number(k.warp_share) << " of its schedulers";
    out << ")";
    if (k.launch > 0) out << "; launch " << seconds(k.launch);
    out << "\n";
    out << "  compute units (overlapping):";
    for (size_t i = 0; i < k.unit_times.size(); ++i)
      out << (i ? "," : "") << " " << k.unit_times[i].first << " " << seconds(k.unit_times[i].second.value);
    if (k.unit_times.empty()) out << " none";
    out << "\n";
    out << "  roofline: compute " << seconds(k.compute_seconds);
    for (size_t l = 0; l < k.traffic.size() && l < report.bandwidths.size(); ++l)
      if (report.bandwidths[l] > 0)
        if (k.traffic[l].read.value + k.traffic[l].write.value > 0)
          out << ", " << report.levels[l] << " " << seconds((k.traffic[l].read.value + k.traffic[l].write.value) / report.bandwidths[l]);
    out << "; time " << seconds(k.time) << " = " << kernel_time_formula(report, k) << " s, " << k.bound << "-bound; " << intensity_text(k.intensity) << " FLOP per "
        << top << " byte (unfused baseline: " << seconds(report.total.time) << " = " << costfmt::sci(report.total.time / std::max(k.time, 1e-300))
        << " x this)\n";
    if (k.closed_form) {
      out << "  Napkin closed form: square tiles t = " << report.text(k.tile_for_m) << " for M = "
          << costfmt::number(k.capacity_elements) << " elements of " << tile << " (" << k.element_bytes << " bytes each):\n";
      out << "    " << top << " traffic = " << report.text(*k.closed_form) << " elements = " << costfmt::number(k.closed_form_value)
          << " (with this schedule's tiles: " << costfmt::number(k.top_elements.value) << " = " << report.text(k.top_elements.formula)
          << ")\n";
    }
    for (const std::string &note : k.notes) out << "  note: " << note << "\n";
    if (report.best_tiles) {
      out << "  best tiles on " << report.hardware << ":";
      for (size_t i = 0; i < report.best_tiles->size(); ++i)
        out << (i ? "," : "") << " group " << (*report.best_tiles)[i].first << " by " << (*report.best_tiles)[i].second;
      out << " -> " << seconds(report.best_time) << ", " << bytes(report.best_top_bytes) << " at " << top << "\n";
    }
    if (report.kernel_energy) energy_text(out, report, *report.kernel_energy, "  ");
  }
  return out.str();
}

namespace {

using json = nlohmann::ordered_json;

json figure(const CostReport &report, const Figure &f) { return json{{"value", f.value}, {"formula", report.text(f.formula)}}; }

json traffic_json(const CostReport &report, const std::vector<Traffic> &traffic) {
  json out = json::array();
  for (size_t l = 0; l < traffic.size(); ++l)
    out.push_back({{"level", l < report.levels.size() ? report.levels[l] : ""},
                   {"read", figure(report, traffic[l].read)},
                   {"write", figure(report, traffic[l].write)}});
  return out;
}

json op_json(const CostReport &report, const SourceManager &sources, const OpCost &op) {
  json out{{"name", op.name},
           {"what", op.what},
           {"location", where(sources, op.location)},
           {"flops", figure(report, op.flops)},
           {"traffic", traffic_json(report, op.traffic)},
           {"intensity", op.intensity},
           {"intensity_formula", intensity_formula(report, op)},
           {"unit", op.unit},
           {"bound", op.bound},
           {"compute_time", op.compute_time},
           {"efficiency", op.efficiency},
           {"launch", op.launch},
           {"time", op.time},
           {"time_formula", time_formula(report, op)},
           {"energy", op.energy},
           {"kernel", op.kernel}};
  if (op.routing) {
    const Routing &r = *op.routing;
    out["routing"] = json{{"table", r.table},
                          {"index", r.index},
                          {"routes", figure(report, r.routes)},
                          {"experts", figure(report, r.experts)},
                          {"rows_uniform", figure(report, r.rows_uniform)},
                          {"rows_skewed", figure(report, r.rows_skewed)},
                          {"experts_touched", r.experts_touched},
                          {"expert_bytes", figure(report, r.expert_bytes)},
                          {"dense_flops", figure(report, r.dense_flops)}};
  }
  json children = json::array();
  for (const OpCost &child : op.children) children.push_back(op_json(report, sources, child));
  out["children"] = children;
  return out;
}

json energy_json(const CostReport &report, const Energy &energy) {
  json levels = json::object();
  for (size_t l = 0; l < energy.levels.size() && l < report.levels.size(); ++l) levels[report.levels[l]] = energy.levels[l];
  return json{{"joules", energy.total},
              {"compute", energy.compute},
              {"levels", levels},
              {"formula", report.text(energy.formula)},
              {"erased_bits", energy.erased_bits},
              {"erased_bits_formula", report.text(energy.erased_bits_formula)},
              {"temperature", energy.temperature},
              {"landauer", energy.landauer},
              {"ratio", energy.ratio}};
}

json report_object(const CostReport &report, const SourceManager &sources) {
  json sizes = json::object();
  for (const auto &[name, size] : report.sizes) sizes[name] = size;
  json operations = json::array();
  for (const OpCost &op : report.ops) operations.push_back(op_json(report, sources, op));
  json out{{"schema", "ncd-cost"},
           {"version", kCostJsonVersion},
           {"diagram", report.diagram},
           {"location", where(sources, report.location)},
           {"hardware", {{"name", report.hardware}, {"description", report.hardware_description}, {"levels", report.levels}}},
           {"sizes", sizes},
           {"baseline",
            {{"operations", operations},
             {"total", op_json(report, sources, report.total)},
             {"params_only", report.params_only ? op_json(report, sources, *report.params_only) : json(nullptr)},
             {"energy", energy_json(report, report.energy)}}}};
  out["declined"] = report.declined;
  if (!report.kernel) {
    out["kernel"] = nullptr;
    return out;
  }
  const KernelCost &k = *report.kernel;
  json partitions = json::array();
  for (const Partition &p : k.partitions) {
    if (p.implicit) continue;
    partitions.push_back({{"axis", p.axis},
                          {"kind", p.stream ? "stream" : "group"},
                          {"amount", p.amount},
                          {"count", figure(report, p.count)},
                          {"accumulator", p.accumulator},
                          {"location", where(sources, p.location)}});
  }
  json transfers = json::array();
  for (const TileTransfer &t : k.transfers)
    transfers.push_back({{"tensor", t.tensor}, {"shape", t.shape}, {"bytes", figure(report, t.bytes)},
                         {"reloads", figure(report, t.reloads)}, {"why", t.why}});
  json memory = json::array();
  for (const LevelMemory &m : k.memory) {
    json tiles = json::array();
    for (const auto &[label, f] : m.tiles) tiles.push_back({{"tile", label}, {"bytes", figure(report, f)}});
    memory.push_back({{"level", report.levels[static_cast<size_t>(m.level)]},
                      {"bytes", figure(report, m.bytes)},
                      {"elements", figure(report, m.elements)},
                      {"capacity", m.capacity},
                      {"fits", m.fits},
                      {"tiles", tiles}});
  }
  json unit_times = json::object();
  for (const auto &[unit, seconds] : k.unit_times) unit_times[unit] = figure(report, seconds);
  json kernel{{"diagram", k.diagram},
              {"location", where(sources, k.location)},
              {"target", k.target},
              {"partitions", partitions},
              {"blocks", figure(report, k.blocks)},
              {"tile_level", k.tile_level >= 0 && k.tile_level < static_cast<int>(report.levels.size())
                                 ? report.levels[static_cast<size_t>(k.tile_level)]
                                 : ""},
              {"transfers", transfers},
              {"traffic", traffic_json(report, k.traffic)},
              {"memory", memory},
              {"fits", k.fits},
              {"flops", figure(report, k.flops)},
              {"rescale_flops", figure(report, k.rescale_flops)},
              {"compute_time", k.compute_seconds},
              {"unit_times", unit_times},
              {"occupancy", k.occupancy},
              {"waves", k.waves},
              {"efficiency", k.efficiency},
              {"warp_share", k.warp_share},
              {"mask_tiles", k.mask_tiles},
              {"skipped_tiles", k.skipped_tiles},
              {"launch", k.launch},
              {"time", k.time},
              {"time_formula", kernel_time_formula(report, k)},
              {"bound", k.bound},
              {"intensity", k.intensity},
              {"top_elements", figure(report, k.top_elements)},
              {"notes", k.notes}};
  if (k.closed_form)
    kernel["closed_form"] = {{"formula", report.text(*k.closed_form)},
                             {"tile", report.text(k.tile_for_m)},
                             {"M", k.capacity_elements},
                             {"element_bytes", k.element_bytes},
                             {"value", k.closed_form_value}};
  else
    kernel["closed_form"] = nullptr;
  if (report.kernel_energy) kernel["energy"] = energy_json(report, *report.kernel_energy);
  if (report.best_tiles) {
    json tiles = json::object();
    for (const auto &[axis, size] : *report.best_tiles) tiles[axis] = size;
    kernel["best_tiles"] = {{"groups", tiles}, {"time", report.best_time}, {"top_bytes", report.best_top_bytes}};
  } else {
    kernel["best_tiles"] = nullptr;
  }
  out["kernel"] = kernel;
  return out;
}

}  // namespace

std::string report_json(const CostReport &report, const SourceManager &sources) {
  return report_object(report, sources).dump(2) + "\n";
}

std::string format_sweep(const std::vector<SweepPoint> &points) {
  if (points.empty()) return "";
  const CostReport &first = points[0].report;
  std::vector<std::string> header;
  for (const auto &[axis, value] : points[0].values) header.push_back(axis);
  header.push_back("FLOPs");
  for (const std::string &level : first.levels) header.push_back(level + " bytes");
  for (const char *h : {"FLOP/B", "time", "bound", "energy", "/Landauer"}) header.push_back(h);
  bool kernel = first.kernel.has_value();
  if (kernel) {
    header.push_back("kernel " + (first.levels.empty() ? std::string("top") : first.levels[0]) + " bytes");
    for (const char *h : {"kernel time", "kernel bound", "kernel energy", "Napkin closed form"}) header.push_back(h);
  }
  Table table;
  table.row(header);
  for (const SweepPoint &point : points) {
    const CostReport &r = point.report;
    std::vector<std::string> row;
    for (const auto &[axis, value] : point.values) row.push_back(std::to_string(value));
    row.push_back(flops(r.total.flops.value));
    for (const Traffic &t : r.total.traffic) row.push_back(bytes(t.read.value + t.write.value));
    row.push_back(intensity_text(r.total.intensity));
    row.push_back(seconds(r.total.time));
    row.push_back(r.total.bound.empty() ? "-" : r.total.bound);
    row.push_back(costfmt::joules(r.energy.total));
    row.push_back(costfmt::sci(r.energy.ratio));
    if (kernel && r.kernel) {
      const KernelCost &k = *r.kernel;
      row.push_back(bytes(k.traffic[0].read.value + k.traffic[0].write.value));
      row.push_back(seconds(k.time));
      row.push_back(k.bound);
      row.push_back(r.kernel_energy ? costfmt::joules(r.kernel_energy->total) : "-");
      row.push_back(k.closed_form ? costfmt::number(k.closed_form_value) + " el" : "-");
    }
    table.row(row);
  }
  std::string out = "ncd cost sweep: " + first.diagram + " on " + first.hardware + "\n\n" + table.render("  ");
  out += "\n  formulas: FLOPs = " + first.text(first.total.flops.formula) + "\n";
  if (!first.total.traffic.empty())
    out += "            " + first.levels[0] + " bytes = " +
           first.text(first.total.traffic[0].read.formula + first.total.traffic[0].write.formula) + "\n";
  if (first.kernel)
    out += "            kernel " + first.levels[0] + " bytes = " +
           first.text(first.kernel->traffic[0].read.formula + first.kernel->traffic[0].write.formula) + "\n";
  return out;
}

std::string sweep_json(const std::vector<SweepPoint> &points, const SourceManager &sources) {
  json list = json::array();
  for (const SweepPoint &point : points) {
    json values = json::object();
    for (const auto &[axis, value] : point.values) values[axis] = value;
    list.push_back({{"values", values}, {"report", report_object(point.report, sources)}});
  }
  json out{{"schema", "ncd-cost-sweep"}, {"version", kCostJsonVersion}, {"points", list}};
  return out.dump(2) + "\n";
}

}  // namespace ncd
