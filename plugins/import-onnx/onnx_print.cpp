// Writing the importer's graph as an ncd program (docs/IMPORT.md): which
// values are statements (used more than once, read by a contraction, an
// output) and which are inlined into their one user; names for axes (a
// dim_param, else the layer that makes the features, else the graph input
// and dimension, else the size) and for values (the layer, else the op);
// then the text. Preconditions: build_graph succeeded on `graph`.
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

class Names {
 public:
  Names() {
    for (const char *word : {"import", "axis", "default", "dtype", "diagram", "param", "repeat", "schedule", "for",
                             "group", "stream", "level", "by", "inf"})
      taken_.insert(word);
    for (const ops::Info &row : ops::kTable) taken_.insert(std::string(row.name));
    for (const std::string &d : ir::dtype_names()) taken_.insert(d);
  }
  std::string take(std::string base) {
    std::string name = base;
    for (int i = 2; taken_.count(name); ++i) name = base + "_" + std::to_string(i);
    taken_.insert(name);
    return name;
  }
  bool has(const std::string &name) const { return taken_.count(name) > 0; }

 private:
  std::set<std::string> taken_;
};

std::string capitalized(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

}  // namespace

bool print_program(Graph &g, const std::string &path, const std::map<std::string, std::string> &renames,
                   const std::string &diagram, std::string &source, std::vector<std::pair<std::string, Tensor>> &weights,
                   std::string &error) {
  // Statements: what is read twice, by a contraction, or is an output; the rest is inlined.
  for (int id : g.order) {
    Value &v = g.values[static_cast<size_t>(id)];
    if (v.role == Role::Inline && v.users > 1) v.role = Role::Statement;
  }
  for (int id : g.order) {
    const Value &v = g.values[static_cast<size_t>(id)];
    if (!v.contraction) continue;
    for (size_t at = v.expr.find("{v:"); at != std::string::npos; at = v.expr.find("{v:", at + 1)) {
      Value &operand = g.values[std::stoul(v.expr.substr(at + 3))];
      if (operand.role == Role::Inline) operand.role = Role::Statement;
    }
  }
  // A tensor whose two dimensions are the same axis (a square weight whose input and output
  // features meet elementwise, x + Linear(x)) would need the axis renamed where it is read.
  for (size_t id = 0; id < g.values.size(); ++id) {
    const Value &v = g.values[id];
    if (v.role == Role::Literal || v.role == Role::Data || (v.role == Role::Param && v.users == 0)) continue;
    std::set<int> classes;
    for (const Dim &d : v.dims)
      if (d.axis >= 0 && !classes.insert(g.find(d.axis)).second) {
        error = (v.node.empty() ? "'" + v.onnx_name + "'" : "node '" + v.node + "' (" + v.op + ")") +
                ": two of its dimensions are one axis (a square weight whose input and output features are added "
                "or compared elementwise); ncd import cannot rename an axis where it is read yet";
        return false;
      }
  }
  // The axes the program uses, in order of first use (inputs, then statements).
  std::vector<int> used;
  std::set<int> seen;
  auto note_axes = [&](const Value &v) {
    for (const Dim &d : v.dims)
      if (d.axis >= 0 && seen.insert(g.find(d.axis)).second) used.push_back(g.find(d.axis));
  };
  for (int id : g.inputs) note_axes(g.values[static_cast<size_t>(id)]);
  for (size_t id = 0; id < g.values.size(); ++id)
    if (g.values[id].role == Role::Param && g.values[id].users > 0) note_axes(g.values[id]);
  for (int id : g.order) note_axes(g.values[static_cast<size_t>(id)]);

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
  std::map<int, std::string> axis_name;
  std::set<std::string> renamed;
  for (int axis : used) {
    std::string base = g.axis_hint[static_cast<size_t>(axis)];
    base = base.empty() ? "d" + std::to_string(g.axis_size[static_cast<size_t>(axis)]) : identifier(base);
    for (char &c : base) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    axis_name[axis] = names.take(base);
  }
  for (const auto &[from, to] : renames) {
    int found = -1;
    for (const auto &[axis, name] : axis_name)
      if (name == from) found = axis;
    if (found < 0) {
      std::string list;
      for (int axis : used) list += (list.empty() ? "" : ", ") + axis_name[axis];
      error = "--axis " + from + "=" + to + ": the model has no axis '" + from + "' (its axes: " + list + ")";
      return false;
    }
    if (!valid_identifier(to) || names.has(to)) {
      error = "--axis " + from + "=" + to + ": '" + to + "' is " +
              (valid_identifier(to) ? "already a name in the program" : "not a name");
      return false;
    }
    names.take(to);
    axis_name[found] = to;
  }

  auto axes_of = [&](const Value &v) {
    std::string s;
    for (const Dim &d : v.dims)
      if (d.axis >= 0) s += (s.empty() ? "" : ", ") + axis_name.at(g.find(d.axis));
    return s;
  };
  for (int id : g.inputs) g.values[static_cast<size_t>(id)].name = names.take(identifier(g.values[static_cast<size_t>(id)].onnx_name));
  for (int id : g.outputs) {
    Value &v = g.values[static_cast<size_t>(id)];
    if (v.name.empty()) v.name = names.take(identifier(v.onnx_name));
  }
  for (size_t id = 0; id < g.values.size(); ++id)
    if (g.values[id].role == Role::Param && g.values[id].users > 0) g.values[id].name = names.take(identifier(g.values[id].onnx_name));
  for (int id : g.order) {
    Value &v = g.values[static_cast<size_t>(id)];
    if (v.role != Role::Statement || !v.name.empty()) continue;
    // "/fc1/Gemm" -> Fc1; "/Softmax" -> Softmax; "/ln/Add_1" -> Ln_add
    const std::string module = module_of(v.node);
    std::string op = v.op;
    for (char &c : op) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string base = module.empty() ? op : module;
    v.name = names.take(capitalized(identifier(base)));
  }

  const std::string dtype_default = "f32";
  auto typed = [&](const Value &v) { return v.dtype == ir::DType::F32 ? std::string() : ": " + std::string(ir::dtype_name(v.dtype)); };
  std::function<std::string(int)> reference;
  std::function<std::string(const std::string &)> expand = [&](const std::string &expr) {
    std::string out;
    for (size_t i = 0; i < expr.size();) {
      if (expr.compare(i, 3, "{v:") == 0 || expr.compare(i, 3, "{a:") == 0) {
        size_t end = expr.find('}', i);
        const int n = std::stoi(expr.substr(i + 3, end - i - 3));
        std::string text = expr[i + 1] == 'v' ? reference(n) : axis_name.at(g.find(n));
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
  };
  reference = [&](int id) -> std::string {
    const Value &v = g.values[static_cast<size_t>(id)];
    if (v.role == Role::Literal) return v.literal < 0 ? "(" + float_text(v.literal) + ")" : float_text(v.literal);
    if (v.role == Role::Inline && v.expr.rfind("{v:", 0) == 0 && v.expr.find('}') + 1 == v.expr.size())
      return reference(v.operands.at(0));  // the same tensor (a transpose, an unsqueeze): named axes need no view
    if (v.role == Role::Inline) {
      // A call (`erf(...)`, `softmax[k](...)`) needs no parentheses; anything else gets them.
      std::string text = expand(v.expr);
      size_t open = text.find('(');
      bool call = open != std::string::npos && open > 0 && text.back() == ')' &&
                  (std::isalnum(static_cast<unsigned char>(text[open - 1])) || text[open - 1] == ']');
      for (size_t i = 0, depth = 0; call && i < text.size(); ++i) {
        if (text[i] == '(') ++depth;
        if (text[i] == ')' && --depth == 0 && i + 1 < text.size()) call = false;
        if (depth == 0 && i < open && (text[i] == ' ')) call = false;
      }
      return call ? text : "(" + text + ")";
    }
    const std::string axes = axes_of(v);
    return axes.empty() ? v.name : v.name + "[" + axes + "]";
  };

  std::string s = "# Imported by `ncd import` from " + path + " (" + (g.producer.empty() ? "unknown producer" : g.producer) +
                  ", ONNX operator set " + std::to_string(g.opset) + ").\n\ndefault dtype " + dtype_default + "\n\n";
  std::string symbolic, sized;
  for (int axis : used) {
    if (g.axis_size[static_cast<size_t>(axis)] == 0)
      symbolic += (symbolic.empty() ? "" : ", ") + axis_name[axis];
    else
      sized += (sized.empty() ? "" : ", ") + axis_name[axis] + " = " + std::to_string(g.axis_size[static_cast<size_t>(axis)]);
  }
  if (!symbolic.empty()) s += "axis " + symbolic + "\n";
  if (!sized.empty()) s += "axis " + sized + "\n";
  s += "\ndiagram " + name + "(";
  for (size_t i = 0; i < g.inputs.size(); ++i) {
    const Value &v = g.values[static_cast<size_t>(g.inputs[i])];
    s += (i ? ", " : "") + reference(g.inputs[i]) + typed(v);
  }
  s += ") -> ";
  for (size_t i = 0; i < g.outputs.size(); ++i) {
    const Value &v = g.values[static_cast<size_t>(g.outputs[i])];
    s += (i ? ", " : "") + reference(g.outputs[i]) + typed(v);
  }
  s += " {\n";
  weights.clear();
  std::string params;
  std::vector<int> param_order;  // in order of first use
  std::function<void(int)> visit = [&](int id) {
    const Value &v = g.values[static_cast<size_t>(id)];
    if (v.role == Role::Param && v.users > 0 &&
        std::find(param_order.begin(), param_order.end(), id) == param_order.end())
      param_order.push_back(id);
    if (v.role == Role::Inline || v.role == Role::Statement)
      for (int operand : v.operands) visit(operand);
  };
  for (int id : g.order)
    if (g.values[static_cast<size_t>(id)].role == Role::Statement)
      for (int operand : g.values[static_cast<size_t>(id)].operands) visit(operand);
  for (int id : param_order) {
    const Value &v = g.values[static_cast<size_t>(id)];
    params += "  param " + reference(id) + typed(v) + "\n";
    weights.emplace_back(v.name, v.weight);
  }
  s += params;
  for (int id : g.order) {
    const Value &v = g.values[static_cast<size_t>(id)];
    if (v.role != Role::Statement) continue;
    s += "  " + reference(id) + typed(v) + " = " + expand(v.expr) + "\n";
  }
  s += "}\n";
  source = s;
  return true;
}

}  // namespace ncd::onnx_import
