// Shrinking a diagram's axes for a cheap check (ncd/equiv.h).
//
// Verification used to cost nearly all of an optimize run: axes given with -D
// or derived (`model = heads * d`) kept their full size, so a long context was
// verified at full length. Here every axis shrinks, within the constraints the
// optimized program states (tiles, derived relations); what cannot shrink, and
// why, is part of the plan, for the caller to tell.
#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>
#include <set>

#include "ncd/equiv.h"
#include "ncd/ir_edit.h"
#include "ncd/pass_manager.h"

namespace ncd {
namespace {

// A derived size larger than this is an error in sema; the planner treats it as invalid too.
constexpr double kLargestSize = 4.0e18;

class Planner {
 public:
  Planner(ir::Program &program, int64_t target, size_t first_new_axis)
      : p_(program), target_(target), first_new_(first_new_axis) {}

  SizePlan plan(ir::Diagram &root, const std::vector<std::string> &user_defines) {
    collect(root);
    shrink_bases();
    shrink_derived();
    return result(user_defines);
  }

 private:
  const std::string &name(int axis) const { return p_.axis(axis).name; }
  int64_t step(const std::string &axis_name) const {
    auto it = step_.find(axis_name);
    return it == step_.end() ? 1 : it->second;
  }

  // What the optimized diagram relies on: the axes whose own sizes it uses,
  // the tiles on them.
  void collect(ir::Diagram &root) {
    std::vector<std::pair<int, int>> bindings;
    for (ir::Diagram *diagram : reachable_diagrams(p_, root)) {
      for (const auto &schedule : diagram->schedules)
        for (const auto &directive : schedule.directives)
          if (directive.axis >= 0 && directive.amount > 0) {
            int64_t &l = step_.emplace(name(directive.axis), 1).first->second;
            l = std::lcm(l, directive.amount);
          }
      ir::for_each_op(diagram->body, [&](const ir::Op &op) {
        for (auto binding : op.bindings) bindings.push_back(binding);
      });
    }
    // A kernel's tile on its axis is a tile on the caller's axis bound to it.
    for (bool changed = true; changed;) {
      changed = false;
      for (auto [from, to] : bindings) {
        int64_t joined = std::lcm(step(name(from)), step(name(to)));
        if (joined != step(name(to))) {
          step_[name(to)] = joined;
          changed = true;
        }
      }
    }
    std::set<std::pair<const ir::Diagram *, std::set<int>>> visited;
    walk(root, {}, visited);
    for (const ir::Axis &axis : p_.axes)
      if (axis.derived && axis.size) all_derived_.push_back(axis.id);
    // -D sets every base axis of a name; a name derived anywhere cannot take one.
    std::set<std::string> derived_names;
    for (const ir::Axis &axis : p_.axes) {
      if (axis.derived) derived_names.insert(axis.name);
      // A rounded quotient and what it reads keep their sizes: shrinking them would break the rounding's relation.
      if (axis.formula) {
        derived_names.insert(axis.name);
        for (int id : axis.formula->axes()) derived_names.insert(p_.axis(id).name);
      }
    }
    for (int id : used_bases_) note_base(id, derived_names);
  }

  // One instance of `diagram` whose axes in `bound` take the sizes of the
  // caller's axes (AxisSizes, ncd/instantiate.h): the others use their own.
  void walk(const ir::Diagram &diagram, const std::set<int> &bound,
            std::set<std::pair<const ir::Diagram *, std::set<int>>> &visited) {
    if (!visited.insert({&diagram, bound}).second) return;
    auto use = [&](int axis) {
      if (bound.count(axis) || !p_.axis(axis).size) return;
      if (!p_.axis(axis).derived) {
        used_bases_.insert(axis);
        return;
      }
      if (std::find(relevant_derived_.begin(), relevant_derived_.end(), axis) == relevant_derived_.end())
        relevant_derived_.push_back(axis);
      for (int base : p_.size_poly(axis).axes())
        if (!bound.count(base)) used_bases_.insert(base);
    };
    for (const auto &value : diagram.values)
      for (int axis : value.axes) use(axis);
    for (const auto &schedule : diagram.schedules)
      for (const auto &directive : schedule.directives)
        if (directive.axis >= 0) use(directive.axis);
    ir::for_each_op(diagram.body, [&](const ir::Op &op) {
      for (int axis : op.axes) use(axis);
      if (op.kind != ir::OpKind::Call) return;
      std::set<int> inner;
      for (auto [from, to] : op.bindings) {
        use(to);
        inner.insert(from);
      }
      walk(*p_.diagrams.at(static_cast<size_t>(op.callee)), inner, visited);
    });
  }

  void note_base(int id, const std::set<std::string> &derived_names) {
    const ir::Axis &axis = p_.axis(id);
    if (!axis.size || size_.count(axis.name)) return;
    if (derived_names.count(axis.name) || static_cast<size_t>(id) >= first_new_) {
      fixed_.insert(axis.name);
      return;
    }
    size_[axis.name] = *axis.size;
    original_[axis.name] = *axis.size;
    order_.push_back(axis.name);  // by axis id: the order the sizes are reported in
  }

  std::optional<double> base_size(int id) const {
    auto it = size_.find(name(id));
    if (it != size_.end()) return static_cast<double>(it->second);
    auto size = p_.axis(id).size;
    return size ? std::optional<double>(static_cast<double>(*size)) : std::nullopt;
  }

  std::optional<double> derived_size(int id) const {
    return p_.size_poly(id).evaluate([&](int base) { return base_size(base); });
  }

  // Whether the planned sizes keep every relation; `why` says which one breaks.
  // `tiles`: also every tile dividing its axis (else only what the computation needs).
  bool valid(std::string &why, bool tiles = true) const {
    for (const auto &[axis_name, size] : size_)
      if (size < 1 || (tiles && size % step(axis_name) != 0)) {
        why = "the tiles on it need a multiple of " + std::to_string(step(axis_name));
        return false;
      }
    for (int id : all_derived_) {
      auto value = derived_size(id);
      if (!value) continue;
      if (*value < 1 || *value != std::floor(*value) || *value > kLargestSize) {
        why = "'" + name(id) + "' = " + p_.axis(id).definition.to_string([&](int a) { return name(a); }) +
              " must stay a positive integer";
        return false;
      }
      int64_t tile = step(name(id));
      if (tiles && tile > 1 && static_cast<int64_t>(*value) % tile != 0) {
        why = "'" + name(id) + "' must stay a multiple of its tile " + std::to_string(tile);
        return false;
      }
    }
    return true;
  }

  // Tries `candidates` for base `axis_name` in order; keeps the first valid one.
  bool try_sizes(const std::string &axis_name, const std::vector<int64_t> &candidates, std::string &why,
                 bool tiles = true) {
    const int64_t current = size_[axis_name];
    for (int64_t candidate : candidates) {
      size_[axis_name] = candidate;
      if (valid(why, tiles)) return true;
    }
    size_[axis_name] = current;
    return false;
  }

  // Base axes larger than the target: the smallest multiple of their tile from the target on.
  void shrink_bases() {
    for (const std::string &axis_name : order_) {
      const int64_t original = original_[axis_name], tile = step(axis_name);
      if (original <= target_) continue;
      std::vector<int64_t> candidates;
      for (int64_t size = (target_ + tile - 1) / tile * tile; size < original && candidates.size() < 4096;
           size += tile)
        candidates.push_back(size);
      std::string why = "no smaller multiple of its tile " + std::to_string(tile);
      // Still at full size after the derived axes had their turn: kept (result()).
      if (!try_sizes(axis_name, candidates, why)) kept_[axis_name] = why;
    }
  }

  // Derived axes larger than the target: halve (about) the largest base they are
  // made of, as long as every relation holds, until each fits or nothing can shrink.
  void shrink_derived() {
    std::set<int> stuck;
    for (int round = 0; round < 100000; ++round) {
      int worst = -1;
      double worst_size = 0;
      for (int id : relevant_derived_) {
        if (stuck.count(id)) continue;
        auto value = derived_size(id);
        // The goal is the target even where a tile is larger: a GPT-2 verified
        // with its widths at a tile's multiple (ff 3072 → 192) costs twice the time.
        if (!value || *value <= static_cast<double>(target_)) continue;
        if (*value > worst_size) worst = id, worst_size = *value;
      }
      if (worst < 0) return;
      std::vector<std::string> bases;
      for (int base : p_.size_poly(worst).axes())
        if (size_.count(name(base)) && std::find(bases.begin(), bases.end(), name(base)) == bases.end())
          bases.push_back(name(base));
      std::stable_sort(bases.begin(), bases.end(),
                       [&](const std::string &a, const std::string &b) { return size_[a] > size_[b]; });
      bool progress = false;
      std::string why = "it is made of axes that cannot shrink";
      for (const std::string &base : bases) {
        const int64_t current = size_[base], tile = step(base);
        // Multiples of the tile below the current size, about half of it first.
        std::vector<int64_t> candidates;
        int64_t half = std::max<int64_t>(current / 2 / tile * tile, tile);
        for (int64_t size = half; size >= tile && candidates.size() < 256; size -= tile)
          if (size < current) candidates.push_back(size);
        for (int64_t size = half + tile; size < current && candidates.size() < 512; size += tile)
          candidates.push_back(size);
        if (try_sizes(base, candidates, why)) {
          progress = true;
          break;
        }
      }
      // The tiles of the kernels can stop every factor (GPT-2: `group d by 64`,
      // `stream heads by 12` keep width at 768 and the run at full width). The
      // CPU backend ignores schedules, so the function is checked just as well
      // with tiles that do not divide; they are listed with the sizes (--explain).
      for (size_t b = 0; b < bases.size() && !progress; ++b) {
        const int64_t current = size_[bases[b]];
        std::vector<int64_t> candidates;
        for (int64_t size = std::max<int64_t>(current / 2, 1); size >= 1 && candidates.size() < 256; --size)
          if (size < current) candidates.push_back(size);
        for (int64_t size = current / 2 + 1; size < current && candidates.size() < 512; ++size)
          candidates.push_back(size);
        progress = try_sizes(bases[b], candidates, why, false);
      }
      if (!progress) {
        stuck.insert(worst);
        kept_derived_[worst] = why;
      }
    }
  }

  SizePlan result(const std::vector<std::string> &user_defines) const {
    SizePlan plan;
    std::set<std::string> written;
    for (const std::string &define : user_defines) {
      std::string axis_name = define.substr(0, define.find('='));
      auto it = size_.find(axis_name);
      if (it != size_.end()) {
        if (!written.insert(axis_name).second) continue;
        plan.defines.push_back(axis_name + "=" + std::to_string(it->second));
      } else {
        plan.defines.push_back(define);
      }
    }
    for (const std::string &axis_name : order_) {
      int64_t size = size_.at(axis_name);
      if (size != original_.at(axis_name) && written.insert(axis_name).second)
        plan.defines.push_back(axis_name + "=" + std::to_string(size));
    }
    std::set<std::string> seen;
    for (int id : relevant_derived_) {
      auto value = derived_size(id);
      if (!value || !seen.insert(name(id)).second) continue;
      int64_t size = static_cast<int64_t>(*value);
      if (size != *p_.axis(id).size) plan.derived.push_back(name(id) + "=" + std::to_string(size));
      auto stuck = kept_derived_.find(id);
      if (stuck != kept_derived_.end())
        (size == *p_.axis(id).size ? plan.kept : plan.above)
            .push_back("'" + name(id) + "' at " + std::to_string(size) + ": " + stuck->second);
    }
    std::set<std::string> untiled;
    for (const auto &[axis_name, tile] : step_) {
      std::optional<double> size;
      if (auto it = size_.find(axis_name); it != size_.end()) size = static_cast<double>(it->second);
      for (int id : relevant_derived_)
        if (!size && name(id) == axis_name) size = derived_size(id);
      if (size && static_cast<int64_t>(*size) % tile != 0 && untiled.insert(axis_name).second)
        plan.untiled.push_back("'" + axis_name + "' at " + std::to_string(static_cast<int64_t>(*size)) +
                               " (its tiles need a multiple of " + std::to_string(tile) + ")");
    }
    for (const auto &[axis_name, why] : kept_)
      if (size_.at(axis_name) == original_.at(axis_name))
        plan.kept.push_back("'" + axis_name + "' at " + std::to_string(size_.at(axis_name)) + ": " + why);
    for (const std::string &axis_name : fixed_) {
      for (const ir::Axis &axis : p_.axes)
        if (axis.name == axis_name && !axis.derived && axis.size && *axis.size > target_) {
          plan.kept.push_back("'" + axis_name + "' at " + std::to_string(*axis.size) +
                              ": the name is also a derived axis (or one the passes made), which -D cannot set");
          break;
        }
    }
    return plan;
  }

  ir::Program &p_;
  const int64_t target_;
  const size_t first_new_;
  std::map<std::string, int64_t> step_;      // axis name -> lcm of the tiles on it
  std::map<std::string, int64_t> size_;      // base axis name -> planned size
  std::map<std::string, int64_t> original_;  // base axis name -> size before planning
  std::vector<std::string> order_;           // the planned names, by axis id
  std::set<std::string> fixed_;              // base names -D cannot set
  std::set<int> used_bases_;                 // base axes whose own size the output uses
  std::vector<int> relevant_derived_;        // derived axes whose own size the output uses
  std::vector<int> all_derived_;             // every derived axis with a size (sema checks them all)
  std::map<std::string, std::string> kept_;  // base name -> why it stays larger than the target
  std::map<int, std::string> kept_derived_;  // derived axis -> why it stays larger
};

}  // namespace

SizePlan plan_sizes(ir::Program &program, ir::Diagram &root, int64_t target,
                             const std::vector<std::string> &user_defines, size_t first_new_axis) {
  return Planner(program, target, first_new_axis).plan(root, user_defines);
}

}  // namespace ncd
