// Collective inference (see ncd/sharding.h for the rules, docs/SHARDING.md
// for the reasoning).
//
// A forward walk over the diagram, call sites analysed one by one with their
// bindings (a callee is a frame: its split axes, its axis sizes, the lifted
// positions it runs for). Each value keeps, per axis, the mesh dimension it is
// split over (and the sharded axis the split follows, its "factor": a merged
// axis `(heads, d)` is split by heads). Before the walk of a frame, one
// backward look finds values that a split access of a sharded axis reads
// (`P[s, (three, heads, d)]`): those are computed split already, which makes
// the projection that produces them column-parallel instead of replicated.
// The same walk keeps what each device holds (params in the slices their uses
// read, activations live from their op to their last use: memory per device)
// and records each op's decisions by call chain (ShardStep) for whoever runs
// the plan. Pricing is sharding_cost.cpp's.
#include "ncd/sharding.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include "cost_format.h"
#include "ncd/routing.h"

namespace ncd {

namespace {

struct Split {
  int mesh = -1;
  int factor = -1;  // the sharded axis whose slices these are
  // Where the factor sits in this axis (AxisSplit's): a merged axis `(heads,
  // d)` split by heads has stride d and extent heads.
  int64_t stride = 1, extent = 1;
  bool operator==(const Split &other) const { return mesh == other.mesh && factor == other.factor; }
};
using State = std::map<int, Split>;  // axis id → split

// Bytes on one device (every value whole) and on the busiest rank.
struct Bytes {
  double full = 0, rank = 0;
  Bytes operator+(const Bytes &o) const { return {full + o.full, rank + o.rank}; }
  Bytes operator-(const Bytes &o) const { return {full - o.full, rank - o.rank}; }
  static Bytes max(const Bytes &a, const Bytes &b) { return {std::max(a.full, b.full), std::max(a.rank, b.rank)}; }
};

bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

bool mesh_used(const State &state, int mesh) {
  for (auto &[axis, split] : state)
    if (split.mesh == mesh) return true;
  return false;
}

struct Frame {
  const ir::Diagram *d = nullptr;
  State ctx;                            // axes this frame splits
  std::map<int, int64_t> sizes;         // sizes of bound axes (others: the program's)
  double lift_full = 1, lift_rank = 1;  // lifted positions this frame runs for (all, one rank's)
  double count = 1;                     // runs per root run
  std::string site;
  std::map<int, State> states;             // value id → split axes
  std::map<int, State> demand;             // value id → splits a later split access asks for
  std::map<int, int> routed;               // value id → mesh dimension of the experts it was routed to
  std::map<int, ShardStep::Route> route;   // value id → its routing index and the experts' split (ShardStep)
  std::set<int> dispatched;                // values sent to the experts' devices already
  std::map<int, int> expert_axis;          // param → its axis of experts, when a routing index reads it
  std::set<int> in_place;                  // gathers a routed contraction reads in place (never held)
  std::set<std::pair<int, int>> gathered;  // (value, axis) already all-gathered in this frame
  // Memory (ShardingPlan's): runs per root run when the frame began (its
  // params exist that many times over), the splits every use of a param
  // allows, and the activations held now and at most, one device and one rank.
  double entry_count = 1;
  std::map<int, State> param_need;
  std::map<int, Bytes> held;
  Bytes live, peak;
  Bytes transient;  // the peak inside the op just visited (a call, a repeat)
  CallChain chain;  // the call sites from the root (ShardingPlan::steps)
};

class Planner {
 public:
  Planner(const ir::Program &program, const ir::Diagram &root, const std::vector<int64_t> *mesh)
      : p_(program), root_(root) {
    for (size_t m = 0; m < root.shards.size(); ++m) {
      int64_t n = mesh && m < mesh->size() ? (*mesh)[m] : root.shards[m].devices;
      plan_.mesh.push_back(n);
      plan_.devices *= n;
    }
  }

  ShardingPlan run() {
    Frame frame;
    frame.d = &root_;
    frame.site = root_.name;
    for (size_t m = 0; m < root_.shards.size(); ++m)
      for (int axis : root_.shards[m].axes) frame.ctx[axis] = {static_cast<int>(m), axis, 1, extent(frame, axis)};
    // Inputs arrive split along the sharded axes they carry; params are whole
    // on every device (each slices what it needs locally).
    for (int input : root_.inputs) {
      State state;  // one axis per mesh dimension: the first the input's layout names
      for (int axis : root_.value(input).axes)
        if (auto it = frame.ctx.find(axis); it != frame.ctx.end() && !mesh_used(state, it->second.mesh))
          state[axis] = it->second;
      frame.states[input] = state;
      plan_.inputs[input] = exported(state);
      hold(frame, input);
      if (!state.empty())
        note(frame, root_.value(input).location,
             "input " + value_label(frame, input) + " arrives split along " + state_text(state));
    }
    frame.peak = frame.live;
    walk(frame, root_.inputs);  // the root's inputs are its to free
    plan_.activation_peak = frame.peak.full;
    plan_.rank_activation_peak = frame.peak.rank;
    for (int output : root_.outputs) plan_.outputs[output] = exported(frame.states[output]);
    for (int output : root_.outputs) {
      const State &state = frame.states[output];
      for (auto &[axis, split] : state)
        gather(frame, output, axis, split, root_.location,
               "the output '" + root_.value(output).name + "' is assembled whole");
    }
    return std::move(plan_);
  }

 private:
  // ----------------------------------------------------------------- helpers
  static State restrict(const State &state, const std::vector<int> &axes) {
    State out;
    for (auto &[axis, split] : state)
      if (contains(axes, axis)) out[axis] = split;
    return out;
  }

  double size(const Frame &f, int axis) const {
    auto it = f.sizes.find(axis);
    if (it != f.sizes.end()) return static_cast<double>(it->second);
    auto known = p_.axis(axis).size;
    return known ? static_cast<double>(*known) : 0;
  }

  int64_t extent(const Frame &f, int axis) const { return static_cast<int64_t>(size(f, axis)); }

  std::vector<AxisSplit> exported(const State &state) const {
    std::vector<AxisSplit> out;
    for (auto &[axis, split] : state) out.push_back({axis, split.mesh, split.stride, split.extent});
    return out;
  }

  ShardStep *step(const Frame &f) {
    if (!current_) return nullptr;  // the outputs' final gathers: whoever runs the plan assembles the outputs
    return &plan_.steps[{f.chain, current_}];
  }

  double devices(int mesh) const { return static_cast<double>(plan_.mesh.at(static_cast<size_t>(mesh))); }

  // Elements of `value` that one group of mesh dimension `mesh` communicates:
  // whole along axes split over `mesh`, one slice along axes split elsewhere.
  double elements(const Frame &f, int value, const State &state, int mesh) const {
    double n = f.lift_rank;
    for (int axis : f.d->value(value).axes) {
      double s = size(f, axis);
      auto it = state.find(axis);
      if (it != state.end() && it->second.mesh != mesh) s /= devices(it->second.mesh);
      n *= s;
    }
    return n;
  }

  std::string axis_name(int axis) const { return p_.axis(axis).name; }

  std::string value_label(const Frame &f, int value) const {
    const ir::Value &v = f.d->value(value);
    std::string axes;
    for (int axis : v.axes) axes += (axes.empty() ? "" : ", ") + axis_name(axis);
    return (v.name.empty() ? "%" + std::to_string(value) : v.name) + "[" + axes + "]";
  }

  std::string split_text(int axis, const Split &split) const {
    std::string text = axis_name(axis) + "/" + std::to_string(plan_.mesh[static_cast<size_t>(split.mesh)]);
    if (split.factor >= 0 && split.factor != axis) text += " (by " + axis_name(split.factor) + ")";
    return text;
  }

  std::string state_text(const State &state) const {
    std::string out;
    for (auto &[axis, split] : state) out += (out.empty() ? "" : ", ") + split_text(axis, split);
    return out;
  }

  void note(const Frame &f, SourceLocation, const std::string &line) { plan_.explain.push_back(f.site + ": " + line); }

  void add(Frame &f, Collective::Kind kind, int value, const State &state, int mesh, SourceLocation at,
           const std::string &reason, double scale = 1) {
    Collective c;
    c.kind = kind;
    c.mesh_dim = mesh;
    c.group = plan_.mesh[static_cast<size_t>(mesh)];
    c.value = value_label(f, value);
    c.site = f.site;
    c.chain = f.chain;
    c.op = current_;
    c.reason = reason;
    c.location = at;
    c.elements = elements(f, value, state, mesh) * scale;
    c.element_bytes = ir::dtype_bytes(f.d->value(value).dtype);
    c.count = f.count;
    std::ostringstream line;
    line << collective_name(kind) << " over mesh " << mesh << " (" << c.group << " devices) of " << c.value << ": "
         << reason << "; " << static_cast<int64_t>(c.elements) << " elements";
    if (c.count != 1) line << " x" << c.count;
    note(f, at, line.str());
    plan_.collectives.push_back(std::move(c));
  }

  // `value` is needed whole along `axis` (held split by `split`).
  void gather(Frame &f, int value, int axis, const Split &split, SourceLocation at, const std::string &why) {
    if (!f.gathered.insert({value, axis}).second) return;
    if (ShardStep *s = step(f)) (in_yield_ ? s->yield_gathers : s->gathers).push_back({value, {axis, split.mesh, split.stride, split.extent}});
    add(f, Collective::Kind::AllGather, value, f.states[value], split.mesh, at,
        "split along " + split_text(axis, split) + ", needed whole: " + why);
  }

  // Each operand of `op` is needed as `wanted` allows: a split it holds that
  // `wanted` does not keep (same axis, same mesh dimension) is gathered.
  void need(Frame &f, int value, const State &wanted, const ir::Op &op, const std::string &why) {
    need_param(f, value, wanted);
    State held = f.states[value];
    for (auto &[axis, split] : held) {
      auto it = wanted.find(axis);
      if (it != wanted.end() && it->second.mesh == split.mesh) continue;
      gather(f, value, axis, split, op.location, why);
    }
  }

  // A param is held by each device in the slices its uses read: split along
  // an axis only where every use reads it split there.
  void need_param(Frame &f, int value, const State &wanted) {
    const ir::Value &v = f.d->value(value);
    if (v.role != ir::Value::Role::Param) return;
    State slice = restrict(wanted, v.axes);
    auto [it, fresh] = f.param_need.try_emplace(value, slice);
    if (fresh) return;
    for (auto entry = it->second.begin(); entry != it->second.end();) {
      auto other = slice.find(entry->first);
      entry =
          other != slice.end() && other->second.mesh == entry->second.mesh ? std::next(entry) : it->second.erase(entry);
    }
  }

  // Bytes of `value` as its splits leave it: all positions, and one rank's.
  // Routed rows are on their experts' devices: a rank holds 1/N of them
  // (uniform routing); a gather read in place by a routed contraction, none.
  Bytes bytes_of(const Frame &f, int value) const {
    if (f.in_place.count(value)) return {};
    const ir::Value &v = f.d->value(value);
    double b = ir::dtype_bytes(v.dtype);
    double full = b * f.lift_full, rank = b * f.lift_rank;
    auto state = f.states.find(value);
    for (int axis : v.axes) {
      double s = size(f, axis);
      full *= s;
      rank *= s;
      if (state == f.states.end()) continue;
      if (auto it = state->second.find(axis); it != state->second.end()) rank /= devices(it->second.mesh);
    }
    if (auto it = f.routed.find(value); it != f.routed.end()) rank /= devices(it->second);
    return {full, rank};
  }

  void hold(Frame &f, int value) {
    Bytes bytes = bytes_of(f, value);
    Bytes &held = f.held[value];
    f.live = f.live + bytes - held;
    held = bytes;
  }

  void release(Frame &f, int value) {
    auto it = f.held.find(value);
    if (it == f.held.end()) return;
    f.live = f.live - it->second;
    f.held.erase(it);
  }

  // The frame's params, each instance once: whole on one device, its slices on a rank.
  void account_params(const Frame &f) {
    for (int param : f.d->params) {
      const ir::Value &v = f.d->value(param);
      double full = ir::dtype_bytes(v.dtype) * f.entry_count * static_cast<double>(v.instances);
      for (int axis : v.axes) full *= size(f, axis);
      double rank = full;
      auto need = f.param_need.find(param);
      if (need != f.param_need.end())
        for (auto &[axis, split] : need->second) rank /= devices(split.mesh);
      plan_.param_bytes += full;
      plan_.rank_param_bytes += rank;
      if (need != f.param_need.end()) {
        State slices = need->second;
        if (auto expert = f.expert_axis.find(param); expert != f.expert_axis.end()) slices.erase(expert->second);
        if (!slices.empty()) plan_.params[{f.chain, param}] = exported(slices);
      }
    }
  }

  void account(const Frame &f, double elements_full, double divisor, double flops_per) {
    plan_.work += elements_full * flops_per * f.count * f.lift_full;
    plan_.rank_work += elements_full / divisor * flops_per * f.count * f.lift_rank;
  }

  double full_elements(const Frame &f, const std::set<int> &axes) const {
    double n = 1;
    for (int axis : axes) n *= size(f, axis);
    return n;
  }

  static double divisor(const State &state, const std::vector<int64_t> &mesh) {
    double d = 1;
    for (auto &[axis, split] : state) d *= static_cast<double>(mesh[static_cast<size_t>(split.mesh)]);
    return d;
  }

  // The result's splits: those its operands already hold on its axes (free),
  // then the frame's sharded axes and what later reads ask for (slices taken
  // locally), one axis per mesh dimension.
  State result_splits(Frame &f, const ir::Op &op, const std::vector<int> &result_axes, State held_first) {
    State out;
    auto take = [&](int axis, const Split &split) {
      if (out.count(axis) || mesh_used(out, split.mesh)) return;
      out[axis] = split;
    };
    for (auto &[axis, split] : held_first)
      if (contains(result_axes, axis)) take(axis, split);
    for (int axis : result_axes)
      if (auto it = f.ctx.find(axis); it != f.ctx.end()) take(axis, it->second);
    for (int result : op.results)
      if (auto it = f.demand.find(result); it != f.demand.end())
        for (auto &[axis, split] : it->second) take(axis, split);
    return out;
  }

  // ------------------------------------------------------------- the walk
  void walk(Frame &f, const std::vector<int> &own = {}) {
    find_demand(f, f.d->body);
    const ir::ProducerIndex producers(*f.d);
    const std::vector<int> uses = ir::use_counts(*f.d);
    ir::for_each_op(f.d->body, [&](const ir::Op &op) {
      if (op.kind != ir::OpKind::Contract) return;
      if (auto routed = ir::routed_operand(*f.d, p_, op, producers, uses))
        f.in_place.insert(op.operands[routed->operand]);
    });
    region(f, f.d->body, f.d->outputs, own);
    account_params(f);
    // The frame's address may be another frame's later.
    for (auto it = fresh_routes_.begin(); it != fresh_routes_.end();)
      it = it->first == &f ? fresh_routes_.erase(it) : std::next(it);
    for (auto it = route_index_.begin(); it != route_index_.end();)
      it = it->first.first == &f ? route_index_.erase(it) : std::next(it);
  }

  void find_demand(Frame &f, const ir::Region &region) {
    ir::for_each_op(region, [&](const ir::Op &op) {
      if (op.kind != ir::OpKind::Access || op.operands.empty()) return;
      const ir::Value &source = f.d->value(op.operands[0]);
      for (size_t position = 0; position < op.access.size() && position < source.axes.size(); ++position) {
        const ir::AccessIndex &index = op.access[position];
        if (index.kind != ir::AccessIndex::Kind::Split) continue;
        for (int part : index.split)
          if (auto it = f.ctx.find(part); it != f.ctx.end()) {
            int64_t stride = 1;
            for (auto inner = std::find(index.split.begin(), index.split.end(), part) + 1; inner != index.split.end();
                 ++inner)
              stride *= extent(f, *inner);
            f.demand[op.operands[0]][source.axes[position]] = {it->second.mesh, part, stride, extent(f, part)};
            break;
          }
      }
    });
  }

  // Visits the ops of `r` in order, keeping the activations live: a value is
  // held from its op to the last op of `r` that reads it (a repeat reads what
  // its body reads), unless `r` hands it on (`keep`: the diagram's outputs, a
  // body's yields). Values from outside `r` are not its to free, save `own`.
  void region(Frame &f, const ir::Region &r, const std::vector<int> &keep, const std::vector<int> &own) {
    std::map<int, size_t> last;
    for (size_t i = 0; i < r.ops.size(); ++i) {
      auto use = [&](const ir::Op &op) {
        for (int operand : op.operands) last[operand] = i;
      };
      use(*r.ops[i]);
      if (r.ops[i]->body) {
        ir::for_each_op(*r.ops[i]->body, use);
        for (int yield : r.ops[i]->body_yields) last[yield] = i;
      }
    }
    std::vector<std::vector<int>> dies(r.ops.size());
    for (auto &[value, at] : last) dies[at].push_back(value);
    std::set<int> mine(own.begin(), own.end());
    auto drop = [&](int value) {
      if (mine.count(value) && !contains(keep, value)) release(f, value);
    };
    for (size_t i = 0; i < r.ops.size(); ++i) {
      const ir::Op &op = *r.ops[i];
      const Bytes before = f.live;
      f.transient = {};
      visit(f, op);
      for (int result : op.results) {
        hold(f, result);
        mine.insert(result);
      }
      f.peak = Bytes::max(f.peak, before + Bytes::max(f.transient, f.live - before));
      for (int result : op.results)
        if (!last.count(result)) drop(result);
      for (int value : dies[i]) drop(value);
    }
  }

  State operand_state(Frame &f, const ir::Op &op) {
    State held;
    for (int operand : op.operands)
      for (auto &[axis, split] : f.states[operand])
        if (!held.count(axis)) held[axis] = split;
    return held;
  }

  void set_results(Frame &f, const ir::Op &op, const State &state) {
    for (int result : op.results) f.states[result] = restrict(state, f.d->value(result).axes);
  }

  // Each op's decisions are also kept for whoever runs the plan (ShardStep).
  void visit(Frame &f, const ir::Op &op) {
    const ir::Op *outer = current_;
    current_ = &op;
    visit_op(f, op);
    if (ShardStep *s = step(f))
      for (int result : op.results) s->results[result] = exported(f.states[result]);
    current_ = outer;
  }

  void visit_op(Frame &f, const ir::Op &op) {
    if (op.operands.empty() &&
        (op.kind == ir::OpKind::Constant || op.kind == ir::OpKind::SizeOf || op.kind == ir::OpKind::AxisIndex)) {
      set_results(f, op, {});  // computed whole on every device: nothing to communicate
      return;
    }
    switch (op.kind) {
      case ir::OpKind::Call: call(f, op); return;
      case ir::OpKind::Repeat: repeat(f, op); return;
      case ir::OpKind::Access: access(f, op); return;
      case ir::OpKind::Merge: merge(f, op); return;
      case ir::OpKind::Contract:
      case ir::OpKind::Reduce: reduce(f, op); return;
      default: break;
    }
    // Pointwise and the rest: the result keeps its operands' splits; an axis
    // the op works along (normalise, scan, select) is needed whole.
    std::vector<int> along;
    if (op.kind == ir::OpKind::Normalize || op.kind == ir::OpKind::Scan) along = op.axes;
    if (op.kind == ir::OpKind::Select && !op.axes.empty()) along = {op.axes[0]};
    std::vector<int> result_axes;
    for (int result : op.results)
      for (int axis : f.d->value(result).axes)
        if (!contains(result_axes, axis) && !contains(along, axis)) result_axes.push_back(axis);
    State held = operand_state(f, op);
    for (int axis : along) held.erase(axis);
    State out = result_splits(f, op, result_axes, held);
    std::string what = op.kind == ir::OpKind::Elementwise ? std::string(ops::name(op.function))
                                                          : std::string(ir::op_kind_name(op.kind));
    if (!along.empty()) what += " along " + axis_name(along[0]);
    routed_meet(f, op, what);
    for (int operand : op.operands) need(f, operand, out, op, what + " needs it so");
    set_results(f, op, out);
    if (!op.results.empty()) {
      std::set<int> axes;
      for (int result : op.results)
        for (int axis : f.d->value(result).axes) axes.insert(axis);
      account(f, full_elements(f, axes), divisor(out, plan_.mesh), op.kind == ir::OpKind::Elementwise ? 1 : 2);
    }
    if (!out.empty() && !op.results.empty())
      note(f, op.location, what + " -> " + value_label(f, op.results[0]) + " split along " + state_text(out));
  }

  // A value routed to its experts' devices meets one that is not: the routed
  // one comes back (combine). A gather from an expert-split table dispatches
  // its partners instead (in `access`/`reduce`).
  void routed_meet(Frame &f, const ir::Op &op, const std::string &what) {
    int mesh = -1;
    bool plain = false;
    for (int operand : op.operands) {
      auto it = f.routed.find(operand);
      if (it != f.routed.end())
        mesh = it->second;
      else if (f.d->value(operand).axes.size() > 0)
        plain = true;
    }
    if (mesh < 0) return;
    if (!plain && op.kind != ir::OpKind::Contract && op.kind != ir::OpKind::Reduce) {
      for (int result : op.results) f.routed[result] = mesh;
      carry_route(f, op);
      return;
    }
    for (int operand : op.operands)
      if (f.routed.count(operand)) {
        add(f, Collective::Kind::AllToAll, operand, f.states[operand], mesh, op.location,
            "expert outputs return to their tokens' devices (combine) for " + what);
        f.routed.erase(operand);
        if (ShardStep *s = step(f)) {
          auto route = f.route.find(operand);
          if (route == f.route.end()) {
            s->undecided_route = true;
          } else {
            s->combines.push_back(route->second);
            s->combines.back().value = operand;
          }
        }
      }
  }

  // The results of an op on routed values are routed as its first routed
  // operand was; a contraction's are computed on the experts' devices only.
  void carry_route(Frame &f, const ir::Op &op) {
    for (int operand : op.operands)
      if (auto it = f.route.find(operand); it != f.route.end()) {
        for (int result : op.results) {
          f.route[result] = it->second;
          if (ShardStep *s = op.kind == ir::OpKind::Contract ? step(f) : nullptr) {
            s->routed.push_back(it->second);
            s->routed.back().value = result;
          }
        }
        return;
      }
  }

  void reduce(Frame &f, const ir::Op &op) {
    const std::vector<int> &summed = op.axes;
    std::vector<int> result_axes;
    for (int result : op.results)
      for (int axis : f.d->value(result).axes) result_axes.push_back(axis);
    State held = operand_state(f, op);
    // Expert parallelism: a contraction with a value gathered from an
    // expert-split table runs on the experts' devices; its other operands
    // travel there first (dispatch).
    int routed_mesh = -1;
    for (int operand : op.operands)
      if (auto it = f.routed.find(operand); it != f.routed.end()) routed_mesh = it->second;
    // A token already dispatched to the experts' devices is there for every later gather too.
    bool all_routed = true;
    for (int operand : op.operands)
      if (!f.routed.count(operand) && !f.dispatched.count(operand) && !f.d->value(operand).axes.empty())
        all_routed = false;
    bool produced_by_gather = false;
    for (int operand : op.operands)
      if (fresh_routes_.count({&f, operand})) produced_by_gather = true;
    if (routed_mesh >= 0 && !all_routed && produced_by_gather) {
      // Each token goes to each of its experts: the routing index's other axes (top) multiply it.
      std::set<int> index_axes;
      for (int operand : op.operands)
        if (auto it = route_index_.find({&f, operand}); it != route_index_.end())
          index_axes.insert(it->second.begin(), it->second.end());
      for (int operand : op.operands)
        if (!f.routed.count(operand) && !f.dispatched.count(operand)) {
          double copies = 1;
          for (int axis : index_axes)
            if (!contains(f.d->value(operand).axes, axis)) copies *= size(f, axis);
          add(f, Collective::Kind::AllToAll, operand, f.states[operand], routed_mesh, op.location,
              "tokens travel to their experts' devices (dispatch)", copies);
          // A copy travels; the tokens stay where they were for everything else.
          f.dispatched.insert(operand);
          if (ShardStep *s = step(f)) s->dispatch.push_back(operand);
        }
      for (int result : op.results) f.routed[result] = routed_mesh;
      carry_route(f, op);
    } else if (routed_mesh >= 0 && all_routed) {
      for (int result : op.results) f.routed[result] = routed_mesh;
      carry_route(f, op);
    } else {
      routed_meet(f, op, "the contraction");
    }

    // Splits the result keeps from its operands.
    State out;
    for (auto &[axis, split] : held)
      if (contains(result_axes, axis) && !mesh_used(out, split.mesh)) out[axis] = split;
    // Summed axes held split: partial sums, combined across that mesh dimension.
    State summed_split;  // summed axis → split
    for (int axis : summed) {
      auto it = held.find(axis);
      if (it != held.end() && !mesh_used(out, it->second.mesh) && !mesh_used(summed_split, it->second.mesh))
        summed_split[axis] = it->second;
    }
    // The frame's sharded result axes: a local slice, or where a summed axis
    // already uses that mesh dimension, a reduce-scatter onto it.
    State scatter;
    for (int axis : result_axes) {
      auto it = f.ctx.find(axis);
      if (it == f.ctx.end() || out.count(axis) || mesh_used(out, it->second.mesh)) continue;
      if (mesh_used(summed_split, it->second.mesh)) {
        if (!mesh_used(scatter, it->second.mesh)) scatter[axis] = it->second;
        continue;
      }
      out[axis] = it->second;
    }
    // Summed axes the frame shards (row-parallel from replicated operands).
    for (int axis : summed) {
      auto it = f.ctx.find(axis);
      if (it == f.ctx.end() || summed_split.count(axis) || mesh_used(out, it->second.mesh) ||
          mesh_used(summed_split, it->second.mesh))
        continue;
      summed_split[axis] = it->second;
    }
    // What later reads ask for.
    for (int result : op.results)
      if (auto it = f.demand.find(result); it != f.demand.end())
        for (auto &[axis, split] : it->second)
          if (!out.count(axis) && !mesh_used(out, split.mesh) && !mesh_used(summed_split, split.mesh))
            out[axis] = split;

    State wanted = out;
    for (auto &[axis, split] : summed_split) wanted[axis] = split;
    std::string what = op.kind == ir::OpKind::Contract ? "contraction" : std::string(ops::name(op.function));
    for (int operand : op.operands) need(f, operand, wanted, op, "the " + what + " needs it so");

    std::set<int> axes(result_axes.begin(), result_axes.end());
    axes.insert(summed.begin(), summed.end());
    account(f, full_elements(f, axes), divisor(wanted, plan_.mesh), op.kind == ir::OpKind::Contract ? 2 : 1);

    int result = op.results.empty() ? -1 : op.results[0];
    if (!out.empty() && result >= 0)
      note(f, op.location,
           what + " -> " + value_label(f, result) + " split along " + state_text(out) +
               (summed_split.empty() ? " (operands sliced locally)" : ""));
    set_results(f, op, out);
    if (ShardStep *s = step(f))
      for (auto &[axis, split] : summed_split) s->partial.push_back({axis, split.mesh, split.stride, split.extent});
    for (auto &[axis, split] : summed_split) {
      if (result < 0) break;
      std::string over = "the " + what + " sums over " + split_text(axis, split) + ": partial sums on every device";
      auto sc =
          std::find_if(scatter.begin(), scatter.end(), [&](auto &entry) { return entry.second.mesh == split.mesh; });
      if (sc != scatter.end()) {
        add(f, Collective::Kind::ReduceScatter, result, f.states[result], split.mesh, op.location,
            over + ", each keeping its slice of " + axis_name(sc->first));
        for (int r : op.results) f.states[r][sc->first] = sc->second;
      } else {
        add(f, Collective::Kind::AllReduce, result, f.states[result], split.mesh, op.location, over);
      }
    }
  }

  void access(Frame &f, const ir::Op &op) {
    int source = op.operands.at(0);
    const ir::Value &from = f.d->value(source);
    std::vector<int> result_axes;
    for (int result : op.results)
      for (int axis : f.d->value(result).axes) result_axes.push_back(axis);
    State held = f.states[source];
    State carried;  // result axis → split, from the source's splits
    int expert_mesh = -1;
    std::vector<int> expert_index;
    for (size_t position = 0; position < op.access.size() && position < from.axes.size(); ++position) {
      const ir::AccessIndex &index = op.access[position];
      int axis = from.axes[position];
      auto it = held.find(axis);
      std::optional<Split> split;
      if (it != held.end()) split = it->second;
      if (index.kind == ir::AccessIndex::Kind::Gather) {
        auto ctx = f.ctx.find(axis);
        if (!split && ctx != f.ctx.end() && from.role == ir::Value::Role::Param) {
          expert_mesh = ctx->second.mesh;
          if (index.gather_operand >= 0 && static_cast<size_t>(index.gather_operand) < op.operands.size())
            expert_index = f.d->value(op.operands[static_cast<size_t>(index.gather_operand)]).axes;
        }
        if (split) gather(f, source, axis, *split, op.location, "a gather reads any position of " + axis_name(axis));
        continue;
      }
      if (!split) continue;
      if (index.kind == ir::AccessIndex::Kind::Affine && index.terms.size() == 1 && index.terms[0].second == 1 &&
          index.offset == 0 && contains(result_axes, index.terms[0].first)) {
        carried[index.terms[0].first] = *split;
      } else if (index.kind == ir::AccessIndex::Kind::Split && contains(index.split, split->factor)) {
        carried[split->factor] = {split->mesh, split->factor, 1, split->extent};
      } else if (index.kind == ir::AccessIndex::Kind::Split && split->factor == axis && !index.split.empty() &&
                 extent(f, index.split.front()) % plan_.mesh[static_cast<size_t>(split->mesh)] == 0) {
        // The outermost part keeps the blocks.
        carried[index.split.front()] = {split->mesh, index.split.front(), 1, extent(f, index.split.front())};
      } else {
        gather(f, source, axis, *split, op.location, "the read of " + axis_name(axis) + " is shifted or strided");
      }
    }
    State out = result_splits(f, op, result_axes, carried);
    if (from.role == ir::Value::Role::Param) {
      // A param read is sliced as the read's result is split (an expert table by its experts).
      State slice;
      for (size_t position = 0; position < op.access.size() && position < from.axes.size(); ++position) {
        const ir::AccessIndex &index = op.access[position];
        int axis = from.axes[position];
        if (index.kind == ir::AccessIndex::Kind::Gather) {
          if (auto ctx = f.ctx.find(axis); expert_mesh >= 0 && ctx != f.ctx.end()) slice[axis] = ctx->second;
          continue;
        }
        for (auto &[result_axis, split] : out)
          if ((index.kind == ir::AccessIndex::Kind::Affine && index.terms.size() == 1 && index.offset == 0 &&
               index.terms[0].first == result_axis && index.terms[0].second == 1) ||
              (index.kind == ir::AccessIndex::Kind::Split && contains(index.split, result_axis))) {
            slice[axis] = split;
            break;
          }
      }
      need_param(f, source, slice);
    }
    for (size_t i = 1; i < op.operands.size(); ++i) need(f, op.operands[i], out, op, "the gather index");
    set_results(f, op, out);
    if (!out.empty() && !op.results.empty())
      note(f, op.location,
           "read of " + value_label(f, source) + " -> " + value_label(f, op.results[0]) + " split along " +
               state_text(out));
    if (expert_mesh >= 0) {
      ShardStep::Route route;
      for (size_t position = 0; position < op.access.size() && position < from.axes.size(); ++position)
        if (op.access[position].kind == ir::AccessIndex::Kind::Gather && f.ctx.count(from.axes[position])) {
          const ir::AccessIndex &index = op.access[position];
          route.index = op.operands.at(static_cast<size_t>(index.gather_operand));
          route.experts = {from.axes[position], expert_mesh, 1, extent(f, from.axes[position])};
          break;
        }
      if (ShardStep *s = step(f)) s->keep.push_back(route.index);
      f.expert_axis[source] = route.experts.axis;
      for (int result : op.results) {
        f.routed[result] = expert_mesh;
        f.route[result] = route;
        fresh_routes_.insert({&f, result});
        route_index_[{&f, result}] = expert_index;
      }
      note(f, op.location,
           "rows of " + value_label(f, source) + " read through a routing index: experts split over mesh " +
               std::to_string(expert_mesh) + " (expert parallel)");
    }
  }

  void merge(Frame &f, const ir::Op &op) {
    int source = op.operands.at(0);
    State held = f.states[source];
    int result = op.results.at(0);
    const ir::Value &to = f.d->value(result);
    State carried;
    for (size_t i = 0; i < op.merges.size() && i < to.axes.size(); ++i)
      for (int part : op.merges[i])
        if (auto it = held.find(part); it != held.end()) {
          if (!mesh_used(carried, it->second.mesh)) {
            Split merged = it->second;  // the parts inside this one make its blocks longer
            for (auto inner = std::find(op.merges[i].begin(), op.merges[i].end(), part) + 1;
                 inner != op.merges[i].end(); ++inner)
              merged.stride *= extent(f, *inner);
            carried[to.axes[i]] = merged;
          }
          break;
        }
    State out = result_splits(f, op, to.axes, carried);
    if (f.d->value(source).role == ir::Value::Role::Param) {
      State slice;  // a merged axis split by one of its parts slices the param along that part
      for (size_t i = 0; i < op.merges.size() && i < to.axes.size(); ++i)
        if (auto it = out.find(to.axes[i]); it != out.end() && contains(op.merges[i], it->second.factor))
          slice[it->second.factor] = it->second;
      need_param(f, source, slice);
    }
    // A split the merge could not keep (two split parts in one merged axis) is gathered.
    for (auto &[axis, split] : held) {
      bool kept = false;
      for (auto &[a, s] : out) kept = kept || (s.mesh == split.mesh && (s.factor == split.factor || a == axis));
      if (!kept) gather(f, source, axis, split, op.location, "the merge keeps one split per mesh dimension");
    }
    set_results(f, op, out);
    if (!out.empty()) note(f, op.location, "merge -> " + value_label(f, result) + " split along " + state_text(out));
  }

  void repeat(Frame &f, const ir::Op &op) {
    for (size_t i = 0; i < op.operands.size() && i < op.body_arguments.size(); ++i)
      f.states[op.body_arguments[i]] = f.states[op.operands[i]];
    double saved = f.count;
    f.count *= static_cast<double>(op.count);
    // The body's activations on top of what is live around it (its arguments alias the operands).
    const Bytes live = f.live, peak = f.peak;
    f.live = f.peak = {};
    region(f, *op.body, op.body_yields, {});
    const Bytes body_peak = f.peak;
    f.live = live;
    f.peak = peak;
    for (size_t i = 0; i < op.body_yields.size() && i < op.body_arguments.size(); ++i) {
      const State &yield = f.states[op.body_yields[i]];
      const State &argument = f.states[op.body_arguments[i]];
      for (auto &[axis, split] : yield) {
        auto it = argument.find(axis);
        if (it == argument.end() || !(it->second == split)) {
          in_yield_ = true;
          gather(f, op.body_yields[i], axis, split, op.location, "the next iteration takes it as it came in");
          in_yield_ = false;
        }
      }
    }
    f.count = saved;
    f.transient = body_peak;
    for (size_t i = 0; i < op.results.size() && i < op.operands.size(); ++i)
      f.states[op.results[i]] = f.states[op.body_arguments.size() > i ? op.body_arguments[i] : op.operands[i]];
  }

  void call(Frame &f, const ir::Op &op) {
    const ir::Diagram &callee = *p_.diagrams.at(static_cast<size_t>(op.callee));
    std::map<int, int> bound;  // callee axis → caller axis
    for (auto [from, to] : op.bindings) bound[from] = to;
    auto outer = [&](int axis) {
      auto it = bound.find(axis);
      return it == bound.end() ? axis : it->second;
    };
    Frame inner;
    inner.d = &callee;
    inner.site = f.site + "." + (op.label.empty() ? op.callee_name : op.label);
    inner.count = f.count;
    inner.entry_count = f.count;
    inner.chain = f.chain;
    inner.chain.push_back(&op);
    // Sizes and split axes seen through the bindings.
    inner.sizes = f.sizes;
    for (auto &[from, to] : bound) {
      inner.sizes.erase(from);
      if (double s = size(f, to); s > 0) inner.sizes[from] = static_cast<int64_t>(s);
    }
    inner.ctx = f.ctx;
    for (auto &[from, to] : bound) {
      inner.ctx.erase(from);
      if (auto it = f.ctx.find(to); it != f.ctx.end()) inner.ctx[from] = it->second;
    }
    // Lifted axes: the callee runs once per position (per slice, where split).
    State held = operand_state(f, op);
    State lifted_split;
    inner.lift_full = f.lift_full;
    inner.lift_rank = f.lift_rank;
    for (int axis : op.lifted) {
      double s = size(f, axis);
      inner.lift_full *= s;
      std::optional<Split> split;
      if (auto it = held.find(axis); it != held.end())
        split = it->second;
      else if (auto c = f.ctx.find(axis); c != f.ctx.end())
        split = c->second;
      if (split && !mesh_used(lifted_split, split->mesh)) {
        lifted_split[axis] = *split;
        s /= devices(split->mesh);
      }
      inner.lift_rank *= s;
    }
    // What later reads ask of the results becomes split axes of the callee.
    for (size_t j = 0; j < op.results.size() && j < callee.outputs.size(); ++j) {
      auto it = f.demand.find(op.results[j]);
      if (it == f.demand.end()) continue;
      for (int axis : callee.value(callee.outputs[j]).axes)
        if (auto d = it->second.find(outer(axis)); d != it->second.end() && !inner.ctx.count(axis))
          inner.ctx[axis] = d->second;
    }
    // The inputs' splits.
    for (size_t i = 0; i < op.operands.size() && i < callee.inputs.size(); ++i) {
      const State &state = f.states[op.operands[i]];
      State in;
      for (int axis : callee.value(callee.inputs[i]).axes)
        if (auto it = state.find(outer(axis)); it != state.end() && !contains(op.lifted, outer(axis)))
          in[axis] = it->second;
      // Split lifted axes are not the callee's business; other mismatches it sorts out itself.
      inner.states[callee.inputs[i]] = in;
    }
    // An operand split along a lifted axis over a mesh dimension the lift does not use is gathered.
    for (int operand : op.operands)
      for (auto &[axis, split] : State(f.states[operand]))
        if (contains(op.lifted, axis) && !(lifted_split.count(axis) && lifted_split[axis].mesh == split.mesh))
          gather(f, operand, axis, split, op.location, "the call runs over " + axis_name(axis) + " on one slice only");
    if (!lifted_split.empty())
      note(f, op.location, "call " + op.callee_name + " runs on each device's slice of " + state_text(lifted_split));
    // A param handed to a call is held whole (its uses there are not followed back).
    for (int operand : op.operands) need_param(f, operand, {});
    walk(inner);
    f.transient = inner.peak;
    for (size_t j = 0; j < op.results.size() && j < callee.outputs.size(); ++j) {
      State out = lifted_split;
      for (auto &[axis, split] : inner.states[callee.outputs[j]])
        if (!mesh_used(out, split.mesh)) out[outer(axis)] = split;
      f.states[op.results[j]] = restrict(out, f.d->value(op.results[j]).axes);
    }
  }

  const ir::Program &p_;
  const ir::Diagram &root_;
  ShardingPlan plan_;
  const ir::Op *current_ = nullptr;  // the op being visited (ShardStep's key)
  bool in_yield_ = false;            // gathers now are of a repeat's yields
  std::set<std::pair<const Frame *, int>> fresh_routes_;  // values just gathered from an expert-split table
  std::map<std::pair<const Frame *, int>, std::vector<int>> route_index_;  // ... and the axes of their routing index
};

}  // namespace

ShardingPlan plan_sharding(const ir::Program &program, const ir::Diagram &diagram, const std::vector<int64_t> *mesh) {
  Planner planner(program, diagram, mesh);
  return planner.run();
}

}  // namespace ncd
