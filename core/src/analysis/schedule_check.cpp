// Schedule legality (see ncd/schedule_check.h for the rules and preconditions).
//
// The checks walk the diagram's operations in order (repeat bodies inline,
// calls through their bindings into the callee) and track, for a streamed
// axis, which values hold a finished reduction over it: combining one of
// those with a value that still carries the axis needs the whole axis at once,
// which a single streaming pass cannot give.
#include "ncd/schedule_check.h"

#include <algorithm>
#include <set>

namespace ncd {
namespace {

bool contains(const std::vector<int> &list, int item) { return std::find(list.begin(), list.end(), item) != list.end(); }

std::string fn_name(const ir::Op &op) { return std::string(ops::name(op.function)); }

class Checker {
 public:
  Checker(const ir::Program &program, const HardwareProfile &hardware,
          const std::function<std::optional<int64_t>(int)> &size, DiagnosticEngine &diagnostics)
      : p_(program), hw_(hardware), size_(size), d_(diagnostics) {}

  std::optional<ScheduleFacts> run(const ir::Diagram &diagram, const ir::Schedule &schedule) {
    int errors = d_.error_count();
    ScheduleFacts facts;
    facts.tile_level = hw_.tile_level_index();
    int highest_named = -1;
    std::map<int, SourceLocation> placed;
    for (const ir::ScheduleDirective &directive : schedule.directives) {
      switch (directive.kind) {
        case ir::ScheduleDirective::Kind::Level: {
          int level = hw_.level_index(directive.level);
          if (level < 0) {
            std::vector<std::string> names;
            for (const auto &l : hw_.levels) names.push_back(l.name);
            std::string list;
            for (const auto &name : names) list += (list.empty() ? "" : ", ") + name;
            d_.error(directive.location, "hardware profile '" + hw_.name + "' has no memory level '" + directive.level + "'" +
                                             did_you_mean(directive.level, names) + " (its levels: " + list + ")");
            break;
          }
          if (level > 0 && (highest_named < 0 || level < highest_named)) highest_named = level;
          for (int value : directive.values) {
            if (placed.count(value)) {
              auto &error = d_.error(directive.location, "'" + diagram.value(value).name + "' is already placed in a level");
              error.notes.push_back({placed[value], "placed here"});
              continue;
            }
            placed[value] = directive.location;
            facts.residency[value] = level;
          }
          break;
        }
        case ir::ScheduleDirective::Kind::Group:
          if (check_group(diagram, directive)) facts.groups[directive.axis] = directive.amount;
          facts.directive[directive.axis] = directive.location;
          break;
        case ir::ScheduleDirective::Kind::Stream:
          if (check_stream(diagram, directive, facts)) facts.streams[directive.axis] = directive.amount;
          facts.directive[directive.axis] = directive.location;
          break;
      }
    }
    if (highest_named > 0) facts.tile_level = highest_named;
    if (d_.error_count() != errors) return std::nullopt;
    return facts;
  }

 private:
  std::string name(int axis) const { return p_.axis(axis).name; }

  bool check_divides(const ir::ScheduleDirective &directive, const char *verb) {
    auto size = size_(directive.axis);
    if (!size) {
      d_.error(directive.location, "axis '" + name(directive.axis) + "' has no size; give it one (-D " + name(directive.axis) +
                                       "=N) to " + verb + " it");
      return false;
    }
    if (directive.amount > *size) {
      d_.error(directive.location, std::string(verb) + " " + name(directive.axis) + " by " + std::to_string(directive.amount) +
                                       ": the tile is larger than the axis (size " + std::to_string(*size) + ")");
      return false;
    }
    if (*size % directive.amount != 0) {
      d_.error(directive.location, std::string(verb) + " " + name(directive.axis) + " by " + std::to_string(directive.amount) +
                                       ": " + std::to_string(directive.amount) + " does not divide the size of '" +
                                       name(directive.axis) + "' (" + std::to_string(*size) + ")");
      return false;
    }
    return true;
  }

  // The first operation (through calls) that sums, reduces or normalises over `axis`.
  const ir::Op *consumer(const ir::Diagram &diagram, int axis) const {
    const ir::Op *found = nullptr;
    for_each_op(diagram.body, [&](const ir::Op &op) {
      if (found) return;
      bool consumes = ((op.kind == ir::OpKind::Contract || op.kind == ir::OpKind::Reduce ||
                        op.kind == ir::OpKind::Normalize || op.kind == ir::OpKind::Scan) &&
                       contains(op.axes, axis)) ||
                      (op.kind == ir::OpKind::Select && op.axes.at(0) == axis);
      if (op.kind == ir::OpKind::Call)
        for (auto [from, to] : op.bindings)
          if (to == axis && consumer(*p_.diagrams[static_cast<size_t>(op.callee)], from)) consumes = true;
      if (consumes) found = &op;
    });
    return found;
  }

  std::string describe(const ir::Op &op) const {
    std::string axes;
    for (int axis : op.axes) axes += (axes.empty() ? "" : ", ") + name(axis);
    switch (op.kind) {
      case ir::OpKind::Contract: return "the contraction over " + axes;
      case ir::OpKind::Reduce: return fn_name(op) + "[" + axes + "]";
      case ir::OpKind::Normalize:
      case ir::OpKind::Scan: return fn_name(op) + "[" + axes + "]";
      case ir::OpKind::Select: return fn_name(op) + "[" + name(op.axes.at(0)) + "]";
      case ir::OpKind::Call: return "the call to '" + op.callee_name + "'";
      default: return std::string(ir::op_kind_name(op.kind));
    }
  }

  bool check_group(const ir::Diagram &diagram, const ir::ScheduleDirective &directive) {
    int axis = directive.axis;
    if (const ir::Op *op = consumer(diagram, axis)) {
      // A scan cannot be streamed either (scan_stream): no hint to stream it.
      std::string hint = op->kind == ir::OpKind::Scan ? "" : "; stream it instead (stream " + name(axis) + " by N)";
      auto &error =
          d_.error(directive.location, "cannot group '" + name(axis) + "': " + describe(*op) +
                                           " consumes it, and a group partition splits only an axis the diagram is "
                                           "lifted or mapped over" +
                                           hint);
      error.notes.push_back({op->location, "'" + name(axis) + "' is consumed here"});
      return false;
    }
    for (int output : diagram.outputs) {
      const ir::Value &value = diagram.value(output);
      if (contains(value.axes, axis)) continue;
      auto &error = d_.error(directive.location, "cannot group '" + name(axis) + "': output '" + value.name +
                                                     "' does not carry it, so every block would write all of '" + value.name + "'");
      error.notes.push_back({value.location, "output declared here"});
      return false;
    }
    return check_divides(directive, "group");
  }

  struct StreamScan {
    bool consumed = false;
    bool ok = true;
    std::vector<ScheduleFacts::Accumulator> accumulators;
    std::map<int, int> online;
  };

  bool check_stream(const ir::Diagram &diagram, const ir::ScheduleDirective &directive, ScheduleFacts &facts) {
    int axis = directive.axis;
    StreamScan scan;
    scan_stream(diagram, axis, directive.location, axis, scan);
    if (!scan.ok) return false;
    if (!scan.consumed) {
      d_.error(directive.location, "cannot stream '" + name(axis) + "': no operation sums or reduces over it, so there is no "
                                                                    "accumulator to carry across its chunks; group it instead (group " +
                                       name(axis) + " by N)");
      return false;
    }
    if (!check_divides(directive, "stream")) return false;
    for (auto &accumulator : scan.accumulators) facts.accumulators.push_back(accumulator);
    for (auto [op, streamed] : scan.online) facts.online_softmax[op] = streamed;
    return true;
  }

  // Scans `diagram` for streaming `axis` (an axis of that diagram); `root_axis`
  // is the axis as the schedule names it, for messages.
  void scan_stream(const ir::Diagram &diagram, int axis, SourceLocation at, int root_axis, StreamScan &scan) {
    std::map<int, SourceLocation> finished;  // values holding a finished reduction over the axis → where it was reduced
    std::map<int, std::vector<const ir::Op *>> users;
    for_each_op(diagram.body, [&](const ir::Op &op) {
      for (int operand : op.operands) users[operand].push_back(&op);
    });
    auto carries = [&](int value) { return contains(diagram.value(value).axes, axis); };
    const std::string axis_name = name(root_axis);
    auto two_pass = [&](const ir::Op &op) {
      SourceLocation reduced;
      for (int operand : op.operands)
        if (finished.count(operand)) reduced = finished[operand];
      auto &error = d_.error(at, "cannot stream '" + axis_name + "': " + describe(op) + " combines a finished reduction over '" +
                                     axis_name + "' with values that still carry it, which needs the whole axis at once (two passes)");
      error.notes.push_back({op.location, "combined here"});
      if (reduced.valid()) error.notes.push_back({reduced, "the reduction over '" + axis_name + "' is here"});
      scan.ok = false;
    };
    for_each_op(diagram.body, [&](const ir::Op &op) {
      bool any_finished = false, any_carries = false;
      for (int operand : op.operands) {
        any_finished = any_finished || finished.count(operand) > 0;
        any_carries = any_carries || carries(operand);
      }
      for (int result : op.results) any_carries = any_carries || carries(result);
      bool consumes = ((op.kind == ir::OpKind::Contract || op.kind == ir::OpKind::Reduce ||
                        op.kind == ir::OpKind::Normalize || op.kind == ir::OpKind::Scan) &&
                       contains(op.axes, axis)) ||
                      (op.kind == ir::OpKind::Select && op.axes.at(0) == axis);
      if (consumes) {
        scan.consumed = true;
        if (any_finished) {
          two_pass(op);
          return;
        }
        if (op.kind == ir::OpKind::Contract) {
          scan.accumulators.push_back({root_axis, "sum (contraction)", op.location});
          for (int result : op.results) finished[result] = op.location;
        } else if (op.kind == ir::OpKind::Reduce || op.kind == ir::OpKind::Select) {
          if (op.kind == ir::OpKind::Select || ops::info(op.function).stream != ops::Stream::Running) {
            auto &error = d_.error(at, "cannot stream '" + axis_name + "': " + fn_name(op) + " over it has no running accumulator");
            error.notes.push_back({op.location, "reduced here"});
            scan.ok = false;
            return;
          }
          scan.accumulators.push_back({root_axis, fn_name(op), op.location});
          for (int result : op.results) finished[result] = op.location;
        } else if (op.kind == ir::OpKind::Scan) {
          // A scan could carry its state from tile to tile, but no kernel does: refused.
          auto &error = d_.error(at, "cannot stream '" + axis_name + "': " + fn_name(op) +
                                         " along it carries its state across tiles, which no kernel does");
          error.notes.push_back({op.location, "scanned here"});
          scan.ok = false;
        } else {
          check_online_softmax(diagram, op, axis, root_axis, at, axis_name, users, scan);
        }
        return;
      }
      if (op.kind == ir::OpKind::Call && !p_.diagrams[static_cast<size_t>(op.callee)]->schedules.empty()) {
        // A callee with a schedule of its own is a kernel of its own (`fuse`
        // joins no call): it runs once its operands are complete.
        if (any_finished) {
          SourceLocation origin;
          for (int operand : op.operands)
            if (finished.count(operand)) origin = finished[operand];
          for (int result : op.results) finished[result] = origin;
        }
        return;
      }
      if (op.kind == ir::OpKind::Call) {
        int bound = -1;
        for (auto [from, to] : op.bindings)
          if (to == axis) bound = from;
        const ir::Diagram &callee = *p_.diagrams[static_cast<size_t>(op.callee)];
        if (bound >= 0 && consumer(callee, bound)) {
          if (any_finished) {
            two_pass(op);
            return;
          }
          StreamScan inner;
          scan_stream(callee, bound, at, root_axis, inner);
          scan.ok = scan.ok && inner.ok;
          scan.consumed = true;
          for (auto &accumulator : inner.accumulators) scan.accumulators.push_back(accumulator);
          for (auto entry : inner.online) scan.online.insert(entry);
          for (int result : op.results)
            if (!carries(result)) finished[result] = op.location;
          return;
        }
      }
      if (any_finished && any_carries) {
        two_pass(op);
        return;
      }
      if (any_finished) {
        SourceLocation origin;
        for (int operand : op.operands)
          if (finished.count(operand)) origin = finished[operand];
        for (int result : op.results) finished[result] = origin;
      }
    });
  }

  void check_online_softmax(const ir::Diagram &diagram, const ir::Op &op, int axis, int root_axis, SourceLocation at,
                            const std::string &axis_name, const std::map<int, std::vector<const ir::Op *>> &users,
                            StreamScan &scan) {
    if (ops::info(op.function).stream != ops::Stream::Online) {
      auto &error = d_.error(at, "cannot stream '" + axis_name + "': " + fn_name(op) + " over it needs the whole axis before any "
                                                                                     "result is final, and has no single-pass accumulator");
      error.notes.push_back({op.location, fn_name(op) + " is here"});
      scan.ok = false;
      return;
    }
    int result = op.results.at(0);
    const ir::Value &value = diagram.value(result);
    std::string problem;
    SourceLocation problem_at = op.location;
    if (value.role == ir::Value::Role::Output) {
      problem = "its result '" + value.name + "' is an output, so it would have to be complete";
    } else {
      auto it = users.find(result);
      if (it == users.end() || it->second.empty()) problem = "its result is never used";
      if (it != users.end())
        for (const ir::Op *user : it->second)
          if (user->kind != ir::OpKind::Contract || !contains(user->axes, axis)) {
            problem = "its result is used by " + describe(*user) + ", not only by contractions over '" + axis_name + "'";
            problem_at = user->location;
            break;
          }
    }
    if (!problem.empty()) {
      auto &error = d_.error(at, "cannot stream '" + axis_name + "': softmax over it can stream only through the online-softmax "
                                                                 "rescaling, which needs its result to feed only contractions over '" +
                                     axis_name + "'; " + problem);
      error.notes.push_back({problem_at, "here"});
      scan.ok = false;
      return;
    }
    scan.accumulators.push_back({root_axis, "online softmax", op.location});
    scan.online[op.id] = axis;
  }

  const ir::Program &p_;
  const HardwareProfile &hw_;
  const std::function<std::optional<int64_t>(int)> &size_;
  DiagnosticEngine &d_;
};

}  // namespace

std::optional<ScheduleFacts> check_schedule(const ir::Program &program, const ir::Diagram &diagram,
                                            const ir::Schedule &schedule, const HardwareProfile &hardware,
                                            const std::function<std::optional<int64_t>(int)> &size,
                                            DiagnosticEngine &diagnostics) {
  Checker checker(program, hardware, size, diagnostics);
  return checker.run(diagram, schedule);
}

}  // namespace ncd
