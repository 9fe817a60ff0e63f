// Unrolling `repeat` (ncd/unroll.h).
//
// Preconditions: a verified diagram with concrete repeat counts. Each
// iteration's ops are cloned with fresh ids and values; a carried value's
// block argument reads the previous iteration's yield (the first reads the
// repeat's operand), and what read a repeat's results reads the last
// iteration's yields. The iteration index is a carried value like any other
// (sema lowers it to a constant, a block argument and an add), so it needs no
// case of its own.
#include "ncd/unroll.h"

#include <map>
#include <set>
#include <vector>

#include "ncd/instantiate.h"
#include "ncd/ir_edit.h"

namespace ncd::ir {
namespace {

class Unroller {
 public:
  Unroller(const Program &program, const Diagram &original, Diagram &out)
      : program_(program), original_(original), out_(out), naming_(original) {}

  void run() {
    for (const auto &op : original_.body.ops)
      for (int result : op->results) taken_.insert(original_.value(result).name);
    for (int id : original_.inputs) taken_.insert(original_.value(id).name);
    for (int id : original_.params) taken_.insert(original_.value(id).name);
    std::map<int, int> remap;
    for (const auto &op : original_.body.ops) {
      if (op->kind == OpKind::Repeat) {
        const std::vector<int> last = expand(*op, {}, remap);
        for (size_t i = 0; i < op->results.size(); ++i) remap[op->results[i]] = last[i];
        continue;
      }
      auto copy = clone_op(*op);
      for (int &operand : copy->operands) operand = mapped(remap, operand);
      // An unnamed call numbered among its callee's calls (`Block@1`) keeps that name: the
      // calls unrolled beside it are labelled, and would no longer count.
      if (op->kind == OpKind::Call && op->label.empty() && reaches(*op) &&
          naming_.call_label(op.get()).find('@') != std::string::npos)
        copy->label = naming_.call_label(op.get());
      out_.body.ops.push_back(std::move(copy));
    }
    for (int &output : out_.outputs) output = mapped(remap, output);
  }

 private:
  using Iterations = std::vector<std::pair<const Op *, int64_t>>;

  static int mapped(const std::map<int, int> &remap, int id) {
    auto it = remap.find(id);
    return it == remap.end() ? id : it->second;
  }

  bool reaches(const Op &call) const {
    return reaches_params(program_, *program_.diagrams[static_cast<size_t>(call.callee)]);
  }

  // The label that names a call's params in the original diagram at these iterations: its path
  // segments (ParamNaming::call_path) without the last dot.
  std::string label(const Op &call, const Iterations &iterations) const {
    std::string out = path_text(naming_.call_path(&call), [&](const Op *repeat) {
      for (auto [r, k] : iterations)
        if (r == repeat) return k;
      return int64_t{0};
    });
    out.pop_back();
    return out;
  }

  // A user's name gets its iterations (`H_3`, `H_1_0`): straight-line code assigns a name once.
  std::string fresh_name(const std::string &name, const Iterations &iterations) {
    if (name.empty() || name[0] == '%') return name;
    std::string base = name;
    for (auto [repeat, k] : iterations) base += "_" + std::to_string(k);
    std::string out = base;
    for (int n = 2; !taken_.insert(out).second; ++n) out = base + "_" + std::to_string(n);
    return out;
  }

  // Appends the iterations of `repeat` to the output; returns the last iteration's yields.
  std::vector<int> expand(const Op &repeat, Iterations enclosing, const std::map<int, int> &outer) {
    std::vector<int> carried;
    for (int operand : repeat.operands) carried.push_back(mapped(outer, operand));
    enclosing.push_back({&repeat, 0});
    for (int64_t k = 0; k < repeat.count; ++k) {
      enclosing.back().second = k;
      std::map<int, int> local = outer;
      for (size_t j = 0; j < repeat.body_arguments.size(); ++j) local[repeat.body_arguments[j]] = carried[j];
      for (const auto &op : repeat.body->ops) {
        if (op->kind == OpKind::Repeat) {
          const std::vector<int> last = expand(*op, enclosing, local);
          for (size_t i = 0; i < op->results.size(); ++i) local[op->results[i]] = last[i];
          continue;
        }
        auto copy = clone_op(*op);
        copy->id = ++out_.max_op_id;
        for (int &operand : copy->operands) operand = mapped(local, operand);
        std::vector<int> results;
        for (int result : op->results) {
          const Value &v = original_.value(result);
          const int fresh = add_value(out_, fresh_name(v.name, enclosing), v.axes, v.dtype, v.location);
          local[result] = fresh;
          results.push_back(fresh);
        }
        set_results(out_, *copy, results);
        if (op->kind == OpKind::Call && reaches(*op)) copy->label = label(*op, enclosing);
        out_.body.ops.push_back(std::move(copy));
      }
      for (size_t j = 0; j < repeat.body_yields.size(); ++j) carried[j] = mapped(local, repeat.body_yields[j]);
    }
    return carried;
  }

  const Program &program_;
  const Diagram &original_;
  Diagram &out_;
  ParamNaming naming_;
  std::set<std::string> taken_;  // names of the values outside repeats, and those given so far
};

}  // namespace

std::unique_ptr<Diagram> unroll_repeats(const Program &program, const Diagram &diagram, const std::string &name,
                                        std::string &why, SourceLocation &where) {
  for (int id : diagram.params)
    if (diagram.value(id).instances > 1) {
      const Value &param = diagram.value(id);
      why = "param '" + param.name + "' is declared inside a repeat (one per iteration), and its instances have no " +
            "name once the repeat is unrolled; declare it in a diagram that the body calls by name " +
            "(`blk: Layer(H)`)";
      where = param.location;
      return nullptr;
    }
  auto out = clone_diagram(diagram, name);
  out->body.ops.clear();
  Unroller(program, diagram, *out).run();
  return out;
}

}  // namespace ncd::ir
