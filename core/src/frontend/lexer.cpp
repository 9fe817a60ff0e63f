// FastLexer: the lexer rules of grammar/Ncd.g4, written out by hand.
#include "lexer.h"

#include <map>

#include "NcdLexer.h"

namespace ncd {
namespace {

bool is_name_start(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(unsigned char c) { return is_name_start(c) || (c >= '0' && c <= '9'); }
bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

// Keyword and punctuation token types, read from the generated vocabulary so
// the two lexers can never disagree on numbering.
struct Tables {
  std::map<std::string, size_t, std::less<>> literals;  // "->" -> type, "import" -> type
  Tables() {
    antlr4::ANTLRInputStream nothing(std::string{});
    NcdLexer generated(&nothing);
    const antlr4::dfa::Vocabulary &vocabulary = generated.getVocabulary();
    for (size_t type = 1; type <= vocabulary.getMaxTokenType(); ++type) {
      std::string literal = vocabulary.getLiteralName(type);
      if (literal.size() >= 2) literals[literal.substr(1, literal.size() - 2)] = type;
    }
  }
};

const Tables &tables() {
  static const Tables instance;
  return instance;
}

size_t utf8_length(unsigned char lead) {
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  if (lead >= 0xC0) return 2;
  return 1;
}

}  // namespace

size_t literal_token_type(std::string_view literal) {
  auto it = tables().literals.find(literal);
  return it == tables().literals.end() ? 0 : it->second;
}

FastLexer::FastLexer(const std::string &text) : text_(text), empty_(std::string()) {}

antlr4::TokenFactory<antlr4::CommonToken> *FastLexer::getTokenFactory() {
  return antlr4::CommonTokenFactory::DEFAULT.get();
}

void FastLexer::advance(size_t bytes) {
  for (size_t i = 0; i < bytes && position_ < text_.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text_[position_++]);
    if (c == '\n') {
      ++line_;
      column_ = 0;
    } else if ((c & 0xC0) != 0x80) {
      ++column_;
    }
  }
}

std::unique_ptr<antlr4::Token> FastLexer::make(size_t type, size_t channel, size_t start, size_t end, size_t line,
                                               size_t column) {
  auto token = std::make_unique<antlr4::CommonToken>(std::make_pair(this, &empty_), type, channel, start, end - 1);
  token->setLine(line);
  token->setCharPositionInLine(column);
  token->setText(text_.substr(start, end - start));
  return token;
}

std::unique_ptr<antlr4::Token> FastLexer::nextToken() {
  const size_t size = text_.size();
  while (true) {
    // Whitespace is skipped (the grammar's WS rule goes to the hidden channel; nothing reads it).
    while (position_ < size) {
      char c = text_[position_];
      if (c != ' ' && c != '\t' && c != '\r' && c != '\n') break;
      advance(1);
    }
    if (position_ >= size) {
      auto eof = std::make_unique<antlr4::CommonToken>(std::make_pair(this, &empty_), antlr4::Token::EOF,
                                                       antlr4::Token::DEFAULT_CHANNEL, size, size - 1);
      eof->setLine(line_);
      eof->setCharPositionInLine(column_);
      eof->setText("<EOF>");
      return eof;
    }
    const size_t start = position_, line = line_, column = column_;
    auto at = [&](size_t i) -> unsigned char { return i < size ? static_cast<unsigned char>(text_[i]) : 0; };
    unsigned char c = at(start);
    size_t end = start + 1;
    size_t type = NcdLexer::UNKNOWN;
    size_t channel = antlr4::Token::DEFAULT_CHANNEL;

    if (is_name_start(c)) {
      while (is_name_char(at(end))) ++end;
      auto keyword = tables().literals.find(std::string_view(text_).substr(start, end - start));
      type = keyword != tables().literals.end() ? keyword->second : static_cast<decltype(keyword->second)>(NcdLexer::IDENT);
    } else if (is_digit(c) || (c == '.' && is_digit(at(start + 1)))) {
      // INT or FLOAT, longest match: digits ['.' digits] [exponent].
      bool fraction = c == '.';
      while (is_digit(at(end))) ++end;
      if (!fraction && at(end) == '.') {
        fraction = true;
        ++end;
        while (is_digit(at(end))) ++end;
      }
      bool exponent = false;
      if (at(end) == 'e' || at(end) == 'E') {
        size_t digits = end + 1;
        if (at(digits) == '+' || at(digits) == '-') ++digits;
        if (is_digit(at(digits))) {
          end = digits;
          while (is_digit(at(end))) ++end;
          exponent = true;
        }
      }
      type = fraction || exponent ? NcdLexer::FLOAT : NcdLexer::INT;
    } else if (c == '#') {
      if (is_name_start(at(start + 1))) {
        end = start + 2;
        while (is_name_char(at(end))) ++end;
        type = NcdLexer::SIZEOF;
      } else {
        while (end < size && text_[end] != '\n' && text_[end] != '\r') ++end;
        type = NcdLexer::COMMENT;
        channel = antlr4::Token::HIDDEN_CHANNEL;
      }
    } else if (c == '"') {
      size_t i = start + 1;
      bool closed = false;
      while (i < size) {
        char d = text_[i];
        if (d == '\r' || d == '\n') break;
        if (d == '"') {
          closed = true;
          break;
        }
        if (d == '\\') {
          if (i + 1 >= size || text_[i + 1] == '\r' || text_[i + 1] == '\n') break;
          i += 1 + utf8_length(static_cast<unsigned char>(text_[i + 1]));
          continue;
        }
        i += utf8_length(static_cast<unsigned char>(d));
      }
      if (closed) {
        end = i + 1;
        type = NcdLexer::STRING;
      }
    } else {
      // Punctuation: the longest literal that matches (two characters before one).
      auto &literals = tables().literals;
      if (start + 1 < size) {
        auto two = literals.find(std::string_view(text_).substr(start, 2));
        if (two != literals.end()) {
          type = two->second;
          end = start + 2;
        }
      }
      if (type == NcdLexer::UNKNOWN) {
        auto one = literals.find(std::string_view(text_).substr(start, 1));
        if (one != literals.end()) type = one->second;
      }
    }
    if (type == NcdLexer::UNKNOWN) end = std::min(size, start + utf8_length(c));
    advance(end - start);
    return make(type, channel, start, end, line, column);
  }
}

}  // namespace ncd
