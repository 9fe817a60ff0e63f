// Recognises routed contractions (ncd/routing.h): one definition of the
// sparse mixture-of-experts pattern for every backend and analysis.
#include "ncd/routing.h"

#include <algorithm>

namespace ncd::ir {

std::vector<int> use_counts(const Diagram &diagram) {
  std::vector<int> uses(diagram.values.size(), 0);
  auto count = [&](int id) {
    if (id >= 0 && static_cast<size_t>(id) < uses.size()) ++uses[static_cast<size_t>(id)];
  };
  for_each_op(diagram.body, [&](const Op &op) {
    for (int id : op.operands) count(id);
    for (int id : op.body_yields) count(id);
  });
  for (int id : diagram.outputs) count(id);
  return uses;
}

std::optional<Routed> routed_operand(const Diagram &diagram, const Program &program, const Op &contraction,
                                     const ProducerIndex &producers, const std::vector<int> &uses,
                                     std::string *why) {
  auto decline = [&](const std::string &reason) -> std::optional<Routed> {
    if (why) *why = reason;
    return std::nullopt;
  };
  if (contraction.kind != OpKind::Contract) return decline("not a contraction");
  const Value &result = diagram.value(contraction.results.at(0));
  std::string last = "no operand is read through a gather";
  for (size_t k = 0; k < contraction.operands.size(); ++k) {
    const int operand = contraction.operands[k];
    const Op *access = producers.producer(operand);
    if (!access || access->kind != OpKind::Access) continue;
    const Value &table = diagram.value(access->operands.at(0));
    if (access->access.size() != table.axes.size()) continue;
    Routed routed;
    routed.operand = k;
    routed.gather = access;
    routed.table = access->operands[0];
    int gathers = 0;
    bool plain = true;
    for (size_t position = 0; position < access->access.size(); ++position) {
      const AccessIndex &index = access->access[position];
      if (index.kind == AccessIndex::Kind::Gather) {
        ++gathers;
        routed.expert = position;
        routed.index = access->operands.at(static_cast<size_t>(index.gather_operand));
        routed.renamed.push_back(-1);
        continue;
      }
      const bool renaming = index.kind == AccessIndex::Kind::Affine && index.offset == 0 && index.terms.size() == 1 &&
                            index.terms[0].second == 1 &&
                            program.same_size(index.terms[0].first, table.axes[position]);
      if (!renaming) {
        plain = false;
        break;
      }
      routed.renamed.push_back(index.terms[0].first);
    }
    if (gathers != 1 || !plain) {
      last = "'" + table.name + "' is read through more than one gather, or shifted or split besides";
      continue;
    }
    if (!is_integer(diagram.value(routed.index).dtype)) continue;
    if (uses[static_cast<size_t>(operand)] != 1) {
      last = "the gathered '" + table.name + "' is read by another op too";
      continue;
    }
    // Every route lands in its own place of the result: nothing summed across routes.
    bool kept = true;
    for (int axis : diagram.value(routed.index).axes)
      if (std::find(result.axes.begin(), result.axes.end(), axis) == result.axes.end()) kept = false;
    if (!kept) {
      last = "the contraction sums over an axis of the routing index '" + diagram.value(routed.index).name + "'";
      continue;
    }
    return routed;
  }
  return decline(last);
}

}  // namespace ncd::ir
