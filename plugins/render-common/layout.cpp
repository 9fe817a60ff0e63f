// ncd's layout of a neural circuit diagram (see layout.h).
//
// Steps, each one pass over the model:
//   1. measure every node (lanes, glyph, strip rows) in its own coordinates;
//   2. columns: the longest path from the inputs, in record order (the drawer
//      records a node after everything it reads, so one forward pass suffices);
//      nodes nobody feeds (params, index expressions) move next to their first
//      reader; a call's nodes never go left of its entry strip; outputs last;
//      small drawings are laid out a second time with the params read beside
//      a value that fans out in a column of their own, and keep the better;
//   3. heights, inside out (deepest cluster first): the children of a cluster
//      (nodes and inner clusters, each spanning a range of columns) in column
//      order, params last, each at the free place nearest to the height it
//      prefers, off the wires placed before it; the whole placement is redone
//      in barycentre sweeps (forward: where its wires arrive; backward: where
//      the previous pass put its readers), the pass with the fewest crossings
//      (crossings.h) kept, and small drawings then sifted (a node moved within
//      its column's stack wherever that crosses fewer wires);
//   4. column x positions from the widest node, the labels that start in the
//      gap and the bends the gap holds; cluster boxes from their columns;
//   5. wires: straight when source and target ports are level, else one
//      vertical step in a track of the gap before the target's column; in
//      small drawings a wire spanning columns may step in an earlier gap, or
//      run through a channel beside the boxes between and step twice, where
//      that crosses fewer wires (rerouting).
// Preconditions: the model's edges (but a repeat's back edge) go from a node
// recorded earlier to one recorded later; edges that do not are drawn but do
// not constrain columns.
#include "layout.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>

#include "crossings.h"
#include "layout_frame.h"
#include "layout_measure.h"

namespace ncd::render {
namespace {

constexpr double kGap = 14;        // between nodes stacked in a column
constexpr double kClusterPad = 8;  // a cluster's sides
constexpr double kPaperClusterPad = 5;
constexpr double kClusterTop = 26;  // room for a cluster's title
constexpr double kClusterBottom = 10;
constexpr double kTrack = 4;  // between vertical wire segments in a gap
constexpr int kTracks = 10;
constexpr double kWireClearance = 6;  // between a wire and a box it passes
constexpr int kPasses = 6;            // ordering sweeps (layout step 3) a series
// Sifting (layout step 3), rerouting (step 5) and the second column assignment (step 2) recount
// every crossing per try: only for drawings this small.
constexpr size_t kSiftMaxWires = 300;
constexpr size_t kSiftTries = 150;  // at most this many tries a series, whatever the drawing
// Rerouting (layout step 5): at most this many wires drawn and counted a series, all tries
// together (each try draws and counts every wire): 2,000 tries for 50 wires, 333 for 300.
constexpr size_t kRerouteWork = 100000;
constexpr size_t kChannels = 32;  // heights a rerouted wire tries a gap

// One item placed inside a cluster: a node (index >= 0) or a cluster (~index).
struct Child {
  int item = 0;
  int lo = 0, hi = 0;
  int first = 0;  // the first node recorded inside it
  double h = 0;
};

class Layouter {
 public:
  Layouter(const DrawingModel &model, const LayoutOptions &options) : model_(model), options_(options) {}

  Layout run() {
    const size_t n = model_.nodes.size();
    measured_.reserve(n);
    for (const auto &node : model_.nodes) measured_.push_back(measure(node, options_));
    in_edges_.assign(n, {});
    out_edges_.assign(n, {});
    for (size_t e = 0; e < model_.edges.size(); ++e) {
      const ModelEdge &edge = model_.edges[e];
      if (edge.back || edge.from >= edge.to) continue;
      in_edges_[static_cast<size_t>(edge.to)].push_back(static_cast<int>(e));
      out_edges_[static_cast<size_t>(edge.from)].push_back(static_cast<int>(e));
    }
    // Small drawings are laid out twice, the second time with the params of a fanning value's
    // readers in a column of their own (assign_columns), and keep the layout with fewer
    // crossings (ties: the first).
    Layout best;
    size_t best_crossings = std::numeric_limits<size_t>::max();
    for (int variant = 0; variant < (model_.edges.size() <= kSiftMaxWires ? 2 : 1) && best_crossings > 0; ++variant) {
      params_apart_ = variant == 1;
      if (!assign_columns() && params_apart_) break;
      size_t crossings = 0;
      Layout layout = place(crossings);
      if (crossings < best_crossings) best = std::move(layout), best_crossings = crossings;
    }
    return best;
  }

 private:
  // Steps 3 to 5 on the columns assign_columns chose; `crossings` is set to the result's count.
  Layout place(size_t &crossings_out) {
    const size_t n = model_.nodes.size(), c = model_.clusters.size();
    // Cluster column spans and first nodes.
    lo_.assign(c, std::numeric_limits<int>::max());
    hi_.assign(c, -1);
    first_.assign(c, -1);
    members_.assign(c, {});
    for (size_t i = 0; i < n; ++i)
      for (int k = model_.nodes[i].cluster; k >= 0; k = model_.clusters[static_cast<size_t>(k)].parent) {
        members_[static_cast<size_t>(k)].push_back(static_cast<int>(i));
        lo_[static_cast<size_t>(k)] = std::min(lo_[static_cast<size_t>(k)], column_[i]);
        hi_[static_cast<size_t>(k)] = std::max(hi_[static_cast<size_t>(k)], column_[i]);
        if (first_[static_cast<size_t>(k)] < 0) first_[static_cast<size_t>(k)] = static_cast<int>(i);
      }
    // Ordering sweeps: each pass places every cluster again, its items drawn towards where the
    // previous pass put their readers (odd passes) or towards both their sources and their
    // readers (even passes). Two series of sweeps start from the same first pass: items of a
    // column taken in the order they were recorded, or in the order the previous pass stacked
    // them. Each series keeps its pass with the fewest crossings, counted exactly (ties: the
    // earlier one), small drawings sift it, and the better series wins.
    struct Candidate {
      Layout layout;
      size_t crossings = std::numeric_limits<size_t>::max();
      std::vector<double> node, cluster, height;
      double root_height = 0;
      std::optional<size_t> hidden;  // its wires behind boxes (count_hidden), once counted
    };
    auto hidden_of = [&](Candidate &c) {
      if (!c.hidden) c.hidden = count_hidden(model_, c.layout);
      return *c.hidden;
    };
    Candidate series[2];
    step_column_.assign(model_.edges.size(), -1);
    channel_.assign(model_.edges.size(), std::numeric_limits<double>::quiet_NaN());
    for (int step = 0; step < 2 * kPasses - 1; ++step) {
      by_previous_ = step >= kPasses;
      pass_ = by_previous_ ? step - kPasses + 1 : step;
      if (step == kPasses) prev_node_ = first_node_, prev_cluster_ = first_cluster_;
      place_heights();
      if (step == 0) first_node_ = rel_node_, first_cluster_ = rel_cluster_;
      Layout layout = finish();
      size_t crossings = count_crossings(model_, layout);
      Candidate &best = series[by_previous_ ? 1 : 0];
      if (crossings < best.crossings)
        best = {std::move(layout), crossings, rel_node_, rel_cluster_, height_, root_height_, std::nullopt};
      if (crossings == 0) break;
      prev_node_ = rel_node_;
      prev_cluster_ = rel_cluster_;
    }
    if (model_.edges.size() <= kSiftMaxWires)
      for (auto &candidate : series) {
        if (candidate.crossings == 0 || candidate.node.empty()) continue;
        rel_node_ = candidate.node;
        rel_cluster_ = candidate.cluster;
        height_ = candidate.height;
        root_height_ = candidate.root_height;
        // Sifting, then rerouting; where that leaves a wire behind a box, both again from the same
        // start with the strict sift, and the result with fewer such wires (then fewer crossings)
        // kept. Strict always would leave other drawings more crossed: a move that hides a wire
        // for a while may lead to one that uncrosses more, or rerouting may free the wire again.
        auto polish = [&](Candidate &c, bool strict) {
          rel_node_ = c.node;
          sift(c.layout, c.crossings, strict);
          c.hidden.reset();
          reroute(c.layout, c.crossings);
          step_column_.assign(model_.edges.size(), -1);
          channel_.assign(model_.edges.size(), std::numeric_limits<double>::quiet_NaN());
        };
        Candidate strict = candidate;
        polish(candidate, false);
        if (hidden_of(candidate) == 0) continue;
        polish(strict, true);
        if (hidden_of(strict) < hidden_of(candidate) ||
            (hidden_of(strict) == hidden_of(candidate) && strict.crossings < candidate.crossings))
          candidate = std::move(strict);
      }
    // The series with fewer crossings wins; in small drawings, the one with fewer wires behind
    // boxes first.
    bool second = series[1].crossings < series[0].crossings;
    if (model_.edges.size() <= kSiftMaxWires && !series[0].node.empty() && !series[1].node.empty() &&
        hidden_of(series[0]) != hidden_of(series[1]))
      second = hidden_of(series[1]) < hidden_of(series[0]);
    Candidate &winner = series[second ? 1 : 0];
    crossings_out = winner.crossings;
    return std::move(winner.layout);
  }

  // ---------------------------------------------------------------- columns

  int floor_of(int cluster) const {
    int floor = 0;
    for (int k = cluster; k >= 0; k = model_.clusters[static_cast<size_t>(k)].parent)
      if (model_.clusters[static_cast<size_t>(k)].kind != ModelCluster::Level)
        floor = std::max(floor, floor_[static_cast<size_t>(k)]);
    return floor;
  }

  // Columns (layout step 2); with params_apart_, the readers of a value that fans out to several
  // param readers go a column further right. Returns whether params_apart_ moved any node.
  bool assign_columns() {
    const size_t n = model_.nodes.size();
    column_.assign(n, 0);
    floor_.assign(model_.clusters.size(), -1);
    // A value read by several nodes that each also read a param fans out past those params: with
    // params_apart_, its readers go a column further right, so that the params sit in a column of
    // their own between (otherwise the fanning wires step across the params' wires in one gap).
    std::vector<bool> reads_unfed(n, false), fans(n, false);
    for (size_t i = 0; i < n && params_apart_; ++i)
      for (int e : in_edges_[i]) {
        size_t from = static_cast<size_t>(model_.edges[static_cast<size_t>(e)].from);
        if (in_edges_[from].empty() && !model_.nodes[from].source && !model_.nodes[from].strip) reads_unfed[i] = true;
      }
    for (size_t i = 0; i < n && params_apart_; ++i) {
      std::vector<int> readers;
      for (int e : out_edges_[i])
        if (reads_unfed[static_cast<size_t>(model_.edges[static_cast<size_t>(e)].to)])
          readers.push_back(model_.edges[static_cast<size_t>(e)].to);
      std::sort(readers.begin(), readers.end());
      fans[i] = std::unique(readers.begin(), readers.end()) - readers.begin() >= 2;
    }
    bool moved = false;
    for (size_t i = 0; i < n; ++i) {
      const ModelNode &node = model_.nodes[i];
      int col = 0;
      const bool past = reads_unfed[i];
      for (int e : in_edges_[i]) {
        size_t from = static_cast<size_t>(model_.edges[static_cast<size_t>(e)].from);
        col = std::max(col, column_[from] + (past && fans[from] ? 2 : 1));
        moved = moved || (past && fans[from]);
      }
      col = std::max(col, floor_of(node.cluster));
      column_[i] = col;
      for (int k = node.cluster; k >= 0; k = model_.clusters[static_cast<size_t>(k)].parent)
        if (floor_[static_cast<size_t>(k)] < 0) floor_[static_cast<size_t>(k)] = col;
    }
    // Nodes no input reaches (params, index expressions and what is computed from them alone)
    // sit just before their first reader. (Moving every node right to its first reader, as
    // network simplex would, was tried: it crossed more wires.)
    std::vector<bool> reached(n, false);
    for (size_t i = 0; i < n; ++i) {
      reached[i] = model_.nodes[i].source || model_.nodes[i].strip;
      for (int e : in_edges_[i]) reached[i] = reached[i] || reached[static_cast<size_t>(model_.edges[static_cast<size_t>(e)].from)];
    }
    for (size_t i = n; i-- > 0;) {
      if (reached[i] || out_edges_[i].empty()) continue;
      int reader = std::numeric_limits<int>::max();
      for (int e : out_edges_[i])
        reader = std::min(reader, column_[static_cast<size_t>(model_.edges[static_cast<size_t>(e)].to)]);
      column_[i] = std::max(floor_of(model_.nodes[i].cluster), reader - 1);
    }
    int last = 0;
    for (size_t i = 0; i < n; ++i) last = std::max(last, column_[i] + (model_.nodes[i].sink ? 0 : 1));
    for (size_t i = 0; i < n; ++i)
      if (model_.nodes[i].sink) column_[i] = last;
    columns_ = last + 1;
    return moved;
  }

  // ---------------------------------------------------------------- heights

  // y of node i's top relative to the origin of cluster `within` (-1: the drawing), through the
  // chain of its clusters; valid once every cluster between is placed.
  double offset(int i, int within) const { return offset_in(rel_node_, rel_cluster_, i, within); }
  // As offset(), in the previous pass.
  double prev_offset(int i, int within) const { return offset_in(prev_node_, prev_cluster_, i, within); }
  double offset_in(const std::vector<double> &node_y, const std::vector<double> &cluster_y, int i, int within) const {
    double y = node_y[static_cast<size_t>(i)];
    for (int k = model_.nodes[static_cast<size_t>(i)].cluster; k != within && k >= 0;
         k = model_.clusters[static_cast<size_t>(k)].parent)
      y += cluster_y[static_cast<size_t>(k)];
    return y;
  }

  int cluster_of(const Child &item) const {
    return item.item >= 0 ? model_.nodes[static_cast<size_t>(item.item)].cluster
                          : model_.clusters[static_cast<size_t>(~item.item)].parent;
  }
  double prev_top(const Child &item) const {
    return item.item >= 0 ? prev_node_[static_cast<size_t>(item.item)] : prev_cluster_[static_cast<size_t>(~item.item)];
  }

  // The child of cluster `within` that holds node i, or nothing (node i is outside it).
  bool child_of(int i, int within, int &child) const {
    int k = model_.nodes[static_cast<size_t>(i)].cluster;
    if (k == within) {
      child = i;
      return true;
    }
    while (k >= 0) {
      int parent = model_.clusters[static_cast<size_t>(k)].parent;
      if (parent == within) {
        child = ~k;
        return true;
      }
      k = parent;
    }
    return false;
  }

  void place_heights() {
    const size_t n = model_.nodes.size(), c = model_.clusters.size();
    rel_node_.assign(n, 0);
    rel_cluster_.assign(c, 0);
    height_.assign(c, 0);
    placed_.assign(n, false);
    std::vector<std::vector<Child>> children(c + 1);  // slot c: the drawing
    for (size_t i = 0; i < n; ++i) {
      int k = model_.nodes[i].cluster;
      children[k < 0 ? c : static_cast<size_t>(k)].push_back(
          {static_cast<int>(i), column_[i], column_[i], static_cast<int>(i), measured_[i].h});
    }
    for (size_t k = 0; k < c; ++k) {
      if (first_[k] < 0) continue;
      int parent = model_.clusters[k].parent;
      children[parent < 0 ? c : static_cast<size_t>(parent)].push_back(
          {~static_cast<int>(k), lo_[k], hi_[k], first_[k], 0});
    }
    // Inner clusters first: a cluster is recorded after its parent.
    for (size_t k = c; k-- > 0;)
      if (first_[k] >= 0) place_children(static_cast<int>(k), children[k]);
    place_children(-1, children[c]);
  }

  double gap() const { return options_.intermediates ? kGap + 14 : kGap; }

  double top_pad(int cluster) const {
    double extra = options_.intermediates ? 12 : 0;
    if (cluster < 0) return 36 + extra;
    return kClusterTop + extra;
  }

  double bottom_pad(int cluster) const {
    if (cluster < 0) return 12;
    return model_.clusters[static_cast<size_t>(cluster)].kind == ModelCluster::Repeat ? 24 : kClusterBottom + 4;
  }

  void place_children(int cluster, std::vector<Child> &items) {
    for (auto &item : items)
      if (item.item < 0) item.h = height_[static_cast<size_t>(~item.item)];
    // Nodes nobody feeds (params, index expressions) go last, each beside its reader's port.
    std::sort(items.begin(), items.end(), [&](const Child &a, const Child &b) {
      bool fa = unfed(a), fb = unfed(b);
      if (fa != fb) return fb;
      if (a.lo != b.lo) return a.lo < b.lo;
      // Later passes: in the order the previous pass stacked them.
      if (pass_ > 0 && by_previous_ && cluster_of(a) == cluster_of(b)) {
        double ya = prev_top(a), yb = prev_top(b);
        if (ya != yb) return ya < yb;
      }
      return a.first < b.first;
    });
    std::map<int, std::vector<std::pair<double, double>>> occupied;  // column -> (top, bottom), sorted
    std::map<int, std::vector<std::pair<double, int>>> wires;        // column -> (height, target) of wires passing
    std::vector<double> tops(items.size());
    const double g = gap();
    for (size_t index = 0; index < items.size(); ++index) {
      const Child &item = items[index];
      double preferred = wanted_top(cluster, item);
      auto free_at = [&](double top) {
        for (int col = item.lo; col <= item.hi; ++col) {
          auto it = occupied.find(col);
          if (it == occupied.end()) continue;
          for (const auto &[t, b] : it->second)
            if (top < b + g && t < top + item.h + g) return false;
        }
        for (int col = item.lo; col <= item.hi; ++col) {
          auto it = wires.find(col);
          if (it == wires.end()) continue;
          // Sorted by height: only the wires within the item's span are looked at.
          auto &list = it->second;
          for (auto w = std::upper_bound(list.begin(), list.end(), std::make_pair(top - kWireClearance, INT32_MAX));
               w != list.end() && w->first < top + item.h + kWireClearance; ++w)
            if (!holds(item, w->second)) return false;
        }
        return true;
      };
      double best = preferred;
      double best_distance = std::numeric_limits<double>::infinity();
      auto consider = [&](double candidate) {
        double distance = std::fabs(candidate - preferred);
        if (distance < best_distance && free_at(candidate)) {
          best_distance = distance;
          best = candidate;
        }
      };
      if (!free_at(preferred)) {
        for (int col = item.lo; col <= item.hi; ++col) {
          auto it = occupied.find(col);
          if (it == occupied.end()) continue;
          for (const auto &[t, b] : it->second) consider(b + g), consider(t - g - item.h);
        }
        for (int col = item.lo; col <= item.hi; ++col) {
          auto it = wires.find(col);
          if (it == wires.end()) continue;
          for (const auto &wire : it->second) consider(wire.first + kWireClearance), consider(wire.first - kWireClearance - item.h);
        }
      }
      tops[index] = best;
      for (int col = item.lo; col <= item.hi; ++col) {
        auto &list = occupied[col];
        list.insert(std::upper_bound(list.begin(), list.end(), std::make_pair(best, best + item.h)),
                    {best, best + item.h});
      }
      set_top(item, best);
      add_wires(cluster, item, wires);
    }
    double low = std::numeric_limits<double>::infinity(), high = -low;
    for (size_t index = 0; index < items.size(); ++index) {
      low = std::min(low, tops[index]);
      high = std::max(high, tops[index] + items[index].h);
    }
    if (items.empty()) low = high = 0;
    double shift = top_pad(cluster) - low;
    for (size_t index = 0; index < items.size(); ++index) set_top(items[index], tops[index] + shift);
    if (cluster >= 0)
      height_[static_cast<size_t>(cluster)] = high - low + top_pad(cluster) + bottom_pad(cluster);
    else
      root_height_ = high - low + top_pad(cluster) + bottom_pad(cluster);
  }

  // A wire from a param to a reader beyond the next column (layout step 5 takes it over the top).
  bool far_reader(const ModelEdge &edge) const {
    size_t from = static_cast<size_t>(edge.from);
    return in_edges_[from].empty() && !model_.nodes[from].source && !edge.back &&
           column_[static_cast<size_t>(edge.to)] - column_[from] >= 2;
  }

  // Paper style: a param's wire whose axis its reader also takes from another operand; the
  // name is written on that one.
  bool redundant_param_wire(const ModelEdge &edge) const {
    size_t from = static_cast<size_t>(edge.from);
    if (!in_edges_[from].empty() || model_.nodes[from].source || model_.nodes[from].strip) return false;
    for (int e : in_edges_[static_cast<size_t>(edge.to)]) {
      const ModelEdge &other = model_.edges[static_cast<size_t>(e)];
      if (other.from != edge.from && other.to_port == edge.to_port && !other.axis.empty()) return true;
    }
    return false;
  }

  // A call's lifted axis, from its entry strip to its exit strip: drawn along the call's bottom.
  bool lifted(const ModelEdge &edge) const {
    return model_.nodes[static_cast<size_t>(edge.from)].strip && !edge.from_port.empty() && edge.from_port[0] == 'L';
  }

  // Whether node `target` is the item or inside it.
  bool holds(const Child &item, int target) const {
    if (item.item >= 0) return target == item.item;
    for (int k = model_.nodes[static_cast<size_t>(target)].cluster; k >= 0; k = model_.clusters[static_cast<size_t>(k)].parent)
      if (k == ~item.item) return true;
    return false;
  }

  // The wires leaving a placed item run at their source's height through every column before
  // their target's (layout step 5): nothing placed later may sit on them but their target.
  void add_wires(int cluster, const Child &item, std::map<int, std::vector<std::pair<double, int>>> &wires) const {
    auto add = [&](int node) {
      for (int e : out_edges_[static_cast<size_t>(node)]) {
        const ModelEdge &edge = model_.edges[static_cast<size_t>(e)];
        if (holds(item, edge.to) || lifted(edge) || far_reader(edge)) continue;
        double y = offset(node, cluster) +
                   port_y(model_.nodes[static_cast<size_t>(node)], measured_[static_cast<size_t>(node)], edge.from_port);
        int from = column_[static_cast<size_t>(node)] + 1, to = column_[static_cast<size_t>(edge.to)] - 1;
        if (cluster >= 0) {
          from = std::max(from, lo_[static_cast<size_t>(cluster)]);
          to = std::min(to, hi_[static_cast<size_t>(cluster)]);
        }
        for (int col = from; col <= to; ++col) {
          auto &list = wires[col];
          list.insert(std::upper_bound(list.begin(), list.end(), std::make_pair(y, edge.to)), {y, edge.to});
        }
      }
    };
    if (item.item >= 0) add(item.item);
    else
      for (int node : members_[static_cast<size_t>(~item.item)]) add(node);
  }

  void set_top(const Child &item, double top) {
    if (item.item >= 0) {
      rel_node_[static_cast<size_t>(item.item)] = top;
      placed_[static_cast<size_t>(item.item)] = true;
    } else {
      rel_cluster_[static_cast<size_t>(~item.item)] = top;
      // Every node inside is placed once the cluster is.
      mark_placed(~item.item);
    }
  }

  void mark_placed(int cluster) {
    for (int i : members_[static_cast<size_t>(cluster)]) placed_[static_cast<size_t>(i)] = true;
  }

  // The top that puts the item's wires from already placed nodes, on average, level with their
  // sources (a param: its first wire level with its reader's port).
  bool unfed(const Child &item) const {
    if (item.item < 0) return false;
    size_t i = static_cast<size_t>(item.item);
    return in_edges_[i].empty() && !model_.nodes[i].source && !out_edges_[i].empty();
  }

  double wanted_top(int cluster, const Child &item) {
    int target = item.first;
    double sum = 0;
    int count = 0;
    if (unfed(item)) {
      // Level with the port of its first placed reader, so that its wire runs straight in.
      for (int e : out_edges_[static_cast<size_t>(target)]) {
        const ModelEdge &edge = model_.edges[static_cast<size_t>(e)];
        int holder = 0;
        if (!placed_[static_cast<size_t>(edge.to)] || !child_of(edge.to, cluster, holder)) continue;
        return offset(edge.to, cluster) +
               port_y(model_.nodes[static_cast<size_t>(edge.to)], measured_[static_cast<size_t>(edge.to)], edge.to_port) -
               port_y(model_.nodes[static_cast<size_t>(target)], measured_[static_cast<size_t>(target)], edge.from_port);
      }
    }
    if (pass_ > 0) {
      // Towards the readers, where the previous pass put them.
      double back_sum = 0;
      int back_count = 0;
      auto add_reads = [&](int node) {
        for (int e : out_edges_[static_cast<size_t>(node)]) {
          const ModelEdge &edge = model_.edges[static_cast<size_t>(e)];
          int holder = 0;
          if (holds(item, edge.to) || !child_of(edge.to, cluster, holder) || lifted(edge)) continue;
          double own =
              (item.item >= 0 ? 0 : prev_offset(node, ~item.item)) +
              port_y(model_.nodes[static_cast<size_t>(node)], measured_[static_cast<size_t>(node)], edge.from_port);
          back_sum += prev_offset(edge.to, cluster) +
                      port_y(model_.nodes[static_cast<size_t>(edge.to)], measured_[static_cast<size_t>(edge.to)],
                             edge.to_port) -
                      own;
          ++back_count;
        }
      };
      if (item.item >= 0)
        add_reads(item.item);
      else
        for (int node : members_[static_cast<size_t>(~item.item)]) add_reads(node);
      if (back_count > 0) {
        if (pass_ % 2 == 1) return back_sum / back_count;
        sum = back_sum;
        count = back_count;
      }
    }
    for (int e : in_edges_[static_cast<size_t>(target)]) {
      const ModelEdge &edge = model_.edges[static_cast<size_t>(e)];
      int holder = 0;
      if (!placed_[static_cast<size_t>(edge.from)] || !child_of(edge.from, cluster, holder)) continue;
      double source_y = offset(edge.from, cluster) + port_y(model_.nodes[static_cast<size_t>(edge.from)],
                                                            measured_[static_cast<size_t>(edge.from)], edge.from_port);
      double target_offset =
          (item.item >= 0 ? 0 : offset(target, ~item.item)) +
          port_y(model_.nodes[static_cast<size_t>(target)], measured_[static_cast<size_t>(target)], edge.to_port);
      sum += source_y - target_offset;
      ++count;
    }
    if (count > 0) return sum / count;
    // Nothing placed feeds it (an input): just above where its first reader's other wire arrives.
    for (int e : out_edges_[static_cast<size_t>(target)]) {
      int reader = model_.edges[static_cast<size_t>(e)].to;
      for (int f : in_edges_[static_cast<size_t>(reader)]) {
        const ModelEdge &edge = model_.edges[static_cast<size_t>(f)];
        int holder = 0;
        if (!placed_[static_cast<size_t>(edge.from)] || !child_of(edge.from, cluster, holder)) continue;
        return offset(edge.from, cluster) - item.h - gap();
      }
      break;
    }
    return 0;
  }

  // ---------------------------------------------------------------- sifting

  // Sifting: each node stacked in a column of a box, among the nodes next to it there (no inner
  // box between), is tried at every other place of that run, the run packed again from its top
  // with the same gaps so that nothing else moves; a move is kept where it crosses fewer wires,
  // counted exactly, and hides no wire behind a moved node. Rounds repeat while one finds a move.
  // `strict` also refuses a move that runs a moved node's own wires behind another node.
  void sift(Layout &best, size_t &best_crossings, bool strict) {
    const size_t n = model_.nodes.size();
    std::map<std::pair<int, int>, std::vector<std::pair<double, int>>> stacks;  // (cluster, column) -> (top, item)
    for (size_t i = 0; i < n; ++i)
      stacks[{model_.nodes[i].cluster, column_[i]}].push_back({rel_node_[i], static_cast<int>(i)});
    for (size_t k = 0; k < model_.clusters.size(); ++k) {
      if (first_[k] < 0) continue;
      for (int col = lo_[k]; col <= hi_[k]; ++col)
        stacks[{model_.clusters[k].parent, col}].push_back({rel_cluster_[k], ~static_cast<int>(k)});
    }
    std::vector<std::vector<int>> runs;
    for (auto &[key, stack] : stacks) {
      std::sort(stack.begin(), stack.end());
      std::vector<int> run;
      for (const auto &entry : stack) {
        if (entry.second >= 0) {
          run.push_back(entry.second);
          continue;
        }
        if (run.size() > 1) runs.push_back(run);
        run.clear();
      }
      if (run.size() > 1) runs.push_back(run);
    }
    size_t tries = 0;
    for (int round = 0; round < 3 && best_crossings > 0; ++round) {
      bool improved = false;
      for (auto &run : runs) {
        const size_t r = run.size();
        std::vector<double> gaps(r - 1);
        for (size_t j = 0; j + 1 < r; ++j)
          gaps[j] = rel_node_[static_cast<size_t>(run[j + 1])] -
                    (rel_node_[static_cast<size_t>(run[j])] + measured_[static_cast<size_t>(run[j])].h);
        const double start = rel_node_[static_cast<size_t>(run[0])];
        auto pack = [&](const std::vector<int> &order) {
          double cursor = start;
          for (size_t j = 0; j < r; ++j) {
            rel_node_[static_cast<size_t>(order[j])] = cursor;
            cursor += measured_[static_cast<size_t>(order[j])].h + (j + 1 < r ? gaps[j] : 0);
          }
        };
        for (size_t from = 0; from < r && best_crossings > 0; ++from) {
          for (size_t to = 0; to < r && best_crossings > 0 && tries < kSiftTries; ++to) {
            if (to == from) continue;
            ++tries;
            std::vector<int> order = run;
            int moved = order[from];
            order.erase(order.begin() + static_cast<std::ptrdiff_t>(from));
            order.insert(order.begin() + static_cast<std::ptrdiff_t>(to), moved);
            pack(order);
            Layout candidate = finish();
            size_t crossings = count_crossings(model_, candidate);
            bool hidden = crossings >= best_crossings;
            for (int node : order) hidden = hidden || hides_wire(candidate, node, strict);
            if (!hidden) {
              best_crossings = crossings;
              best = std::move(candidate);
              run = order;
              improved = true;
            }
            pack(run);
          }
        }
      }
      if (!improved) break;
    }
  }

  // Whether a horizontal stretch of a wire not touching node i runs behind its box, or (`own`)
  // one of i's own wires runs behind another node's box (a moved node takes its wires with it).
  bool hides_wire(const Layout &layout, int i, bool own) const {
    for (size_t e = 0; e < model_.edges.size(); ++e) {
      const ModelEdge &edge = model_.edges[e];
      if (edge.from != i && edge.to != i) {
        if (runs_through(layout.edges[e], layout.nodes[static_cast<size_t>(i)].box, 0)) return true;
        continue;
      }
      if (!own) continue;
      for (size_t j = 0; j < model_.nodes.size(); ++j)
        if (static_cast<int>(j) != edge.from && static_cast<int>(j) != edge.to &&
            runs_through(layout.edges[e], drawn_extent(layout.nodes[j]), kGraze))
          return true;
    }
    return false;
  }

  // ---------------------------------------------------------------- rerouting

  // The column before whose gap wire e steps to its target's height: its target's, unless
  // rerouting moved the step.
  size_t step_column(size_t e) const {
    return static_cast<size_t>(step_column_[e] >= 0 ? step_column_[e]
                                                    : column_[static_cast<size_t>(model_.edges[e].to)]);
  }

  // Rerouting: a wire spanning several columns may step in the gap of any column between, not
  // only in the last one, to its target's height or to a channel beside a box it passes (where a
  // Sugiyama layout would route it through a virtual node a column), then step again before its
  // target. Each such wire, in turn, tries every earlier gap and channel; a try is kept where the
  // drawing crosses fewer wires, counted exactly, and the wire runs behind nothing (runs_behind),
  // in rounds while one is kept, within kRerouteWork. Placement is untouched: only bends move.
  // Preconditions: the layout `best` was drawn by finish() from the current placement.
  void reroute(Layout &best, size_t &best_crossings) {
    size_t tries = 0;
    const size_t limit = kRerouteWork / std::max<size_t>(model_.edges.size(), 1);
    for (bool improved = true; improved && best_crossings > 0 && tries < limit;) {
      improved = false;
      for (size_t e = 0; e < model_.edges.size() && best_crossings > 0 && tries < limit; ++e) {
        const ModelEdge &edge = model_.edges[e];
        if (edge.back || lifted(edge) || far_reader(edge)) continue;
        const int from = column_[static_cast<size_t>(edge.from)], to = column_[static_cast<size_t>(edge.to)];
        const double from_y = best.edges[e].points.front().y, to_y = best.edges[e].points.back().y;
        for (int col = from + 1; col < to && best_crossings > 0 && tries < limit; ++col) {
          // Heights to run at from this gap on: the target's, or a channel just above or below a
          // box of the columns between (where a virtual node would sit), nearest first.
          std::vector<std::pair<double, double>> heights{{0, std::numeric_limits<double>::quiet_NaN()}};
          for (size_t i = 0; i < model_.nodes.size(); ++i) {
            if (column_[i] < col || column_[i] >= to) continue;
            const Box &box = best.nodes[i].box;
            for (double h : {box.y - kWireClearance, box.y + box.h + kWireClearance}) {
              double distance = std::max({0.0, std::min(from_y, to_y) - h, h - std::max(from_y, to_y)});
              if (std::fabs(h - from_y) >= 0.5 && std::fabs(h - to_y) >= 0.5) heights.push_back({distance + 1, h});
            }
          }
          std::sort(heights.begin(), heights.end());
          heights.erase(std::unique(heights.begin(), heights.end()), heights.end());
          if (heights.size() > kChannels) heights.resize(kChannels);
          for (const auto &[distance, h] : heights) {
            if (best_crossings == 0 || tries >= limit) break;
            ++tries;
            const int kept = step_column_[e];
            const double kept_channel = channel_[e];
            step_column_[e] = col;
            channel_[e] = h;
            Layout candidate = finish();
            size_t crossings = count_crossings(model_, candidate);
            if (crossings < best_crossings && !runs_behind(model_, candidate, e, kWireClearance / 2)) {
              best_crossings = crossings;
              best = std::move(candidate);
              improved = true;
            } else {
              step_column_[e] = kept;
              channel_[e] = kept_channel;
            }
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------- x, wires, boxes

  Layout finish();

  const DrawingModel &model_;
  LayoutOptions options_;
  std::vector<Measured> measured_;
  std::vector<std::vector<int>> in_edges_, out_edges_;
  std::vector<int> column_, floor_, lo_, hi_, first_;
  std::vector<std::vector<int>> members_;  // every node inside each cluster
  int columns_ = 1;
  std::vector<double> rel_node_, rel_cluster_, height_;
  std::vector<double> prev_node_, prev_cluster_;  // the previous pass's rel_node_, rel_cluster_
  int pass_ = 0;
  bool by_previous_ = false;
  std::vector<double> first_node_, first_cluster_;  // the first pass's placement
  std::vector<bool> placed_;
  bool params_apart_ = false;  // assign_columns: a fanning value's param readers a column further
  std::vector<int> step_column_;
  std::vector<double> channel_;  // per edge: the height it runs at after its first step (NaN: none)  // per edge: the
                                 // column before whose gap it steps (-1: its target's)
  double root_height_ = 0;
};

Layout Layouter::finish() {
  const size_t n = model_.nodes.size(), c = model_.clusters.size();
  Layout out;
  out.nodes.resize(n);
  out.edges.resize(model_.edges.size());
  out.clusters.resize(c);
  // Absolute heights, top down.
  std::vector<double> cluster_top(c, 0);
  for (size_t k = 0; k < c; ++k) {
    int parent = model_.clusters[k].parent;
    cluster_top[k] = rel_cluster_[k] + (parent < 0 ? 0 : cluster_top[static_cast<size_t>(parent)]);
  }
  std::vector<double> node_top(n);
  for (size_t i = 0; i < n; ++i) {
    int k = model_.nodes[i].cluster;
    node_top[i] = rel_node_[i] + (k < 0 ? 0 : cluster_top[static_cast<size_t>(k)]);
  }
  // Cluster padding: how many cluster sides open before, or close after, each column.
  const double pad = options_.paper ? kPaperClusterPad : kClusterPad;
  std::vector<int> open_depth(c, 1), close_depth(c, 1);
  for (size_t k = c; k-- > 0;) {
    int parent = model_.clusters[k].parent;
    if (parent < 0 || first_[k] < 0) continue;
    size_t p = static_cast<size_t>(parent);
    if (lo_[k] == lo_[p]) open_depth[p] = std::max(open_depth[p], open_depth[k] + 1);
    if (hi_[k] == hi_[p]) close_depth[p] = std::max(close_depth[p], close_depth[k] + 1);
  }
  const size_t columns = static_cast<size_t>(columns_);
  std::vector<double> open_pad(columns + 1, 0), close_pad(columns + 1, 0), width(columns, 0), labels(columns, 0);
  std::vector<int> bends(columns + 1, 0);
  for (size_t k = 0; k < c; ++k) {
    if (first_[k] < 0) continue;
    open_pad[static_cast<size_t>(lo_[k])] = std::max(open_pad[static_cast<size_t>(lo_[k])], pad * open_depth[k]);
    close_pad[static_cast<size_t>(hi_[k])] = std::max(close_pad[static_cast<size_t>(hi_[k])], pad * close_depth[k]);
  }
  for (size_t i = 0; i < n; ++i)
    width[static_cast<size_t>(column_[i])] = std::max(width[static_cast<size_t>(column_[i])], measured_[i].w);
  auto slack = [&](int i) {
    return width[static_cast<size_t>(column_[static_cast<size_t>(i)])] - measured_[static_cast<size_t>(i)].w;
  };
  // Labels: each source port's label once, where the wire starts.
  std::map<std::pair<int, std::string>, bool> labelled;
  std::map<std::pair<int, std::string>, bool> named;
  std::map<int, std::vector<std::string>> names;  // node -> the named values it makes, in order
  for (size_t e = 0; e < model_.edges.size(); ++e) {
    const ModelEdge &edge = model_.edges[e];
    if (edge.back) continue;
    EdgeGeometry &geometry = out.edges[e];
    const ModelNode &from = model_.nodes[static_cast<size_t>(edge.from)];
    if (labelled.emplace(std::make_pair(edge.from, edge.from_port), true).second)
      geometry.label = options_.paper && redundant_param_wire(edge) ? "" : label_text(edge, from, options_);
    if (options_.intermediates && !edge.value.empty() && !from.strip && !from.source &&
        !(from.glyph.bold && from.glyph.border == 3) &&
        named.emplace(std::make_pair(edge.from, edge.value), true).second)
      names[edge.from].push_back(edge.value);
    size_t col = static_cast<size_t>(column_[static_cast<size_t>(edge.from)]);
    double w = geometry.label.empty() ? 0 : text_width(geometry.label, kWireLabelFont);
    // A node narrower than its column starts its labels in the room beside it.
    labels[col] = std::max(labels[col], w + (w > 0 ? 8 : 0) - slack(edge.from));
  }
  for (const auto &[node, list] : names) {
    std::string joined;
    for (const auto &name : list) joined += (joined.empty() ? "" : ", ") + name;
    size_t col = static_cast<size_t>(column_[static_cast<size_t>(node)]);
    labels[col] = std::max(labels[col], text_width(joined, kWireLabelFont) + 8 - slack(node));
  }
  // Port positions need x; bends need only columns and heights.
  auto port_y_abs = [&](int i, const std::string &port) {
    return node_top[static_cast<size_t>(i)] +
           port_y(model_.nodes[static_cast<size_t>(i)], measured_[static_cast<size_t>(i)], port);
  };
  // Tracks: in each gap, a wire that steps further steps further left, so that its vertical
  // segment does not cross the horizontal ones of the shorter steps beside it; downward steps
  // left of upward ones.
  // A rerouted wire through a channel steps twice (entries 2e and 2e + 1), any other once (2e).
  std::vector<int> track(2 * model_.edges.size(), -1);
  std::vector<std::vector<std::pair<double, int>>> stepping(columns + 1);
  auto add_step = [&](size_t col, double from_y, double to_y, size_t entry) {
    double key = to_y > from_y ? 1e9 - to_y : 2e9 + to_y;
    stepping[col].push_back({key, static_cast<int>(entry)});
  };
  for (size_t e = 0; e < model_.edges.size(); ++e) {
    const ModelEdge &edge = model_.edges[e];
    if (edge.back) continue;
    double from_y = port_y_abs(edge.from, edge.from_port), to_y = port_y_abs(edge.to, edge.to_port);
    if (!std::isnan(channel_[e])) {
      add_step(step_column(e), from_y, channel_[e], 2 * e);
      add_step(static_cast<size_t>(column_[static_cast<size_t>(edge.to)]), channel_[e], to_y, 2 * e + 1);
      continue;
    }
    if (std::fabs(from_y - to_y) < 0.5) continue;
    add_step(step_column(e), from_y, to_y, 2 * e);
  }
  for (size_t col = 0; col <= columns; ++col) {
    auto &list = stepping[col];
    std::stable_sort(list.begin(), list.end(), [](const auto &a, const auto &b) { return a.first < b.first; });
    bends[col] = static_cast<int>(list.size());
    int slots = std::min(bends[col], kTracks);
    for (size_t k = 0; k < list.size(); ++k)
      track[static_cast<size_t>(list[k].second)] = slots - 1 - static_cast<int>(k * static_cast<size_t>(slots) / list.size());
  }
  std::vector<double> x(columns + 1, 0);
  double cursor = 12 + open_pad[0];
  for (size_t col = 0; col < columns; ++col) {
    // A gap holds the labels of the wires starting before it (at their sources' heights, on the
    // left) and the vertical steps of the wires entering the next column (on the right).
    if (col > 0)
      cursor += std::max(labels[col - 1], (options_.paper ? 2 : 4) + std::min(bends[col], kTracks) * kTrack) + 3 +
                open_pad[col];
    x[col] = cursor;
    cursor += width[col] + close_pad[col];
  }
  double right = cursor + 12;
  // Nodes.
  for (size_t i = 0; i < n; ++i) {
    const Measured &m = measured_[i];
    NodeGeometry &g = out.nodes[i];
    g.column = column_[i];
    g.box = {x[static_cast<size_t>(column_[i])], node_top[i], m.w, m.h};
    g.glyph = {g.box.x + m.glyph.x, g.box.y + m.glyph.y, m.glyph.w, m.glyph.h};
    for (double y : m.lane_y) g.lane_y.push_back(node_top[i] + y);
  }
  // Clusters.
  for (size_t k = 0; k < c; ++k) {
    if (first_[k] < 0) continue;
    size_t lo = static_cast<size_t>(lo_[k]), hi = static_cast<size_t>(hi_[k]);
    double left = x[lo] - pad * open_depth[k];
    double r = x[hi] + width[hi] + pad * close_depth[k];
    out.clusters[k] = {left, cluster_top[k], r - left, height_[k]};
  }
  // Wires.
  std::map<const Box *, int> lifted_count;
  std::map<int, int> over_count;
  for (size_t e = 0; e < model_.edges.size(); ++e) {
    const ModelEdge &edge = model_.edges[e];
    EdgeGeometry &g = out.edges[e];
    const NodeGeometry &from = out.nodes[static_cast<size_t>(edge.from)], &to = out.nodes[static_cast<size_t>(edge.to)];
    Point a{from.box.x + from.box.w, port_y_abs(edge.from, edge.from_port)};
    Point b{to.box.x, port_y_abs(edge.to, edge.to_port)};
    if (edge.back) {
      int k = model_.nodes[static_cast<size_t>(edge.from)].cluster;
      double bottom = k >= 0 ? out.clusters[static_cast<size_t>(k)].y + out.clusters[static_cast<size_t>(k)].h - 7
                             : std::max(from.box.y + from.box.h, to.box.y + to.box.h) + 10;
      g.points = {a, {a.x + 5, a.y}, {a.x + 5, bottom}, {b.x - 5, bottom}, {b.x - 5, b.y}, b};
      g.label = edge.text;
      g.label_at = {(a.x + b.x) / 2 - text_width(edge.text, kWireLabelFont) / 2, bottom - 4};
      continue;
    }
    g.label_at = {a.x + 4, a.y - 4};
    if (lifted(edge) && model_.nodes[static_cast<size_t>(edge.from)].cluster >= 0) {
      const Box &box = out.clusters[static_cast<size_t>(model_.nodes[static_cast<size_t>(edge.from)].cluster)];
      double bottom = box.y + box.h - 5 - 4 * (lifted_count[&box]++ % 2);
      double left = x[static_cast<size_t>(from.column)] + width[static_cast<size_t>(from.column)] + 2;
      g.points = {a, {left, a.y}, {left, bottom}, {b.x - 2, bottom}, {b.x - 2, b.y}, b};
      continue;
    }
    // The names of the values a node makes go once above its topmost wire.
    auto named_here = names.find(edge.from);
    if (named_here != names.end() && !named_here->second.empty()) {
      double top = std::numeric_limits<double>::infinity();
      for (int f : out_edges_[static_cast<size_t>(edge.from)])
        top = std::min(top, port_y_abs(edge.from, model_.edges[static_cast<size_t>(f)].from_port));
      if (a.y <= top) {
        for (const auto &name : named_here->second) g.value_label += (g.value_label.empty() ? "" : ", ") + name;
        named_here->second.clear();
      }
    }
    auto bend_at = [&](size_t col, int slot) {
      return std::max(x[col] - open_pad[col] - 6 - kTrack * std::max(slot, 0), a.x + 2);
    };
    double bend = bend_at(step_column(e), track[2 * e]);
    if (!std::isnan(channel_[e])) {
      double last = bend_at(static_cast<size_t>(column_[static_cast<size_t>(edge.to)]), track[2 * e + 1]);
      g.points = {a, {bend, a.y}, {bend, channel_[e]}, {last, channel_[e]}, {last, b.y}, b};
      continue;
    }
    size_t from_col = static_cast<size_t>(column_[static_cast<size_t>(edge.from)]);
    if (far_reader(edge) && from_col + 1 < columns) {
      // A param read again far from where it sits (a tied embedding): nothing kept its height
      // free, so the wire goes over the top of its box rather than through everything between.
      int k = model_.nodes[static_cast<size_t>(edge.from)].cluster;
      double channel = (k < 0 ? top_pad(-1) : out.clusters[static_cast<size_t>(k)].y + kClusterTop) - 6 -
                       3 * (over_count[k]++ % 4);
      double up = x[from_col + 1] - open_pad[from_col + 1] - 3;
      g.points = {a, {up, a.y}, {up, channel}, {bend, channel}, {bend, b.y}, b};
      continue;
    }
    if (track[2 * e] < 0) {
      g.points = {a, b};
      continue;
    }
    g.points = {a, {bend, a.y}, {bend, b.y}, b};
  }
  // The drawing's own extent; the legend and the title's room are added by frame_drawing.
  out.width = right;
  out.height = root_height_;
  return out;
}

}  // namespace

Layout layout_drawing(const DrawingModel &model, const LayoutOptions &options) {
  Layouter layouter(model, options);
  Layout layout = layouter.run();
  if (options.vertical) turn_top_to_bottom(layout);
  frame_drawing(layout, model, options);
  return layout;
}

}  // namespace ncd::render
