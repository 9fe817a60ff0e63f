// Pass `stream`: streams the normalised axis of a softmax that feeds
// contractions over that axis — the step from attention to FlashAttention.
//
// Preconditions: a verified diagram. For `P = softmax[k](S)` whose every user
// is a contraction summing over k (and which is not itself an output), the
// pass adds `stream k by <size of k>` to the diagram's schedule (creating one
// for the target hardware if needed). Under that directive the softmax and
// its contractions run as one online-softmax accumulator: per row, a running
// maximum m, a normaliser l = Σ exp(S - m) and an unnormalised output
// o = Σ exp(S - m)·V, rescaled by exp(m_old - m_new) whenever a chunk raises
// m, and divided by l once at the end (docs/OPTIMIZE.md states the algebra).
// The chunk size is the tile pass's job. Masks (`where(q >= k, S, -inf)`)
// are elementwise on S and stream with it. The new schedule is checked with
// the schedule rules (ncd/schedule_check.h); an illegal one is withdrawn with
// the reason in the explain log.
#include <algorithm>
#include <set>

#include "ncd/hardware.h"
#include "ncd/ir_edit.h"
#include "ncd/plugin.h"
#include "ncd/registry.h"
#include "ncd/schedule_check.h"

namespace {

using namespace ncd;

class Stream : public Pass {
 public:
  std::string name() const override { return "stream"; }
  std::string description() const override {
    return "Stream a softmax and the contractions it feeds over its axis (online softmax: FlashAttention)";
  }

  PassResult run(ir::Program &program, ir::Diagram &diagram, PassContext &context) override {
    PassResult result;
    auto used = ir::users(diagram);
    auto escaping = ir::escaping_values(diagram);
    for (const auto &entry : diagram.body.ops) {
      const ir::Op &op = *entry;
      if (op.kind != ir::OpKind::Normalize || ops::info(op.function).stream != ops::Stream::Online) continue;
      std::string what = "softmax over " + axis_names(program, op.axes);
      if (op.axes.size() != 1) {
        context.note(op.location, what + " not streamed: only a softmax over one axis streams");
        continue;
      }
      int axis = op.axes[0];
      int p = op.results[0];
      if (escaping.count(p)) {
        context.note(op.location, what + " not streamed: its result " + ir::value_label(diagram, p) +
                                      " is an output, so every probability must be stored");
        continue;
      }
      std::string refusal;
      for (const ir::Op *user : used[p]) {
        bool sums_axis = user->kind == ir::OpKind::Contract &&
                         std::find(user->axes.begin(), user->axes.end(), axis) != user->axes.end();
        if (!sums_axis) {
          std::string consumer =
              user->kind == ir::OpKind::Call
                  ? "a call of " + user->callee_name
                  : std::string(ir::op_kind_name(user->kind)) +
                        (user->function == ops::Fn::None ? "" : " " + std::string(ops::name(user->function)));
          refusal = what + " not streamed: its consumer (" + consumer + ") is not a contraction over " +
                    program.axis(axis).name;
          break;
        }
      }
      if (used[p].empty()) refusal = what + " not streamed: nothing uses it";
      if (!refusal.empty()) {
        context.note(op.location, refusal);
        continue;
      }
      if (ir::streams_axis(diagram, axis)) continue;
      if (diagram.schedules.empty()) {
        ir::Schedule schedule;
        schedule.target = context.hardware ? context.hardware->name : "";
        schedule.location = diagram.location;
        diagram.schedules.push_back(schedule);
      }
      ir::Schedule &schedule = diagram.schedules.front();
      ir::ScheduleDirective directive;
      directive.kind = ir::ScheduleDirective::Kind::Stream;
      directive.axis = axis;
      directive.amount = program.size(axis).value_or(1);
      directive.location = op.location;
      schedule.directives.push_back(directive);
      if (context.hardware) {
        DiagnosticEngine quiet(*context.sources);
        auto size = [&](int id) { return program.size(id).value_or(1); };
        if (!check_schedule(program, diagram, schedule, *context.hardware, size, quiet)) {
          schedule.directives.pop_back();
          if (schedule.directives.empty() && diagram.schedules.size() == 1) diagram.schedules.clear();
          context.note(op.location, what + " not streamed: the schedule rules refuse it (" + first_error(quiet) + ")");
          continue;
        }
      }
      std::string consumers;
      for (const ir::Op *user : used[p])
        consumers += (consumers.empty() ? "" : ", ") + ir::value_label(diagram, user->results[0]);
      context.note(op.location, what + " streamed into its contraction(s) " + consumers +
                                    ": online softmax (running max, normaliser, rescaled output)");
      result.changed = true;
    }
    return result;
  }

 private:
  static std::string axis_names(const ir::Program &program, const std::vector<int> &axes) {
    std::string out;
    for (int axis : axes) out += (out.empty() ? "" : ", ") + program.axis(axis).name;
    return out;
  }
  static std::string first_error(const DiagnosticEngine &diagnostics) {
    for (const auto &diagnostic : diagnostics.all()) return diagnostic.message;
    return "no reason given";
  }
};

int register_stream(Registry *registry) { return registry->add_pass(std::make_unique<Stream>()) ? 0 : 1; }

}  // namespace

NCD_PLUGIN(pass_stream, "pass-stream", "1.0.0", "Pass stream: online-softmax streaming (FlashAttention)",
           register_stream)
