// Exact wire crossings of a laid-out drawing (see crossings.h).
//
// ncd's wires are orthogonal polylines, so two wires properly cross only where a
// horizontal segment of one passes strictly through a vertical segment of the
// other. A sweep over x counts every such pair with a Fenwick tree over the
// horizontal segments' heights; the pairs between wires sharing a node, which
// the count must leave out, are then found by direct checks and subtracted.
// runs_through, count_hidden and runs_behind test the same horizontal segments against boxes.
// Preconditions: layout.edges[e] holds the polyline of model.edges[e].
#include "crossings.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ncd::render {
namespace {

struct Segment {
  double fixed, lo, hi;  // horizontal: y, x range; vertical: x, y range
  bool horizontal;
};

double round2(double v) { return std::round(v * 100) / 100; }

std::vector<Segment> segments_of(const EdgeGeometry &edge) {
  std::vector<Segment> out;
  for (size_t k = 1; k < edge.points.size(); ++k) {
    Point a{round2(edge.points[k - 1].x), round2(edge.points[k - 1].y)};
    Point b{round2(edge.points[k].x), round2(edge.points[k].y)};
    if (a.y == b.y && a.x != b.x)
      out.push_back({a.y, std::min(a.x, b.x), std::max(a.x, b.x), true});
    else if (a.x == b.x && a.y != b.y)
      out.push_back({a.x, std::min(a.y, b.y), std::max(a.y, b.y), false});
  }
  return out;
}

bool cross(const Segment &h, const Segment &v) {
  return h.lo < v.fixed && v.fixed < h.hi && v.lo < h.fixed && h.fixed < v.hi;
}

size_t count_between(const std::vector<Segment> &a, const std::vector<Segment> &b) {
  size_t n = 0;
  for (const auto &s : a)
    for (const auto &t : b)
      if (s.horizontal != t.horizontal) n += s.horizontal ? cross(s, t) : cross(t, s);
  return n;
}

}  // namespace

size_t count_crossings(const DrawingModel &model, const Layout &layout) {
  const size_t edges = model.edges.size();
  std::vector<std::vector<Segment>> segments(edges);
  std::vector<double> heights;
  struct Event {
    double x;
    int kind;  // 0: a horizontal segment ends, 1: a vertical one is queried, 2: a horizontal one starts
    double a, b;
  };
  std::vector<Event> events;
  for (size_t e = 0; e < edges; ++e) {
    segments[e] = segments_of(layout.edges[e]);
    for (const auto &s : segments[e]) {
      if (s.horizontal) {
        heights.push_back(s.fixed);
        events.push_back({s.lo, 2, s.fixed, 0});
        events.push_back({s.hi, 0, s.fixed, 0});
      } else {
        events.push_back({s.fixed, 1, s.lo, s.hi});
      }
    }
  }
  std::sort(heights.begin(), heights.end());
  heights.erase(std::unique(heights.begin(), heights.end()), heights.end());
  std::sort(events.begin(), events.end(), [](const Event &p, const Event &q) {
    if (p.x != q.x) return p.x < q.x;
    if (p.kind != q.kind) return p.kind < q.kind;
    return p.a != q.a ? p.a < q.a : p.b < q.b;
  });
  std::vector<long long> tree(heights.size() + 1, 0);
  auto index_of = [&](double y) {
    return static_cast<size_t>(std::lower_bound(heights.begin(), heights.end(), y) - heights.begin());
  };
  auto add = [&](size_t i, long long d) {
    for (++i; i < tree.size(); i += i & (~i + 1)) tree[i] += d;
  };
  auto prefix = [&](size_t i) {  // sum over indices < i
    long long s = 0;
    for (; i > 0; i -= i & (~i + 1)) s += tree[i];
    return s;
  };
  long long total = 0;
  for (const auto &event : events) {
    if (event.kind != 1) {
      add(index_of(event.a), event.kind == 2 ? 1 : -1);
      continue;
    }
    // Heights strictly between the vertical segment's ends.
    size_t from = static_cast<size_t>(std::upper_bound(heights.begin(), heights.end(), event.a) - heights.begin());
    size_t to = index_of(event.b);
    if (to > from) total += prefix(to) - prefix(from);
  }
  // Pairs of wires sharing a node do not count: subtract their crossings.
  std::vector<std::vector<int>> incident(model.nodes.size());
  for (size_t e = 0; e < edges; ++e) {
    incident[static_cast<size_t>(model.edges[e].from)].push_back(static_cast<int>(e));
    if (model.edges[e].to != model.edges[e].from)
      incident[static_cast<size_t>(model.edges[e].to)].push_back(static_cast<int>(e));
  }
  std::vector<int> partners;
  for (size_t e = 0; e < edges; ++e) {
    total -= static_cast<long long>(count_between(segments[e], segments[e]) / 2);  // a wire across itself
    partners.clear();
    for (int node : {model.edges[e].from, model.edges[e].to})
      for (int f : incident[static_cast<size_t>(node)])
        if (static_cast<size_t>(f) > e) partners.push_back(f);
    std::sort(partners.begin(), partners.end());
    partners.erase(std::unique(partners.begin(), partners.end()), partners.end());
    for (int f : partners)
      total -= static_cast<long long>(count_between(segments[e], segments[static_cast<size_t>(f)]));
  }
  return static_cast<size_t>(std::max(total, 0LL));
}

bool runs_through(const EdgeGeometry &wire, const Box &box, double margin) {
  const auto &points = wire.points;
  for (size_t k = 1; k < points.size(); ++k) {
    if (std::fabs(points[k].y - points[k - 1].y) > 0.01) continue;
    double y = points[k].y, x0 = std::min(points[k].x, points[k - 1].x), x1 = std::max(points[k].x, points[k - 1].x);
    if (y > box.y - margin && y < box.y + box.h + margin && x0 < box.x + box.w && x1 > box.x) return true;
  }
  return false;
}

Box drawn_extent(const NodeGeometry &node) {
  double top = std::numeric_limits<double>::infinity(), bottom = -top;
  for (double y : node.lane_y) top = std::min(top, y), bottom = std::max(bottom, y);
  if (node.glyph.h > 0) top = std::min(top, node.glyph.y), bottom = std::max(bottom, node.glyph.y + node.glyph.h);
  if (top > bottom) return node.box;
  return {node.box.x, top, node.box.w, bottom - top};
}

size_t count_hidden(const DrawingModel &model, const Layout &layout) {
  std::vector<Box> drawn(model.nodes.size());
  for (size_t j = 0; j < drawn.size(); ++j) drawn[j] = drawn_extent(layout.nodes[j]);
  size_t hidden = 0;
  for (size_t e = 0; e < model.edges.size(); ++e)
    for (size_t j = 0; j < model.nodes.size(); ++j)
      hidden += static_cast<int>(j) != model.edges[e].from && static_cast<int>(j) != model.edges[e].to &&
                runs_through(layout.edges[e], drawn[j], kGraze);
  return hidden;
}

bool runs_behind(const DrawingModel &model, const Layout &layout, size_t e, double clearance) {
  const ModelEdge &edge = model.edges[e];
  const EdgeGeometry &wire = layout.edges[e];
  for (size_t i = 0; i < model.nodes.size(); ++i)
    if (static_cast<int>(i) != edge.from && static_cast<int>(i) != edge.to &&
        runs_through(wire, layout.nodes[i].box, clearance))
      return true;
  auto inside = [&](int node, size_t cluster) {
    for (int k = model.nodes[static_cast<size_t>(node)].cluster; k >= 0;
         k = model.clusters[static_cast<size_t>(k)].parent)
      if (static_cast<size_t>(k) == cluster) return true;
    return false;
  };
  for (size_t k = 0; k < model.clusters.size(); ++k)
    if (layout.clusters[k].w > 0 && !inside(edge.from, k) && !inside(edge.to, k) &&
        runs_through(wire, layout.clusters[k], 0))
      return true;
  for (size_t f = 0; f < model.edges.size(); ++f) {
    const ModelEdge &near = model.edges[f];
    if (f == e || near.from == edge.from || near.to == edge.to || near.from == edge.to || near.to == edge.from)
      continue;
    const auto &other = layout.edges[f].points;
    for (size_t k = 1; k < other.size(); ++k)
      if (std::fabs(other[k].y - other[k - 1].y) < 0.01 &&
          runs_through(
              wire, {std::min(other[k].x, other[k - 1].x), other[k].y, std::fabs(other[k].x - other[k - 1].x), 0}, 2))
        return true;
  }
  return false;
}

}  // namespace ncd::render
