// Sharding marks of a drawing (see sharding_marks.h).
#include "sharding_marks.h"

#include <algorithm>

namespace ncd::render {

ShardingMarks::ShardingMarks(const ir::Program &program, const ir::Diagram &diagram) {
  if (diagram.shards.empty()) return;
  plan_ = plan_sharding(program, diagram);
  devices_ = plan_.devices;
  auto record = [&](const CallChain &chain, int value, const std::vector<AxisSplit> &splits) {
    for (const AxisSplit &split : splits)
      splits_[{chain, value}][split.axis] = plan_.mesh.at(static_cast<size_t>(split.mesh));
  };
  for (const auto &[input, splits] : plan_.inputs) record({}, input, splits);
  for (const auto &[key, splits] : plan_.params) record(key.first, key.second, splits);  // the slices each holds
  for (const auto &[key, step] : plan_.steps)
    for (const auto &[value, splits] : step.results) record(key.first, value, splits);
}

std::vector<std::string> ShardingMarks::badges(const CallChain &chain, const ir::Op &op, bool folded) const {
  std::vector<std::string> out;
  if (empty()) return out;
  if (!folded) {
    for (const Collective &c : plan_.collectives)
      if (c.op == &op && c.chain == chain)
        out.push_back(std::string(collective_name(c.kind)) + " " + c.value.substr(0, c.value.find('[')) + " over " +
                      std::to_string(c.group));
    return out;
  }
  // Inside a folded call: everything whose chain passes through it, counted by kind and group.
  CallChain inside = chain;
  inside.push_back(&op);
  std::map<std::pair<std::string, int64_t>, int> counts;
  for (const Collective &c : plan_.collectives)
    if (c.chain.size() >= inside.size() && std::equal(inside.begin(), inside.end(), c.chain.begin()))
      ++counts[{std::string(collective_name(c.kind)), c.group}];
  for (const auto &[kind, count] : counts)
    out.push_back(std::to_string(count) + " " + kind.first + " over " + std::to_string(kind.second));
  return out;
}

std::string ShardingMarks::split_mark(const CallChain &chain, int value, int axis) const {
  auto it = splits_.find({chain, value});
  if (it == splits_.end()) return "";
  auto split = it->second.find(axis);
  return split == it->second.end() ? "" : "\u00f7" + std::to_string(split->second);
}

std::string ShardingMarks::legend() const {
  std::string mesh;
  for (int64_t n : plan_.mesh) mesh += (mesh.empty() ? "" : " x ") + std::to_string(n);
  return "sharded over " + std::to_string(devices_) + " devices (mesh " + mesh +
         "): \u00f7N wires are split, outlined operations communicate";
}

}  // namespace ncd::render
