// Sema's private declarations, shared by the files that define its members:
// the builtin table, TypedExpr (a typed right-hand side whose nodes know their
// free axes), the scopes of modules and diagrams, and the Sema class. Its
// members are defined by concern: sema.cpp (driver, axes and sizes, signatures,
// lookup, schedules), sema_statements.cpp (bodies, statements, left-hand sides,
// contraction placement), sema_expr.cpp (typing expressions and indices),
// sema_call.cpp (diagram calls: bindings and lifting), sema_structure.cpp
// (concat and split, lowered to affine reads; topk and sort, statements
// with two results), sema_emit.cpp
// (emitting IR) and sema_lint.cpp (warnings about valid but suspicious
// statements).
//
// Each statement is lowered in three steps: the right-hand side is typed into
// a small tree (TypedExpr) whose nodes know their free axes; the axes that are
// absent from the left-hand side are placed as sums at the lowest subexpression
// holding all their occurrences (widened to the enclosing product, which then
// becomes a contraction); finally the tree is emitted as IR operations.
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <unordered_map>

#include "ncd/sema.h"

namespace ncd::sema_detail {

using ir::DType;

// The builtin functions by the names the language calls them (ncd/ops.h):
// the rows of Syntax::Call, one cast per dtype name, and `concat` and `split`
// (ops::Fn::None: sema lowers them to reads, sema_structure.cpp). Reserved names.
const std::map<std::string, ops::Fn> &builtins();

struct TypedExpr {
  enum class Kind {
    Value, Access, Constant, SizeOf, AxisIndex, Elementwise, Reduce, Normalize, Scan, Call, Product,
    Concat,  // children side by side along `axis` (sema_structure.cpp)
  };
  Kind kind = Kind::Constant;
  SourceLocation location;
  std::vector<int> axes;  // free axes, in order of first appearance
  DType dtype = DType::F32;
  bool dtype_fixed = false;  // Value/Access/Call/Bool results keep their dtype
  int value = -1;            // Value; Access: the source value
  const ast::TensorRef *ref = nullptr;  // Value; Access: the read as written (for lints)
  ops::Fn function = ops::Fn::None;  // Elementwise, Reduce, Normalize, Scan
  std::string callee_name;           // Call
  std::string label;                 // Call: the call site's name, "" when unnamed
  double constant = 0;
  int axis = -1;                       // SizeOf, AxisIndex; Concat: the result's axis
  std::vector<int> pieces;             // Concat: each child's axis laid along `axis`
  std::vector<int64_t> offsets;        // Concat: where each child starts along `axis`
  std::vector<int> op_axes;            // Reduce/Normalize axes; Scan: the scanned axis
  std::map<std::string, double> options;
  std::vector<ir::AccessIndex> access;  // Access (gather operands are children)
  std::vector<std::unique_ptr<TypedExpr>> children;
  std::vector<bool> inverse;  // Product: factor is a divisor
  // Call
  int callee = -1;
  std::vector<std::pair<int, int>> bindings;
  std::vector<int> lifted;
  std::vector<std::vector<int>> output_axes;
  std::vector<DType> output_dtypes;
  int output_index = 0;
  // Sums placed at this node by the contraction rule, and the node's own axes
  // before they were removed from `axes` (what the node itself produces).
  std::vector<int> sum_axes;
  std::vector<int> produced_axes;
};

inline bool contains(const std::vector<int> &list, int item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

inline void append_unique(std::vector<int> &list, const std::vector<int> &items) {
  for (int item : items)
    if (!contains(list, item)) list.push_back(item);
}

struct DiagramScope {
  std::map<std::string, int> axes;  // diagram-local axes
};

struct ModuleScope {
  std::map<std::string, int> axes;
  std::map<std::string, int> diagrams;  // defined here: name -> Program::diagrams index
  std::vector<std::pair<int, SourceLocation>> axis_order;
  DType default_dtype = DType::F32;
};

class Sema {
 public:
  Sema(Compilation &compilation) : c_(compilation), p_(compilation.program), d_(compilation.diagnostics) {}

  void run(const std::vector<std::string> &defines);

 private:
  // ------------------------------------- axes, signatures, lookup (sema.cpp)

  const ast::File &file_of(int module) { return *c_.modules[static_cast<size_t>(module)].ast; }
  int new_axis(const ast::Name &name, int module);
  void declare_axes(const ast::AxisDecl &decl, int module, std::map<std::string, int> &scope,
                    const std::map<std::string, int> *outer);
  // A size: a polynomial, or a formula where it rounds a quotient (`//`, ceil, floor).
  struct SizeValue {
    Poly poly;
    std::shared_ptr<const SizeFormula> formula;  // set when no polynomial states the size
    std::shared_ptr<const SizeFormula> as_formula() const { return formula ? formula : SizeFormula::leaf(poly); }
  };
  std::optional<SizeValue> size_expr(const ast::SizeExpr &expr, const std::function<int(const ast::Name &)> &lookup,
                                const std::map<std::string, int> &scope, const std::map<std::string, int> *outer,
                                int declaring);
  void declare_module_axes(int module);
  std::optional<DType> dtype_of(const ast::Name &name);
  void apply_defines(const std::vector<std::string> &defines);
  std::function<std::string(int)> axis_name_fn() const;
  void compute_sizes();
  static std::string format_size(double value);
  std::string size_text(int axis) const;
  void declare_diagrams(int module);
  int declare_tensor(const ast::TensorDecl &tensor, ir::Value::Role role);
  std::vector<std::string> visible_axis_names() const;
  int find_axis(const std::string &name) const;
  void lower_shard(ir::Diagram &diagram, const ast::ScheduleItem &entry, const std::string &target);
  bool shard_axis(ir::Diagram &diagram, ir::ShardDirective &shard, int axis, const ast::Name &name,
                  const ast::ScheduleItem &entry);
  int lookup_axis(const ast::Name &name);
  int find_diagram(const std::string &name, SourceLocation location, bool report_ambiguity);
  std::vector<std::string> visible_diagram_names() const;
  void lower_schedules(int module);
  void report_call_cycles();
  void warn_unused_axes();

  // ------------------------------------------ bodies (sema_statements.cpp)

  struct Frame {
    std::map<std::string, int> names;  // tensor name -> value id
    bool repeat = false;
    std::map<std::string, int> carried;   // name -> block argument (repeat frames)
    std::map<std::string, int> yields;    // name -> latest value (repeat frames)
    ir::Region *region = nullptr;
    int64_t instances = 1;
    std::string index;  // repeat frames: the iteration index's name (`repeat N as i`), read-only
  };

  struct Target {
    const ast::Lhs *lhs = nullptr;
    std::vector<int> axes;                // storage axes (merged axes included)
    std::vector<int> expanded;            // axes the right-hand side must produce
    std::vector<std::vector<int>> merges; // per storage axis, the axes merged into it
    bool has_merge = false;
    DType dtype = DType::F32;
    int output = -1;                      // the declared output this target defines
    int carried = -1;                     // the block argument this target updates
  };

  void lower_bodies(int module);
  void lower_body(const ast::Diagram &decl);
  std::set<const ir::Diagram *> failed_bodies_;  // bodies with errors (their calls may be missing)
  void lower_block(const std::vector<std::unique_ptr<ast::Stmt>> &body);
  int lookup_value_quiet(const std::string &name) const;
  std::vector<std::string> visible_value_names() const;
  void lower_params(const ast::Stmt &stmt);
  int output_named(const std::string &name) const;
  bool is_output_name(const std::string &name) const { return output_named(name) >= 0; }
  void report_duplicate(const ast::Name &name);
  void lower_repeat(const ast::Stmt &stmt);
  void record_update(const std::string &name, int value);
  std::unique_ptr<ir::Op> new_op(ir::OpKind kind, SourceLocation location);
  int new_value(const std::vector<int> &axes, DType dtype, SourceLocation location, const std::string &name,
                ir::Value::Role role = ir::Value::Role::Intermediate);
  std::optional<Target> resolve_target(const ast::Lhs &lhs);
  std::vector<int> merged_axis_candidates(const std::vector<int> &group);
  bool same_size_as_product(int axis, const std::vector<int> &group) const;
  std::string axes_text(const std::vector<int> &axes) const;
  // ", did you mean 'x'?" among the names of `axes`, or "".
  std::string did_you_mean_axis(const std::string &name, const std::vector<int> &axes) const;
  void lower_assign(const ast::Stmt &stmt);
  void poison(const ast::Lhs &lhs);
  void bind_target(const Target &target, int result, SourceLocation location, bool fresh);
  int emit_copy(int source, const std::vector<int> &axes, DType dtype, SourceLocation location);
  void lower_multi_assign(const ast::Stmt &stmt, std::vector<Target> &targets, std::unique_ptr<TypedExpr> value);
  bool check_single_outputs(const TypedExpr &node);
  static bool has_axis(const TypedExpr &node, int axis) { return contains(node.axes, axis); }
  void place_sum(TypedExpr &root, int axis);
  static bool remove_free_axis(TypedExpr &node, TypedExpr *place, int axis);

  // ------------------------------------------------ typing (sema_expr.cpp)

  std::unique_ptr<TypedExpr> make(TypedExpr::Kind kind, SourceLocation location);
  std::unique_ptr<TypedExpr> typed(const ast::Expr &expr);
  std::unique_ptr<TypedExpr> typed_product(const ast::Expr &expr);
  std::unique_ptr<TypedExpr> typed_ref(const ast::TensorRef &ref, SourceLocation location);
  std::unique_ptr<TypedExpr> typed_access(int value_id, const ast::TensorRef &ref, SourceLocation location,
                                          const std::string &name, const std::vector<size_t> &positions);
  std::unique_ptr<TypedExpr> typed_indexed_call(const ast::Expr &expr, std::unique_ptr<TypedExpr> node);
  bool typed_index(const ast::Index &index, int stored, const std::string &tensor, ir::AccessIndex &out,
                   TypedExpr &node);
  bool affine(const ast::Index &index, int64_t scale, std::map<int, int64_t> &terms, int64_t &offset);
  std::unique_ptr<TypedExpr> typed_call(const ast::Expr &expr);
  std::unique_ptr<TypedExpr> typed_builtin(const ast::Expr &expr, ops::Fn fn);

  // ------------------- concat, split, topk and sort (sema_structure.cpp)
  std::unique_ptr<TypedExpr> typed_concat(const ast::Expr &expr);
  bool is_split(const ast::Expr &expr) const;
  void lower_split(const ast::Stmt &stmt, std::vector<Target> &targets);
  int emit_concat(TypedExpr &node);
  int emit_shifted(int source, int from, int to, int64_t offset, SourceLocation location);
  const ops::Info *selection(const ast::Expr &expr) const;
  void lower_select(const ast::Stmt &stmt, std::vector<Target> &targets, const ops::Info &row);
  // ------------------------------------------ diagram calls (sema_call.cpp)

  std::unique_ptr<TypedExpr> typed_diagram_call(const ast::Expr &expr, int callee_index);
  // Whether the params one diagram reaches are among the other's (paths, shapes, dtypes): call sites
  // of one name share them.
  bool params_can_tie(const ir::Diagram &a, const ir::Diagram &b) const;
  // Warns when a positional argument is named like another input of the callee.
  void swapped_argument_warnings(const std::vector<const ast::Argument *> &ordered,
                                 const std::vector<std::string> &inputs, const std::string &callee);

  // ---------------------------------------------- emission (sema_emit.cpp)

  int emit(TypedExpr &node);
  DType statement_float_dtype() const;
  int finish(std::unique_ptr<ir::Op> op, const std::vector<int> &axes, DType dtype, SourceLocation location);
  static const std::vector<int> &produced(const TypedExpr &node);
  DType node_dtype(const TypedExpr &node) const { return node.dtype_fixed ? node.dtype : statement_float_dtype(); }
  int emit_node(TypedExpr &node);
  std::vector<int> emit_call(TypedExpr &node);
  int emit_product(TypedExpr &node);
  int emit_elementwise(ops::Fn function, const std::vector<int> &operands, DType dtype,
                       SourceLocation location);

  // ------------------------------------------------------ lints (sema_lint.cpp)

  void lint_axis_reads(const TypedExpr &root, const std::vector<Target> &targets);

  Compilation &c_;
  ir::Program &p_;
  DiagnosticEngine &d_;
  std::vector<ModuleScope> modules_;
  std::map<const ast::Diagram *, DiagramScope> diagram_scopes_;
  std::map<int, std::pair<const ast::Diagram *, int>> ast_of_;  // diagram index -> (AST, module)
  std::set<int> used_axes_;
  ir::Diagram *current_ = nullptr;
  int current_module_ = 0;
  int current_index_ = -1;
  DiagramScope *current_scope_ = nullptr;
  std::vector<Frame> frames_;
  std::set<int> reads_;
  std::set<int> assigned_outputs_;
  // The current diagram's named call sites: where each name is first given, and to a call of which diagram.
  struct CallLabel {
    SourceLocation location;
    int callee = -1;
  };
  std::map<std::string, CallLabel> call_labels_;
  std::set<std::pair<const ir::Diagram *, int>> poisoned_values_;
  DType statement_dtype_ = DType::F32;
  int next_op_id_ = 0;
};

}  // namespace ncd::sema_detail
