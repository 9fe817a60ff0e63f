// The advisor loop of `ncd optimize --advisor` (docs/ADVISOR.md): the request
// ncd writes, the answer it reads, and the referee's work on each candidate —
// compile it, price it, verify it against the input — ending in one verdict
// per candidate and the fastest verified one kept.
#include "advisor.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "advisor_process.h"
#include "ncd/cost.h"
#include "ncd/frontend.h"
#include "ncd/ir_source.h"
#include "optimize_verify.h"

namespace ncd::cli {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxAnswer = size_t{16} << 20;  // bytes of an advisor's answer
constexpr size_t kMaxCandidates = 16;            // per round; the rest are ignored (and said so)
constexpr size_t kMaxRationale = 200;

// Verification prints as it goes (notes, errors, figures); for a candidate
// that text is the material of its verdict, not a message to the user.
class CaptureCerr {
 public:
  CaptureCerr() : saved_(std::cerr.rdbuf(buffer_.rdbuf())) {}
  ~CaptureCerr() { std::cerr.rdbuf(saved_); }
  std::string text() const { return buffer_.str(); }

 private:
  std::ostringstream buffer_;
  std::streambuf *saved_;
};

std::string number(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

std::string percent(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.2f%%", value * 100);
  return buffer;
}

// One line, bounded: rationales and messages end up in one log line.
std::string one_line(const std::string &text, size_t limit = kMaxRationale) {
  std::string out;
  for (char ch : text) {
    if (ch == '\n' || ch == '\r') break;
    out += (static_cast<unsigned char>(ch) < 32) ? ' ' : ch;
  }
  if (out.size() > limit) out = out.substr(0, limit) + "...";
  return out;
}

// The last non-empty line of an advisor's standard error: usually why it failed.
std::string last_line(const std::string &text) {
  size_t end = text.find_last_not_of("\r\n");
  if (end == std::string::npos) return "";
  size_t start = text.rfind('\n', end);
  return one_line(
      text.substr(start == std::string::npos ? 0 : start + 1, end + 1 - (start == std::string::npos ? 0 : start + 1)));
}

// The first error line of captured output, without its "ncd: error: " prefix.
std::string first_error(const std::string &captured) {
  std::istringstream lines(captured);
  std::string line;
  while (std::getline(lines, line)) {
    const std::string prefix = "ncd: error: ";
    if (line.rfind(prefix, 0) == 0) return line.substr(prefix.size());
  }
  return one_line(captured);
}

std::string first_diagnostic(const Compilation &compilation) {
  for (const Diagnostic &diagnostic : compilation.diagnostics.all())
    if (diagnostic.severity == Severity::Error)
      return diagnostic.location.valid() ? compilation.sources.describe(diagnostic.location) + ": " + diagnostic.message
                                         : diagnostic.message;
  return "unknown error";
}

struct Compiled {
  std::unique_ptr<Compilation> compilation;
  ir::Diagram *diagram = nullptr;
  double time = 0;
  std::string cost_json;
};

// Compiles `text` at the sizes of the run (-D as given) and prices the diagram
// on the profile, as `ncd cost` does.
bool compile_and_price(const AdvisorContext &context, const std::string &path, const std::string &text, Compiled &out,
                       std::string &error) {
  out.compilation = std::make_unique<Compilation>();
  Compilation &compilation = *out.compilation;
  compilation.diagnostics.set_warnings_enabled(false);
  CompileOptions options;
  options.include_dirs = context.frontend.include_dirs;
  options.defines = context.frontend.defines;
  if (!compile_text(path, text, options, compilation)) {
    error = "does not compile: " + first_diagnostic(compilation);
    return false;
  }
  for (auto &diagram : compilation.program.diagrams)
    if (diagram->name == context.diagram) out.diagram = diagram.get();
  if (!out.diagram) {
    error = "has no diagram '" + context.diagram + "'";
    return false;
  }
  CostOptions cost;
  cost.planner = context.registry->planner_for(*context.hardware);
  auto report = price(compilation.program, *out.diagram, *context.hardware, compilation.diagnostics, cost);
  if (!report) {
    error = "cannot be priced: " + first_diagnostic(compilation);
    return false;
  }
  out.time = report->kernel ? report->kernel->time : report->total.time;
  out.cost_json = report_json(*report, compilation.sources);
  return true;
}

// `blocks` holds `schedule NAME ... { ... }` blocks only; each replaces the
// block of the same diagram in `current` (or is added).
bool splice_schedules(const std::string &current, const std::string &blocks, std::string &out, std::string &error) {
  auto block_end = [](const std::string &text, size_t from) -> size_t {
    size_t open = text.find('{', from);
    if (open == std::string::npos) return std::string::npos;
    int depth = 0;
    for (size_t i = open; i < text.size(); ++i) {
      if (text[i] == '{') ++depth;
      if (text[i] == '}' && --depth == 0) return i + 1;
    }
    return std::string::npos;
  };
  auto word_at = [](const std::string &text, size_t at) {
    size_t end = at;
    while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_')) ++end;
    return text.substr(at, end - at);
  };
  std::vector<std::pair<std::string, std::string>> found;  // diagram, block
  for (size_t at = 0; at < blocks.size();) {
    char ch = blocks[at];
    if (std::isspace(static_cast<unsigned char>(ch))) {
      ++at;
      continue;
    }
    if (ch == '#') {
      at = blocks.find('\n', at);
      if (at == std::string::npos) break;
      continue;
    }
    if (blocks.compare(at, 9, "schedule ") != 0) {
      error = "its schedule holds something other than schedule blocks, at \"" + one_line(blocks.substr(at), 40) + "\"";
      return false;
    }
    size_t name_at = blocks.find_first_not_of(' ', at + 9);
    std::string name = name_at == std::string::npos ? "" : word_at(blocks, name_at);
    size_t end = block_end(blocks, at);
    if (name.empty() || end == std::string::npos) {
      error = "its schedule has a block without a diagram name or a closing '}'";
      return false;
    }
    found.push_back({name, blocks.substr(at, end - at)});
    at = end;
  }
  if (found.empty()) {
    error = "its schedule is empty";
    return false;
  }
  out = current;
  for (const auto &[name, block] : found) {
    for (size_t at = 0; (at = out.find("schedule " + name, at)) != std::string::npos;) {
      size_t after = at + 9 + name.size();
      bool starts_line = at == 0 || out[at - 1] == '\n';
      bool whole = after < out.size() && (out[after] == ' ' || out[after] == '{');
      if (!starts_line || !whole) {
        at = after;
        continue;
      }
      size_t end = block_end(out, at);
      if (end == std::string::npos) break;
      if (end < out.size() && out[end] == '\n') ++end;
      out.erase(at, end - at);
    }
  }
  while (!out.empty() && out.back() == '\n') out.pop_back();
  for (const auto &[name, block] : found) out += "\n\n" + block;
  out += "\n";
  return true;
}

// A candidate's "params": an array of objects of string fields (docs/ADVISOR.md,
// "Param conversions"). A malformed entry makes the candidate's verdict.
void read_conversions(const json &list, AdvisorCandidate &candidate) {
  if (!list.is_array()) {
    candidate.params_error = "its \"params\" is not an array";
    return;
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "its params[" + std::to_string(i) + "]";
    if (!list[i].is_object()) {
      candidate.params_error = where + " is not an object";
      return;
    }
    std::map<std::string, std::string> fields;
    for (const auto &[key, value] : list[i].items()) {
      if (!value.is_string()) {
        candidate.params_error = where + "." + key + " is not a string";
        return;
      }
      fields[key] = value.get<std::string>();
    }
    ParamConversion conversion;
    std::string error;
    if (!make_conversion(fields, conversion, error)) {
      candidate.params_error = where + " " + error;
      return;
    }
    candidate.params.push_back(conversion);
  }
}

bool parse_answer(const std::string &answer, std::vector<AdvisorCandidate> &candidates, std::string &note,
                  std::string &error) {
  json parsed = json::parse(answer, nullptr, false);
  if (parsed.is_discarded()) {
    error = "its answer is not JSON (" + std::to_string(answer.size()) + " bytes: \"" + one_line(answer, 60) + "\")";
    return false;
  }
  if (!parsed.is_object() || !parsed.contains("version") || !parsed["version"].is_number_integer()) {
    error = "its answer has no integer \"version\" (the protocol, docs/ADVISOR.md)";
    return false;
  }
  if (parsed["version"].get<int64_t>() != kAdvisorProtocolVersion) {
    error = "its answer is of protocol version " + parsed["version"].dump() + "; ncd speaks version " +
            std::to_string(kAdvisorProtocolVersion);
    return false;
  }
  if (!parsed.contains("candidates") || !parsed["candidates"].is_array()) {
    error = "its answer has no \"candidates\" array";
    return false;
  }
  const json &list = parsed["candidates"];
  if (list.size() > kMaxCandidates)
    note = "the first " + std::to_string(kMaxCandidates) + " of " + std::to_string(list.size()) +
           " candidates are considered";
  for (size_t i = 0; i < list.size() && i < kMaxCandidates; ++i) {
    AdvisorCandidate candidate;
    const json &item = list[i];
    if (item.is_object()) {
      if (item.contains("ncd") && item["ncd"].is_string()) candidate.ncd = item["ncd"].get<std::string>();
      if (item.contains("schedule") && item["schedule"].is_string())
        candidate.schedule = item["schedule"].get<std::string>();
      if (item.contains("rationale") && item["rationale"].is_string())
        candidate.rationale = one_line(item["rationale"].get<std::string>());
      // Neither or both: kept, so that its verdict says so.
      if (candidate.ncd.empty() == candidate.schedule.empty()) candidate.ncd = candidate.schedule = "";
      if (item.contains("params")) read_conversions(item["params"], candidate);
    }
    candidates.push_back(std::move(candidate));
  }
  return true;
}

// A candidate's priced time against the best so far, as the verdicts say it.
std::string price_change(double best, double time) {
  if (time < best)
    return "faster by " + percent(1 - time / best) + " (" + format_micros(best) + " -> " + format_micros(time) + ")";
  if (time == best) return "not faster (" + format_micros(time) + ")";
  return "slower by " + percent(time / best - 1) + " (" + format_micros(time) + " against " + format_micros(best) + ")";
}

struct Verdict {
  bool accepted = false;
  std::string text;  // "accepted: faster by ..." / "rejected: ..."
};

}  // namespace

std::string format_micros(double seconds) {
  char buffer[48];
  std::snprintf(buffer, sizeof buffer, "%.4g us", seconds * 1e6);
  return buffer;
}

const char *level_name(AdvisorLevel level) {
  switch (level) {
    case AdvisorLevel::High: return "high";
    case AdvisorLevel::Mid: return "mid";
    case AdvisorLevel::Low: return "low";
    case AdvisorLevel::All: return "all";
  }
  return "all";
}

int run_advisor(const AdvisorSettings &settings, const AdvisorContext &context, std::string &text) {
  const bool builtin = settings.command == "builtin";
  const std::string who = builtin ? "the built-in advisor" : "advisor `" + settings.command + "`";
  Compiled best;
  std::string error;
  if (!compile_and_price(context, context.output, text, best, error)) {
    std::cerr << "ncd: error: the optimized '" << context.diagram << "' " << error << "\n";
    return kUserError;
  }
  const double start_time = best.time;
  std::string best_text = text, best_rationale;
  int best_round = 0, proposed = 0, accepted = 0;
  json history = json::array();
  auto log = [&](const std::string &line) {
    if (settings.explain) std::cerr << "advisor: " << line << "\n";
  };
  log(std::string("level ") + level_name(settings.level) + ", " + std::to_string(settings.rounds) + " round" +
      (settings.rounds == 1 ? "" : "s") + "; '" + context.diagram + "' priced at " + format_micros(start_time) +
      " on " + context.hardware->name);
  for (int round = 1; round <= settings.rounds; ++round) {
    std::vector<AdvisorCandidate> candidates;
    if (builtin) {
      candidates = builtin_candidates(context, settings.level, best_text);
    } else {
      json request = {{"schema", "ncd-advisor-request"},
                      {"version", kAdvisorProtocolVersion},
                      {"extensions", kAdvisorExtensions},
                      {"level", level_name(settings.level)},
                      {"round", round},
                      {"rounds", settings.rounds},
                      {"diagram", context.diagram},
                      {"hardware", context.hardware->name},
                      {"allow_inexact", settings.allow_inexact},
                      {"source", best_text},
                      {"time", best.time},
                      {"cost", json::parse(best.cost_json, nullptr, false)},
                      {"explain", context.explain},
                      {"history", history}};
      // A path or name that is not UTF-8 (explain lines name files) is sent with U+FFFD, not refused.
      ProcessResult result =
          run_process(settings.command, request.dump(-1, ' ', false, json::error_handler_t::replace) + "\n",
                      settings.timeout, kMaxAnswer);
      if (result.status != ProcessResult::Status::Exited || result.code != 0) {
        const std::string tail = last_line(result.err);
        std::cerr << "ncd: warning: " << who << " " << describe_failure(result, settings.timeout, kMaxAnswer)
                  << " in round " << round << (tail.empty() ? "" : " (its last words: \"" + tail + "\")")
                  << "; keeping the best verified result\n";
        break;
      }
      std::string note;
      if (!parse_answer(result.out, candidates, note, error)) {
        std::cerr << "ncd: warning: " << who << ": " << error << " in round " << round
                  << "; keeping the best verified result\n";
        break;
      }
      if (!note.empty()) log("round " + std::to_string(round) + ": " + note);
    }
    if (candidates.empty()) {
      log("round " + std::to_string(round) + ": no candidates");
      break;
    }
    bool improved = false;
    for (size_t i = 0; i < candidates.size(); ++i) {
      const AdvisorCandidate &candidate = candidates[i];
      ++proposed;
      const std::string label = std::to_string(round) + "." + std::to_string(i + 1);
      const std::string path = "candidate-" + label + ".ncd";
      Verdict verdict;
      std::string candidate_text;
      Compiled compiled;
      if (candidate.ncd.empty() && candidate.schedule.empty()) {
        verdict.text = "rejected: it must hold exactly one of \"ncd\" and \"schedule\"";
      } else if (!candidate.params_error.empty()) {
        verdict.text = "rejected: " + candidate.params_error;
      } else if (!candidate.schedule.empty() && settings.level != AdvisorLevel::Low &&
                 settings.level != AdvisorLevel::All) {
        verdict.text = std::string("rejected: a schedule alone is a low-level proposal; this is level ") +
                       level_name(settings.level);
      } else if (!candidate.schedule.empty() &&
                 !splice_schedules(best_text, candidate.schedule, candidate_text, error)) {
        verdict.text = "rejected: " + error;
      } else {
        if (candidate_text.empty()) candidate_text = candidate.ncd;
        if (!compile_and_price(context, path, candidate_text, compiled, error)) {
          verdict.text = "rejected: " + error;
        } else {
          std::string captured, sizes;
          EquivMeasure measured;
          EquivVerdict equivalence = EquivVerdict::Failed;
          {
            std::set<std::string> known(context.input_axes.begin(), context.input_axes.end());
            size_t first_new = 0;
            const auto &axes = compiled.compilation->program.axes;
            while (first_new < axes.size() && known.count(axes[first_new].name)) ++first_new;
            VerifyRequest request;
            request.input = context.input;
            request.output = path;
            request.text = &candidate_text;
            request.diagram = context.diagram;
            request.seed = context.seed;
            request.target = context.verify_size;
            request.frontend = context.frontend;
            request.measured = &measured;
            request.sizes = &sizes;
            request.verdict = &equivalence;
            request.conversions = &candidate.params;
            CaptureCerr capture;
            verify_optimized(compiled.compilation->program, *compiled.diagram, first_new, request);
            captured = capture.text();
          }
          const std::string figures = "max abs error " + number(measured.max_abs) + ", relative L2 error " +
                                      number(measured.rel_l2) + " (sizes:" + sizes + ", seed " +
                                      std::to_string(context.seed) + ")";
          const bool may_be_inexact = settings.level == AdvisorLevel::High || settings.level == AdvisorLevel::All;
          // A change of the architecture is judged on both counts: say what it would have gained.
          const std::string priced = "; priced: " + price_change(best.time, compiled.time);
          std::string inexact_note;
          if (equivalence == EquivVerdict::Differs) {
            if (!may_be_inexact) {
              verdict.text = "rejected: not equivalent, " + figures;
            } else if (!settings.allow_inexact) {
              verdict.text =
                  "rejected: not equivalent, " + figures + "; an inexact change needs --allow-inexact" + priced;
            } else if (!(measured.rel_l2 <= settings.tolerance)) {
              verdict.text =
                  "rejected: inexact beyond --tolerance " + number(settings.tolerance) + ", " + figures + priced;
            } else {
              inexact_note = ", inexact: " + figures;
            }
          } else if (equivalence != EquivVerdict::Equivalent) {
            verdict.text = std::string("rejected: verification ") +
                           (equivalence == EquivVerdict::OutOfMemory ? "ran out of memory" : "failed") + ": " +
                           first_error(captured);
          }
          if (verdict.text.empty()) {
            verdict.accepted = compiled.time < best.time;
            verdict.text = (verdict.accepted ? "accepted: " : "rejected: ") + price_change(best.time, compiled.time) +
                           inexact_note;
          }
        }
      }
      log("candidate " + label + (candidate.rationale.empty() ? "" : " (\"" + candidate.rationale + "\")") + ": " +
          verdict.text);
      history.push_back({{"round", round},
                         {"candidate", i + 1},
                         {"rationale", candidate.rationale},
                         {"accepted", verdict.accepted},
                         {"verdict", verdict.text}});
      if (verdict.accepted) {
        ++accepted;
        improved = true;
        best = std::move(compiled);
        best_text = candidate_text;
        best_rationale = candidate.rationale;
        best_round = round;
      }
    }
    // The built-in advisor answers the same request the same way.
    if (builtin && !improved) break;
  }
  std::cerr << "ncd: note: " << who << ": " << proposed << " proposal" << (proposed == 1 ? "" : "s") << ", " << accepted
            << " accepted; priced time of '" << context.diagram << "' on " << context.hardware->name << ": "
            << format_micros(start_time);
  if (best_round) std::cerr << " -> " << format_micros(best.time);
  std::cerr << "\n";
  if (!best_round) return kSuccess;
  // The output is ncd's own printing of the winner: canonical, and free of
  // whatever else the advisor's text held.
  SourceWriteOptions write;
  write.header_comment = "'" + context.diagram + "' of " + std::filesystem::path(context.input).filename().string() +
                         ", optimized by ncd optimize for " + context.hardware->name +
                         (context.pipeline.empty() ? " (no passes" : " (passes: " + context.pipeline) + "), then by " +
                         (builtin ? "the built-in advisor" : "an advisor") + " (round " + std::to_string(best_round) +
                         (best_rationale.empty() ? "" : ": " + best_rationale) + ")";
  std::string written;
  if (!write_ncd_source(best.compilation->program, {best.diagram}, write, written, error)) {
    std::cerr << "ncd: error: cannot write the advisor's diagram as .ncd: " << error << "\n";
    return kUserError;
  }
  text = written;
  return kSuccess;
}

}  // namespace ncd::cli
