// The source writer's shared declarations: reserved names (the builtins'
// spellings are rows of ncd/ops.h), small helpers, and the Writer class, whose members are defined by
// concern in ir_source.cpp (choosing diagrams and axes, writing the axes,
// planning each diagram) and ir_source_statements.cpp (writing diagrams,
// statements and schedules while tracking the names in scope).
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "ncd/ir_source.h"

namespace ncd::ir_source_detail {

// An IR construct without a faithful spelling; caught by write_ncd_source.
struct Unwritable {
  std::string message;
};

[[noreturn]] inline void fail(const std::string &message) { throw Unwritable{message}; }

// Names that a temporary must not take: keywords, builtins called by name and dtypes.
inline bool is_reserved(const std::string &name) {
  static const std::set<std::string> names = [] {
    // `concat` and `split` are builtins that sema lowers: no row of the op table.
    std::set<std::string> out{"import", "axis", "diagram", "param", "repeat", "schedule", "inf", "concat", "split"};
    for (const ops::Info &row : ops::all())
      if (row.syntax == ops::Syntax::Call) out.insert(std::string(row.name));
    for (const std::string &name : ir::dtype_names()) out.insert(name);
    return out;
  }();
  return names.count(name) > 0;
}

inline bool is_identifier(const std::string &name) {
  if (name.empty() || std::isdigit(static_cast<unsigned char>(name[0]))) return false;
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '_') return false;
  static const std::set<std::string> keywords{"import", "axis", "diagram", "param", "repeat", "schedule", "inf"};
  return !keywords.count(name);
}

// A name the user gave (temporaries are "" or "%N").
inline bool is_user_name(const std::string &name) { return !name.empty() && name[0] != '%'; }

inline bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

inline std::set<int> as_set(const std::vector<int> &list) { return {list.begin(), list.end()}; }

// The shortest text that reads back as the same double (negative: a negated literal).
inline std::string number_text(double value) {
  if (std::isnan(value)) fail("a NaN constant has no spelling in the language");
  std::string text = "inf";
  if (!std::isinf(value)) {
    char buffer[64];
    auto result = std::to_chars(buffer, buffer + sizeof buffer, std::fabs(value));
    text.assign(buffer, result.ptr);
  }
  return std::signbit(value) ? "-" + text : text;
}

inline std::string quote(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '\n' || c == '\r') fail("schedule target \"" + text + "\" holds a line break");
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// A coefficient p/q with a small denominator that reads back as exactly `value`.
inline std::pair<int64_t, int64_t> rational(double value) {
  for (int64_t denominator = 1; denominator <= 4096; ++denominator) {
    double scaled = value * static_cast<double>(denominator);
    double rounded = std::round(scaled);
    if (std::fabs(rounded) > 9.0e15) break;
    if (rounded / static_cast<double>(denominator) == value) return {static_cast<int64_t>(rounded), denominator};
  }
  fail("the size coefficient " + number_text(value) + " is not a simple fraction");
}

class Writer {
 public:
  explicit Writer(const ir::Program &program) : p_(program) {}

  std::string write(const std::vector<const ir::Diagram *> &roots, const SourceWriteOptions &options);

 private:
  // ------------------------------------------ diagrams, axes, plans (ir_source.cpp)

  struct Plan {
    std::map<int, std::string> names;                       // value id -> written name
    std::map<int, const ir::Op *> producers;                // value id -> the op that defines it
    std::set<int> by_name;                                  // values that must be read by name, never inline
    std::map<const ir::Region *, std::vector<int>> params;  // params declared at the start of each region
  };

  void collect(const ir::Diagram &diagram);
  const ir::Diagram &callee(const ir::Op &op) const;
  void check_diagram_names();
  std::set<int> axes_of(const ir::Diagram &diagram) const;
  void find_owners(const ir::Diagram &diagram, const std::set<int> &bound,
                   std::set<std::pair<const ir::Diagram *, std::set<int>>> &seen);
  void choose_axes();
  std::string describe_axis(int axis) const;
  Poly written_poly(const std::string &name);
  Poly mapped(const Poly &poly);
  std::vector<int> defining_axes(const ir::Axis &axis) const;
  bool written_alias(const ir::Axis &axis) const;
  bool equivalent(int a, int b);
  std::string size_expression(const Poly &poly) const;
  void write_axes(std::ostringstream &out);
  std::string axis_list(const std::vector<int> &axes) const;
  static bool inlinable(ir::OpKind kind);
  Plan plan(const ir::Diagram &diagram);
  void place_params(const ir::Diagram &diagram, Plan &plan);
  bool needs_statement(const Plan &plan, const ir::Diagram &diagram, int value) const;
  void choose_default_dtype();

  // ------------------------------------------ writing (ir_source_statements.cpp)

  // Names in scope as sema tracks them: a frame per repeat body, with the
  // names it carries from one iteration to the next.
  struct Frame {
    std::map<std::string, int> names;
    std::map<std::string, int> carried;  // name -> block argument
  };

  int lookup(const std::string &name) const;
  const Frame *carrier(const std::string &name) const;
  bool is_output_name(const std::string &name) const;
  const std::string &name_of(int value) const { return plan_->names.at(value); }
  std::string where() const { return " in diagram '" + d_->name + "'"; }
  void write_diagram(std::ostringstream &out, const ir::Diagram &diagram);
  std::string dtype_suffix(ir::DType dtype, ir::DType implicit) const;
  std::string declarations(const std::vector<int> &values) const;
  void region(std::ostringstream &out, const ir::Region &region, int depth);
  void statement(std::ostringstream &out, const ir::Op &op, int depth);
  std::string target(int value, const std::string &indices);
  void bind(int value) { frames_.back().names[name_of(value)] = value; }
  std::string reference(int value) const;
  std::string operand(int value) const;
  std::string inline_text(const ir::Op &op) const;
  void arity(const ir::Op &op, size_t count) const;
  std::string elementwise(const ir::Op &op) const;
  std::vector<int> operand_axes(const ir::Op &op) const;
  void check_result_axes(const ir::Op &op, const std::vector<int> &available, const std::vector<int> &removed) const;
  std::string contract(const ir::Op &op) const;
  std::string reduce(const ir::Op &op) const;
  std::string select(const ir::Op &op) const;
  std::string normalize(const ir::Op &op) const;
  std::string scan(const ir::Op &op) const;
  std::string affine_text(const ir::AccessIndex &index, int stored) const;  // `stored`: the axis it indexes
  std::string access(const ir::Op &op) const;
  std::string merge(const ir::Op &op, std::string &indices);
  std::string call(const ir::Op &op) const;
  void repeat(std::ostringstream &out, const ir::Op &op, int depth);
  // The position of a repeat's iteration index (`repeat N as i`: an i32 scalar carried from a constant 0,
  // plus a constant 1 each iteration, its last value unread), or -1; its three ops are written by `as i`.
  // region() finds it for each repeat before writing any (index_positions_, index_ops_).
  int iteration_index(const ir::Op &repeat);
  std::map<const ir::Op *, int> index_positions_;
  std::set<const ir::Op *> index_ops_;
  std::string renaming_copy(int argument, int source) const;
  void write_schedule(std::ostringstream &out, const ir::Diagram &diagram, const ir::Schedule &schedule);
  void write_shards(std::ostringstream &out, const ir::Diagram &diagram);

  const ir::Program &p_;
  std::vector<const ir::Diagram *> diagrams_;  // in written order, callees first
  std::vector<const ir::Diagram *> roots_;
  std::set<const ir::Diagram *> on_path_;
  std::set<int> owners_;                            // axes whose own size some written diagram uses
  std::map<std::string, std::vector<int>> groups_;  // axis name -> program axes of that name
  std::map<std::string, int> representatives_;      // axis name -> the axis written for it
  std::map<std::string, Poly> written_polys_;
  std::map<std::string, int> axis_positions_;  // axis name -> its place among the written axes
  std::set<std::string> expanding_;
  std::map<const ir::Diagram *, Plan> plans_;
  ir::DType default_dtype_ = ir::DType::F32;
  // The diagram being written.
  const ir::Diagram *d_ = nullptr;
  const Plan *plan_ = nullptr;
  std::vector<Frame> frames_;
  std::set<std::string> assigned_outputs_;
};

}  // namespace ncd::ir_source_detail
