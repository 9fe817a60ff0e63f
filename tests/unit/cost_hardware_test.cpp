// Hardware profiles: the stdlib's, located errors, units and fallbacks.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "cost_support.h"
#include "ncd/sharding.h"

namespace ncd {
namespace {

const char *kProfiles[] = {"h100-sxm", "h200", "a100-80g", "rtx4090", "epyc-9654"};

// The messages of a profile that must not load (as bad.yaml).
std::string refusal(const std::string &yaml) {
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  EXPECT_FALSE(parse_hardware(yaml, "bad.yaml", sources, diagnostics)) << yaml;
  std::ostringstream messages;
  diagnostics.flush(messages, false);
  return messages.str();
}

TEST(CostHardware, StdlibProfilesLoad) {
  for (const char *name : kProfiles) {
    SourceManager sources;
    DiagnosticEngine diagnostics(sources);
    auto profile = load_hardware(name, sources, diagnostics);
    std::ostringstream messages;
    diagnostics.flush(messages, false);
    ASSERT_TRUE(profile) << name << ": " << messages.str();
    EXPECT_EQ(profile->name, name);
    EXPECT_GE(profile->levels.size(), 3u) << name;
    EXPECT_GT(profile->levels[0].bandwidth, 0) << name;
    EXPECT_GE(profile->level_index(profile->tile_level), 1) << name;
    EXPECT_TRUE(profile->vector.count(ir::DType::F32)) << name;
    for (const MemoryLevel &level : profile->levels) {
      EXPECT_GT(level.capacity, 0) << name << " " << level.name;
      EXPECT_GT(level.energy_per_byte, 0) << name << " " << level.name;
    }
  }
}

// Every figure in a stdlib profile says where it comes from, in a comment.
TEST(CostHardware, EveryFigureHasASource) {
  std::regex figure(R"(^\s*(capacity|bandwidth|energy|peak|fanout|temperature):)");
  for (const char *name : kProfiles) {
    std::ifstream in(cost_test::source_root() + "/stdlib/hw/" + name + ".yaml");
    ASSERT_TRUE(in) << name;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
      ++number;
      if (std::regex_search(line, figure)) {
        EXPECT_NE(line.find('#'), std::string::npos) << name << ".yaml:" << number << " has no source: " << line;
      }
    }
  }
}

TEST(CostHardware, AliasesAndNames) {
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  auto profile = load_hardware("h100", sources, diagnostics);
  ASSERT_TRUE(profile);
  EXPECT_EQ(profile->name, "h100-sxm");
  auto names = hardware_names();
  for (const char *name : kProfiles) {
    EXPECT_NE(std::find(names.begin(), names.end(), name), names.end()) << name;
  }
  EXPECT_FALSE(load_hardware("h1000", sources, diagnostics));
  std::ostringstream messages;
  diagnostics.flush(messages, false);
  EXPECT_NE(messages.str().find("no hardware profile named 'h1000'"), std::string::npos) << messages.str();
}

TEST(CostHardware, Units) {
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  auto profile = parse_hardware(cost_test::gpu_yaml(228 * 1024), "t.yaml", sources, diagnostics);
  ASSERT_TRUE(profile);
  EXPECT_DOUBLE_EQ(profile->levels[0].capacity, 80e9);
  EXPECT_DOUBLE_EQ(profile->levels[0].bandwidth, 3e12);
  EXPECT_DOUBLE_EQ(profile->levels[0].energy_per_byte, 30e-12);
  EXPECT_DOUBLE_EQ(profile->levels[1].capacity, 228 * 1024);
  EXPECT_EQ(profile->levels[1].fanout, 100);
  EXPECT_DOUBLE_EQ(profile->tensor.at(ir::DType::BF16).peak, 1e15);
  EXPECT_DOUBLE_EQ(profile->tensor.at(ir::DType::BF16).energy_per_flop, 0.2e-12);
}

TEST(CostHardware, MalformedProfileGivesLocatedErrors) {
  const std::string yaml =
      "name: toy\n"
      "levels:\n"
      "  - name: dram\n"
      "    capacity: 16 GB\n"
      "    bandwidth: 100 GB/ss\n"
      "  - name: sram\n"
      "    capacty: 1 MiB\n"
      "compute:\n"
      "  vector:\n"
      "    f32: {peak: 1 TFLOP/s}\n";
  const std::string text = refusal(yaml);
  EXPECT_NE(text.find("bad.yaml:5:16: error: unknown unit 'GB/ss'; did you mean 'GB/s'?"), std::string::npos) << text;
  EXPECT_NE(text.find("bad.yaml:7:5: error: unknown key 'capacty'; did you mean 'capacity'?"), std::string::npos) << text;
  EXPECT_NE(text.find("bad.yaml:6:5: error: level 'sram' needs a 'capacity'"), std::string::npos) << text;
}

TEST(CostHardware, SyntaxErrorsAndMissingParts) {
  for (const auto &[yaml, expected] : std::vector<std::pair<std::string, std::string>>{
           {"name: [a\n", "bad.yaml:2:1: error: malformed YAML"},
           {"- 1\n- 2\n", "bad.yaml:1:1: error: a hardware profile is a YAML mapping"},
           {"name: x\nlevels: []\ncompute: {vector: {f32: {peak: 1}}}\n", "bad.yaml:2:9: error: 'levels' must be a non-empty list"},
           {"name: x\nlevels:\n  - {name: m, capacity: 1 GB, bandwidth: 1 GB/s}\ncompute: {vector: {f16: {peak: 1}}}\n",
            "error: 'compute' needs a vector f32 rate"},
           {"name: x\nlevels:\n  - {name: m, capacity: 1 GB, bandwidth: 1 GB/s}\ncompute: {vector: {f32: {peak: fast}}}\n",
            "bad.yaml:4:32: error: expected a number, not 'fast'"},
       }) {
    const std::string text = refusal(yaml);
    EXPECT_NE(text.find(expected), std::string::npos) << yaml << "\n---\n" << text;
  }
}

TEST(CostHardware, UnitFallbacks) {
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  auto a100 = load_hardware("a100-80g", sources, diagnostics);
  ASSERT_TRUE(a100);
  // No FP8 on the A100: f8 contractions run on the FP16 tensor cores.
  ComputeUnit unit = a100->unit_for(true, ir::DType::F8E4M3);
  EXPECT_TRUE(unit.tensor);
  EXPECT_EQ(unit.dtype, ir::DType::F16);
  // Non-contractions run on the vector units; f32 contractions too (no TF32 assumed).
  EXPECT_FALSE(a100->unit_for(false, ir::DType::BF16).tensor);
  EXPECT_FALSE(a100->unit_for(true, ir::DType::F32).tensor);
  EXPECT_EQ(a100->unit_for(true, ir::DType::F32).label(), "vector f32");
}

// The GPU profiles say how eight of them are wired (docs/SHARDING.md): a node's
// fabric faster than the network between nodes; the CPU has none.
TEST(CostHardware, GpuInterconnects) {
  for (const char *name : kProfiles) {
    SourceManager sources;
    DiagnosticEngine diagnostics(sources);
    auto profile = load_hardware(name, sources, diagnostics);
    ASSERT_TRUE(profile) << name;
    const Interconnect &wires = profile->interconnect;
    if (std::string(name) == "epyc-9654") {
      EXPECT_FALSE(wires.present);
      continue;
    }
    ASSERT_TRUE(wires.present) << name;
    EXPECT_EQ(wires.node, 8) << name;
    EXPECT_GT(wires.intra_node.bandwidth, wires.inter_node.bandwidth) << name;
    EXPECT_GT(wires.inter_node.bandwidth, 0) << name;
    EXPECT_GT(wires.intra_node.latency, 0) << name;
    EXPECT_EQ(&wires.link_for(8), &wires.intra_node) << name;
    EXPECT_EQ(&wires.link_for(16), &wires.inter_node) << name;
  }
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  auto h100 = load_hardware("h100-sxm", sources, diagnostics);
  ASSERT_TRUE(h100);
  EXPECT_EQ(h100->interconnect.intra_node.name, "nvlink");
  EXPECT_DOUBLE_EQ(h100->interconnect.intra_node.bandwidth, 450e9);
  EXPECT_DOUBLE_EQ(h100->interconnect.intra_node.latency, 3e-6);
  EXPECT_EQ(h100->interconnect.inter_node.name, "infiniband");
  EXPECT_DOUBLE_EQ(h100->interconnect.inter_node.bandwidth, 50e9);
}

TEST(CostHardware, InterconnectErrorsAreLocated) {
  const std::string yaml = cost_test::gpu_yaml(228 * 1024) +
                           "interconnect:\n"
                           "  node: 0\n"
                           "  intra_node: {name: nvlink, bandwith: 450 GB/s}\n";
  const std::string text = refusal(yaml);
  EXPECT_NE(text.find("error: 'node' is the number of devices per node"), std::string::npos) << text;
  EXPECT_NE(text.find("error: unknown key 'bandwith'; did you mean 'bandwidth'?"), std::string::npos) << text;
  EXPECT_NE(text.find("error: 'intra_node' needs a 'bandwidth'"), std::string::npos) << text;
}

// The ring formulas (docs/SHARDING.md, "Cost") on n bytes over p devices.
TEST(CostHardware, RingCollectiveFormulas) {
  Collective c;
  c.group = 8;
  c.elements = 1e6;
  c.element_bytes = 2;
  const double n = 2e6, bw = 100e9, alpha = 5e-6;
  c.kind = Collective::Kind::AllReduce;
  EXPECT_DOUBLE_EQ(collective_wire_bytes(c), 2.0 * 7 / 8 * n);
  EXPECT_DOUBLE_EQ(collective_time(c, bw, alpha), 2.0 * 7 / 8 * n / bw + 2 * 7 * alpha);
  for (auto kind : {Collective::Kind::AllGather, Collective::Kind::ReduceScatter, Collective::Kind::AllToAll}) {
    c.kind = kind;
    EXPECT_DOUBLE_EQ(collective_wire_bytes(c), 7.0 / 8 * n) << collective_name(kind);
    EXPECT_DOUBLE_EQ(collective_time(c, bw, alpha), 7.0 / 8 * n / bw + 7 * alpha) << collective_name(kind);
  }
  c.group = 1;  // one device: nothing moves
  EXPECT_EQ(collective_time(c, bw, alpha), 0);
}

}  // namespace
}  // namespace ncd
