// What the drawing of a sharded diagram shows of its plan (docs/SHARDING.md,
// docs/RENDER.md "Sharded diagrams"): each collective as a line under the
// glyph of the operation it belongs to (a folded call counts those inside
// it), that glyph outlined in the sharding colour, and every wire of a value
// held split marked with its device count ("÷8") in that colour. Computed once
// from plan_sharding, the same plan `ncd cost` prices and `ncd run --devices`
// runs.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ncd/sharding.h"

namespace ncd::render {

class ShardingMarks {
 public:
  // Nothing to mark when `diagram` has no shard lines.
  ShardingMarks(const ir::Program &program, const ir::Diagram &diagram);
  bool empty() const { return devices_ <= 1; }
  // The collectives of `op` (reached through `chain`), one line each:
  // "all-reduce Y over 8"; for a folded call, those of everything inside it,
  // counted: "2 all-reduce over 8".
  std::vector<std::string> badges(const CallChain &chain, const ir::Op &op, bool folded) const;
  // "÷8" when the value is held split along `axis` (8 devices), else "".
  std::string split_mark(const CallChain &chain, int value, int axis) const;
  std::string legend() const;

 private:
  ShardingPlan plan_;
  int64_t devices_ = 1;
  std::map<std::pair<CallChain, int>, std::map<int, int64_t>> splits_;  // (chain, value) → axis → devices
};

}  // namespace ncd::render
