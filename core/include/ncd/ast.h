// The abstract syntax tree of one .ncd file.
//
// The AST mirrors what the user wrote (parentheses, literal spellings, comment
// positions) so that `ncd fmt` can print it back canonically; every node keeps
// its source location. Meaning (which names are axes, tensors or diagrams) is
// assigned later by sema, which lowers the AST to the core IR.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ncd/source.h"

namespace ncd::ast {

struct Name {
  std::string text;
  SourceLocation location;
};

// Size expressions in `axis` declarations: integers, axis names, + - * / //,
// and `ceil(...)` / `floor(...)` of a quotient.
struct SizeExpr {
  enum class Kind { Integer, Axis, Binary, Paren, Call };
  Kind kind = Kind::Integer;
  SourceLocation location;
  int64_t value = 0;
  Name axis;           // Axis; Call: the function
  std::string op;      // Binary: "+", "-", "*", "/", "//"
  std::unique_ptr<SizeExpr> lhs, rhs;  // Paren and Call use lhs
};

struct Index;

// `T`, `T[i, j]`, `T[x + k, c]`, `T[s, (heads, d)]`, `Table[tokens[b, s], d]`.
struct TensorRef {
  Name name;
  bool has_brackets = false;
  std::vector<std::unique_ptr<Index>> indices;
  SourceLocation location;
};

struct Index {
  enum class Kind { Integer, Ref, Binary, Negate, Group, Paren };
  Kind kind = Kind::Integer;
  SourceLocation location;
  int64_t value = 0;
  TensorRef ref;             // Ref: an axis name, or a tensor for gather
  char op = 0;               // Binary: '+', '-', '*'
  std::unique_ptr<Index> lhs, rhs;  // Negate and Paren use lhs
  std::vector<Name> group;   // Group: (heads, d)
};

struct Expr;

struct BracketItem {
  Name name;
  std::optional<Name> value;  // `q = s` in a call's bindings
};

struct Argument {
  std::optional<Name> keyword;  // `eps = 1e-5`
  std::unique_ptr<Expr> value;
};

struct Expr {
  enum class Kind { Number, Infinity, SizeOf, Paren, Call, Ref, Unary, Binary };
  Kind kind = Kind::Number;
  SourceLocation location;  // the whole expression's first token, spanning its first line
  // Number: the literal as written, and its value.
  std::string literal;
  double number = 0;
  // SizeOf: the axis; Call: the callee.
  Name name;
  // Call
  std::optional<Name> label;  // `attn: Attention(x)`: the call site's name in param paths
  bool has_brackets = false;
  std::vector<BracketItem> brackets;
  std::vector<Argument> arguments;
  // Call: `F(x)[s + 1, d]` reads the result through indices (result_index.name stays empty).
  bool has_result_index = false;
  TensorRef result_index;
  // Ref
  TensorRef ref;
  // Unary ("-", "!") uses lhs; Binary ("*", "/", "+", "-", "<", ..., "&&", "||").
  std::string op;
  SourceLocation op_location;
  std::unique_ptr<Expr> lhs, rhs;  // Paren uses lhs
};

struct TensorDecl {
  Name name;
  std::vector<Name> axes;
  std::optional<Name> dtype;
  SourceLocation location;
};

struct LhsIndex {
  std::vector<Name> names;  // one name, or a merge group `(heads, d)`
  bool group = false;
  SourceLocation location;
};

struct Lhs {
  Name name;
  bool has_brackets = false;
  std::vector<LhsIndex> indices;
  std::optional<Name> dtype;
  SourceLocation location;
};

struct AxisItem {
  Name name;
  std::unique_ptr<SizeExpr> size;
};

struct AxisDecl {
  std::vector<AxisItem> items;
  SourceLocation location;
};

struct Stmt {
  enum class Kind { Param, Axis, Assign, Repeat };
  Kind kind = Kind::Assign;
  SourceLocation location;
  int end_line = 0;
  std::vector<TensorDecl> params;       // Param
  AxisDecl axes;                        // Axis
  std::vector<Lhs> targets;             // Assign
  std::unique_ptr<Expr> value;          // Assign
  int64_t count = 0;                    // Repeat: `repeat N`
  std::optional<Name> count_axis;       // Repeat: `repeat #layers` (the size of an axis)
  std::optional<Name> index;            // Repeat: `repeat N as i`, the iteration index
  SourceLocation count_location;        // Repeat
  std::vector<std::unique_ptr<Stmt>> body;  // Repeat
  int body_end_line = 0;                // Repeat: the line of its closing brace
};

struct Diagram {
  Name name;
  std::vector<TensorDecl> inputs;
  std::vector<TensorDecl> outputs;
  std::vector<std::unique_ptr<Stmt>> body;
  SourceLocation location;
  int end_line = 0;  // closing brace
};

struct ScheduleItem {
  enum class Kind { Group, Stream, Level, Shard };
  Kind kind = Kind::Group;
  SourceLocation location;
  int end_line = 0;
  Name subject;        // the axis (group/stream), the memory level, or the first sharded axis
  int64_t amount = 0;  // tile size (group/stream), devices (shard)
  SourceLocation amount_location;
  std::vector<Name> values;  // level residents; shard: every axis split over the devices
};

struct Schedule {
  Name diagram;
  std::optional<std::string> target;  // unquoted
  SourceLocation target_location;
  std::vector<ScheduleItem> items;
  SourceLocation location;
  int end_line = 0;
};

struct Item {
  enum class Kind { Import, Axis, DefaultDtype, Diagram, Schedule };
  Kind kind = Kind::Import;
  SourceLocation location;
  int end_line = 0;
  std::string import_path;  // unquoted
  AxisDecl axes;
  Name dtype;
  std::unique_ptr<Diagram> diagram;
  std::unique_ptr<Schedule> schedule;
};

struct Comment {
  int line = 0;
  int column = 0;
  std::string text;  // including the leading '#'
  bool own_line = false;  // nothing but whitespace before it on its line
};

struct File {
  int file_id = -1;
  std::vector<Item> items;
  std::vector<Comment> comments;
};

// Prints the AST as an indented tree (for `ncd show --ast`); with locations
// off, two parses of the same program print identically.
std::string dump(const File &file, bool with_locations);

}  // namespace ncd::ast
