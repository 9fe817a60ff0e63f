// A hand-written lexer for .ncd text that feeds ANTLR's parser.
//
// It produces exactly the tokens of the lexer rules in grammar/Ncd.g4 (a unit
// test compares the two on every test input) at a fraction of the generated
// lexer's cost, which dominated parsing time. Token start/stop indices are
// byte offsets; whitespace is dropped and comments go to the hidden channel.
#pragma once

#include <memory>
#include <string>

#include "antlr4-runtime.h"

namespace ncd {

// The token type of a keyword or punctuation literal ("(", "->", "axis"), or 0.
size_t literal_token_type(std::string_view literal);

class FastLexer : public antlr4::TokenSource {
 public:
  explicit FastLexer(const std::string &text);

  std::unique_ptr<antlr4::Token> nextToken() override;
  size_t getLine() const override { return line_; }
  size_t getCharPositionInLine() override { return column_; }
  antlr4::CharStream *getInputStream() override { return &empty_; }
  std::string getSourceName() override { return "ncd"; }
  antlr4::TokenFactory<antlr4::CommonToken> *getTokenFactory() override;

 private:
  std::unique_ptr<antlr4::Token> make(size_t type, size_t channel, size_t start, size_t end, size_t line,
                                      size_t column);
  void advance(size_t bytes);

  const std::string &text_;
  size_t position_ = 0;
  size_t line_ = 1;
  size_t column_ = 0;  // in characters, like ANTLR's charPositionInLine
  antlr4::ANTLRInputStream empty_;
};

}  // namespace ncd
