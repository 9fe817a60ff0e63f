// The report's JSON (documented, versioned, stable) and the SVG plots (valid XML, deterministic).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "cost_support.h"

namespace ncd {
namespace {

struct Report {
  std::unique_ptr<cost_test::Compiled> compiled;
  std::optional<HardwareProfile> hardware;
  std::optional<CostReport> report;
};

Report attention(const std::string &schedule) {
  Report out;
  out.compiled = cost_test::compile(cost_test::attention_source(4096, 4096, 64, schedule));
  EXPECT_TRUE(out.compiled->ok) << out.compiled->messages();
  out.hardware = cost_test::profile(*out.compiled, cost_test::gpu_yaml(228 * 1024));
  out.report = price(out.compiled->compilation->program, out.compiled->diagram("Attention"), *out.hardware,
                     out.compiled->compilation->diagnostics);
  EXPECT_TRUE(out.report) << out.compiled->messages();
  return out;
}

std::vector<std::string> keys(const nlohmann::ordered_json &object) {
  std::vector<std::string> out;
  for (auto it = object.begin(); it != object.end(); ++it) out.push_back(it.key());
  return out;
}

TEST(CostOutput, JsonSchemaIsStable) {
  Report r = attention("group q by 128\nstream k by 64");
  std::string text = report_json(*r.report, r.compiled->compilation->sources);
  EXPECT_EQ(text, report_json(*r.report, r.compiled->compilation->sources));  // deterministic
  auto json = nlohmann::ordered_json::parse(text);
  EXPECT_EQ(json["schema"], "ncd-cost");
  EXPECT_EQ(json["version"], kCostJsonVersion);
  EXPECT_EQ(keys(json), (std::vector<std::string>{"schema", "version", "diagram", "location", "hardware", "sizes", "baseline", "declined", "kernel"}));
  EXPECT_EQ(keys(json["baseline"]), (std::vector<std::string>{"operations", "total", "params_only", "energy"}));
  EXPECT_TRUE(json["baseline"]["params_only"].is_null());  // attention reads no params
  const auto &op = json["baseline"]["operations"][1];
  EXPECT_EQ(keys(op), (std::vector<std::string>{"name", "what", "location", "flops", "traffic", "intensity", "intensity_formula",
                                                "unit", "bound", "compute_time", "efficiency", "launch", "time", "time_formula",
                                                "energy", "kernel", "children"}));
  EXPECT_EQ(op["intensity_formula"], "(2*q*k*d + q*k)/(2*k*d + 2*q*d + 4*q*k)");
  EXPECT_EQ(op["time_formula"], "max(2e-15*q*k*d + 1e-15*q*k, 6.66667e-13*k*d + 6.66667e-13*q*d + 1.33333e-12*q*k)");
  EXPECT_EQ(op["flops"]["formula"], "2*q*k*d + q*k");
  EXPECT_EQ(op["traffic"][0]["level"], "hbm");
  EXPECT_EQ(keys(json["baseline"]["energy"]),
            (std::vector<std::string>{"joules", "compute", "levels", "formula", "erased_bits", "erased_bits_formula", "temperature",
                                      "landauer", "ratio"}));
  EXPECT_EQ(json["baseline"]["energy"]["erased_bits_formula"], "64*q*k*d + 176*q*k + 32*q + 32");
  const auto &kernel = json["kernel"];
  EXPECT_EQ(keys(kernel), (std::vector<std::string>{"diagram", "location", "target", "partitions", "blocks", "tile_level", "transfers",
                                                    "traffic", "memory", "fits", "flops", "rescale_flops", "compute_time", "unit_times",
                                                    "occupancy", "waves", "efficiency", "warp_share", "mask_tiles", "skipped_tiles",
                                                    "launch", "time", "time_formula", "bound", "intensity", "top_elements", "notes",
                                                    "closed_form", "energy", "best_tiles"}));
  EXPECT_EQ(kernel["closed_form"]["formula"], "4*q*k*d^2/M + 2*q*d");
  EXPECT_EQ(kernel["partitions"][0]["kind"], "group");
  EXPECT_EQ(kernel["partitions"][1]["kind"], "stream");
  EXPECT_EQ(kernel["tile_level"], "smem");
  EXPECT_EQ(json["sizes"]["q"], 4096);
  // Without a schedule, "kernel" is null.
  Report plain = attention("");
  auto unscheduled = nlohmann::json::parse(report_json(*plain.report, plain.compiled->compilation->sources));
  EXPECT_TRUE(unscheduled["kernel"].is_null());
}

// A small well-formedness check: tags nest and close, attributes are quoted.
bool well_formed(const std::string &xml, std::string &why) {
  std::vector<std::string> stack;
  size_t i = 0;
  while ((i = xml.find('<', i)) != std::string::npos) {
    size_t end = xml.find('>', i);
    if (end == std::string::npos) return why = "unterminated tag", false;
    std::string tag = xml.substr(i + 1, end - i - 1);
    i = end + 1;
    if (tag.empty()) return why = "empty tag", false;
    if (tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return why = "mismatched </" + name + ">", false;
      stack.pop_back();
      continue;
    }
    size_t quotes = std::count(tag.begin(), tag.end(), '"');
    if (quotes % 2) return why = "odd quotes in <" + tag + ">", false;
    if (tag.back() == '/') continue;
    stack.push_back(tag.substr(0, tag.find(' ')));
  }
  for (size_t k = 0; k < xml.size(); ++k)
    if (xml[k] == '&' && xml.compare(k, 5, "&amp;") && xml.compare(k, 4, "&lt;") && xml.compare(k, 4, "&gt;") &&
        xml.compare(k, 6, "&quot;") && xml.compare(k, 6, "&apos;"))
      return why = "bare &", false;
  if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
  return true;
}

TEST(CostOutput, PlotsAreValidDeterministicSvg) {
  Report r = attention("group q by 128\nstream k by 64");
  std::string svg = plot_svg(*r.report, *r.hardware, nullptr);
  EXPECT_EQ(svg, plot_svg(*r.report, *r.hardware, nullptr));
  EXPECT_EQ(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\"", 0), 0u);
  std::string why;
  EXPECT_TRUE(well_formed(svg, why)) << why;
  EXPECT_NE(svg.find("fused kernel"), std::string::npos);
  EXPECT_NE(svg.find(">S<"), std::string::npos);  // an operation's label
  // With a sweep: three panels.
  std::vector<SweepPoint> points;
  for (int64_t q : {1024, 2048, 4096}) {
    auto compiled = cost_test::compile(cost_test::attention_source(q, q, 64, "group q by 128\nstream k by 64"));
    auto hardware = cost_test::profile(*compiled, cost_test::gpu_yaml(228 * 1024));
    auto report = price(compiled->compilation->program, compiled->diagram("Attention"), *hardware, compiled->compilation->diagnostics);
    ASSERT_TRUE(report);
    points.push_back({{{"q", q}}, *report});
  }
  std::string swept = plot_svg(points.back().report, *r.hardware, &points);
  EXPECT_TRUE(well_formed(swept, why)) << why;
  EXPECT_NE(swept.find("id=\"panel2\""), std::string::npos);
  std::string table = format_sweep(points);
  EXPECT_NE(table.find("1024"), std::string::npos);
  EXPECT_NE(table.find("formulas: FLOPs = 4*q*k*d + 6*q*k + q + 1"), std::string::npos) << table;
  auto json = nlohmann::json::parse(sweep_json(points, r.compiled->compilation->sources));
  EXPECT_EQ(json["schema"], "ncd-cost-sweep");
  EXPECT_EQ(json["points"].size(), 3u);
}

TEST(CostOutput, EscapesNamesInSvg) {
  Report r = attention("");
  r.report->diagram = "A<&>\"";
  std::string svg = plot_svg(*r.report, *r.hardware, nullptr);
  std::string why;
  EXPECT_TRUE(well_formed(svg, why)) << why;
  EXPECT_NE(svg.find("A&lt;&amp;&gt;&quot;"), std::string::npos);
}

}  // namespace
}  // namespace ncd
