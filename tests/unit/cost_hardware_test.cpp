// Hardware profiles: the stdlib's, located errors, units and fallbacks.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>

#include "cost_support.h"

namespace ncd {
namespace {

const char *kProfiles[] = {"h100-sxm", "h200", "a100-80g", "rtx4090", "epyc-9654"};

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
  SourceManager sources;
  DiagnosticEngine diagnostics(sources);
  EXPECT_FALSE(parse_hardware(yaml, "bad.yaml", sources, diagnostics));
  std::ostringstream messages;
  diagnostics.flush(messages, false);
  std::string text = messages.str();
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
    SourceManager sources;
    DiagnosticEngine diagnostics(sources);
    EXPECT_FALSE(parse_hardware(yaml, "bad.yaml", sources, diagnostics)) << yaml;
    std::ostringstream messages;
    diagnostics.flush(messages, false);
    EXPECT_NE(messages.str().find(expected), std::string::npos) << yaml << "\n---\n" << messages.str();
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

}  // namespace
}  // namespace ncd
