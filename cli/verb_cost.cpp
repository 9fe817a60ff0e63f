// `ncd cost FILE [--diagram NAME] [--hw NAME|FILE] [-D ...] [--json]
//            [--sweep AXIS=FROM..TO] [--plot FILE.svg] [--unfused] [--list-hw]
//            [--devices N] [--explain]`:
// FLOPs, bytes per memory level, roofline time and energy of a diagram on a
// hardware profile, as numbers and formulas (the model: docs/COST.md); with
// `shard` lines, across devices (docs/SHARDING.md), and `--sweep
// devices=FROM..TO` over device counts.
#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common.h"
#include "ncd/cost.h"
#include "ncd/hardware.h"
#include "ncd/sharding.h"
#include "verbs.h"

namespace ncd::cli {
namespace {

struct Sweep {
  std::vector<std::string> axes;
  std::vector<int64_t> values;
};

bool parse_int(const std::string &text, int64_t &out) {
  if (text.empty() || text.size() > 15) return false;
  for (char ch : text)
    if (ch < '0' || ch > '9') return false;
  out = std::stoll(text);
  return true;
}

// AXIS[,AXIS...]=FROM..TO[:*F|:+S] — doubling by default.
std::optional<Sweep> parse_sweep(const std::string &text, std::string &error) {
  Sweep sweep;
  size_t eq = text.find('=');
  size_t dots = text.find("..", eq == std::string::npos ? 0 : eq);
  if (eq == std::string::npos || dots == std::string::npos || eq == 0) {
    error = "--sweep " + text + ": expected AXIS=FROM..TO (e.g. q=1024..16384), optionally :*F or :+S for the step";
    return std::nullopt;
  }
  std::string names = text.substr(0, eq);
  size_t start = 0;
  while (start <= names.size()) {
    size_t comma = names.find(',', start);
    if (comma == std::string::npos) comma = names.size();
    std::string name = names.substr(start, comma - start);
    if (name.empty()) {
      error = "--sweep " + text + ": an axis name is empty";
      return std::nullopt;
    }
    sweep.axes.push_back(name);
    start = comma + 1;
  }
  std::string from_text = text.substr(eq + 1, dots - eq - 1);
  std::string rest = text.substr(dots + 2);
  std::string step_text;
  if (size_t colon = rest.find(':'); colon != std::string::npos) {
    step_text = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
  }
  int64_t from = 0, to = 0, step = 2;
  bool multiply = true;
  if (!parse_int(from_text, from) || !parse_int(rest, to) || from < 1 || to < from) {
    error = "--sweep " + text + ": FROM and TO must be positive integers with FROM <= TO";
    return std::nullopt;
  }
  if (!step_text.empty()) {
    multiply = step_text[0] == '*';
    if ((step_text[0] != '*' && step_text[0] != '+') || !parse_int(step_text.substr(1), step) || step < (multiply ? 2 : 1)) {
      error = "--sweep " + text + ": the step is :*F (multiply by F >= 2) or :+S (add S >= 1)";
      return std::nullopt;
    }
  }
  for (int64_t value = from;;) {
    sweep.values.push_back(value);
    if (sweep.values.size() > 1000) {
      error = "--sweep " + text + ": more than 1000 points";
      return std::nullopt;
    }
    // The next point, unless it passes TO (checked before the step, which could overflow).
    if (multiply ? value > to / step : value > to - step) break;
    value = multiply ? value * step : value + step;
  }
  return sweep;
}

// The profile to price on: --hw, else the schedule's `for "..."` when a
// profile answers to it, else h100-sxm.
std::string default_hardware(const ir::Diagram &diagram) {
  for (const ir::Schedule &schedule : diagram.schedules) {
    if (schedule.target.empty()) continue;
    SourceManager sources;
    DiagnosticEngine quiet(sources);
    if (load_hardware(schedule.target, sources, quiet)) return schedule.target;
  }
  return "h100-sxm";
}

nlohmann::json sharded_json(const ShardedCost &cost, const SourceManager &sources) {
  nlohmann::json out{{"devices", cost.devices},
                     {"mesh", cost.mesh},
                     {"communication_time", cost.communication_time},
                     {"one_device_time", cost.one_device_time},
                     {"rank_share", cost.rank_share},
                     {"compute_time", cost.compute_time},
                     {"serial_time", cost.serial_time},
                     {"overlap_time", cost.overlap_time},
                     {"speedup", cost.speedup},
                     {"efficiency", cost.efficiency},
                     {"memory",
                      {{"param_bytes", cost.rank_param_bytes},
                       {"param_bytes_one_device", cost.param_bytes},
                       {"activation_peak", cost.rank_activation_peak},
                       {"activation_peak_one_device", cost.activation_peak}}},
                     {"collectives", nlohmann::json::array()}};
  for (const auto &row : cost.rows) {
    const Collective &c = row.collective;
    nlohmann::json entry{{"kind", std::string(collective_name(c.kind))},
                         {"mesh_dim", c.mesh_dim},
                         {"group", c.group},
                         {"value", c.value},
                         {"site", c.site},
                         {"reason", c.reason},
                         {"elements", c.elements},
                         {"element_bytes", c.element_bytes},
                         {"bytes", c.bytes()},
                         {"count", c.count},
                         {"link", row.link},
                         {"wire_bytes", row.wire_bytes},
                         {"time", row.time}};
    if (c.location.valid()) {
      const SourceFile &file = sources.file(c.location.file);
      entry["location"] = {{"file", file.path}, {"line", c.location.line}, {"column", c.location.column}};
    }
    out["collectives"].push_back(entry);
  }
  return out;
}

// Whether `hardware` can price collectives (it has an interconnect); says why not.
bool prices_collectives(const HardwareProfile &hardware) {
  if (hardware.interconnect.present) return true;
  std::cerr << "ncd cost: error: hardware profile '" << hardware.name
            << "' has no 'interconnect' section, so collectives cannot be priced; choose one that has (--hw "
               "h100-sxm)\n";
  return false;
}

// The one-device time a sharding scales: the scheduled kernel's where there is one.
double one_device_time(const CostReport &report) { return report.kernel ? report.kernel->time : report.total.time; }

nlohmann::json device_sweep_json(const std::vector<DeviceSweepPoint> &points, const CostReport &report,
                                 const SourceManager &sources) {
  nlohmann::json out{{"schema", "ncd-cost-devices"},
                     {"version", 1},
                     {"diagram", report.diagram},
                     {"hardware", report.hardware},
                     {"points", nlohmann::json::array()}};
  for (const DeviceSweepPoint &point : points) {
    nlohmann::json entry{{"devices", point.devices}};
    if (point.best)
      entry["sharding"] = sharded_json(*point.best, sources);
    else
      entry["error"] = point.why;
    out["points"].push_back(entry);
  }
  return out;
}

}  // namespace

Handler setup_cost(CLI::App &command) {
  struct Options {
    std::string file;
    std::string diagram;
    std::string hardware;
    std::string output = "-";
    std::string plot;
    std::string sweep;
    bool json = false;
    bool unfused = false;
    bool list = false;
    bool explain = false;
    int64_t devices = 0;
    FrontendOptions frontend;
  };
  auto options = std::make_shared<Options>();
  command.add_option("file", options->file, "The .ncd file")->type_name("FILE");
  command.add_option("--diagram", options->diagram, "The diagram to price (default: the file's only diagram)")->type_name("NAME");
  command.add_option("--hw", options->hardware,
                     "Hardware profile: a name from stdlib/hw (h100-sxm, h200, a100-80g, rtx4090, epyc-9654) or a YAML file "
                     "(default: the schedule's target, else h100-sxm)")
      ->type_name("NAME|FILE");
  command.add_flag("--json", options->json, "Write the report as JSON (schema: docs/COST.md)");
  command.add_option("--sweep", options->sweep,
                     "Price across sizes: AXIS=FROM..TO doubling, :*F or :+S for another step; AXIS,AXIS=... sweeps several together")
      ->type_name("AXIS=FROM..TO");
  command.add_option("--plot", options->plot, "Also write an SVG plot: the roofline, and cost against size with --sweep")
      ->type_name("FILE.svg");
  command.add_flag("--unfused", options->unfused, "Ignore schedules: price every operation as its own kernel");
  command
      .add_option("--devices", options->devices,
                  "Price the diagram's sharding (its schedule's `shard` lines, docs/SHARDING.md) on N devices: "
                  "a one-dimensional mesh takes N devices, a larger mesh must have N")
      ->type_name("N");
  command.add_flag("--explain", options->explain,
                   "Log each sharding decision: splits and collectives, where and why (stderr)");
  command.add_flag("--list-hw", options->list, "List the hardware profiles found and exit");
  command.add_option("-o,--output", options->output, "Write the report here instead of standard output")->type_name("FILE");
  add_frontend_options(command, options->frontend);
  return [options]() -> int {
    if (options->list) {
      for (const std::string &name : hardware_names()) {
        SourceManager sources;
        DiagnosticEngine diagnostics(sources);
        auto profile = load_hardware(name, sources, diagnostics);
        std::cout << name;
        if (profile && !profile->description.empty()) std::cout << "  " << profile->description;
        std::cout << "\n";
      }
      return kSuccess;
    }
    if (options->file.empty()) {
      std::cerr << "ncd cost: error: a .ncd file is required (or --list-hw)\n";
      return kUsageError;
    }
    std::optional<Sweep> sweep;
    if (!options->sweep.empty()) {
      std::string error;
      sweep = parse_sweep(options->sweep, error);
      if (!sweep) {
        std::cerr << "ncd cost: error: " << error << "\n";
        return kUsageError;
      }
    }
    auto compilation = load_program(options->file, options->frontend);
    if (!compilation) return kUserError;
    const ir::Diagram *diagram = select_diagram(*compilation, options->diagram, true);
    if (!diagram) return kUserError;
    // `devices` in a sweep is the device count, never an axis (docs/SHARDING.md, "Device sweep").
    bool device_sweep = sweep && sweep->axes == std::vector<std::string>{"devices"};
    if (sweep && !device_sweep && std::count(sweep->axes.begin(), sweep->axes.end(), "devices")) {
      std::cerr << "ncd cost: error: --sweep " << options->sweep
                << ": the device count sweeps alone (--sweep devices=FROM..TO)\n";
      return kUsageError;
    }
    if (device_sweep && options->devices != 0) {
      std::cerr << "ncd cost: error: --devices and --sweep devices=... choose the device count twice; keep one\n";
      return kUsageError;
    }
    if (device_sweep && diagram->shards.empty()) {
      std::cerr << "ncd cost: error: --sweep " << options->sweep << ": diagram '" << diagram->name
                << "' has no `shard` directive, so there is nothing to spread; add one to a schedule, e.g. `schedule "
                << diagram->name << " { shard heads over 2 }` (docs/SHARDING.md)\n";
      return kUsageError;
    }
    if (options->devices != 0 || (options->explain && !device_sweep)) {
      if (!apply_devices("cost", *const_cast<ir::Diagram *>(diagram), compilation->program, options->devices))
        return kUsageError;
    }
    std::string hardware_name = options->hardware.empty() ? default_hardware(*diagram) : options->hardware;
    auto hardware = load_hardware(hardware_name, compilation->sources, compilation->diagnostics);
    if (!hardware) {
      print_diagnostics(*compilation);
      return kUserError;
    }
    Registry *registry = load_registry(options->frontend.plugins);
    if (!registry) return kUserError;
    CostOptions cost_options;
    cost_options.use_schedules = !options->unfused;
    cost_options.planner = registry->planner_for(*hardware);
    auto report = price(compilation->program, *diagram, *hardware, compilation->diagnostics, cost_options);
    print_diagnostics(*compilation);
    if (!report) return kUserError;

    if (device_sweep) {
      if (!prices_collectives(*hardware)) return kUserError;
      auto points = sweep_devices(compilation->program, *diagram, *hardware, one_device_time(*report), sweep->values);
      if (options->explain)
        for (const auto &point : points)
          for (const std::string &line : point.tried) std::cerr << "sweep: " << line << "\n";
      std::string text = options->json ? device_sweep_json(points, *report, compilation->sources).dump(2) + "\n"
                                       : format_device_sweep(points, diagram->name, hardware->name);
      if (!write_or_report(options->output, text)) return kUserError;
      if (!options->plot.empty() &&
          !write_or_report(options->plot, plot_devices_svg(points, diagram->name, hardware->name)))
        return kUserError;
      if (!write_dependency_file(options->frontend, *compilation, options->file, options->output)) return kUserError;
      return kSuccess;
    }
    std::vector<std::unique_ptr<Compilation>> kept;
    std::vector<SweepPoint> points;
    if (sweep) {
      std::string diagram_name = diagram->name;
      for (int64_t value : sweep->values) {
        FrontendOptions frontend = options->frontend;
        SweepPoint point;
        for (const std::string &axis : sweep->axes) {
          frontend.defines.push_back(axis + "=" + std::to_string(value));
          point.values.push_back({axis, value});
        }
        auto at = load_program(options->file, frontend);
        if (!at) return kUserError;
        const ir::Diagram *same = select_diagram(*at, diagram_name, true);
        if (!same) return kUserError;
        auto priced = price(at->program, *same, *hardware, at->diagnostics, cost_options);
        print_diagnostics(*at);
        if (!priced) {
          std::cerr << "ncd cost: error: the sweep stops at ";
          for (size_t i = 0; i < point.values.size(); ++i)
            std::cerr << (i ? ", " : "") << point.values[i].first << " = " << point.values[i].second;
          std::cerr << "\n";
          return kUserError;
        }
        point.report = std::move(*priced);
        points.push_back(std::move(point));
        kept.push_back(std::move(at));
      }
    }
    std::string text;
    if (sweep)
      text = options->json ? sweep_json(points, kept.empty() ? compilation->sources : kept.front()->sources) : format_sweep(points);
    else
      text = options->json ? report_json(*report, compilation->sources) : format_report(*report, compilation->sources);
    if (!diagram->shards.empty() && !sweep) {
      ShardingPlan plan = plan_sharding(compilation->program, *diagram);
      if (options->explain)
        for (const std::string &line : plan.explain) std::cerr << "sharding: " << line << "\n";
      if (plan.devices > 1 && !prices_collectives(*hardware)) return kUserError;
      ShardedCost sharded = price_sharding(plan, *hardware, one_device_time(*report));
      if (options->json) {
        auto object = nlohmann::json::parse(text);
        object["sharding"] = sharded_json(sharded, compilation->sources);
        text = object.dump(2) + "\n";
      } else {
        text += "\n" + format_sharded_cost(sharded);
      }
    }
    if (!write_or_report(options->output, text)) return kUserError;
    if (!options->plot.empty() && !write_or_report(options->plot, plot_svg(*report, *hardware, sweep ? &points : nullptr)))
      return kUserError;
    if (!write_dependency_file(options->frontend, *compilation, options->file, options->output)) return kUserError;
    return kSuccess;
  };
}

}  // namespace ncd::cli
