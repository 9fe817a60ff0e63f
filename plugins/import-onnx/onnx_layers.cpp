// Repeated layers (docs/IMPORT.md, "Layers"): torch names every node by its
// module path, so the statements of `self.h = nn.ModuleList([...])` come as
// runs `/h.0/...`, `/h.1/...`, ... A run of N ≥ 2 such layers becomes one
// diagram called in `repeat`, when the layers are one computation with other
// weights: each reads one carried value (the previous layer's result, or what
// comes before the first) and values computed before them (a mask, RoPE
// tables: the invariants), hands one value on, owns its params, and its
// statements correspond one to one with the first layer's (same ops, same
// expressions, dimensions of the same sizes). Corresponding dimensions are
// then united into one axis, so that the printer names every layer alike; it
// prints each layer and folds them only when the texts are equal.
// Preconditions: build_graph succeeded; roles (Statement or Inline) are final.
#include <algorithm>
#include <functional>
#include <set>

#include "onnx_model.h"

namespace ncd::onnx_import {

bool list_item(const std::string &segment) {
  const size_t dot = segment.rfind('.');
  return dot != std::string::npos && dot > 0 && dot + 1 < segment.size() && dot + 7 > segment.size() &&
         segment.find_last_not_of("0123456789") == dot;
}

std::pair<std::string, int> layer_key(const std::string &node) {
  size_t begin = node.empty() || node[0] != '/' ? 0 : 1;
  while (begin < node.size()) {
    size_t end = node.find('/', begin);
    if (end == std::string::npos) break;  // the last segment is the op, not a module
    const std::string segment = node.substr(begin, end - begin);
    if (list_item(segment)) {
      const size_t dot = segment.rfind('.');
      // "/h/h.0/" (nn.Sequential repeats the list's name): the prefix is the path to the list.
      std::string path = node.substr(1, begin > 1 ? begin - 2 : 0);
      const std::string list = segment.substr(0, dot);
      if (path.size() < list.size() || path.compare(path.size() - list.size(), list.size(), list) != 0 ||
          (path.size() > list.size() && path[path.size() - list.size() - 1] != '/'))
        path += (path.empty() ? "" : "/") + list;
      return {path, std::stoi(segment.substr(dot + 1))};
    }
    begin = end + 1;
  }
  return {"", -1};
}

namespace {

class Finder {
 public:
  Finder(Graph &g, const std::vector<int> &statements) : g_(g), statements_(statements) {
    for (int id : statements) {
      key_[id] = layer_key(at(id).node);
      leaves(id, reads_[id]);
      for (int w : reads_[id]) readers_[w].push_back(id);
    }
  }

  std::vector<Layers> run() {
    std::vector<Layers> out;
    std::set<std::string> tried;
    for (int id : statements_) {
      const std::string &prefix = key_[id].first;
      if (prefix.empty() || !tried.insert(prefix).second) continue;
      Layers layers;
      if (collect(prefix, layers) && flows(layers) && correspond(layers)) out.push_back(std::move(layers));
    }
    return out;
  }

 private:
  Graph &g_;
  const std::vector<int> &statements_;
  std::map<int, std::pair<std::string, int>> key_;  // statement -> its module list and item
  std::map<int, std::vector<int>> reads_;    // statement -> the inputs, params and statements its expression reads
  std::map<int, std::vector<int>> readers_;  // value -> the statements that read it

  Value &at(int id) { return g_.values[static_cast<size_t>(id)]; }

  void leaves(int id, std::vector<int> &out) {
    for (int u : at(id).uses) {
      const int w = g_.uses[static_cast<size_t>(u)].value;
      const Role role = at(w).role;
      if (role == Role::Inline) leaves(w, out);
      else if ((role == Role::Input || role == Role::Param || role == Role::Statement) &&
               std::find(out.begin(), out.end(), w) == out.end())
        out.push_back(w);
    }
  }

  // The statements of layers 0, 1, ... of `prefix`: one contiguous run each, in order, nothing between.
  bool collect(const std::string &prefix, Layers &layers) {
    size_t first = statements_.size(), last = 0;
    for (size_t k = 0; k < statements_.size(); ++k)
      if (key_[statements_[k]].first == prefix) first = std::min(first, k), last = k;
    int expected = 0;
    for (size_t k = first; k <= last && k < statements_.size(); ++k) {
      const auto &[p, index] = key_[statements_[k]];
      if (p != prefix) return false;
      if (layers.regions.empty() || index != expected - 1) {
        if (index != expected) return false;
        layers.regions.emplace_back();
        ++expected;
      }
      layers.regions.back().push_back(statements_[k]);
    }
    layers.prefix = prefix;
    return layers.regions.size() >= 2;
  }

  // One value carried from layer to layer, the same invariants read by each, params of their own.
  bool flows(Layers &layers) {
    const size_t n = layers.regions.size();
    std::map<int, size_t> region_of;
    for (size_t i = 0; i < n; ++i)
      for (int id : layers.regions[i]) region_of[id] = i;
    auto in_region = [&](int id, size_t i) {
      auto it = region_of.find(id);
      return it != region_of.end() && it->second == i;
    };
    std::vector<std::vector<int>> external(n);
    layers.params.assign(n, {});
    for (size_t i = 0; i < n; ++i) {
      // What the layer hands on: read by a statement outside it, or an output of the graph.
      std::vector<int> handed;
      for (int id : layers.regions[i]) {
        bool out = std::find(g_.outputs.begin(), g_.outputs.end(), id) != g_.outputs.end();
        for (int reader : readers_[id]) out = out || !in_region(reader, i);
        if (out) handed.push_back(id);
      }
      if (handed.size() != 1) return false;
      layers.outputs.push_back(handed[0]);
      for (int id : layers.regions[i])
        for (int w : reads_[id]) {
          if (in_region(w, i)) continue;
          if (at(w).role == Role::Param) {
            for (int reader : readers_[w])
              if (!in_region(reader, i)) return false;  // shared with another layer or the rest
            if (std::find(layers.params[i].begin(), layers.params[i].end(), w) == layers.params[i].end())
              layers.params[i].push_back(w);
          } else if (std::find(external[i].begin(), external[i].end(), w) == external[i].end()) {
            external[i].push_back(w);
          }
        }
    }
    // Layer i > 0 reads layer i - 1's result and the invariants; layer 0 reads the carried value instead.
    for (size_t i = 0; i + 1 < n; ++i) {
      const int handed = layers.outputs[i];
      if (std::find(g_.outputs.begin(), g_.outputs.end(), handed) != g_.outputs.end()) return false;
      for (int reader : readers_[handed])
        if (!in_region(reader, i) && !in_region(reader, i + 1)) return false;
      if (!std::count(external[i + 1].begin(), external[i + 1].end(), handed)) return false;
    }
    std::vector<int> invariants;
    for (int w : external[n - 1])
      if (w != layers.outputs[n - 2]) invariants.push_back(w);
    for (size_t i = 1; i < n; ++i) {
      std::vector<int> mine;
      for (int w : external[i])
        if (w != layers.outputs[i - 1]) mine.push_back(w);
      if (std::set<int>(mine.begin(), mine.end()) != std::set<int>(invariants.begin(), invariants.end())) return false;
    }
    std::vector<int> first;
    for (int w : external[0])
      if (!std::count(invariants.begin(), invariants.end(), w)) first.push_back(w);
    if (first.size() != 1) return false;
    layers.carried = first[0];
    // Invariants in the order layer 0 reads them.
    for (int w : external[0])
      if (w != layers.carried) layers.invariants.push_back(w);
    // The carried value keeps its dimensions and dtype from layer to layer.
    for (int handed : layers.outputs) {
      const Value &a = at(layers.carried), &b = at(handed);
      if (a.dims.size() != b.dims.size() || a.dtype != b.dtype) return false;
      for (size_t k = 0; k < a.dims.size(); ++k)
        if ((a.dims[k].axis < 0) != (b.dims[k].axis < 0) ||
            (a.dims[k].axis >= 0 && g_.find(a.dims[k].axis) != g_.find(b.dims[k].axis)))
          return false;
    }
    return true;
  }

  // Layer i's statements correspond to layer 0's: the node pairs to unite, or false.
  bool correspond(const Layers &layers) {
    std::vector<std::pair<int, int>> pairs;
    for (size_t i = 1; i < layers.regions.size(); ++i) {
      if (layers.regions[i].size() != layers.regions[0].size() || layers.params[i].size() != layers.params[0].size())
        return false;
      std::map<int, int> match;  // layer 0's value -> layer i's
      match[layers.carried] = layers.outputs[i - 1];
      for (int w : layers.invariants) match[w] = w;
      for (size_t k = 0; k < layers.regions[0].size(); ++k) match[layers.regions[0][k]] = layers.regions[i][k];
      std::function<bool(int, int)> same;
      // Two values computed alike: fields, dimensions, expressions up to numbering, what they read.
      auto body = [&](int a, int b) -> bool {
        const Value &x = at(a), &y = at(b);
        if (x.role != y.role || x.op != y.op || x.dtype != y.dtype || x.dims.size() != y.dims.size() ||
            x.uses.size() != y.uses.size() || x.edges.size() != y.edges.size() ||
            x.regroups.size() != y.regroups.size() || x.literal != y.literal || x.data != y.data ||
            strip(x.expr) != strip(y.expr) || !dims(x.dims, y.dims, pairs))
          return false;
        for (size_t k = 0; k < x.edges.size(); ++k)
          pairs.emplace_back(x.edges[k].first, y.edges[k].first), pairs.emplace_back(x.edges[k].second, y.edges[k].second);
        for (size_t k = 0; k < x.regroups.size(); ++k) {
          pairs.emplace_back(x.regroups[k].coarse, y.regroups[k].coarse);
          if (!dims(x.regroups[k].fine, y.regroups[k].fine, pairs)) return false;
        }
        for (size_t k = 0; k < x.uses.size(); ++k) {
          const Use &p = g_.uses[static_cast<size_t>(x.uses[k])], &q = g_.uses[static_cast<size_t>(y.uses[k])];
          if (!dims(p.dims, q.dims, pairs) || !same(p.value, q.value)) return false;
        }
        return true;
      };
      same = [&](int a, int b) -> bool {
        auto m = match.find(a);
        if (m != match.end()) return m->second == b;
        const Role role = at(a).role;
        if (role == Role::Statement || role == Role::Input) return false;  // neither the layer's, carried nor invariant
        match[a] = b;
        return body(a, b);
      };
      for (size_t k = 0; k < layers.regions[0].size(); ++k)
        if (!body(layers.regions[0][k], layers.regions[i][k])) return false;
      for (size_t k = 0; k < layers.params[0].size(); ++k)
        if (!match.count(layers.params[0][k]) || match.at(layers.params[0][k]) != layers.params[i][k]) return false;
    }
    for (const auto &[a, b] : pairs)
      if (a >= 0 && b >= 0 && g_.size_of(a) != g_.size_of(b)) return false;
    for (const auto &[a, b] : pairs)
      if (a >= 0 && b >= 0 && !g_.unite(a, b)) return false;
    return true;
  }

  bool dims(const std::vector<Dim> &x, const std::vector<Dim> &y, std::vector<std::pair<int, int>> &pairs) {
    if (x.size() != y.size()) return false;
    for (size_t k = 0; k < x.size(); ++k) {
      if ((x[k].axis < 0) != (y[k].axis < 0) || x[k].at != y[k].at || x[k].offset != y[k].offset ||
          x[k].terms.size() != y[k].terms.size())
        return false;
      if (x[k].axis >= 0) pairs.emplace_back(x[k].axis, y[k].axis);
      for (size_t t = 0; t < x[k].terms.size(); ++t) {
        if (x[k].terms[t].first != y[k].terms[t].first) return false;
        pairs.emplace_back(x[k].terms[t].second, y[k].terms[t].second);
      }
    }
    return true;
  }

  // An expression with the numbers of its uses and nodes left out ("{u:}", "{a:}").
  static std::string strip(const std::string &expr) {
    std::string out;
    for (size_t i = 0; i < expr.size(); ++i) {
      out += expr[i];
      if ((expr.compare(i, 3, "{u:") == 0 || expr.compare(i, 3, "{a:") == 0)) {
        out += expr.substr(i + 1, 2);
        i = expr.find('}', i) - 1;
      }
    }
    return out;
  }
};

}  // namespace

std::vector<Layers> find_layers(Graph &g, const std::vector<int> &statements) { return Finder(g, statements).run(); }

}  // namespace ncd::onnx_import
