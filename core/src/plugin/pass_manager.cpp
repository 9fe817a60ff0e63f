// The pass manager (ncd/pass_manager.h).
#include "ncd/pass_manager.h"

#include <chrono>
#include <cstdio>
#include <functional>
#include <set>
#include <utility>

#include "ncd/ir_print.h"
#include "ncd/verifier.h"

namespace ncd {

bool pipeline_for_level(int level, std::vector<std::string> &names) {
  switch (level) {
    case 0: names = {}; return true;
    case 1: names = {"inline", "simplify", "cse", "dce"}; return true;
    // grid before stream: once a gradient's score grids are kernels of their
    // own, the forward pass it recomputes (softmax, logsumexp) streams alone;
    // stream before fuse: fusing a softmax with the contraction that consumes
    // it is only worth it once the softmax is in its streamed form.
    case 2: names = {"inline", "simplify", "cse", "dce", "contract-order", "grid", "stream", "fuse", "tile"}; return true;
    default: return false;
  }
}

bool parse_pipeline(const std::string &text, std::vector<std::string> &names, std::string &error) {
  names.clear();
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    std::string name = text.substr(start, comma - start);
    while (!name.empty() && name.front() == ' ') name.erase(name.begin());
    while (!name.empty() && name.back() == ' ') name.pop_back();
    if (name.empty()) {
      error = "empty pass name in pipeline '" + text + "'";
      return false;
    }
    names.push_back(name);
    start = comma + 1;
  }
  return true;
}

namespace {

// "quantize=w8a8" as ("quantize", "w8a8"); a name without '=' has no argument.
std::pair<std::string, std::string> split_argument(const std::string &entry) {
  size_t equals = entry.find('=');
  if (equals == std::string::npos) return {entry, ""};
  return {entry.substr(0, equals), entry.substr(equals + 1)};
}

}  // namespace

bool pipeline_is_exact(const Registry &registry, const std::vector<std::string> &names) {
  for (const auto &entry : names) {
    auto [name, argument] = split_argument(entry);
    if (const Pass *pass = registry.pass(name); pass && !pass->exact(argument)) return false;
  }
  return true;
}

std::vector<const ir::Diagram *> reachable_diagrams(const ir::Program &program, const ir::Diagram &root) {
  std::vector<const ir::Diagram *> out;
  std::set<const ir::Diagram *> seen;
  std::function<void(const ir::Diagram &)> visit = [&](const ir::Diagram &diagram) {
    if (!seen.insert(&diagram).second) return;
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      if (op.kind == ir::OpKind::Call && op.callee >= 0 && static_cast<size_t>(op.callee) < program.diagrams.size())
        visit(*program.diagrams[static_cast<size_t>(op.callee)]);
    });
    out.push_back(&diagram);
  };
  visit(root);
  return out;
}

std::vector<ir::Diagram *> reachable_diagrams(ir::Program &program, ir::Diagram &root) {
  // The program owns its diagrams, so a caller holding it mutable may change what it reaches.
  std::vector<ir::Diagram *> out;
  for (const ir::Diagram *diagram : reachable_diagrams(std::as_const(program), std::as_const(root)))
    out.push_back(const_cast<ir::Diagram *>(diagram));
  return out;
}

namespace {

std::string print_reachable(ir::Program &program, ir::Diagram &root, const SourceManager &sources) {
  std::string out;
  for (ir::Diagram *diagram : reachable_diagrams(program, root)) out += print_ir(program, sources, diagram);
  return out;
}

}  // namespace

int run_pipeline(const Registry &registry, ir::Program &program, ir::Diagram &root,
                 const std::vector<std::string> &names, PassContext &context, const PipelineOptions &options,
                 std::string &error) {
  std::vector<std::pair<Pass *, std::string>> passes;
  for (const auto &entry : names) {
    auto [name, argument] = split_argument(entry);
    Pass *pass = registry.pass(name);
    if (!pass) {
      error = registry.describe_miss("pass", name);
      return 1;
    }
    if (std::string why = pass->check_argument(argument); !why.empty()) {
      error = why;
      return 1;
    }
    passes.emplace_back(pass, argument);
  }
  std::vector<std::pair<std::string, double>> times;
  for (auto [pass, argument] : passes) {
    context.pass = pass->name();
    context.argument = argument;
    auto start = std::chrono::steady_clock::now();
    bool changed = false;
    for (ir::Diagram *diagram : reachable_diagrams(program, root)) {
      PassResult result = pass->run(program, *diagram, context);
      changed = changed || result.changed;
      if (!result.declined.empty()) context.note(diagram->location, result.declined);
      if (context.diagnostics && context.diagnostics->error_count() > 0) {
        error = "pass '" + pass->name() + "' reported errors";
        return 1;
      }
    }
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    times.emplace_back(pass->name(), seconds);
    if (options.verify_each) {
      auto problems = verify(program);
      if (!problems.empty()) {
        error = "pass '" + pass->name() + "' left the IR invalid:";
        for (const auto &problem : problems) error += "\n  " + problem;
        return 3;
      }
    }
    if (options.print_after_all && options.log && context.sources) {
      *options.log << "; IR after " << pass->name();
      if (!changed)
        *options.log << ": unchanged\n";
      else
        *options.log << "\n" << print_reachable(program, root, *context.sources);
    }
  }
  if (options.time_passes && options.log) {
    double total = 0;
    for (const auto &entry : times) total += entry.second;
    *options.log << "; pass timings (wall clock)\n";
    char line[160];
    for (const auto &[name, seconds] : times) {
      std::snprintf(line, sizeof line, ";   %-16s %10.3f ms  %5.1f%%\n", name.c_str(), seconds * 1e3,
                    total > 0 ? 100.0 * seconds / total : 0.0);
      *options.log << line;
    }
    std::snprintf(line, sizeof line, ";   %-16s %10.3f ms\n", "total", total * 1e3);
    *options.log << line;
  }
  return 0;
}

}  // namespace ncd
