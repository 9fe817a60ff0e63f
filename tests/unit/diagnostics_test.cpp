// Diagnostics: closest_name, did_you_mean and the printed form of messages.
#include "ncd/diagnostics.h"

#include <gtest/gtest.h>

#include <sstream>

namespace ncd {
namespace {

TEST(ClosestName, FindsOneEditMisspellings) {
  EXPECT_EQ(closest_name("sqe", {"seq", "d", "model"}), "seq");     // transposition
  EXPECT_EQ(closest_name("hedas", {"heads", "d"}), "heads");        // transposition
  EXPECT_EQ(closest_name("modle", {"model", "d"}), "model");
  EXPECT_EQ(closest_name("sigmiod", {"sigmoid", "silu", "sin"}), "sigmoid");
  EXPECT_EQ(closest_name("bf61", {"f32", "f16", "bf16", "i8"}), "bf16");
  EXPECT_EQ(closest_name("Atention", {"Attention", "MultiHead"}), "Attention");
}

TEST(ClosestName, IgnoresCase) {
  EXPECT_EQ(closest_name("Seq", {"seq"}), "seq");
  EXPECT_EQ(closest_name("LAYERNORM", {"LayerNorm", "RMSNorm"}), "LayerNorm");
}

TEST(ClosestName, NeverSuggestsTheNameItself) {
  EXPECT_EQ(closest_name("seq", {"seq"}), "");
  EXPECT_EQ(closest_name("seq", {"seq", "sea"}), "sea");
}

TEST(ClosestName, RejectsDistantNames) {
  EXPECT_EQ(closest_name("x", {"y"}), "");                  // replacing every character is no misspelling
  EXPECT_EQ(closest_name("q", {"k", "d"}), "");
  EXPECT_EQ(closest_name("tokens", {"heads", "model"}), "");
  EXPECT_EQ(closest_name("abc", {"xyz"}), "");
  EXPECT_EQ(closest_name("seq", {}), "");
  EXPECT_EQ(closest_name("seq", {""}), "");
}

TEST(ClosestName, ScalesTheLimitWithLength) {
  // Up to (length + 2) / 3 edits: one for 3 letters, two for 4 to 6, three for 7 to 9.
  EXPECT_EQ(closest_name("abc", {"abxy"}), "");
  EXPECT_EQ(closest_name("abcd", {"abxy"}), "abxy");
  EXPECT_EQ(closest_name("abcdefg", {"abcdxyz"}), "abcdxyz");
  EXPECT_EQ(closest_name("abcdefg", {"abcwxyz"}), "");
}

TEST(ClosestName, PrefersTheNearestThenTheFirstAlphabetically) {
  // "hxads" and "heads_" are both one edit away; "heads_" sorts first.
  EXPECT_EQ(closest_name("heads", {"hxads", "heads_", "hxxds"}), "heads_");
  // A tie between a transposition and a deletion is also settled alphabetically.
  EXPECT_EQ(closest_name("modle", {"model", "mode"}), "mode");
  EXPECT_EQ(closest_name("abcd", {"abcx", "abcy"}), "abcx");
  EXPECT_EQ(closest_name("abcd", {"abcy", "abcx"}), "abcx");
  EXPECT_EQ(closest_name("abcd", {"axyd", "abcde"}), "abcde");  // 1 edit beats 2
}

TEST(DidYouMean, FormatsTheHint) {
  EXPECT_EQ(did_you_mean("sqe", {"seq"}), "; did you mean 'seq'?");
  EXPECT_EQ(did_you_mean("zzz", {"seq"}), "");
}

class DiagnosticsPrinting : public ::testing::Test {
 protected:
  int add(const std::string &text, const std::string &path = "f.ncd") { return sources.add(path, "/x/" + path, text); }
  std::string flush(bool color = false) {
    std::ostringstream out;
    engine.flush(out, color);
    return out.str();
  }
  SourceManager sources;
  DiagnosticEngine engine{sources};
};

TEST_F(DiagnosticsPrinting, ErrorWithExcerptAndCaret) {
  int file = add("axis q = 4\ndiagram F(X[q]) -> Y[q] {\n  Y[q] = X[qq]\n}\n");
  engine.error({file, 3, 12, 2}, "unknown axis 'qq'; did you mean 'q'?");
  EXPECT_EQ(flush(),
            "f.ncd:3:12: error: unknown axis 'qq'; did you mean 'q'?\n"
            "    Y[q] = X[qq]\n"
            "             ^~\n");
  EXPECT_EQ(engine.error_count(), 1);
  EXPECT_TRUE(engine.has_errors());
}

TEST_F(DiagnosticsPrinting, NotesFollowTheirDiagnostic) {
  int file = add("axis i = 4\naxis i = 8\n");
  auto &error = engine.error({file, 2, 6, 1}, "axis 'i' is already declared");
  error.notes.push_back({{file, 1, 6, 1}, "first declared here"});
  error.notes.push_back({{}, "a note without a place"});
  EXPECT_EQ(flush(),
            "f.ncd:2:6: error: axis 'i' is already declared\n"
            "  axis i = 8\n"
            "       ^\n"
            "f.ncd:1:6: note: first declared here\n"
            "  axis i = 4\n"
            "       ^\n"
            "ncd: note: a note without a place\n");
}

TEST_F(DiagnosticsPrinting, WarningsAreMarkedAndCounted) {
  int file = add("axis unused = 3\n");
  engine.warning({file, 1, 6, 6}, "axis 'unused' is declared but never used");
  EXPECT_EQ(engine.warning_count(), 1);
  EXPECT_EQ(engine.error_count(), 0);
  EXPECT_FALSE(engine.has_errors());
  EXPECT_EQ(flush(),
            "f.ncd:1:6: warning: axis 'unused' is declared but never used\n"
            "  axis unused = 3\n"
            "       ^~~~~~\n");
}

TEST_F(DiagnosticsPrinting, DisabledWarningsAreDroppedButNotErrors) {
  int file = add("axis unused = 3\n");
  engine.set_warnings_enabled(false);
  auto &warning = engine.warning({file, 1, 6, 6}, "dropped");
  warning.notes.push_back({{}, "also dropped"});  // writing to a dropped warning is harmless
  engine.error({file, 1, 1, 4}, "kept");
  EXPECT_EQ(engine.warning_count(), 0);
  EXPECT_EQ(flush(), "f.ncd:1:1: error: kept\n  axis unused = 3\n  ^~~~\n");
}

TEST_F(DiagnosticsPrinting, MessagesWithoutLocation) {
  engine.error({}, "-D qq=8: no axis named 'qq'; did you mean 'q'?");
  EXPECT_EQ(flush(), "ncd: error: -D qq=8: no axis named 'qq'; did you mean 'q'?\n");
}

TEST_F(DiagnosticsPrinting, FlushForgetsButKeepsCounts) {
  engine.error({}, "one");
  EXPECT_EQ(flush(), "ncd: error: one\n");
  EXPECT_EQ(flush(), "");
  EXPECT_EQ(engine.error_count(), 1);
}

TEST_F(DiagnosticsPrinting, CaretIsClippedToTheLine) {
  int file = add("abc\n");
  engine.error({file, 1, 2, 100}, "long span");
  engine.error({file, 1, 9, 1}, "past the end");
  EXPECT_EQ(flush(),
            "f.ncd:1:2: error: long span\n  abc\n   ^~\n"
            "f.ncd:1:9: error: past the end\n  abc\n     ^\n");
}

TEST_F(DiagnosticsPrinting, TabsAreKeptUnderTheCaret) {
  int file = add("\tY = X[qq]\n");
  engine.error({file, 1, 8, 2}, "here");
  EXPECT_EQ(flush(), "f.ncd:1:8: error: here\n  \tY = X[qq]\n  \t      ^~\n");
}

TEST_F(DiagnosticsPrinting, CaretCountsCharactersNotBytes) {
  // "é" is two bytes; the caret under 'x' must still line up on a terminal.
  int file = add("# caf\xC3\xA9 x\n");
  engine.error({file, 1, 9, 1}, "here");
  EXPECT_EQ(flush(), "f.ncd:1:9: error: here\n  # caf\xC3\xA9 x\n         ^\n");
}

TEST_F(DiagnosticsPrinting, ControlCharactersAndBadBytesArePrintedAsQuestionMarks) {
  int file = add(std::string("a\x01" "b\x7f" "c\xE9z\n"));
  engine.error({file, 1, 1, 1}, "binary");
  EXPECT_EQ(flush(), "f.ncd:1:1: error: binary\n  a?b?c?z\n  ^\n");
}

TEST_F(DiagnosticsPrinting, VeryLongLinesAreNotExcerpted) {
  int file = add(std::string(1000, 'x') + "\n");
  engine.error({file, 1, 500, 1}, "somewhere in the middle");
  EXPECT_EQ(flush(), "f.ncd:1:500: error: somewhere in the middle\n");
}

TEST_F(DiagnosticsPrinting, ColourOnlyWhenAsked) {
  int file = add("x\n");
  engine.error({file, 1, 1, 1}, "coloured");
  std::string text = flush(true);
  EXPECT_NE(text.find("\033["), std::string::npos);
  EXPECT_NE(text.find("coloured"), std::string::npos);
  engine.error({file, 1, 1, 1}, "plain");
  EXPECT_EQ(flush(false).find("\033["), std::string::npos);
}

TEST_F(DiagnosticsPrinting, StopsCountingAtTheLimit) {
  for (int i = 0; i < DiagnosticEngine::kMaxErrors - 1; ++i) engine.error({}, "e");
  EXPECT_FALSE(engine.too_many_errors());
  engine.error({}, "e");
  EXPECT_TRUE(engine.too_many_errors());
}

TEST(SourceManager, DescribesLocations) {
  SourceManager sources;
  int file = sources.add("a/b.ncd", "/abs/a/b.ncd", "x\ny\n");
  EXPECT_EQ(sources.describe({file, 2, 1, 1}), "a/b.ncd:2:1");
  EXPECT_EQ(sources.describe({}), "<unknown>");
  EXPECT_EQ(sources.find_resolved("/abs/a/b.ncd"), file);
  EXPECT_EQ(sources.find_resolved("/nowhere.ncd"), -1);
  EXPECT_EQ(sources.file(file).line(1), "x");
  EXPECT_EQ(sources.file(file).line(2), "y");
}

}  // namespace
}  // namespace ncd
