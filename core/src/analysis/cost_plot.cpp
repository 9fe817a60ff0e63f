// SVG plots of a cost report, written by hand: a roofline chart with each
// operation (or fused kernel) placed on it and, for a sweep, time, FLOPs and
// top-level bytes against the swept size. Log-log axes throughout. The output
// is deterministic (fixed precision, no timestamps) and well-formed XML.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "cost_format.h"
#include "ncd/cost.h"
#include "ncd/sharding.h"

namespace ncd {
namespace {

const char *kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};

std::string escape(const std::string &text) {
  std::string out;
  for (char ch : text) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default:
        if (static_cast<unsigned char>(ch) < 0x20 && ch != '\n' && ch != '\t') break;  // invalid in XML 1.0
        out += ch;
    }
  }
  return out;
}

std::string fixed(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f", value);
  return buffer;
}

// A log-log panel.
struct Panel {
  double x = 0, y = 0, width = 460, height = 320;  // plot area in the SVG
  double lx0 = 0, lx1 = 1, ly0 = 0, ly1 = 1;       // log10 ranges
  int id = 0;

  double px(double value) const { return x + (std::log10(value) - lx0) / (lx1 - lx0) * width; }
  double py(double value) const { return y + height - (std::log10(value) - ly0) / (ly1 - ly0) * height; }
  bool inside_x(double value) const { return value > 0 && std::log10(value) >= lx0 - 1e-9 && std::log10(value) <= lx1 + 1e-9; }
};

void set_range(double lo, double hi, double &l0, double &l1) {
  if (!(lo > 0)) lo = 1;
  if (!(hi > lo)) hi = lo * 10;
  l0 = std::floor(std::log10(lo));
  l1 = std::ceil(std::log10(hi));
  if (l1 <= l0) l1 = l0 + 1;
}

// Tick labels: an SI prefix with a unit, or a plain number when the unit is null.
std::string tick(double value, const char *unit) {
  if (unit) return costfmt::si(value, unit);
  char buffer[32];
  if (value >= 1e-3 && value < 1e7)
    std::snprintf(buffer, sizeof buffer, "%g", value);
  else
    std::snprintf(buffer, sizeof buffer, "%.0e", value);
  return buffer;
}

void axes(std::ostringstream &out, const Panel &p, const std::string &title, const std::string &xlabel,
          const std::string &ylabel, const char *xunit, const char *yunit) {
  out << "  <g id=\"panel" << p.id << "\">\n";
  out << "    <rect x=\"" << fixed(p.x) << "\" y=\"" << fixed(p.y) << "\" width=\"" << fixed(p.width) << "\" height=\""
      << fixed(p.height) << "\" fill=\"#ffffff\" stroke=\"#333333\"/>\n";
  // Decade grid lines and labels.
  for (int e = static_cast<int>(p.lx0); e <= static_cast<int>(p.lx1); ++e) {
    double v = std::pow(10.0, e);
    double gx = p.px(v);
    out << "    <line x1=\"" << fixed(gx) << "\" y1=\"" << fixed(p.y) << "\" x2=\"" << fixed(gx) << "\" y2=\""
        << fixed(p.y + p.height) << "\" stroke=\"#e0e0e0\"/>\n";
    out << "    <text x=\"" << fixed(gx) << "\" y=\"" << fixed(p.y + p.height + 16) << "\" text-anchor=\"middle\">"
        << escape(tick(v, xunit)) << "</text>\n";
  }
  for (int e = static_cast<int>(p.ly0); e <= static_cast<int>(p.ly1); ++e) {
    double v = std::pow(10.0, e);
    double gy = p.py(v);
    out << "    <line x1=\"" << fixed(p.x) << "\" y1=\"" << fixed(gy) << "\" x2=\"" << fixed(p.x + p.width) << "\" y2=\""
        << fixed(gy) << "\" stroke=\"#e0e0e0\"/>\n";
    out << "    <text x=\"" << fixed(p.x - 6) << "\" y=\"" << fixed(gy + 4) << "\" text-anchor=\"end\">"
        << escape(tick(v, yunit)) << "</text>\n";
  }
  out << "    <text x=\"" << fixed(p.x + p.width / 2) << "\" y=\"" << fixed(p.y - 12) << "\" text-anchor=\"middle\" "
      << "font-size=\"14\" font-weight=\"bold\">" << escape(title) << "</text>\n";
  out << "    <text x=\"" << fixed(p.x + p.width / 2) << "\" y=\"" << fixed(p.y + p.height + 36) << "\" text-anchor=\"middle\">"
      << escape(xlabel) << "</text>\n";
  out << "    <text x=\"" << fixed(p.x - 78) << "\" y=\"" << fixed(p.y + p.height / 2) << "\" text-anchor=\"middle\" transform=\"rotate(-90 "
      << fixed(p.x - 78) << " " << fixed(p.y + p.height / 2) << ")\">" << escape(ylabel) << "</text>\n";
  out << "    <clipPath id=\"clip" << p.id << "\"><rect x=\"" << fixed(p.x) << "\" y=\"" << fixed(p.y) << "\" width=\""
      << fixed(p.width) << "\" height=\"" << fixed(p.height) << "\"/></clipPath>\n";
}

void legend(std::ostringstream &out, const Panel &p, const std::vector<std::pair<std::string, std::string>> &entries) {
  double ly = p.y + 14;
  for (const auto &[color, label] : entries) {
    out << "    <rect x=\"" << fixed(p.x + 10) << "\" y=\"" << fixed(ly - 9) << "\" width=\"10\" height=\"10\" fill=\"" << color
        << "\"/>\n";
    out << "    <text x=\"" << fixed(p.x + 26) << "\" y=\"" << fixed(ly) << "\">" << escape(label) << "</text>\n";
    ly += 16;
  }
}

struct Point {
  std::string label;
  double intensity, performance;
  bool kernel;
};

void collect_points(const OpCost &op, std::vector<Point> &points) {
  if (op.flops.value > 0 && op.time > 0 && op.intensity > 0)
    points.push_back({op.name.empty() ? op.what : op.name, op.intensity, op.flops.value / op.time, op.kernel});
}

void roofline(std::ostringstream &out, Panel &p, const CostReport &report, const HardwareProfile &hw) {
  std::vector<Point> points;
  for (const OpCost &op : report.ops) collect_points(op, points);
  if (report.kernel && report.kernel->flops.value > 0 && report.kernel->time > 0 && report.kernel->intensity > 0)
    points.push_back({"fused kernel", report.kernel->intensity, report.kernel->flops.value / report.kernel->time, true});
  // Peaks: the distinct rates of the profile's tensor and vector units.
  std::vector<std::pair<std::string, double>> peaks;
  auto add_peak = [&](const std::string &unit, const std::string &dtype, double peak) {
    if (peak <= 0) return;
    for (auto &[label, value] : peaks)
      if (value == peak && label.rfind(unit, 0) == 0) {
        label += ", " + dtype;
        return;
      }
    peaks.push_back({unit + " " + dtype, peak});
  };
  for (const auto &[dtype, rate] : hw.tensor) add_peak("tensor", std::string(ir::dtype_name(dtype)), rate.peak);
  for (const auto &[dtype, rate] : hw.vector) add_peak("vector", std::string(ir::dtype_name(dtype)), rate.peak);
  std::sort(peaks.begin(), peaks.end(), [](const auto &a, const auto &b) { return a.second > b.second; });
  if (peaks.size() > 4) peaks.resize(4);
  double top_peak = peaks.empty() ? 1e12 : peaks.front().second;
  double bandwidth = hw.levels.empty() ? 1e12 : hw.levels[0].bandwidth;
  double xmin = 1e-1, xmax = top_peak / std::max(bandwidth, 1.0) * 10;
  double ymin = top_peak, ymax = top_peak * 2;
  for (const Point &point : points) {
    xmin = std::min(xmin, point.intensity / 2);
    xmax = std::max(xmax, point.intensity * 2);
    ymin = std::min(ymin, point.performance / 2);
  }
  ymin = std::min(ymin, bandwidth * xmin);
  set_range(xmin, xmax, p.lx0, p.lx1);
  set_range(ymin, ymax, p.ly0, p.ly1);
  axes(out, p, "Roofline: " + report.diagram + " on " + report.hardware,
       "arithmetic intensity (FLOP per " + (hw.levels.empty() ? std::string("byte") : hw.levels[0].name + " byte") + ")",
       "attained FLOP/s", nullptr, "FLOP/s");
  out << "    <g clip-path=\"url(#clip" << p.id << ")\" fill=\"none\">\n";
  double x0 = std::pow(10.0, p.lx0), x1 = std::pow(10.0, p.lx1);
  // Memory roofs: top level solid, the others dashed.
  for (size_t l = 0; l < hw.levels.size(); ++l) {
    double bw = hw.levels[l].bandwidth;
    if (bw <= 0) continue;
    out << "      <line x1=\"" << fixed(p.px(x0)) << "\" y1=\"" << fixed(p.py(bw * x0)) << "\" x2=\"" << fixed(p.px(x1))
        << "\" y2=\"" << fixed(p.py(bw * x1)) << "\" stroke=\"#555555\"" << (l == 0 ? " stroke-width=\"2\"" : " stroke-dasharray=\"6 4\"")
        << "/>\n";
  }
  for (size_t i = 0; i < peaks.size(); ++i)
    out << "      <line x1=\"" << fixed(p.px(x0)) << "\" y1=\"" << fixed(p.py(peaks[i].second)) << "\" x2=\"" << fixed(p.px(x1))
        << "\" y2=\"" << fixed(p.py(peaks[i].second)) << "\" stroke=\"#555555\"" << (i == 0 ? " stroke-width=\"2\"" : " stroke-dasharray=\"2 3\"")
        << "/>\n";
  out << "    </g>\n";
  // Labels of the roofs, where they enter the panel.
  for (size_t i = 0; i < peaks.size(); ++i)
    out << "    <text x=\"" << fixed(p.x + p.width - 4) << "\" y=\"" << fixed(p.py(peaks[i].second) - 4)
        << "\" text-anchor=\"end\" fill=\"#555555\">" << escape(peaks[i].first + " " + costfmt::si(peaks[i].second, "FLOP/s"))
        << "</text>\n";
  int labelled = 0;
  for (size_t l = 0; l < hw.levels.size(); ++l) {
    double bw = hw.levels[l].bandwidth;
    if (bw <= 0) continue;
    // Staggered along the panel's bottom so that close roofs keep apart.
    double ly = std::pow(10.0, p.ly0) * std::pow(5.0, ++labelled);
    double lx = std::max(x0 * 1.2, ly / bw);
    if (!p.inside_x(lx) || bw * lx > std::pow(10.0, p.ly1)) continue;
    out << "    <text x=\"" << fixed(p.px(lx) + 4) << "\" y=\"" << fixed(p.py(bw * lx) - 4) << "\" fill=\"#555555\">"
        << escape(hw.levels[l].name + " " + costfmt::si(bw, "B/s")) << "</text>\n";
  }
  // The operations; those that land on the same spot share one mark.
  std::vector<Point> merged;
  for (const Point &point : points) {
    bool joined = false;
    for (Point &other : merged)
      if (other.kernel == point.kernel && std::fabs(p.px(other.intensity) - p.px(point.intensity)) < 2 &&
          std::fabs(p.py(other.performance) - p.py(point.performance)) < 2) {
        other.label += ", " + point.label;
        joined = true;
        break;
      }
    if (!joined) merged.push_back(point);
  }
  points = merged;
  for (size_t i = 0; i < points.size(); ++i) {
    const Point &point = points[i];
    static const char *kOpColors[] = {"#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
    const char *color = point.kernel ? "#d62728" : kOpColors[i % 9];
    double cx = p.px(point.intensity), cy = p.py(point.performance);
    if (point.kernel)
      out << "    <rect x=\"" << fixed(cx - 5) << "\" y=\"" << fixed(cy - 5) << "\" width=\"10\" height=\"10\" fill=\"" << color
          << "\"><title>" << escape(point.label) << "</title></rect>\n";
    else
      out << "    <circle cx=\"" << fixed(cx) << "\" cy=\"" << fixed(cy) << "\" r=\"4.5\" fill=\"" << color << "\"><title>"
          << escape(point.label + ": " + costfmt::number(point.intensity) + " FLOP/B, " + costfmt::si(point.performance, "FLOP/s"))
          << "</title></circle>\n";
    out << "    <text x=\"" << fixed(cx + 7) << "\" y=\"" << fixed(cy + 4) << "\" font-size=\"10\">" << escape(point.label)
        << "</text>\n";
  }
  out << "  </g>\n";
}

struct Series {
  std::string label;
  std::vector<std::pair<double, double>> points;
};

void series_panel(std::ostringstream &out, Panel &p, const std::string &title, const std::string &xlabel,
                  const std::string &ylabel, const char *yunit, const std::vector<Series> &series) {
  double xmin = INFINITY, xmax = 0, ymin = INFINITY, ymax = 0;
  for (const Series &s : series)
    for (auto [x, y] : s.points) {
      if (x > 0) xmin = std::min(xmin, x), xmax = std::max(xmax, x);
      if (y > 0) ymin = std::min(ymin, y), ymax = std::max(ymax, y);
    }
  set_range(xmin, xmax, p.lx0, p.lx1);
  set_range(ymin, ymax, p.ly0, p.ly1);
  axes(out, p, title, xlabel, ylabel, nullptr, yunit);
  std::vector<std::pair<std::string, std::string>> entries;
  for (size_t i = 0; i < series.size(); ++i) {
    const char *color = kPalette[i % 10];
    entries.push_back({color, series[i].label});
    std::string path;
    for (auto [x, y] : series[i].points) {
      if (!(x > 0) || !(y > 0)) continue;
      path += (path.empty() ? "M" : " L") + fixed(p.px(x)) + " " + fixed(p.py(y));
    }
    if (!path.empty())
      out << "    <path d=\"" << path << "\" fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
    for (auto [x, y] : series[i].points)
      if (x > 0 && y > 0)
        out << "    <circle cx=\"" << fixed(p.px(x)) << "\" cy=\"" << fixed(p.py(y)) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
  }
  legend(out, p, entries);
  out << "  </g>\n";
}

}  // namespace

std::string plot_svg(const CostReport &report, const HardwareProfile &hardware, const std::vector<SweepPoint> *sweep) {
  bool with_sweep = sweep && !sweep->empty();
  int panels = with_sweep ? 3 : 1;
  double panel_width = 580, height = 430;
  double width = panel_width * panels;
  std::ostringstream out;
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << fixed(width) << "\" height=\"" << fixed(height)
      << "\" viewBox=\"0 0 " << fixed(width) << " " << fixed(height) << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out << "  <title>" << escape("ncd cost: " + report.diagram + " on " + report.hardware) << "</title>\n";
  out << "  <rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n";
  Panel roof;
  roof.x = 95;
  roof.y = 40;
  roof.id = 0;
  const CostReport &shown = with_sweep ? sweep->back().report : report;
  roofline(out, roof, shown, hardware);
  if (with_sweep) {
    std::string axis_name;
    for (const auto &[axis, value] : sweep->front().values) axis_name += (axis_name.empty() ? "" : ", ") + axis;
    Series baseline{"unfused", {}}, kernel{"fused kernel", {}};
    Series flops{"FLOPs", {}}, bytes{"unfused " + (shown.levels.empty() ? std::string("top") : shown.levels[0]) + " bytes", {}};
    Series kernel_bytes{"kernel " + (shown.levels.empty() ? std::string("top") : shown.levels[0]) + " bytes", {}};
    for (const SweepPoint &point : *sweep) {
      double x = static_cast<double>(point.values.front().second);
      const CostReport &r = point.report;
      baseline.points.push_back({x, r.total.time});
      flops.points.push_back({x, r.total.flops.value});
      if (!r.total.traffic.empty()) bytes.points.push_back({x, r.total.traffic[0].read.value + r.total.traffic[0].write.value});
      if (r.kernel) {
        kernel.points.push_back({x, r.kernel->time});
        kernel_bytes.points.push_back({x, r.kernel->traffic[0].read.value + r.kernel->traffic[0].write.value});
      }
    }
    std::vector<Series> times{baseline};
    if (!kernel.points.empty()) times.push_back(kernel);
    std::vector<Series> volumes{flops, bytes};
    if (!kernel_bytes.points.empty()) volumes.push_back(kernel_bytes);
    Panel time_panel = roof;
    time_panel.x += panel_width;
    time_panel.id = 1;
    series_panel(out, time_panel, "Predicted time against " + axis_name, axis_name, "time", "s", times);
    Panel volume_panel = roof;
    volume_panel.x += 2 * panel_width;
    volume_panel.id = 2;
    series_panel(out, volume_panel, "FLOPs and bytes against " + axis_name, axis_name, "FLOPs, bytes", "", volumes);
  }
  out << "</svg>\n";
  return out.str();
}

std::string plot_devices_svg(const std::vector<DeviceSweepPoint> &points, const std::string &diagram,
                             const std::string &hardware) {
  Series overlapped{"time, overlapped", {}}, serial{"time, serial", {}}, compute{"compute per rank", {}},
      communication{"communication", {}}, efficiency{"efficiency", {}}, params{"params", {}},
      activations{"activations at peak", {}};
  for (const DeviceSweepPoint &point : points) {
    if (!point.best) continue;
    const ShardedCost &c = *point.best;
    double x = static_cast<double>(point.devices);
    overlapped.points.push_back({x, c.overlap_time});
    serial.points.push_back({x, c.serial_time});
    compute.points.push_back({x, c.compute_time});
    communication.points.push_back({x, c.communication_time});
    efficiency.points.push_back({x, c.efficiency * 100});
    params.points.push_back({x, c.rank_param_bytes});
    activations.points.push_back({x, c.rank_activation_peak});
  }
  double panel_width = 580, height = 430, width = 3 * panel_width;
  std::ostringstream out;
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  out << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << fixed(width) << "\" height=\"" << fixed(height)
      << "\" viewBox=\"0 0 " << fixed(width) << " " << fixed(height)
      << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  out << "  <title>" << escape("ncd cost: " + diagram + " on " + hardware + " against devices") << "</title>\n";
  out << "  <rect width=\"100%\" height=\"100%\" fill=\"#fafafa\"/>\n";
  Panel panel;
  panel.x = 95;
  panel.y = 40;
  series_panel(out, panel, "Time against devices", "devices", "time", "s",
               {overlapped, serial, compute, communication});
  panel.x += panel_width;
  panel.id = 1;
  series_panel(out, panel, "Efficiency against devices", "devices", "efficiency (%)", nullptr, {efficiency});
  panel.x += panel_width;
  panel.id = 2;
  series_panel(out, panel, "Memory per device", "devices", "bytes", "B", {params, activations});
  out << "</svg>\n";
  return out.str();
}

}  // namespace ncd
