// The ANTLR boundary: byte validation, our error listener, and the hand-written
// transformer from typed parse-tree contexts (NcdParser::*Context) to the AST.
#include "ncd/parser.h"

#include <cmath>
#include <set>

#include "NcdLexer.h"
#include "NcdParser.h"
#include "antlr4-runtime.h"
#include "lexer.h"

namespace ncd {
namespace {

// Maps ANTLR's code-point offsets to byte offsets and then to line/column.
class LocationMap {
 public:
  // `byte_offsets`: token indices are already byte offsets (the fast lexer's).
  LocationMap(const SourceFile &file, int file_id, bool byte_offsets = false) : file_(file), file_id_(file_id) {
    bool ascii = true;
    if (byte_offsets) return;
    for (unsigned char c : file.text)
      if (c >= 0x80) {
        ascii = false;
        break;
      }
    if (!ascii) {
      for (size_t i = 0; i < file.text.size(); ++i)
        if ((static_cast<unsigned char>(file.text[i]) & 0xC0) != 0x80) byte_of_codepoint_.push_back(i);
      byte_of_codepoint_.push_back(file.text.size());
    }
  }

  size_t byte(size_t codepoint) const {
    if (byte_of_codepoint_.empty()) return std::min(codepoint, file_.text.size());
    return codepoint < byte_of_codepoint_.size() ? byte_of_codepoint_[codepoint] : file_.text.size();
  }

  SourceLocation at_byte(size_t offset, size_t end_offset) const {
    auto it = std::upper_bound(file_.line_starts.begin(), file_.line_starts.end(), offset);
    int line = static_cast<int>(it - file_.line_starts.begin());
    size_t line_start = file_.line_starts[static_cast<size_t>(line - 1)];
    size_t line_end = file_.text.find('\n', line_start);
    if (line_end == std::string::npos) line_end = file_.text.size();
    size_t end = std::min(std::max(end_offset, offset + 1), std::max(line_end, offset + 1));
    return {file_id_, line, static_cast<int>(offset - line_start) + 1, static_cast<int>(end - offset)};
  }

  SourceLocation token(const antlr4::Token *token) const {
    if (token->getType() == antlr4::Token::EOF) {
      size_t offset = file_.text.size();
      return at_byte(offset, offset);
    }
    return at_byte(byte(token->getStartIndex()), byte(token->getStopIndex() + 1));
  }

  // A context's span: from its first token to its last (clipped to the first line).
  SourceLocation span(antlr4::ParserRuleContext *context) const {
    const antlr4::Token *start = context->getStart();
    const antlr4::Token *stop = context->getStop();
    if (!stop || stop->getStopIndex() < start->getStartIndex()) return token(start);
    return at_byte(byte(start->getStartIndex()), byte(stop->getStopIndex() + 1));
  }

  int end_line(antlr4::ParserRuleContext *context) const {
    const antlr4::Token *stop = context->getStop() ? context->getStop() : context->getStart();
    return token(stop).line;
  }

 private:
  const SourceFile &file_;
  int file_id_;
  std::vector<size_t> byte_of_codepoint_;
};

std::string describe_token_type(const antlr4::dfa::Vocabulary &vocabulary, size_t type) {
  switch (type) {
    case antlr4::Token::EOF: return "end of file";
    case NcdLexer::IDENT: return "a name";
    case NcdLexer::INT: return "an integer";
    case NcdLexer::FLOAT: return "a number";
    case NcdLexer::STRING: return "a string";
    case NcdLexer::SIZEOF: return "'#axis'";
    default: break;
  }
  std::string literal = vocabulary.getLiteralName(type);
  return literal.empty() ? vocabulary.getDisplayName(type) : literal;
}

std::string describe_found(const antlr4::Token *token) {
  if (token->getType() == antlr4::Token::EOF) return "end of file";
  if (token->getType() == NcdLexer::UNKNOWN) {
    std::string text = token->getText();
    unsigned char first = text.empty() ? 0 : static_cast<unsigned char>(text[0]);
    if (first < 0x20 || first == 0x7f) {
      char buffer[16];
      std::snprintf(buffer, sizeof buffer, "0x%02x", first);
      return std::string("character ") + buffer;
    }
    return "character '" + text + "'";
  }
  return "'" + token->getText() + "'";
}

// Turns ANTLR's syntax errors into ncd's own messages; ANTLR's wording never
// reaches the user.
class ErrorListener : public antlr4::BaseErrorListener {
 public:
  ErrorListener(const LocationMap &locations, DiagnosticEngine &diagnostics)
      : locations_(locations), diagnostics_(diagnostics) {}

  void syntaxError(antlr4::Recognizer *recognizer, antlr4::Token *offending, size_t, size_t,
                   const std::string &, std::exception_ptr) override {
    ++count_;
    if (!offending || diagnostics_.too_many_errors()) return;
    SourceLocation location = locations_.token(offending);
    // ANTLR's recovery often reports one mistake again on the same or the next
    // line; an error that close to the previous one is a cascade, not news.
    if (last_line_ > 0 && location.line <= last_line_ + 1) return;
    last_line_ = location.line;
    std::string message = "unexpected " + describe_found(offending);
    auto *parser = dynamic_cast<antlr4::Parser *>(recognizer);
    if (parser) {
      std::string expected;
      try {
        expected = describe_expected(parser->getExpectedTokens(), parser->getVocabulary());
      } catch (...) {
        // The expected set is unavailable in some recovery states; the found token still helps.
      }
      if (!expected.empty()) message += "; expected " + expected;
    }
    diagnostics_.error(location, message);
  }

  int count() const { return count_; }

 private:
  static std::string describe_expected(const antlr4::misc::IntervalSet &set,
                                       const antlr4::dfa::Vocabulary &vocabulary) {
    std::vector<size_t> types;
    for (ssize_t type : set.toList()) types.push_back(static_cast<size_t>(type));
    std::set<size_t> have(types.begin(), types.end());
    auto literal = [&](const char *text) {
      for (size_t type : types)
        if (vocabulary.getLiteralName(type) == text) return true;
      return false;
    };
    if (have.count(NcdLexer::INT) && have.count(NcdLexer::IDENT) && have.count(NcdLexer::SIZEOF) &&
        literal("'('"))
      return "an expression";
    if (have.count(NcdLexer::INT) && have.count(NcdLexer::IDENT) && literal("'('"))
      return "a size or index expression";
    std::vector<std::string> names;
    bool wants_name = have.count(NcdLexer::IDENT) > 0;
    for (size_t type : types) {
      // Keywords that may also serve as names are implied by "a name".
      if (wants_name && type != NcdLexer::IDENT &&
          (type == NcdLexer::DTYPE || type == NcdLexer::FOR || type == NcdLexer::GROUP || type == NcdLexer::STREAM ||
           type == NcdLexer::LEVEL || type == NcdLexer::BY || type == NcdLexer::DEFAULT || type == NcdLexer::SHARD ||
           type == NcdLexer::OVER))
        continue;
      names.push_back(describe_token_type(vocabulary, type));
    }
    if (names.empty() || names.size() > 8) return "";
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) {
      if (i) out += i + 1 == names.size() ? " or " : ", ";
      out += names[i];
    }
    return out;
  }

  const LocationMap &locations_;
  DiagnosticEngine &diagnostics_;
  int count_ = 0;
  int last_line_ = -1;
};

// Checks the raw bytes before ANTLR sees them: ANTLR's UTF-8 decoder throws on
// malformed input, and binary files deserve a plain statement of the problem.
bool validate_bytes(const SourceFile &file, int file_id, DiagnosticEngine &diagnostics) {
  const std::string &text = file.text;
  auto location_at = [&](size_t offset) {
    auto it = std::upper_bound(file.line_starts.begin(), file.line_starts.end(), offset);
    int line = static_cast<int>(it - file.line_starts.begin());
    size_t start = file.line_starts[static_cast<size_t>(line - 1)];
    return SourceLocation{file_id, line, static_cast<int>(offset - start) + 1, 1};
  };
  if (text.size() > kMaxSourceBytes) {
    diagnostics.error({file_id, 1, 1, 1}, "file is too large (" + std::to_string(text.size()) +
                                              " bytes; the limit is " +
                                              std::to_string(kMaxSourceBytes) + ")");
    return false;
  }
  size_t i = 0;
  while (i < text.size()) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == 0) {
      diagnostics.error(location_at(i), "file is not text: it contains a NUL byte");
      return false;
    }
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t length = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 && c < 0xF0 ? 3 : c >= 0xC2 && c < 0xE0 ? 2 : 0;
    bool ok = length > 0 && i + length <= text.size();
    for (size_t k = 1; ok && k < length; ++k)
      ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
    if (ok && length == 3) {
      unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
    }
    if (ok && length == 4) {
      unsigned char c1 = static_cast<unsigned char>(text[i + 1]);
      ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
    }
    if (!ok) {
      char buffer[8];
      std::snprintf(buffer, sizeof buffer, "0x%02x", c);
      diagnostics.error(location_at(i), std::string("invalid UTF-8 byte ") + buffer);
      return false;
    }
    i += length;
  }
  return true;
}

// Whether `context` has a direct token child spelled `text` (e.g. "[" or ":").
// Comparing terminal children only: RuleContext::getText() would rebuild the
// text of whole subtrees.
bool has_token(antlr4::ParserRuleContext *context, const char *text) {
  for (antlr4::tree::ParseTree *child : context->children)
    if (auto *terminal = dynamic_cast<antlr4::tree::TerminalNode *>(child))
      if (terminal->getSymbol()->getText() == text) return true;
  return false;
}

// The labelled alternative a context is, or nullptr. The generated context
// classes are final leaves, so an exact type comparison is enough and much
// cheaper than dynamic_cast, which dominated the builder's time.
template <typename T, typename Context>
T *as(Context *context) {
  return typeid(*context) == typeid(T) ? static_cast<T *>(context) : nullptr;
}

// The hand-written transformer. Each builder takes one typed context.
class AstBuilder {
 public:
  AstBuilder(const LocationMap &locations, DiagnosticEngine &diagnostics)
      : at_(locations), diagnostics_(diagnostics) {}

  std::unique_ptr<ast::File> file(NcdParser::FileContext *context) {
    auto out = std::make_unique<ast::File>();
    for (auto *item_context : context->item()) {
      if (item_context->children.size() == 1 && has_token(item_context, ";")) continue;
      out->items.push_back(item(item_context));
    }
    return out;
  }

 private:
  ast::Name name(NcdParser::NameContext *context) { return {context->getStart()->getText(), at_.token(context->getStart())}; }

  int64_t integer(antlr4::tree::TerminalNode *node) {
    const std::string text = node->getText();
    errno = 0;
    char *end = nullptr;
    unsigned long long value = std::strtoull(text.c_str(), &end, 10);
    if (errno == ERANGE || value > static_cast<unsigned long long>(INT64_MAX)) {
      diagnostics_.error(at_.token(node->getSymbol()), "integer " + text + " is too large");
      return 0;
    }
    return static_cast<int64_t>(value);
  }

  ast::Item item(NcdParser::ItemContext *context) {
    ast::Item out;
    out.location = at_.span(context);
    out.end_line = at_.end_line(context);
    if (auto *import = context->importDecl()) {
      out.kind = ast::Item::Kind::Import;
      out.import_path = unquote(import->STRING()->getText());
    } else if (auto *axes = context->axisDecl()) {
      out.kind = ast::Item::Kind::Axis;
      out.axes = axis_decl(axes);
    } else if (auto *dtype = context->dtypeDefault()) {
      out.kind = ast::Item::Kind::DefaultDtype;
      out.dtype = name(dtype->name());
    } else if (auto *diagram_context = context->diagramDecl()) {
      out.kind = ast::Item::Kind::Diagram;
      out.diagram = diagram(diagram_context);
    } else if (auto *schedule_context = context->scheduleDecl()) {
      out.kind = ast::Item::Kind::Schedule;
      out.schedule = schedule(schedule_context);
    }
    return out;
  }

  static std::string unquote(const std::string &literal) {
    std::string out;
    for (size_t i = 1; i + 1 < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 2 < literal.size()) ++i;
      out += literal[i];
    }
    return out;
  }

  ast::AxisDecl axis_decl(NcdParser::AxisDeclContext *context) {
    ast::AxisDecl out;
    out.location = at_.span(context);
    for (auto *item_context : context->axisItem()) {
      ast::AxisItem item;
      item.name = name(item_context->name());
      if (item_context->sizeExpr()) item.size = size_expr(item_context->sizeExpr(), 0);
      out.items.push_back(std::move(item));
    }
    return out;
  }

  std::unique_ptr<ast::SizeExpr> size_expr(NcdParser::SizeExprContext *context, int depth) {
    auto out = std::make_unique<ast::SizeExpr>();
    out->location = at_.span(context);
    if (!guard_depth(depth, out->location)) return out;
    if (auto *integer_context = as<NcdParser::SizeIntContext>(context)) {
      out->kind = ast::SizeExpr::Kind::Integer;
      out->value = integer(integer_context->INT());
    } else if (auto *axis = as<NcdParser::SizeAxisContext>(context)) {
      out->kind = ast::SizeExpr::Kind::Axis;
      out->axis = name(axis->name());
    } else if (auto *paren = as<NcdParser::SizeParenContext>(context)) {
      out->kind = ast::SizeExpr::Kind::Paren;
      out->lhs = size_expr(paren->sizeExpr(), depth + 1);
    } else if (auto *call = as<NcdParser::SizeCallContext>(context)) {
      out->kind = ast::SizeExpr::Kind::Call;
      out->axis = name(call->fn);
      out->lhs = size_expr(call->sizeExpr(), depth + 1);
    } else if (auto *mul = as<NcdParser::SizeMulContext>(context)) {
      binary_size(*out, mul->op, mul->sizeExpr(0), mul->sizeExpr(1), depth);
    } else if (auto *add = as<NcdParser::SizeAddContext>(context)) {
      binary_size(*out, add->op, add->sizeExpr(0), add->sizeExpr(1), depth);
    }
    return out;
  }

  void binary_size(ast::SizeExpr &out, antlr4::Token *op, NcdParser::SizeExprContext *lhs,
                   NcdParser::SizeExprContext *rhs, int depth) {
    out.kind = ast::SizeExpr::Kind::Binary;
    out.op = op->getText();
    out.lhs = size_expr(lhs, depth + 1);
    out.rhs = size_expr(rhs, depth + 1);
  }

  ast::TensorDecl tensor_decl(NcdParser::TensorDeclContext *context) {
    ast::TensorDecl out;
    out.location = at_.span(context);
    auto names = context->name();
    out.name = name(names[0]);
    // The dtype, when present, is the last name and follows ':'.
    bool has_dtype = has_token(context, ":");
    size_t axis_end = names.size() - (has_dtype ? 1 : 0);
    for (size_t i = 1; i < axis_end; ++i) out.axes.push_back(name(names[i]));
    if (has_dtype) out.dtype = name(names.back());
    return out;
  }

  std::unique_ptr<ast::Diagram> diagram(NcdParser::DiagramDeclContext *context) {
    auto out = std::make_unique<ast::Diagram>();
    out->name = name(context->name());
    out->location = at_.span(context);
    out->end_line = at_.end_line(context);
    for (auto *decl : context->tensorDecl()) out->inputs.push_back(tensor_decl(decl));
    for (auto *decl : context->outputList()->tensorDecl()) out->outputs.push_back(tensor_decl(decl));
    out->body = block(context->block(), 0);
    return out;
  }

  std::vector<std::unique_ptr<ast::Stmt>> block(NcdParser::BlockContext *context, int depth) {
    std::vector<std::unique_ptr<ast::Stmt>> out;
    for (auto *stmt_context : context->stmt()) {
      if (as<NcdParser::EmptyStmtContext>(stmt_context)) continue;
      out.push_back(stmt(stmt_context, depth));
    }
    return out;
  }

  std::unique_ptr<ast::Stmt> stmt(NcdParser::StmtContext *context, int depth) {
    auto out = std::make_unique<ast::Stmt>();
    out->location = at_.span(context);
    out->end_line = at_.end_line(context);
    if (auto *param = as<NcdParser::ParamStmtContext>(context)) {
      out->kind = ast::Stmt::Kind::Param;
      for (auto *decl : param->tensorDecl()) out->params.push_back(tensor_decl(decl));
    } else if (auto *axis = as<NcdParser::AxisStmtContext>(context)) {
      out->kind = ast::Stmt::Kind::Axis;
      out->axes = axis_decl(axis->axisDecl());
    } else if (auto *assign = as<NcdParser::AssignStmtContext>(context)) {
      out->kind = ast::Stmt::Kind::Assign;
      for (auto *target : assign->lhs()) out->targets.push_back(lhs(target));
      out->value = expr(assign->expr(), 0);
    } else if (auto *repeat = as<NcdParser::RepeatStmtContext>(context)) {
      out->kind = ast::Stmt::Kind::Repeat;
      if (repeat->INT()) {
        out->count = integer(repeat->INT());
        out->count_location = at_.token(repeat->INT()->getSymbol());
      } else {
        SourceLocation location = at_.token(repeat->SIZEOF()->getSymbol());
        out->count_location = location;
        // The name starts after '#'.
        out->count_axis = ast::Name{repeat->SIZEOF()->getText().substr(1),
                                    {location.file, location.line, location.column + 1, location.length - 1}};
      }
      if (repeat->asWord) {
        ast::Name word = name(repeat->asWord);
        if (word.text != "as") {
          diagnostics_.error(word.location, "expected 'as' or '{' after the repeat count, found '" + word.text + "'");
          return out;
        }
        out->index = name(repeat->indexName);
      }
      out->body = block(repeat->block(), depth + 1);
      out->body_end_line = at_.end_line(repeat->block());
    }
    return out;
  }

  ast::Lhs lhs(NcdParser::LhsContext *context) {
    ast::Lhs out;
    out.location = at_.span(context);
    out.name = name(context->name(0));
    out.has_brackets = has_token(context, "[");
    bool has_dtype = has_token(context, ":");
    if (has_dtype) out.dtype = name(context->name(1));
    for (auto *index_context : context->lhsIndex()) {
      ast::LhsIndex index;
      index.location = at_.span(index_context);
      for (auto *name_context : index_context->name()) index.names.push_back(name(name_context));
      index.group = has_token(index_context, "(");
      out.indices.push_back(std::move(index));
    }
    return out;
  }

  bool guard_depth(int depth, SourceLocation location) {
    // Sema, the printer and the IR walk the tree recursively; bound the depth.
    if (depth <= kMaxExpressionDepth) return true;
    if (!depth_reported_) diagnostics_.error(location, "expression is nested too deeply (more than " +
                                                           std::to_string(kMaxExpressionDepth) +
                                                           " levels); split it into several statements");
    depth_reported_ = true;
    return false;
  }

  std::unique_ptr<ast::Expr> expr(NcdParser::ExprContext *context, int depth) {
    auto out = std::make_unique<ast::Expr>();
    out->location = at_.span(context);
    if (!guard_depth(depth, out->location)) return out;
    if (auto *unary = as<NcdParser::UnaryExprContext>(context)) {
      out->kind = ast::Expr::Kind::Unary;
      out->op = unary->op->getText();
      out->op_location = at_.token(unary->op);
      out->lhs = expr(unary->expr(), depth + 1);
    } else if (auto *primary = as<NcdParser::PrimaryExprContext>(context)) {
      return this->primary(primary->primary(), depth);
    } else {
      NcdParser::ExprContext *lhs_context = nullptr, *rhs_context = nullptr;
      antlr4::Token *op = nullptr;
      if (auto *mul = as<NcdParser::MulExprContext>(context))
        lhs_context = mul->expr(0), rhs_context = mul->expr(1), op = mul->op;
      else if (auto *add = as<NcdParser::AddExprContext>(context))
        lhs_context = add->expr(0), rhs_context = add->expr(1), op = add->op;
      else if (auto *compare = as<NcdParser::CompareExprContext>(context))
        lhs_context = compare->expr(0), rhs_context = compare->expr(1), op = compare->op;
      else if (auto *logical_and = as<NcdParser::AndExprContext>(context))
        lhs_context = logical_and->expr(0), rhs_context = logical_and->expr(1), op = logical_and->op;
      else if (auto *logical_or = as<NcdParser::OrExprContext>(context))
        lhs_context = logical_or->expr(0), rhs_context = logical_or->expr(1), op = logical_or->op;
      out->kind = ast::Expr::Kind::Binary;
      out->op = op->getText();
      out->op_location = at_.token(op);
      out->lhs = expr(lhs_context, depth + 1);
      out->rhs = expr(rhs_context, depth + 1);
    }
    return out;
  }

  std::unique_ptr<ast::Expr> primary(NcdParser::PrimaryContext *context, int depth) {
    auto out = std::make_unique<ast::Expr>();
    out->location = at_.span(context);
    if (!guard_depth(depth, out->location)) return out;
    if (auto *number = as<NcdParser::NumberPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::Number;
      out->literal = number->getStart()->getText();
      out->number = std::strtod(out->literal.c_str(), nullptr);
      if (!std::isfinite(out->number))
        diagnostics_.error(out->location, "number " + out->literal + " is out of range");
    } else if (as<NcdParser::InfPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::Infinity;
    } else if (auto *size = as<NcdParser::SizeofPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::SizeOf;
      SourceLocation location = at_.token(size->SIZEOF()->getSymbol());
      // The name starts after '#'.
      out->name = {size->SIZEOF()->getText().substr(1),
                   {location.file, location.line, location.column + 1, location.length - 1}};
    } else if (auto *paren = as<NcdParser::ParenPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::Paren;
      out->lhs = expr(paren->expr(), depth + 1);
    } else if (auto *call = as<NcdParser::CallPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::Call;
      out->name = name(call->callee);
      if (call->label && call->label->name()) {
        out->label = name(call->label->name());
      } else if (call->label) {
        out->label =
            ast::Name{unquote(call->label->STRING()->getText()), at_.token(call->label->STRING()->getSymbol())};
      }
      // Brackets before the arguments (`F[q = s](x)`); those after them index the result.
      out->has_brackets = false;
      for (antlr4::tree::ParseTree *child : call->children)
        if (auto *terminal = dynamic_cast<antlr4::tree::TerminalNode *>(child)) {
          if (terminal->getSymbol()->getText() == "(") break;
          if (terminal->getSymbol()->getText() == "[") out->has_brackets = true;
        }
      for (auto *item_context : call->bracketItem()) {
        ast::BracketItem item;
        item.name = name(item_context->name(0));
        if (item_context->name().size() > 1) item.value = name(item_context->name(1));
        out->brackets.push_back(std::move(item));
      }
      for (auto *argument_context : call->argument()) {
        ast::Argument argument;
        if (argument_context->name()) argument.keyword = name(argument_context->name());
        argument.value = expr(argument_context->expr(), depth + 1);
        out->arguments.push_back(std::move(argument));
      }
      if (call->result) {
        out->has_result_index = true;
        out->result_index.has_brackets = true;
        out->result_index.location = at_.token(call->result);
        for (auto *index_context : call->index()) out->result_index.indices.push_back(index(index_context, depth + 1));
      }
    } else if (auto *ref = as<NcdParser::RefPrimaryContext>(context)) {
      out->kind = ast::Expr::Kind::Ref;
      out->ref = tensor_ref(ref->tensorRef(), depth + 1);
    }
    return out;
  }

  ast::TensorRef tensor_ref(NcdParser::TensorRefContext *context, int depth) {
    ast::TensorRef out;
    out.location = at_.span(context);
    out.name = name(context->name());
    out.has_brackets = context->children.size() > 1;
    for (auto *index_context : context->index()) out.indices.push_back(index(index_context, depth + 1));
    return out;
  }

  std::unique_ptr<ast::Index> index(NcdParser::IndexContext *context, int depth) {
    auto out = std::make_unique<ast::Index>();
    out->location = at_.span(context);
    if (!guard_depth(depth, out->location)) return out;
    if (auto *integer_context = as<NcdParser::IndexIntContext>(context)) {
      out->kind = ast::Index::Kind::Integer;
      out->value = integer(integer_context->INT());
    } else if (auto *ref = as<NcdParser::IndexRefContext>(context)) {
      out->kind = ast::Index::Kind::Ref;
      out->ref = tensor_ref(ref->tensorRef(), depth + 1);
    } else if (auto *group = as<NcdParser::IndexGroupContext>(context)) {
      out->kind = ast::Index::Kind::Group;
      for (auto *name_context : group->name()) out->group.push_back(name(name_context));
    } else if (auto *paren = as<NcdParser::IndexParenContext>(context)) {
      out->kind = ast::Index::Kind::Paren;
      out->lhs = index(paren->index(), depth + 1);
    } else if (auto *negate = as<NcdParser::IndexNegContext>(context)) {
      out->kind = ast::Index::Kind::Negate;
      out->lhs = index(negate->index(), depth + 1);
    } else if (auto *mul = as<NcdParser::IndexMulContext>(context)) {
      out->kind = ast::Index::Kind::Binary;
      out->op = '*';
      out->lhs = index(mul->index(0), depth + 1);
      out->rhs = index(mul->index(1), depth + 1);
    } else if (auto *add = as<NcdParser::IndexAddContext>(context)) {
      out->kind = ast::Index::Kind::Binary;
      out->op = add->op->getText()[0];
      out->lhs = index(add->index(0), depth + 1);
      out->rhs = index(add->index(1), depth + 1);
    }
    return out;
  }

  std::unique_ptr<ast::Schedule> schedule(NcdParser::ScheduleDeclContext *context) {
    auto out = std::make_unique<ast::Schedule>();
    out->location = at_.span(context);
    out->end_line = at_.end_line(context);
    out->diagram = name(context->name());
    if (context->STRING()) {
      out->target = unquote(context->STRING()->getText());
      out->target_location = at_.token(context->STRING()->getSymbol());
    }
    for (auto *item_context : context->scheduleItem()) {
      if (as<NcdParser::EmptyScheduleItemContext>(item_context)) continue;
      ast::ScheduleItem item;
      item.location = at_.span(item_context);
      item.end_line = at_.end_line(item_context);
      if (auto *group = as<NcdParser::GroupItemContext>(item_context)) {
        item.kind = ast::ScheduleItem::Kind::Group;
        item.subject = name(group->name());
        item.amount = integer(group->INT());
        item.amount_location = at_.token(group->INT()->getSymbol());
      } else if (auto *stream = as<NcdParser::StreamItemContext>(item_context)) {
        item.kind = ast::ScheduleItem::Kind::Stream;
        item.subject = name(stream->name());
        item.amount = integer(stream->INT());
        item.amount_location = at_.token(stream->INT()->getSymbol());
      } else if (auto *level = as<NcdParser::LevelItemContext>(item_context)) {
        item.kind = ast::ScheduleItem::Kind::Level;
        auto names = level->name();
        item.subject = name(names[0]);
        for (size_t i = 1; i < names.size(); ++i) item.values.push_back(name(names[i]));
      } else if (auto *shard = as<NcdParser::ShardItemContext>(item_context)) {
        item.kind = ast::ScheduleItem::Kind::Shard;
        for (auto *axis : shard->name()) item.values.push_back(name(axis));
        item.subject = item.values.front();
        item.amount = integer(shard->INT());
        item.amount_location = at_.token(shard->INT()->getSymbol());
      }
      out->items.push_back(std::move(item));
    }
    return out;
  }

  static constexpr int kMaxExpressionDepth = 2000;
  const LocationMap &at_;
  DiagnosticEngine &diagnostics_;
  bool depth_reported_ = false;
};

}  // namespace

std::unique_ptr<ast::File> parse_file(const SourceManager &sources, int file_id,
                                      DiagnosticEngine &diagnostics) {
  const SourceFile &file = sources.file(file_id);
  const int errors_before = diagnostics.error_count();
  if (!validate_bytes(file, file_id, diagnostics)) return nullptr;

  LocationMap byte_locations(file, file_id, /*byte_offsets=*/true);
  const LocationMap &locations = byte_locations;
  FastLexer lexer(file.text);
  antlr4::CommonTokenStream tokens(&lexer);
  tokens.fill();

  // Bracket nesting is checked on tokens, before the recursive-descent parser
  // could run out of stack on `((((...`.
  static const size_t opening[] = {literal_token_type("("), literal_token_type("["), literal_token_type("{")};
  static const size_t closing[] = {literal_token_type(")"), literal_token_type("]"), literal_token_type("}")};
  auto is_one_of = [](size_t type, const size_t(&types)[3]) {
    return type == types[0] || type == types[1] || type == types[2];
  };
  int depth = 0;
  for (antlr4::Token *token : tokens.getTokens()) {
    const size_t type = token->getType();
    if (is_one_of(type, opening)) {
      if (++depth > kMaxNesting) {
        diagnostics.error(locations.token(token), "brackets are nested too deeply (more than " +
                                                      std::to_string(kMaxNesting) + " levels)");
        return nullptr;
      }
    } else if (is_one_of(type, closing)) {
      depth = std::max(0, depth - 1);
    }
  }

  NcdParser parser(&tokens);
  ErrorListener listener(locations, diagnostics);
  parser.removeErrorListeners();
  parser.addErrorListener(&listener);
  // SLL is much faster and almost always enough; fall back to full LL on failure.
  parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(
      antlr4::atn::PredictionMode::SLL);
  parser.setErrorHandler(std::make_shared<antlr4::BailErrorStrategy>());
  NcdParser::FileContext *tree = nullptr;
  try {
    tree = parser.file();
  } catch (const antlr4::ParseCancellationException &) {
    tokens.seek(0);
    parser.reset();
    parser.setErrorHandler(std::make_shared<antlr4::DefaultErrorStrategy>());
    parser.getInterpreter<antlr4::atn::ParserATNSimulator>()->setPredictionMode(
        antlr4::atn::PredictionMode::LL);
    tree = parser.file();
  }
  if (listener.count() > 0) {
    if (diagnostics.error_count() == errors_before)
      diagnostics.error({file_id, 1, 1, 1}, "syntax error");
    return nullptr;
  }

  AstBuilder builder(locations, diagnostics);
  auto result = builder.file(tree);
  result->file_id = file_id;
  for (antlr4::Token *token : tokens.getTokens()) {
    if (token->getType() != NcdLexer::COMMENT) continue;
    SourceLocation location = locations.token(token);
    std::string_view line = file.line(location.line);
    bool own_line = line.substr(0, static_cast<size_t>(location.column - 1))
                        .find_first_not_of(" \t") == std::string_view::npos;
    std::string text = token->getText();
    while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r'))
      text.pop_back();
    result->comments.push_back({location.line, location.column, text, own_line});
  }
  if (diagnostics.error_count() > errors_before) return nullptr;
  return result;
}

}  // namespace ncd
