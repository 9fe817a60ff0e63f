// Writing the importer's graph as an ncd program (docs/IMPORT.md): which
// values are statements (used more than once, read by a contraction, an
// output) and which are inlined into their one user; names for axes (a
// dim_param, else the layer that makes the features, else the graph input
// and dimension, else the size) and for values (the layer, else the op);
// then the text. Each statement is named on its own: the links its ops made
// decide which dimensions are one axis in it, a class met twice gets a
// second name (`axis seq_2 = seq`), a class that is a product is written as
// its parts (read as a split of an input or a param, merged on the left of
// an output). Preconditions: build_graph succeeded on `graph`.
#include <algorithm>
#include <cctype>
#include <functional>
#include <set>

#include "ncd/ops.h"
#include "onnx_model.h"

namespace ncd::onnx_import {
namespace {

std::string identifier(const std::string &text) {
  std::string out;
  for (char c : text) out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  while (out.find("__") != std::string::npos) out.replace(out.find("__"), 2, "_");
  while (!out.empty() && out.front() == '_') out.erase(out.begin());
  while (!out.empty() && out.back() == '_') out.pop_back();
  if (out.empty() || std::isdigit(static_cast<unsigned char>(out[0]))) out = "v" + out;
  return out;
}

bool valid_identifier(const std::string &text) {
  if (text.empty() || std::isdigit(static_cast<unsigned char>(text[0]))) return false;
  for (char c : text)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  return true;
}

// Axis and diagram names are unique in the file; a value's name is unique in its diagram and never
// an axis's or a diagram's (an index that names both would be ambiguous).
class Names {
 public:
  Names() {
    for (const char *word : {"import", "axis", "default", "dtype", "diagram", "param", "repeat", "schedule", "for",
                             "group", "stream", "level", "by", "inf", "concat", "split"})
      global_.insert(word);
    for (const ops::Info &row : ops::kTable) global_.insert(std::string(row.name));
    for (const std::string &d : ir::dtype_names()) global_.insert(d);
  }
  std::string take(const std::string &base) {
    std::string name = base;
    for (int i = 2; global_.count(name) || values_.count(name); ++i) name = base + "_" + std::to_string(i);
    global_.insert(name);
    return name;
  }
  std::string value(const std::string &base) {
    std::string name = base;
    for (int i = 2; global_.count(name) || scope_->count(name); ++i) name = base + "_" + std::to_string(i);
    scope_->insert(name);
    values_.insert(name);
    return name;
  }
  // Values named from now on belong to `scope` (a diagram's names), or to the main diagram's.
  void scope(std::set<std::string> *scope) { scope_ = scope ? scope : &main_; }
  bool has(const std::string &name) const { return global_.count(name) > 0 || values_.count(name) > 0; }

 private:
  std::set<std::string> global_, values_, main_;
  std::set<std::string> *scope_ = &main_;
};

std::string capitalized(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}


// One atom of a dimension as a statement sees it: a local class, or a constant position.
struct Atom {
  int cls = -1;
  int64_t at = -1;
};

class Printer {
 public:
  Printer(Graph &g, Names &names) : g_(g), names_(names) {}

  // The name of a class in the program (its first, lazily taken) and its k-th second name.
  std::string primary(int node) {
    const int c = g_.find(node);
    auto it = primary_.find(c);
    if (it != primary_.end()) return it->second;
    std::string base = g_.axis_hint[static_cast<size_t>(c)];
    base = base.empty() ? "d" + std::to_string(g_.axis_size[static_cast<size_t>(c)]) : identifier(base);
    for (char &ch : base) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    const std::string name = names_.take(base);
    primary_[c] = name;
    axis_order_.push_back(name);
    class_of_[name] = c;
    return name;
  }
  std::string alias(int node, size_t k) {
    const int c = g_.find(node);
    if (k == 0) return primary(c);
    std::vector<std::string> &list = aliases_[c];
    while (list.size() < k) {
      const std::string name = names_.take(primary(c) + "_" + std::to_string(list.size() + 2));
      list.push_back(name);
      axis_order_.push_back(name);
      class_of_[name] = c;
      alias_of_[name] = primary(c);
    }
    return list[k - 1];
  }

  // Declared names of a value written with ONNX's dims (inputs, params, outputs): a class met
  // again in the same value takes its next name.
  std::vector<std::vector<std::string>> coarse(const Value &v) {
    std::vector<std::vector<std::string>> out;
    std::map<int, size_t> seen;
    for (const Dim &d : v.dims) {
      if (d.axis < 0) {
        out.emplace_back();
        continue;
      }
      out.push_back({alias(d.axis, seen[g_.find(d.axis)]++)});
    }
    return out;
  }

  bool declared_coarse(int id) const {
    const Value &v = g_.values[static_cast<size_t>(id)];
    return v.role == Role::Input || v.role == Role::Param || v.merged || boundary_.count(id) ||
           std::find(g_.outputs.begin(), g_.outputs.end(), id) != g_.outputs.end();
  }

  // The statement computing value `root`: "Name[axes] = expression". Fills declared_[root].
  std::string statement(int root, std::string &error) {
    local_.clear();
    expansion_.clear();
    taken_.clear();
    cls_name_.clear();
    error_.clear();
    tree_.clear();
    collect(root);
    for (int id : tree_) {
      const Value &v = at(id);
      for (const auto &[a, b] : v.edges) unite(a, b);
      for (int u : v.uses) {
        const Use &use = g_.uses[static_cast<size_t>(u)];
        if (!in_tree(use.value)) continue;
        const Value &used = at(use.value);
        for (size_t i = 0; i < use.dims.size() && i < used.dims.size(); ++i)
          if (use.dims[i].axis >= 0 && used.dims[i].axis >= 0) unite(use.dims[i].axis, used.dims[i].axis);
      }
    }
    for (int id : tree_)
      for (const Regroup &r : at(id).regroups) expand(r.coarse, r.fine);
    const Value &R = at(root);
    const bool output = declared_coarse(root);
    // The left side is named first; an output keeps its declared names.
    std::vector<std::vector<std::string>> wanted = output ? coarse(R) : std::vector<std::vector<std::string>>();
    for (size_t p = 0; p < R.dims.size(); ++p) {
      if (R.dims[p].axis < 0) continue;
      std::vector<Atom> as = atoms(R.dims[p].axis);
      if (output && as.size() == 1) name(as[0].cls, wanted[p][0]);
    }
    gather_hints(root);
    std::vector<std::vector<std::string>> decl;
    std::string left;
    for (size_t p = 0; p < R.dims.size(); ++p) {
      if (R.dims[p].axis < 0) {
        decl.emplace_back();
        continue;
      }
      std::vector<std::string> parts;
      for (const Atom &a : atoms(R.dims[p].axis)) parts.push_back(a.at >= 0 ? std::to_string(a.at) : name(a.cls));
      std::string item;
      for (const std::string &s : parts) item += (item.empty() ? "" : ", ") + s;
      if (output && parts.size() > 1) item = "(" + item + ")";
      left += (left.empty() ? "" : ", ") + item;
      decl.push_back(output ? wanted[p] : parts);
    }
    const std::string right = expand_expr(R.expr);
    declared_[root] = decl;
    error = error_;
    return R.name + (left.empty() ? "" : "[" + left + "]") + typed(R) + " = " + right;
  }

  void declare(int id, std::vector<std::vector<std::string>> names) { declared_[id] = std::move(names); }
  // Values declared like inputs and outputs in the diagram being printed: a layer's inputs and
  // output, and in the caller the values passed to and from the layers.
  void set_boundary(std::set<int> ids) { boundary_ = std::move(ids); }
  // "[a, b]" of a declaration (reference_of without the name).
  std::string brackets(int id) {
    const std::string r = reference_of(id);
    const size_t open = r.find('[');
    return open == std::string::npos ? "" : r.substr(open);
  }
  const std::vector<std::string> &axis_order() const { return axis_order_; }
  int class_of(const std::string &name) const { return class_of_.at(name); }
  const std::map<std::string, std::string> &aliases() const { return alias_of_; }
  static std::string typed(const Value &v) {
    return v.dtype == ir::DType::F32 ? std::string() : ": " + std::string(ir::dtype_name(v.dtype));
  }
  std::string reference_of(int id) {  // a declared value with its declared names (signatures, params)
    const Value &v = at(id);
    std::string s;
    for (const auto &names : declared_.at(id)) {
      if (names.empty()) continue;
      std::string item;
      for (const std::string &n : names) item += (item.empty() ? "" : ", ") + n;
      s += (s.empty() ? "" : ", ") + item;
    }
    return s.empty() ? v.name : v.name + "[" + s + "]";
  }

 private:
  Graph &g_;
  Names &names_;
  std::map<int, std::string> primary_;
  std::map<int, std::vector<std::string>> aliases_;
  std::map<std::string, int> class_of_;
  std::map<std::string, std::string> alias_of_;
  std::vector<std::string> axis_order_;
  std::map<int, std::vector<std::vector<std::string>>> declared_;
  std::set<int> boundary_;
  // Per statement:
  std::map<int, int> local_;                    // union-find over nodes
  std::map<int, std::vector<Dim>> expansion_;   // local class -> its parts
  std::map<int, std::string> cls_name_;         // local class -> name
  std::map<int, std::vector<std::string>> hints_;  // local class -> names its readers were declared with
  std::set<std::string> taken_;
  std::vector<int> tree_;
  std::string error_;

  Value &at(int id) { return g_.values[static_cast<size_t>(id)]; }
  bool in_tree(int id) const { return std::find(tree_.begin(), tree_.end(), id) != tree_.end(); }
  void collect(int id) {
    if (in_tree(id)) return;
    tree_.push_back(id);
    for (int u : at(id).uses) {
      const int used = g_.uses[static_cast<size_t>(u)].value;
      if (at(used).role == Role::Inline) collect(used);
    }
  }
  int find(int a) {
    auto it = local_.find(a);
    if (it == local_.end()) {
      local_[a] = a;
      return a;
    }
    if (it->second == a) return a;
    return it->second = find(it->second);
  }
  void unite(int a, int b) {
    a = find(a), b = find(b);
    if (a != b) local_[b] = a;
  }
  void expand(int coarse, const std::vector<Dim> &fine) {
    const int c = find(coarse);
    auto it = expansion_.find(c);
    if (it == expansion_.end()) {
      expansion_[c] = fine;
      return;
    }
    if (it->second.size() == fine.size())
      for (size_t i = 0; i < fine.size(); ++i) unite(it->second[i].axis, fine[i].axis);
  }
  // A local class written as its parts: from the statement's reshapes, else from the class's factors.
  std::vector<Atom> atoms(int node, int depth = 0) {
    const int c = find(node);
    auto it = expansion_.find(c);
    if (it == expansion_.end() && g_.factors.count(g_.find(node)) && depth < 64) {
      std::vector<Dim> parts;
      for (int f : g_.factors.at(g_.find(node))) {
        const int fresh = g_.new_axis(g_.size_of(f));
        g_.unite(f, fresh);  // f keeps its root: names are kept by root
        parts.push_back(make_dim(fresh, g_.size_of(f), -1));
      }
      expansion_[c] = parts;
      it = expansion_.find(c);
    }
    if (it == expansion_.end() || depth >= 64) return {Atom{c, -1}};
    std::vector<Atom> out;
    const std::vector<Dim> parts = it->second;
    for (const Dim &d : parts) {
      if (d.at >= 0) {
        out.push_back(Atom{-1, d.at});
        continue;
      }
      for (const Atom &a : atoms(d.axis, depth + 1)) out.push_back(a);
    }
    return out;
  }
  // Names the readers' declarations suggest for each local class, in the order they are read.
  void gather_hints(int id) {
    hints_.clear();
    std::function<void(int)> walk = [&](int v) {
      for (int u : at(v).uses) {
        const Use &use = g_.uses[static_cast<size_t>(u)];
        if (at(use.value).role == Role::Inline) {
          walk(use.value);
          continue;
        }
        auto decl = declared_.find(use.value);
        if (decl == declared_.end()) continue;
        for (size_t p = 0; p < use.dims.size() && p < decl->second.size(); ++p) {
          if (use.dims[p].axis < 0 || use.dims[p].at >= 0) continue;
          std::vector<Atom> as = atoms(use.dims[p].axis);
          if (as.size() != decl->second[p].size()) continue;
          for (size_t k = 0; k < as.size(); ++k)
            if (as[k].at < 0) hints_[as[k].cls].push_back(decl->second[p][k]);
        }
      }
    };
    walk(id);
  }
  // The name of a local class in this statement: a reader's declared name, else the class's
  // name, else its next second name, whichever no other class of the statement has.
  std::string name(int cls, const std::string &want = "") {
    cls = find(cls);
    auto it = cls_name_.find(cls);
    if (it != cls_name_.end()) return it->second;
    std::string chosen;
    std::vector<std::string> candidates;
    if (!want.empty()) candidates.push_back(want);
    for (const std::string &h : hints_[cls]) candidates.push_back(h);
    for (const std::string &c : candidates)
      if (!taken_.count(c) && class_of_.count(c) && g_.find(class_of_.at(c)) == g_.find(cls)) {
        chosen = c;
        break;
      }
    for (size_t k = 0; chosen.empty(); ++k)
      if (!taken_.count(alias(cls, k))) chosen = alias(cls, k);
    taken_.insert(chosen);
    cls_name_[cls] = chosen;
    return chosen;
  }
  std::string use_text(int u) {
    const Use &use = g_.uses[static_cast<size_t>(u)];
    const Value &v = at(use.value);
    if (v.role == Role::Literal) return v.literal < 0 ? "(" + float_text(v.literal) + ")" : float_text(v.literal);
    if (v.role == Role::Inline) {
      // A view (transpose, reshape, chunk) is its operand read another way: named axes need no copy.
      if (v.uses.size() == 1 && v.expr == "{u:" + std::to_string(v.uses[0]) + "}") return use_text(v.uses[0]);
      std::string text = expand_expr(v.expr);
      size_t open = text.find('(');
      bool call = open != std::string::npos && open > 0 && text.back() == ')' &&
                  (std::isalnum(static_cast<unsigned char>(text[open - 1])) || text[open - 1] == ']');
      for (size_t i = 0, depth = 0; call && i < text.size(); ++i) {
        if (text[i] == '(') ++depth;
        if (text[i] == ')' && --depth == 0 && i + 1 < text.size()) call = false;
        if (depth == 0 && i < open && text[i] == ' ') call = false;
      }
      // A single reference (a gather: `wte_weight[X[batch, seq], d16]`) needs no parentheses either.
      const size_t bracket = text.find('[');
      bool reference = bracket != std::string::npos && bracket > 0 && text.back() == ']' &&
                       valid_identifier(text.substr(0, bracket));
      for (size_t i = bracket, depth = 0; reference && i < text.size(); ++i) {
        if (text[i] == '[') ++depth;
        if (text[i] == ']' && --depth == 0 && i + 1 < text.size()) reference = false;
      }
      return call || reference ? text : "(" + text + ")";
    }
    const bool split = declared_coarse(use.value);
    std::string items;
    for (const Dim &d : use.dims) {
      if (d.axis < 0) continue;
      std::string item;
      if (d.at >= 0) {
        item = std::to_string(d.at);
      } else if (!d.terms.empty()) {
        // Positive terms first: a leading `-` binds tighter than `*` in an index, `-(2 * t)`.
        std::vector<std::pair<int64_t, int>> terms = d.terms;
        std::stable_partition(terms.begin(), terms.end(), [](const auto &term) { return term.first > 0; });
        for (const auto &[coef, node] : terms) {
          std::string n;
          for (const Atom &a : atoms(node)) n += (n.empty() ? "" : ", ") + name(a.cls);
          const int64_t size = coef < 0 ? -coef : coef;
          const std::string term = size == 1 ? n : std::to_string(size) + " * " + n;
          if (item.empty()) item = coef > 0 ? term : size == 1 ? "-" + term : "-(" + term + ")";
          else item += (coef < 0 ? " - " : " + ") + term;
        }
        if (d.offset > 0) item += " + " + std::to_string(d.offset);
        if (d.offset < 0) item += " - " + std::to_string(-d.offset);
        // One axis read at offset 0 is a renaming unless written with arithmetic: `t + 0` reads a prefix
        // of a longer axis or a shorter one padded with zeros.
        const size_t k = static_cast<size_t>(&d - use.dims.data());
        if (d.offset == 0 && d.terms.size() == 1 && d.terms[0].first == 1 && k < v.dims.size() && v.dims[k].axis >= 0 &&
            g_.find(d.terms[0].second) != g_.find(v.dims[k].axis) &&
            (g_.size_of(d.terms[0].second) == 0 || g_.size_of(d.terms[0].second) != g_.size_of(v.dims[k].axis)))
          item += " + 0";
      } else {
        std::vector<Atom> as = atoms(d.axis);
        for (const Atom &a : as) {
          if (a.at >= 0 && split && error_.empty())
            error_ = "'" + v.onnx_name + "' is read in parts of one dimension (a chunk of a split); ncd import "
                     "reads chunks of computed values only";
          item += (item.empty() ? "" : ", ") + (a.at >= 0 ? std::to_string(a.at) : name(a.cls));
        }
        if (split && as.size() > 1) item = "(" + item + ")";
      }
      items += (items.empty() ? "" : ", ") + item;
    }
    return items.empty() ? v.name : v.name + "[" + items + "]";
  }
  std::string expand_expr(const std::string &expr) {
    std::string out;
    for (size_t i = 0; i < expr.size();) {
      if (expr.compare(i, 3, "{u:") == 0 || expr.compare(i, 3, "{a:") == 0) {
        size_t end = expr.find('}', i);
        const int n = std::stoi(expr.substr(i + 3, end - i - 3));
        std::string text;
        if (expr[i + 1] == 'u') {
          text = use_text(n);
        } else {
          for (const Atom &a : atoms(n)) text += (text.empty() ? "" : ", ") + (a.at >= 0 ? std::to_string(a.at) : name(a.cls));
        }
        // A whole argument of a call needs no parentheses of its own.
        const bool argument = i > 0 && (expr[i - 1] == '(' || (i >= 2 && expr.compare(i - 2, 2, ", ") == 0)) &&
                              end + 1 < expr.size() && (expr[end + 1] == ')' || expr[end + 1] == ',');
        if (argument && text.size() > 1 && text.front() == '(' && text.back() == ')') {
          int depth = 0;
          bool one_group = true;  // "(a) * (b)" is two
          for (size_t k = 0; k < text.size() && one_group; ++k) {
            depth += text[k] == '(' ? 1 : text[k] == ')' ? -1 : 0;
            if (depth == 0 && k + 1 < text.size()) one_group = false;
          }
          if (one_group) text = text.substr(1, text.size() - 2);
        }
        out += text;
        i = end + 1;
      } else {
        out += expr[i++];
      }
    }
    return out;
  }
};

// A view is its operand read another way (a transpose, a reshape, a chunk).
bool is_view(const Value &v) { return v.uses.size() == 1 && v.expr == "{u:" + std::to_string(v.uses[0]) + "}"; }

}  // namespace

bool print_program(Graph &g, const std::string &path, const std::map<std::string, std::string> &renames,
                   const std::string &diagram, std::string &source, std::vector<std::pair<std::string, Tensor>> &weights,
                   std::string &error) {
  auto at = [&](int id) -> Value & { return g.values[static_cast<size_t>(id)]; };
  auto used_value = [&](int u) { return g.uses[static_cast<size_t>(u)].value; };
  // The value a view stands for.
  std::function<int(int)> through = [&](int id) { return is_view(at(id)) && at(id).role == Role::Inline ? through(used_value(at(id).uses[0])) : id; };
  // Statements: what is read twice, by a contraction, or is an output; the rest is inlined.
  // A view read twice stays a view: what it reads becomes the statement.
  for (int id : g.order) {
    Value &v = at(id);
    if (v.role != Role::Inline || v.users < 2) continue;
    const int target = through(id);
    if (at(target).role == Role::Inline) at(target).role = Role::Statement;
  }
  // What a layer of a module list computes and something outside the layer reads is a statement:
  // the layer's result, handed on (onnx_layers.cpp).
  for (int id : g.order) {
    const auto reader = layer_key(at(id).node);
    for (int u : at(id).uses) {
      const int target = through(used_value(u));
      if (at(target).role != Role::Inline) continue;
      const auto key = layer_key(at(target).node);
      if (key.second >= 0 && key != reader) at(target).role = Role::Statement;
    }
  }
  // A value read through a window (a convolution's or a pool's affine positions, a part of a
  // concatenation) is declared, whole: an affine position indexes one axis, so a product is merged
  // on its left side.
  for (int id : g.order)
    for (int u : at(id).uses)
      for (const Dim &d : g.uses[static_cast<size_t>(u)].dims)
        if (!d.terms.empty()) {
          // A view read this way is computed: positions do not compose with its own reading.
          Value &target = at(used_value(u));
          if (target.role == Role::Inline) target.role = Role::Statement;
          if (target.role == Role::Statement) target.merged = true;
        }
  for (int id : g.order) {
    const Value &v = at(id);
    if (!v.contraction || v.users == 0) continue;
    for (int u : v.uses) {
      const int target = through(used_value(u));
      if (at(target).role == Role::Inline) at(target).role = Role::Statement;
    }
  }

  std::string name = diagram;
  if (name.empty()) {
    std::string stem = path.substr(path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/') + 1);
    stem = stem.substr(0, stem.find('.'));
    name = capitalized(identifier(stem));
  }
  Names names;
  if (!valid_identifier(name) || names.has(name)) {
    error = "--diagram " + name + ": " + (valid_identifier(name) ? "a word ncd reserves" : "not a name");
    return false;
  }
  names.take(name);  // no value or axis may take the diagram's name
  Printer printer(g, names);

  for (int id : g.inputs) at(id).name = names.value(identifier(at(id).onnx_name));
  for (int id : g.outputs)
    if (at(id).name.empty()) at(id).name = names.value(identifier(at(id).onnx_name));
  std::vector<int> statements;
  for (int id : g.order)
    if (at(id).role == Role::Statement && at(id).users > 0) statements.push_back(id);
  // "/fc1/Gemm" -> Fc1; "/Softmax" -> Softmax; "/ln/Add_1" -> Ln
  auto name_statement = [&](Value &v) {
    if (!v.name.empty()) return;
    std::string module = module_of(v.node);
    if (list_item(module)) module.clear();  // "/h.0/Add": Add
    std::string op = v.op;
    for (char &c : op) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    v.name = names.value(capitalized(identifier(module.empty() ? op : module)));
  };
  auto param_base = [&](const Value &v) { return identifier(v.name.empty() ? v.onnx_name : v.name); };
  // Params in order of first use, read from statements through inlined expressions.
  auto params_of = [&](const std::vector<int> &list) {
    std::vector<int> order;
    std::function<void(int)> visit = [&](int id) {
      const Value &v = at(id);
      if (v.role == Role::Param && std::find(order.begin(), order.end(), id) == order.end()) order.push_back(id);
      if (v.role == Role::Inline)
        for (int u : v.uses) visit(used_value(u));
    };
    for (int id : list)
      for (int u : at(id).uses) visit(used_value(u));
    return order;
  };

  // Repeated layers: each printed as a diagram of its own; folded into one called in `repeat`
  // when every layer prints the same.
  const std::vector<Layers> candidates = find_layers(g, statements);
  std::set<int> in_layers;
  for (const Layers &l : candidates)
    for (const auto &r : l.regions) in_layers.insert(r.begin(), r.end());
  for (int id : statements)
    if (!in_layers.count(id)) name_statement(at(id));
  struct Fold {
    const Layers *layers;
    std::string diagram, text, count_axis, carried;
    std::vector<std::string> param_names;  // layer-local names of layers->params[i][k], the same for each i
  };
  std::vector<Fold> folds;
  std::set<int> folded;
  for (const Layers &l : candidates) {
    const std::string list = l.prefix.substr(l.prefix.rfind('/') == std::string::npos ? 0 : l.prefix.rfind('/') + 1);
    Fold f{&l, names.take(capitalized(identifier(list))), "", "", "", {}};
    bool same = true;
    // The caller's names of what the layers are printed with, put back after.
    std::map<int, std::string> saved;
    saved[l.carried] = at(l.carried).name;
    for (int id : l.outputs) saved[id] = at(id).name;
    for (const auto &r : l.params)
      for (int p : r) saved[p] = at(p).name;
    for (size_t i = 0; i < l.regions.size() && same; ++i) {
      std::set<std::string> scope;
      names.scope(&scope);
      for (int w : l.invariants) names.value(at(w).name);
      const int in = i == 0 ? l.carried : l.outputs[i - 1], out = l.outputs[i];
      at(in).name = names.value("X");
      at(out).name = names.value("Y");
      // A param's name within the layer: its path after the list's item ("h_0_attn_w" -> "attn_w").
      const std::string item = identifier(list + "." + std::to_string(i)) + "_";
      std::vector<std::string> local;
      for (int p : l.params[i]) {
        std::string base = param_base(at(p));
        const size_t k = base.find(item);
        if (k != std::string::npos && (k == 0 || base[k - 1] == '_') && k + item.size() < base.size())
          base = base.substr(k + item.size());
        local.push_back(names.value(base));
        at(p).name = local.back();
      }
      for (int id : l.regions[i]) name_statement(at(id));
      std::set<int> boundary(l.invariants.begin(), l.invariants.end());
      boundary.insert(in), boundary.insert(out);
      printer.set_boundary(boundary);
      for (int w : boundary)
        if (w != out) printer.declare(w, printer.coarse(at(w)));
      for (int p : l.params[i]) printer.declare(p, printer.coarse(at(p)));
      std::string text, failure;
      for (int id : l.regions[i]) text += "  " + printer.statement(id, failure) + "\n";
      std::string head = "diagram " + f.diagram + "(" + printer.reference_of(in) + Printer::typed(at(in));
      for (int w : l.invariants) head += ", " + printer.reference_of(w) + Printer::typed(at(w));
      head += ") -> " + printer.reference_of(out) + Printer::typed(at(out)) + " {\n";
      for (int p : l.params[i]) head += "  param " + printer.reference_of(p) + Printer::typed(at(p)) + "\n";
      text = head + text + "}\n";
      if (i == 0) f.text = text, f.param_names = local;
      same = failure.empty() && text == f.text;
      names.scope(nullptr);
    }
    printer.set_boundary({});
    if (!same)
      for (const auto &r : l.regions)
        for (int id : r) at(id).name.clear();
    for (const auto &[id, before] : saved) at(id).name = before;
    if (!same) continue;
    for (const auto &r : l.regions) folded.insert(r.begin(), r.end());
    f.count_axis = names.take(list.size() >= 3 ? identifier(list) : "layers");
    folds.push_back(std::move(f));
  }
  // Layers that did not fold are statements of the caller like any other.
  for (int id : statements)
    if (!folded.count(id) && at(id).name.empty()) name_statement(at(id));

  std::vector<int> main_statements;
  for (int id : statements)
    if (!folded.count(id)) main_statements.push_back(id);
  std::vector<int> param_order = params_of(main_statements);
  for (int id : param_order) at(id).name = names.value(param_base(at(id)));
  std::set<int> boundary;
  for (Fold &f : folds) {
    const Layers &l = *f.layers;
    boundary.insert(l.invariants.begin(), l.invariants.end());
    const bool output = std::find(g.outputs.begin(), g.outputs.end(), l.carried) != g.outputs.end();
    if (at(l.carried).role == Role::Statement && !output) {
      f.carried = at(l.carried).name;
      boundary.insert(l.carried);
    } else {
      f.carried = names.value("Hidden");
    }
  }
  printer.set_boundary(boundary);
  for (int id : g.inputs) printer.declare(id, printer.coarse(at(id)));
  for (int id : param_order) printer.declare(id, printer.coarse(at(id)));
  for (int id : g.outputs) printer.declare(id, printer.coarse(at(id)));

  std::string body, layer_diagrams;
  for (int id : statements) {
    auto fold = std::find_if(folds.begin(), folds.end(), [&](const Fold &f) { return f.layers->regions[0][0] == id; });
    if (fold != folds.end()) {
      const Layers &l = *fold->layers;
      const int last = l.outputs.back();
      if (fold->carried != at(l.carried).name) body += "  " + fold->carried + printer.brackets(l.carried) + " = " + at(l.carried).name + "\n";
      body += "  repeat #" + fold->count_axis + " {\n    " + fold->carried + " = " + fold->diagram + "(" + fold->carried;
      for (int w : l.invariants) body += ", " + at(w).name;
      body += ")\n  }\n";
      if (std::find(g.outputs.begin(), g.outputs.end(), last) != g.outputs.end()) {
        body += "  " + at(last).name + " = " + fold->carried + "\n";
      } else {
        // Readers after the layers read the carried value.
        at(last).name = fold->carried;
        printer.declare(last, printer.coarse(at(l.carried)));
        boundary.insert(last);
        printer.set_boundary(boundary);
      }
      layer_diagrams += fold->text + "\n";
    }
    if (folded.count(id)) continue;
    body += "  " + printer.statement(id, error) + "\n";
    if (!error.empty()) return false;
  }
  std::string signature = "diagram " + name + "(";
  for (size_t i = 0; i < g.inputs.size(); ++i)
    signature += (i ? ", " : "") + printer.reference_of(g.inputs[i]) + Printer::typed(at(g.inputs[i]));
  signature += ") -> ";
  for (size_t i = 0; i < g.outputs.size(); ++i)
    signature += (i ? ", " : "") + printer.reference_of(g.outputs[i]) + Printer::typed(at(g.outputs[i]));
  signature += " {\n";
  std::string params;
  weights.clear();
  for (int id : param_order) {
    params += "  param " + printer.reference_of(id) + Printer::typed(at(id)) + "\n";
    weights.emplace_back(at(id).name, at(id).weight);
  }
  // A layer's param exists once per iteration: its path is "I.Diagram.name" (I@R with several repeats).
  for (size_t r = 0; r < folds.size(); ++r) {
    const Layers &l = *folds[r].layers;
    for (size_t i = 0; i < l.params.size(); ++i)
      for (size_t k = 0; k < l.params[i].size(); ++k)
        weights.emplace_back(std::to_string(i) + (folds.size() > 1 ? "@" + std::to_string(r) : "") + "." +
                                 folds[r].diagram + "." + folds[r].param_names[k],
                             at(l.params[i][k]).weight);
  }

  // Axes: symbolic, sized, products of others (after their parts), second names.
  std::vector<std::string> symbolic, sized, derived, second;
  std::set<std::string> done;
  std::function<void(const std::string &)> place = [&](const std::string &axis) {
    if (done.count(axis)) return;
    done.insert(axis);
    const int c = g.find(printer.class_of(axis));
    if (printer.aliases().count(axis)) {
      second.push_back(axis + " = " + printer.aliases().at(axis));
    } else if (g.factors.count(c)) {
      std::string product;
      for (int part : std::vector<int>(g.factors.at(c))) {
        const std::string p = printer.primary(part);
        place(p);
        product += (product.empty() ? "" : " * ") + p;
      }
      derived.push_back(axis + " = " + product);
    } else if (g.axis_size[static_cast<size_t>(c)] == 0) {
      symbolic.push_back(axis);
    } else {
      sized.push_back(axis + " = " + std::to_string(g.axis_size[static_cast<size_t>(c)]));
    }
  };
  for (size_t i = 0; i < printer.axis_order().size(); ++i) place(printer.axis_order()[i]);
  for (const Fold &f : folds) sized.push_back(f.count_axis + " = " + std::to_string(f.layers->regions.size()));
  std::string axes;
  for (const auto *list : {&symbolic, &sized, &derived, &second}) {
    if (list->empty()) continue;
    std::string line;
    for (const std::string &s : *list) line += (line.empty() ? "" : ", ") + s;
    axes += "axis " + line + "\n";
  }
  std::string text = "default dtype f32\n\n" + axes + "\n" + layer_diagrams + signature + params + body + "}\n";

  // --axis OLD=NEW: every whole-word OLD in the program (names are unique in it).
  for (const auto &[from, to] : renames) {
    if (std::find(printer.axis_order().begin(), printer.axis_order().end(), from) == printer.axis_order().end()) {
      std::string list;
      for (const std::string &a : printer.axis_order()) list += (list.empty() ? "" : ", ") + a;
      error = "--axis " + from + "=" + to + ": the model has no axis '" + from + "' (its axes: " + list + ")";
      return false;
    }
    if (!valid_identifier(to) || names.has(to)) {
      error = "--axis " + from + "=" + to + ": '" + to + "' is " + (valid_identifier(to) ? "already a name in the program" : "not a name");
      return false;
    }
    names.take(to);
    std::string out;
    for (size_t i = 0; i < text.size();) {
      const bool boundary = i == 0 || !(std::isalnum(static_cast<unsigned char>(text[i - 1])) || text[i - 1] == '_');
      const size_t end = i + from.size();
      if (boundary && text.compare(i, from.size(), from) == 0 &&
          (end == text.size() || !(std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '_'))) {
        out += to;
        i = end;
      } else {
        out += text[i++];
      }
    }
    text = out;
  }
  source = "# Imported by `ncd import` from " + path + " (" + (g.producer.empty() ? "unknown producer" : g.producer) +
           ", ONNX operator set " + std::to_string(g.opset) + ").\n\n" + text;
  return true;
}

}  // namespace ncd::onnx_import
