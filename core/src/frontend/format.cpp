// The canonical printer behind `ncd fmt`, and the AST dump behind `ncd show --ast`.
#include "ncd/format.h"

#include <sstream>

#include "ncd/instantiate.h"

namespace ncd {

std::string format_size(const ast::SizeExpr &expr) {
  switch (expr.kind) {
    case ast::SizeExpr::Kind::Integer: return std::to_string(expr.value);
    case ast::SizeExpr::Kind::Axis: return expr.axis.text;
    case ast::SizeExpr::Kind::Paren: return "(" + format_size(*expr.lhs) + ")";
    case ast::SizeExpr::Kind::Call: return expr.axis.text + "(" + format_size(*expr.lhs) + ")";
    case ast::SizeExpr::Kind::Binary: return format_size(*expr.lhs) + " " + expr.op + " " + format_size(*expr.rhs);
  }
  return "";
}

namespace {

std::string format_ref(const ast::TensorRef &ref) {
  std::string out = ref.name.text;
  if (!ref.has_brackets) return out;
  out += "[";
  for (size_t i = 0; i < ref.indices.size(); ++i) out += (i ? ", " : "") + format_index(*ref.indices[i]);
  return out + "]";
}

std::string join_names(const std::vector<ast::Name> &names) {
  std::string out;
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i].text;
  return out;
}

std::string format_tensor_decl(const ast::TensorDecl &decl) {
  std::string out = decl.name.text + "[" + join_names(decl.axes) + "]";
  if (decl.dtype) out += ": " + decl.dtype->text;
  return out;
}

std::string format_lhs(const ast::Lhs &lhs) {
  std::string out = lhs.name.text;
  if (lhs.has_brackets) {
    out += "[";
    for (size_t i = 0; i < lhs.indices.size(); ++i) {
      const auto &index = lhs.indices[i];
      out += i ? ", " : "";
      out += index.group ? "(" + join_names(index.names) + ")" : index.names[0].text;
    }
    out += "]";
  }
  if (lhs.dtype) out += ": " + lhs.dtype->text;
  return out;
}

std::string format_axis_decl(const ast::AxisDecl &decl) {
  std::string out = "axis ";
  for (size_t i = 0; i < decl.items.size(); ++i) {
    out += (i ? ", " : "") + decl.items[i].name.text;
    if (decl.items[i].size) out += " = " + format_size(*decl.items[i].size);
  }
  return out;
}

std::string quote(const std::string &text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

std::string format_index(const ast::Index &index) {
  switch (index.kind) {
    case ast::Index::Kind::Integer: return std::to_string(index.value);
    case ast::Index::Kind::Ref: return format_ref(index.ref);
    case ast::Index::Kind::Negate: return "-" + format_index(*index.lhs);
    case ast::Index::Kind::Paren: return "(" + format_index(*index.lhs) + ")";
    case ast::Index::Kind::Group: return "(" + join_names(index.group) + ")";
    case ast::Index::Kind::Binary:
      return format_index(*index.lhs) + " " + std::string(1, index.op) + " " + format_index(*index.rhs);
  }
  return "";
}

std::string format_expr(const ast::Expr &expr) {
  switch (expr.kind) {
    case ast::Expr::Kind::Number: return expr.literal;
    case ast::Expr::Kind::Infinity: return "inf";
    case ast::Expr::Kind::SizeOf: return "#" + expr.name.text;
    case ast::Expr::Kind::Paren: return "(" + format_expr(*expr.lhs) + ")";
    case ast::Expr::Kind::Ref: return format_ref(expr.ref);
    case ast::Expr::Kind::Unary: return expr.op + format_expr(*expr.lhs);
    case ast::Expr::Kind::Binary: return format_expr(*expr.lhs) + " " + expr.op + " " + format_expr(*expr.rhs);
    case ast::Expr::Kind::Call: {
      std::string out = (expr.label ? call_label_source(expr.label->text) + ": " : std::string()) + expr.name.text;
      if (expr.has_brackets) {
        out += "[";
        for (size_t i = 0; i < expr.brackets.size(); ++i) {
          out += (i ? ", " : "") + expr.brackets[i].name.text;
          if (expr.brackets[i].value) out += " = " + expr.brackets[i].value->text;
        }
        out += "]";
      }
      out += "(";
      for (size_t i = 0; i < expr.arguments.size(); ++i) {
        out += i ? ", " : "";
        if (expr.arguments[i].keyword) out += expr.arguments[i].keyword->text + " = ";
        out += format_expr(*expr.arguments[i].value);
      }
      return out + ")" + (expr.has_result_index ? format_ref(expr.result_index) : std::string());
    }
  }
  return "";
}

namespace {

class Formatter {
 public:
  Formatter(const ast::File &file, const SourceFile &source) : file_(file), source_(source) {}

  std::string run() {
    bool first = true;
    for (const ast::Item &item : file_.items) {
      bool block = item.kind == ast::Item::Kind::Diagram || item.kind == ast::Item::Kind::Schedule;
      // Diagrams and schedules always stand apart from their neighbours.
      if (!first && (block || previous_was_block_)) force_blank_ = true;
      leading(item.location.line);
      first = false;
      switch (item.kind) {
        case ast::Item::Kind::Import: line("import " + quote(item.import_path), item.end_line); break;
        case ast::Item::Kind::Axis: line(format_axis_decl(item.axes), item.end_line); break;
        case ast::Item::Kind::DefaultDtype: line("default dtype " + item.dtype.text, item.end_line); break;
        case ast::Item::Kind::Diagram: diagram(*item.diagram); break;
        case ast::Item::Kind::Schedule: schedule(*item.schedule); break;
      }
      previous_was_block_ = block;
    }
    leading(static_cast<int>(source_.line_starts.size()) + 2, false);
    return align_trailing_comments(out_);
  }

  // Trailing comments on consecutive lines line up one column apart from the
  // longest line of the run, as gofmt does.
  static std::string align_trailing_comments(const std::string &text) {
    std::vector<std::string> lines;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    std::vector<size_t> split(lines.size(), std::string::npos);
    for (size_t i = 0; i < lines.size(); ++i) {
      size_t marker = lines[i].find(kTrailingMarker);
      if (marker != std::string::npos) split[i] = marker;
    }
    std::string out;
    for (size_t i = 0; i < lines.size();) {
      if (split[i] == std::string::npos) {
        out += lines[i++] + "\n";
        continue;
      }
      size_t run_end = i, width = 0;
      while (run_end < lines.size() && split[run_end] != std::string::npos) width = std::max(width, split[run_end++]);
      for (; i < run_end; ++i) {
        std::string code = lines[i].substr(0, split[i]);
        std::string comment = lines[i].substr(split[i] + kTrailingMarker.size());
        out += code + std::string(width - code.size() + 2, ' ') + comment + "\n";
      }
    }
    return out;
  }

  static constexpr std::string_view kTrailingMarker = "\x01";

 private:
  void diagram(const ast::Diagram &d) {
    std::string header = "diagram " + d.name.text + "(";
    for (size_t i = 0; i < d.inputs.size(); ++i) header += (i ? ", " : "") + format_tensor_decl(d.inputs[i]);
    header += ") -> ";
    for (size_t i = 0; i < d.outputs.size(); ++i) header += (i ? ", " : "") + format_tensor_decl(d.outputs[i]);
    header += " {";
    line(header, d.location.line);
    body(d.body, d.end_line);
    line("}", d.end_line);
  }

  void body(const std::vector<std::unique_ptr<ast::Stmt>> &statements, int closing_line) {
    ++indent_;
    bool first = true;
    for (const auto &stmt : statements) {
      if (first) suppress_blank_ = true;
      first = false;
      leading(stmt->location.line);
      statement(*stmt);
    }
    if (statements.empty()) suppress_blank_ = true;
    leading(closing_line, false);
    suppress_blank_ = true;
    --indent_;
  }

  void statement(const ast::Stmt &stmt) {
    switch (stmt.kind) {
      case ast::Stmt::Kind::Param: {
        std::string text = "param ";
        for (size_t i = 0; i < stmt.params.size(); ++i) text += (i ? ", " : "") + format_tensor_decl(stmt.params[i]);
        line(text, stmt.end_line);
        break;
      }
      case ast::Stmt::Kind::Axis: line(format_axis_decl(stmt.axes), stmt.end_line); break;
      case ast::Stmt::Kind::Assign: {
        std::string text;
        for (size_t i = 0; i < stmt.targets.size(); ++i) text += (i ? ", " : "") + format_lhs(stmt.targets[i]);
        line(text + " = " + format_expr(*stmt.value), stmt.end_line);
        break;
      }
      case ast::Stmt::Kind::Repeat:
        line("repeat " + (stmt.count_axis ? "#" + stmt.count_axis->text : std::to_string(stmt.count)) +
                 (stmt.index ? " as " + stmt.index->text : std::string()) + " {",
             stmt.location.line);
        body(stmt.body, stmt.body_end_line);
        line("}", stmt.body_end_line);
        break;
    }
  }

  void schedule(const ast::Schedule &s) {
    std::string header = "schedule " + s.diagram.text;
    if (s.target) header += " for " + quote(*s.target);
    line(header + " {", s.location.line);
    ++indent_;
    bool first = true;
    for (const auto &item : s.items) {
      if (first) suppress_blank_ = true;
      first = false;
      leading(item.location.line);
      switch (item.kind) {
        case ast::ScheduleItem::Kind::Group:
          line("group " + item.subject.text + " by " + std::to_string(item.amount), item.end_line);
          break;
        case ast::ScheduleItem::Kind::Stream:
          line("stream " + item.subject.text + " by " + std::to_string(item.amount), item.end_line);
          break;
        case ast::ScheduleItem::Kind::Level:
          line("level " + item.subject.text + ": " + join_names(item.values), item.end_line);
          break;
        case ast::ScheduleItem::Kind::Shard:
          line("shard " + join_names(item.values) + " over " + std::to_string(item.amount), item.end_line);
          break;
      }
    }
    if (s.items.empty()) suppress_blank_ = true;
    leading(s.end_line, false);
    suppress_blank_ = true;
    --indent_;
    line("}", s.end_line);
  }

  bool blank_between(int from, int to) const {
    for (int l = from + 1; l < to; ++l) {
      auto text = source_.line(l);
      if (text.find_first_not_of(" \t\r") == std::string_view::npos) return true;
    }
    return false;
  }

  // Emits the comments that stand before source line `before`; the blank line
  // (if any) before `before` itself is kept only when `blank_before_next`.
  void leading(int before, bool blank_before_next = true) {
    while (next_comment_ < file_.comments.size() && file_.comments[next_comment_].line < before) {
      const ast::Comment &comment = file_.comments[next_comment_++];
      separate(comment.line);
      out_ += std::string(static_cast<size_t>(indent_ * 2), ' ') + comment.text + "\n";
      last_line_ = comment.line;
    }
    if (blank_before_next) {
      separate(before);
    } else {
      force_blank_ = false;
      suppress_blank_ = false;
      last_line_ = std::max(last_line_, before - 1);
    }
  }

  // One blank line where the source had any (or where a block asks for one).
  void separate(int next_line) {
    bool blank = force_blank_ || (last_line_ > 0 && blank_between(last_line_, next_line));
    if (blank && !suppress_blank_ && !out_.empty()) out_ += "\n";
    force_blank_ = false;
    suppress_blank_ = false;
    last_line_ = std::max(last_line_, next_line - 1);
  }

  void line(const std::string &text, int end_line) {
    out_ += std::string(static_cast<size_t>(indent_ * 2), ' ') + text;
    bool appended = false;
    // A comment on the statement's last line (after it) stays on that line.
    while (next_comment_ < file_.comments.size() && file_.comments[next_comment_].line <= end_line &&
           !file_.comments[next_comment_].own_line) {
      // Comments inside a multi-line statement join the one on its last line.
      out_ += (appended ? std::string(" ") : std::string(kTrailingMarker)) + file_.comments[next_comment_++].text;
      appended = true;
    }
    out_ += "\n";
    last_line_ = std::max(last_line_, end_line);
    suppress_blank_ = false;
  }

  const ast::File &file_;
  const SourceFile &source_;
  std::string out_;
  int indent_ = 0;
  size_t next_comment_ = 0;
  int last_line_ = 0;
  bool force_blank_ = false;
  bool suppress_blank_ = false;
  bool previous_was_block_ = false;
};

}  // namespace

std::string format_file(const ast::File &file, const SourceFile &source) {
  return Formatter(file, source).run();
}

namespace ast {

namespace {

class Dumper {
 public:
  explicit Dumper(bool locations) : locations_(locations) {}

  std::string run(const File &file) {
    out_ << "(file\n";
    for (const Item &item : file.items) this->item(item);
    out_ << ")\n";
    return out_.str();
  }

 private:
  std::string at(const SourceLocation &location) const {
    if (!locations_ || !location.valid()) return "";
    return " @" + std::to_string(location.line) + ":" + std::to_string(location.column);
  }

  void open(int depth, const std::string &text) { out_ << std::string(static_cast<size_t>(depth * 2), ' ') << "(" << text; }

  void item(const Item &item) {
    switch (item.kind) {
      case Item::Kind::Import: open(1, "import \"" + item.import_path + "\"" + at(item.location) + ")\n"); break;
      case Item::Kind::DefaultDtype: open(1, "default-dtype " + item.dtype.text + at(item.location) + ")\n"); break;
      case Item::Kind::Axis: axes(1, item.axes); break;
      case Item::Kind::Diagram: {
        const Diagram &d = *item.diagram;
        open(1, "diagram " + d.name.text + at(d.location) + "\n");
        for (const auto &input : d.inputs) tensor(2, "input", input);
        for (const auto &output : d.outputs) tensor(2, "output", output);
        for (const auto &stmt : d.body) statement(2, *stmt);
        out_ << "  )\n";
        break;
      }
      case Item::Kind::Schedule: {
        const Schedule &s = *item.schedule;
        open(1, "schedule " + s.diagram.text + (s.target ? " for \"" + *s.target + "\"" : "") + at(s.location) + "\n");
        for (const auto &entry : s.items) {
          if (entry.kind == ScheduleItem::Kind::Level)
            open(2, "level " + entry.subject.text + " " + names(entry.values) + at(entry.location) + ")\n");
          else if (entry.kind == ScheduleItem::Kind::Shard)
            open(2, "shard " + names(entry.values) + " " + std::to_string(entry.amount) + at(entry.location) + ")\n");
          else
            open(2, std::string(entry.kind == ScheduleItem::Kind::Group ? "group " : "stream ") + entry.subject.text +
                        " " + std::to_string(entry.amount) + at(entry.location) + ")\n");
        }
        out_ << "  )\n";
        break;
      }
    }
  }

  static std::string names(const std::vector<Name> &list) {
    std::string out = "[";
    for (size_t i = 0; i < list.size(); ++i) out += (i ? " " : "") + list[i].text;
    return out + "]";
  }

  void axes(int depth, const AxisDecl &decl) {
    open(depth, "axis" + at(decl.location));
    for (const auto &axis_item : decl.items)
      out_ << " (" << axis_item.name.text << (axis_item.size ? " " + sexpr(*axis_item.size) : "") << ")";
    out_ << ")\n";
  }

  void tensor(int depth, const char *role, const TensorDecl &decl) {
    open(depth, std::string(role) + " " + decl.name.text + " " + names(decl.axes) + (decl.dtype ? " " + decl.dtype->text : "") +
                    at(decl.location) + ")\n");
  }

  void statement(int depth, const Stmt &stmt) {
    switch (stmt.kind) {
      case Stmt::Kind::Param:
        for (const auto &param : stmt.params) tensor(depth, "param", param);
        break;
      case Stmt::Kind::Axis: axes(depth, stmt.axes); break;
      case Stmt::Kind::Assign: {
        std::string targets;
        for (const auto &lhs : stmt.targets) {
          targets += " (" + lhs.name.text;
          if (lhs.has_brackets) {
            targets += " [";
            for (size_t i = 0; i < lhs.indices.size(); ++i)
              targets += (i ? " " : "") + (lhs.indices[i].group ? "(" + names(lhs.indices[i].names) + ")" : lhs.indices[i].names[0].text);
            targets += "]";
          }
          if (lhs.dtype) targets += " " + lhs.dtype->text;
          targets += ")";
        }
        open(depth, "assign" + at(stmt.location) + targets + " " + sexpr(*stmt.value) + ")\n");
        break;
      }
      case Stmt::Kind::Repeat:
        open(depth, "repeat " + (stmt.count_axis ? "#" + stmt.count_axis->text : std::to_string(stmt.count)) +
                        (stmt.index ? " as " + stmt.index->text : std::string()) + at(stmt.location) + "\n");
        for (const auto &inner : stmt.body) statement(depth + 1, *inner);
        out_ << std::string(static_cast<size_t>(depth * 2), ' ') << ")\n";
        break;
    }
  }

  std::string sexpr(const SizeExpr &e) const {
    switch (e.kind) {
      case SizeExpr::Kind::Integer: return std::to_string(e.value);
      case SizeExpr::Kind::Axis: return e.axis.text;
      case SizeExpr::Kind::Paren: return "(paren " + sexpr(*e.lhs) + ")";
      case SizeExpr::Kind::Call: return "(" + e.axis.text + " " + sexpr(*e.lhs) + ")";
      case SizeExpr::Kind::Binary: return "(" + e.op + " " + sexpr(*e.lhs) + " " + sexpr(*e.rhs) + ")";
    }
    return "";
  }

  std::string sexpr(const TensorRef &ref) const {
    std::string out = "(ref " + ref.name.text;
    if (ref.has_brackets) {
      out += " [";
      for (size_t i = 0; i < ref.indices.size(); ++i) out += (i ? " " : "") + sexpr(*ref.indices[i]);
      out += "]";
    }
    return out + ")";
  }

  std::string sexpr(const Index &index) const {
    switch (index.kind) {
      case Index::Kind::Integer: return std::to_string(index.value);
      case Index::Kind::Ref: return index.ref.has_brackets ? sexpr(index.ref) : index.ref.name.text;
      case Index::Kind::Negate: return "(neg " + sexpr(*index.lhs) + ")";
      case Index::Kind::Paren: return "(paren " + sexpr(*index.lhs) + ")";
      case Index::Kind::Group: return "(group " + names(index.group) + ")";
      case Index::Kind::Binary: return "(" + std::string(1, index.op) + " " + sexpr(*index.lhs) + " " + sexpr(*index.rhs) + ")";
    }
    return "";
  }

  std::string sexpr(const Expr &e) const {
    switch (e.kind) {
      case Expr::Kind::Number: return e.literal;
      case Expr::Kind::Infinity: return "inf";
      case Expr::Kind::SizeOf: return "(size " + e.name.text + ")";
      case Expr::Kind::Paren: return "(paren " + sexpr(*e.lhs) + ")";
      case Expr::Kind::Ref: return sexpr(e.ref);
      case Expr::Kind::Unary: return "(" + e.op + " " + sexpr(*e.lhs) + ")";
      case Expr::Kind::Binary: return "(" + e.op + " " + sexpr(*e.lhs) + " " + sexpr(*e.rhs) + ")";
      case Expr::Kind::Call: {
        std::string out = "(call " + (e.label ? call_label_source(e.label->text) + ": " : std::string()) + e.name.text;
        if (e.has_brackets) {
          out += " [";
          for (size_t i = 0; i < e.brackets.size(); ++i)
            out += (i ? " " : "") + e.brackets[i].name.text + (e.brackets[i].value ? "=" + e.brackets[i].value->text : "");
          out += "]";
        }
        for (const auto &argument : e.arguments)
          out += " " + (argument.keyword ? argument.keyword->text + "=" : std::string()) + sexpr(*argument.value);
        if (e.has_result_index) out += " at " + sexpr(e.result_index);
        return out + ")";
      }
    }
    return "";
  }

  bool locations_;
  std::ostringstream out_;
};

}  // namespace

std::string dump(const File &file, bool with_locations) { return Dumper(with_locations).run(file); }

}  // namespace ast
}  // namespace ncd
