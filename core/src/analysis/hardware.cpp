// Hardware profiles: reading the YAML files (yaml-cpp), units, lookups.
//
// Every figure in a profile may carry its unit ("80 GB", "3.35 TB/s",
// "989.4 TFLOP/s", "0.19 pJ"); a bare number is in base units (bytes, bytes/s,
// FLOP/s, joules). Errors point at the offending YAML node.
#include "ncd/hardware.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <filesystem>
#include <set>

#include "ncd/frontend.h"

namespace fs = std::filesystem;

namespace ncd {

std::string ComputeUnit::label() const {
  return std::string(tensor ? "tensor " : "vector ") + std::string(ir::dtype_name(dtype));
}

int HardwareProfile::level_index(std::string_view level) const {
  for (size_t i = 0; i < levels.size(); ++i)
    if (levels[i].name == level) return static_cast<int>(i);
  return -1;
}

int HardwareProfile::tile_level_index() const {
  int index = level_index(tile_level);
  if (index >= 0) return index;
  for (size_t i = 1; i < levels.size(); ++i)
    if (levels[i].fanout > 1) return static_cast<int>(i);
  return levels.size() > 1 ? 1 : 0;
}

bool HardwareProfile::answers_to(std::string_view target) const {
  if (target == name) return true;
  return std::find(aliases.begin(), aliases.end(), target) != aliases.end();
}

namespace {

// Wider dtypes a narrower one falls back to, in order.
std::vector<ir::DType> fallbacks(ir::DType dtype) {
  using ir::DType;
  switch (dtype) {
    case DType::F8E4M3: return {DType::F8E4M3, DType::F8E5M2, DType::F16, DType::BF16, DType::F32};
    case DType::F8E5M2: return {DType::F8E5M2, DType::F8E4M3, DType::F16, DType::BF16, DType::F32};
    case DType::F16: return {DType::F16, DType::BF16, DType::F32};
    case DType::BF16: return {DType::BF16, DType::F16, DType::F32};
    case DType::I8: return {DType::I8, DType::I32, DType::F32};
    case DType::I32: return {DType::I32, DType::F32};
    case DType::Bool: return {DType::I8, DType::I32, DType::F32};
    case DType::F32: return {DType::F32};
  }
  return {DType::F32};
}

}  // namespace

ComputeUnit HardwareProfile::unit_for(bool contraction, ir::DType dtype) const {
  ComputeUnit unit;
  if (contraction)
    for (ir::DType candidate : fallbacks(dtype))
      if (auto it = tensor.find(candidate); it != tensor.end()) {
        unit.tensor = true;
        unit.dtype = candidate;
        unit.rate = it->second;
        return unit;
      }
  for (ir::DType candidate : fallbacks(dtype))
    if (auto it = vector.find(candidate); it != vector.end()) {
      unit.dtype = candidate;
      unit.rate = it->second;
      return unit;
    }
  // A profile always has a vector f32 rate (checked when it is read).
  unit.dtype = ir::DType::F32;
  if (auto it = vector.find(ir::DType::F32); it != vector.end()) unit.rate = it->second;
  return unit;
}

namespace {

enum class Quantity { Bytes, Bandwidth, Throughput, EnergyPerByte, EnergyPerFlop, Temperature, Time, Count };

struct Unit {
  const char *text;
  double factor;
};

const std::vector<Unit> &units(Quantity quantity) {
  static const std::vector<Unit> bytes{{"B", 1},       {"KB", 1e3},           {"MB", 1e6},
                                       {"GB", 1e9},    {"TB", 1e12},          {"KiB", 1024.0},
                                       {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
  static const std::vector<Unit> bandwidth{{"B/s", 1},    {"KB/s", 1e3},  {"MB/s", 1e6},
                                           {"GB/s", 1e9}, {"TB/s", 1e12}, {"GiB/s", 1073741824.0}};
  static const std::vector<Unit> throughput{
      {"FLOP/s", 1},     {"GFLOP/s", 1e9}, {"TFLOP/s", 1e12}, {"PFLOP/s", 1e15}, {"FLOPS", 1},
      {"GFLOPS", 1e9},   {"TFLOPS", 1e12}, {"PFLOPS", 1e15},  {"OP/s", 1},       {"GOP/s", 1e9},
      {"TOP/s", 1e12},   {"POP/s", 1e15},  {"TOPS", 1e12},    {"GOPS", 1e9}};
  static const std::vector<Unit> per_byte{{"J/B", 1},        {"nJ/B", 1e-9},      {"pJ/B", 1e-12},
                                          {"fJ/B", 1e-15},   {"pJ/bit", 8e-12},   {"fJ/bit", 8e-15},
                                          {"nJ/bit", 8e-9}};
  static const std::vector<Unit> per_flop{{"J", 1},          {"nJ", 1e-9},       {"pJ", 1e-12},
                                          {"fJ", 1e-15},     {"J/FLOP", 1},      {"nJ/FLOP", 1e-9},
                                          {"pJ/FLOP", 1e-12}, {"fJ/FLOP", 1e-15}, {"pJ/OP", 1e-12}};
  static const std::vector<Unit> temperature{{"K", 1}};
  static const std::vector<Unit> time{{"s", 1}, {"ms", 1e-3}, {"us", 1e-6}, {"ns", 1e-9}};
  static const std::vector<Unit> count{};
  switch (quantity) {
    case Quantity::Bytes: return bytes;
    case Quantity::Bandwidth: return bandwidth;
    case Quantity::Throughput: return throughput;
    case Quantity::EnergyPerByte: return per_byte;
    case Quantity::EnergyPerFlop: return per_flop;
    case Quantity::Temperature: return temperature;
    case Quantity::Time: return time;
    case Quantity::Count: return count;
  }
  return count;
}

class ProfileReader {
 public:
  ProfileReader(int file, const SourceFile &source, DiagnosticEngine &diagnostics)
      : file_(file), source_(source), d_(diagnostics) {}

  std::optional<HardwareProfile> read(const std::string &path) {
    YAML::Node root;
    try {
      root = YAML::Load(source_.text);
    } catch (const YAML::Exception &error) {
      SourceLocation location = at(error.mark);
      d_.error(location, "malformed YAML: " + error.msg);
      return std::nullopt;
    }
    if (!root.IsMap()) {
      d_.error(root.IsDefined() && !root.IsNull() ? where(root) : SourceLocation{file_, 1, 1, 1},
               "a hardware profile is a YAML mapping with name, levels and compute");
      return std::nullopt;
    }
    HardwareProfile profile;
    profile.path = path;
    int errors = d_.error_count();
    check_keys(root, {"name", "description", "aliases", "levels", "compute", "tile_level", "temperature", "launch",
                      "occupancy", "interconnect"});
    profile.name = required_string(root, "name");
    if (root["description"]) profile.description = string(root["description"]);
    if (auto aliases = root["aliases"]) {
      if (!aliases.IsSequence())
        d_.error(where(aliases), "'aliases' must be a list of names");
      else
        for (const auto &alias : aliases) profile.aliases.push_back(string(alias));
    }
    if (auto temperature = root["temperature"]) profile.temperature = number(temperature, Quantity::Temperature);
    if (auto launch = root["launch"]) {
      profile.launch = number(launch, Quantity::Time);
      if (profile.launch < 0) d_.error(where(launch), "'launch' is a time per kernel, at least 0");
    }
    if (auto occupancy = root["occupancy"]) read_occupancy(occupancy, profile);
    if (auto interconnect = root["interconnect"]) read_interconnect(interconnect, profile);
    read_levels(root, profile);
    read_compute(root, profile);
    if (auto tile = root["tile_level"]) {
      profile.tile_level = string(tile);
      if (!profile.levels.empty() && profile.level_index(profile.tile_level) < 0)
        d_.error(where(tile), "tile_level '" + profile.tile_level + "' is not one of the levels" +
                                  did_you_mean(profile.tile_level, level_names(profile)));
    }
    if (d_.error_count() != errors) return std::nullopt;
    if (profile.tile_level.empty() && !profile.levels.empty())
      profile.tile_level = profile.levels[static_cast<size_t>(profile.tile_level_index())].name;
    return profile;
  }

 private:
  SourceLocation at(const YAML::Mark &mark, int length = 1) const {
    if (mark.line < 0) return {file_, 1, 1, 1};
    return {file_, mark.line + 1, mark.column + 1, std::max(1, length)};
  }

  SourceLocation where(const YAML::Node &node) const {
    int length = 1;
    if (node.IsScalar()) length = static_cast<int>(node.Scalar().size());
    // A scalar's mark is its first character; keep the caret on one line.
    SourceLocation location = at(node.Mark(), length);
    if (location.line >= 1 && static_cast<size_t>(location.line) <= source_.line_starts.size()) {
      std::string_view line = source_.line(location.line);
      int room = static_cast<int>(line.size()) - location.column + 1;
      if (room >= 1) location.length = std::min(location.length, room);
    }
    return location;
  }

  static std::vector<std::string> level_names(const HardwareProfile &profile) {
    std::vector<std::string> names;
    for (const auto &level : profile.levels) names.push_back(level.name);
    return names;
  }

  void check_keys(const YAML::Node &map, const std::vector<std::string> &known) {
    for (const auto &entry : map) {
      std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "";
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      d_.error(where(entry.first), "unknown key '" + key + "'" + did_you_mean(key, known) + " (expected: " + join(known) + ")");
    }
  }

  static std::string join(const std::vector<std::string> &names) {
    std::string out;
    for (const auto &name : names) out += (out.empty() ? "" : ", ") + name;
    return out;
  }

  std::string string(const YAML::Node &node) {
    if (!node.IsScalar()) {
      d_.error(where(node), "expected a name or text here");
      return "";
    }
    return node.Scalar();
  }

  std::string required_string(const YAML::Node &map, const char *key) {
    if (!map[key]) {
      d_.error(where(map), std::string("the profile needs a '") + key + "'");
      return "";
    }
    return string(map[key]);
  }

  // A figure with an optional unit: "3.35 TB/s", "80GB", "1e12".
  double number(const YAML::Node &node, Quantity quantity) {
    if (!node.IsScalar()) {
      d_.error(where(node), "expected a number with a unit here");
      return 0;
    }
    const std::string &text = node.Scalar();
    size_t used = 0;
    double value = 0;
    try {
      value = std::stod(text, &used);
    } catch (...) {
      d_.error(where(node), "expected a number, not '" + text + "'");
      return 0;
    }
    if (!std::isfinite(value)) {
      d_.error(where(node), "expected a finite number, not '" + text + "'");
      return 0;
    }
    std::string unit = text.substr(used);
    unit.erase(0, unit.find_first_not_of(" \t"));
    unit.erase(unit.find_last_not_of(" \t") + 1);
    double factor = 1;
    if (!unit.empty()) {
      bool found = false;
      std::vector<std::string> names;
      for (const Unit &candidate : units(quantity)) {
        names.push_back(candidate.text);
        if (unit == candidate.text) {
          factor = candidate.factor;
          found = true;
        }
      }
      if (!found) {
        d_.error(where(node), "unknown unit '" + unit + "'" + did_you_mean(unit, names) +
                                  (names.empty() ? " (this figure takes no unit)" : " (units: " + join(names) + ")"));
        return 0;
      }
    }
    if (!std::isfinite(value) || value < 0) {
      d_.error(where(node), "'" + text + "' must be a non-negative number");
      return 0;
    }
    return value * factor;
  }

  void read_levels(const YAML::Node &root, HardwareProfile &profile) {
    auto levels = root["levels"];
    if (!levels) {
      d_.error(where(root), "the profile needs 'levels': its memory hierarchy, top level first");
      return;
    }
    if (!levels.IsSequence() || levels.size() == 0) {
      d_.error(where(levels), "'levels' must be a non-empty list of memory levels, top level first");
      return;
    }
    std::set<std::string> names;
    for (const auto &node : levels) {
      if (!node.IsMap()) {
        d_.error(where(node), "a memory level is a mapping with name, capacity, bandwidth, fanout and energy");
        continue;
      }
      check_keys(node, {"name", "description", "capacity", "fanout", "bandwidth", "energy"});
      MemoryLevel level;
      level.location = where(node);
      level.name = required_string(node, "name");
      if (!level.name.empty() && !names.insert(level.name).second)
        d_.error(where(node["name"]), "level '" + level.name + "' is listed twice");
      if (node["description"]) level.description = string(node["description"]);
      if (!node["capacity"]) {
        d_.error(where(node), "level '" + level.name + "' needs a 'capacity' (per instance, e.g. 228 KiB)");
      } else {
        int before = d_.error_count();
        level.capacity = number(node["capacity"], Quantity::Bytes);
        if (d_.error_count() == before && level.capacity <= 0)
          d_.error(where(node["capacity"]), "a capacity must be positive");
      }
      if (auto fanout = node["fanout"]) {
        double count = number(fanout, Quantity::Count);
        if (count < 1 || count != std::floor(count))
          d_.error(where(fanout), "'fanout' is a whole number of instances (at least 1)");
        else if (count > 1e9)
          d_.error(where(fanout), "'fanout' is at most 1000000000 instances");
        else
          level.fanout = static_cast<int64_t>(count);
      }
      if (auto bandwidth = node["bandwidth"]) level.bandwidth = number(bandwidth, Quantity::Bandwidth);
      if (auto energy = node["energy"]) level.energy_per_byte = number(energy, Quantity::EnergyPerByte);
      profile.levels.push_back(level);
    }
    if (levels[0].IsMap() && !levels[0]["bandwidth"])
      d_.error(where(levels[0]), "the top level needs a 'bandwidth' (every operation's traffic crosses it)");
  }

  void read_compute(const YAML::Node &root, HardwareProfile &profile) {
    auto compute = root["compute"];
    if (!compute) {
      d_.error(where(root), "the profile needs 'compute': peak rates per dtype under 'tensor' and 'vector'");
      return;
    }
    if (!compute.IsMap()) {
      d_.error(where(compute), "'compute' is a mapping with 'tensor' and 'vector'");
      return;
    }
    check_keys(compute, {"tensor", "vector", "special"});
    read_rates(compute["tensor"], profile.tensor);
    read_rates(compute["vector"], profile.vector);
    if (auto special = compute["special"]) {
      if (!special.IsMap()) {
        d_.error(where(special), "'special' is a mapping {peak: ...} (evaluations per second)");
      } else {
        check_keys(special, {"peak"});
        profile.special.location = where(special);
        if (!special["peak"]) {
          d_.error(where(special), "'special' needs a 'peak' (evaluations per second)");
        } else {
          int before = d_.error_count();
          profile.special.peak = number(special["peak"], Quantity::Throughput);
          if (d_.error_count() == before && profile.special.peak <= 0)
            d_.error(where(special["peak"]), "a peak rate must be positive");
        }
      }
    }
    if (!profile.vector.count(ir::DType::F32))
      d_.error(where(compute), "'compute' needs a vector f32 rate (the fallback for every dtype)");
  }

  // occupancy: {blocks: N, threads: N}, what one SM (an instance of the tile level) keeps resident.
  void read_link(const YAML::Node &node, const char *key, Link &link) {
    if (!node.IsMap()) {
      d_.error(where(node), std::string("'") + key + "' is a mapping {name, description, bandwidth, latency}");
      return;
    }
    check_keys(node, {"name", "description", "bandwidth", "latency"});
    link.location = where(node);
    link.name = node["name"] ? string(node["name"]) : key;
    if (node["description"]) link.description = string(node["description"]);
    if (auto bandwidth = node["bandwidth"])
      link.bandwidth = number(bandwidth, Quantity::Bandwidth);
    else
      d_.error(where(node), std::string("'") + key + "' needs a 'bandwidth' (per device, each direction)");
    if (link.bandwidth < 0) d_.error(where(node["bandwidth"]), "a bandwidth is at least 0");
    if (auto latency = node["latency"]) link.latency = number(latency, Quantity::Time);
    if (link.latency < 0) d_.error(where(node["latency"]), "a latency is at least 0");
  }

  void read_interconnect(const YAML::Node &node, HardwareProfile &profile) {
    if (!node.IsMap()) {
      d_.error(where(node), "'interconnect' is a mapping {node: N, intra_node: {...}, inter_node: {...}}");
      return;
    }
    check_keys(node, {"node", "intra_node", "inter_node"});
    Interconnect &out = profile.interconnect;
    out.present = true;
    if (auto count = node["node"]) {
      int before = d_.error_count();
      double n = number(count, Quantity::Count);
      if (d_.error_count() == before) {
        if (n < 1 || n != std::floor(n) || n > 1e6)
          d_.error(where(count), "'node' is the number of devices per node, a whole number from 1");
        else
          out.node = static_cast<int64_t>(n);
      }
    }
    if (auto intra = node["intra_node"])
      read_link(intra, "intra_node", out.intra_node);
    else
      d_.error(where(node), "'interconnect' needs 'intra_node' (the link between devices of one node)");
    if (auto inter = node["inter_node"])
      read_link(inter, "inter_node", out.inter_node);
    else
      out.inter_node = out.intra_node;
  }

  void read_occupancy(const YAML::Node &node, HardwareProfile &profile) {
    if (!node.IsMap()) {
      d_.error(where(node), "'occupancy' is a mapping {blocks: N, threads: N, schedulers: N} (per instance of the tile level)");
      return;
    }
    check_keys(node, {"blocks", "threads", "schedulers"});
    auto whole = [&](const char *key, int64_t &out) {
      auto value = node[key];
      if (!value) return;
      int before = d_.error_count();
      double count = number(value, Quantity::Count);
      if (d_.error_count() != before) return;
      if (count < 1 || count != std::floor(count) || count > 1e9)
        d_.error(where(value), std::string("'") + key + "' is a whole number from 1 to 1000000000");
      else
        out = static_cast<int64_t>(count);
    };
    whole("blocks", profile.max_blocks);
    whole("threads", profile.max_threads);
    whole("schedulers", profile.schedulers);
  }

  void read_rates(const YAML::Node &node, std::map<ir::DType, ComputeRate> &rates) {
    if (!node) return;
    if (!node.IsMap()) {
      d_.error(where(node), "rates are a mapping from dtype to {peak, energy}");
      return;
    }
    std::vector<std::string> names = ir::dtype_names();
    names.push_back("f8");
    for (const auto &entry : node) {
      std::string key = entry.first.IsScalar() ? entry.first.Scalar() : "";
      std::vector<ir::DType> dtypes;
      if (key == "f8") {
        dtypes = {ir::DType::F8E4M3, ir::DType::F8E5M2};
      } else if (auto dtype = ir::parse_dtype(key)) {
        dtypes = {*dtype};
      } else {
        d_.error(where(entry.first), "unknown dtype '" + key + "'" + did_you_mean(key, names));
        continue;
      }
      ComputeRate rate;
      rate.location = where(entry.first);
      const YAML::Node &value = entry.second;
      if (!value.IsMap()) {
        d_.error(where(value), "a rate is a mapping {peak: ..., energy: ...}");
        continue;
      }
      check_keys(value, {"peak", "energy"});
      if (!value["peak"]) {
        d_.error(where(value), "the rate for " + key + " needs a 'peak'");
      } else {
        int before = d_.error_count();
        rate.peak = number(value["peak"], Quantity::Throughput);
        if (d_.error_count() == before && rate.peak <= 0) d_.error(where(value["peak"]), "a peak rate must be positive");
      }
      if (auto energy = value["energy"]) rate.energy_per_flop = number(energy, Quantity::EnergyPerFlop);
      for (ir::DType dtype : dtypes) rates[dtype] = rate;
    }
  }

  int file_;
  const SourceFile &source_;
  DiagnosticEngine &d_;
};

bool looks_like_path(const std::string &text) {
  if (text.find('/') != std::string::npos) return true;
  auto ends = [&](const std::string &suffix) {
    return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends(".yaml") || ends(".yml");
}

std::vector<fs::path> hardware_folders() {
  std::vector<fs::path> out;
  for (const std::string &folder : default_search_path()) out.push_back(fs::path(folder) / "hw");
  return out;
}

}  // namespace

std::optional<HardwareProfile> parse_hardware(const std::string &text, const std::string &path, SourceManager &sources,
                                              DiagnosticEngine &diagnostics) {
  std::error_code code;
  fs::path absolute = fs::absolute(path, code);
  int file = sources.add(path, code ? path : absolute.lexically_normal().string(), text);
  ProfileReader reader(file, sources.file(file), diagnostics);
  return reader.read(path);
}

std::vector<std::string> hardware_names() {
  std::set<std::string> names;
  for (const fs::path &folder : hardware_folders()) {
    std::error_code code;
    if (!fs::is_directory(folder, code)) continue;
    for (const auto &entry : fs::directory_iterator(folder, code))
      if (entry.path().extension() == ".yaml") names.insert(entry.path().stem().string());
  }
  return {names.begin(), names.end()};
}

std::optional<HardwareProfile> load_hardware(const std::string &name_or_path, SourceManager &sources,
                                             DiagnosticEngine &diagnostics) {
  auto load_file = [&](const std::string &path) -> std::optional<HardwareProfile> {
    std::string text, error;
    if (!read_text_file(path, text, error)) {
      diagnostics.error({}, "hardware profile: " + error);
      return std::nullopt;
    }
    return parse_hardware(text, path, sources, diagnostics);
  };
  if (looks_like_path(name_or_path)) return load_file(name_or_path);
  for (const fs::path &folder : hardware_folders()) {
    fs::path candidate = folder / (name_or_path + ".yaml");
    std::error_code code;
    if (fs::is_regular_file(candidate, code)) return load_file(candidate.string());
  }
  // An alias (the `for "h100"` of a schedule): read each profile quietly.
  for (const std::string &name : hardware_names()) {
    for (const fs::path &folder : hardware_folders()) {
      fs::path candidate = folder / (name + ".yaml");
      std::error_code code;
      if (!fs::is_regular_file(candidate, code)) continue;
      std::string text, error;
      if (!read_text_file(candidate.string(), text, error)) break;
      SourceManager scratch_sources;
      DiagnosticEngine scratch(scratch_sources);
      auto profile = parse_hardware(text, candidate.string(), scratch_sources, scratch);
      if (profile && profile->answers_to(name_or_path)) return load_file(candidate.string());
      break;
    }
  }
  diagnostics.error({}, "no hardware profile named '" + name_or_path + "'" + did_you_mean(name_or_path, hardware_names()) +
                            " (profiles: " + [&] {
                              std::string list;
                              for (const auto &name : hardware_names()) list += (list.empty() ? "" : ", ") + name;
                              return list.empty() ? std::string("none found") : list;
                            }() + "); or give a file: --hw FILE.yaml");
  return std::nullopt;
}

}  // namespace ncd
