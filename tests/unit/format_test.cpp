// `ncd fmt`: canonical layout, comments kept, idempotence and round trip over
// every .ncd file of the tree (stdlib/, examples/, the golden inputs that parse).
#include "ncd/format.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.h"

namespace ncd {
namespace {

using test::format_text;

TEST(Format, CanonicalSpacing) {
  EXPECT_EQ(format_text("axis  q=4096,k = 4096 ,d=64\ndefault   dtype   bf16\n"),
            "axis q = 4096, k = 4096, d = 64\ndefault dtype bf16\n");
  EXPECT_EQ(format_text("diagram   F( Q[q,d] ,K[k,d]:f32 )->O[q,d]{\n    O[q,d]=Q[q,d]*K[k,d]\n}"),
            "diagram F(Q[q, d], K[k, d]: f32) -> O[q, d] {\n  O[q, d] = Q[q, d] * K[k, d]\n}\n");
}

TEST(Format, ParenthesisedOutputsAreUnwrapped) {
  EXPECT_EQ(format_text("diagram F(X[m]) -> (A[m], B[m]) {}"), "diagram F(X[m]) -> A[m], B[m] {\n}\n");
}

TEST(Format, OneStatementPerLineWithoutSemicolons) {
  EXPECT_EQ(format_text("diagram F(X[n]) -> Y[] {\n  S[] = X[n]; Y[] = S / #n;\n}\n"),
            "diagram F(X[n]) -> Y[] {\n  S[] = X[n]\n  Y[] = S / #n\n}\n");
}

TEST(Format, ExpressionsKeepTheirParentheses) {
  EXPECT_EQ(format_text("diagram F(X[i]) -> Y[i] {\n  Y[i]=-(X[i]+1)*((2))/  #i\n}\n"),
            "diagram F(X[i]) -> Y[i] {\n  Y[i] = -(X[i] + 1) * ((2)) / #i\n}\n");
}

TEST(Format, NumbersKeepTheirSpelling) {
  EXPECT_EQ(format_text("diagram F() -> Y[] {\n  Y[]=1e-5+.5+2.+3.0E+2\n}\n"),
            "diagram F() -> Y[] {\n  Y[] = 1e-5 + .5 + 2. + 3.0E+2\n}\n");
}

TEST(Format, CallsBindingsAndIndices) {
  EXPECT_EQ(format_text("diagram F() -> Y[] {\n  Y[s,(h,d)]=A[q=s,k=s](Q,K)+layernorm[m](X,eps=1e-6)+T[ids[t],m]+X[s+k-1,(h,d)]\n}\n"),
            "diagram F() -> Y[] {\n  Y[s, (h, d)] = A[q = s, k = s](Q, K) + layernorm[m](X, eps = 1e-6) + T[ids[t], m] + "
            "X[s + k - 1, (h, d)]\n}\n");
}

TEST(Format, RepeatAndParamsAndLocalAxes) {
  EXPECT_EQ(format_text("diagram F(X[m]) -> Y[m] {\nparam W[m,r]:bf16,b[m]\naxis r=4\nH[m]=X\nrepeat 2{\nH=H*2\n}\nY=H\n}"),
            "diagram F(X[m]) -> Y[m] {\n  param W[m, r]: bf16, b[m]\n  axis r = 4\n  H[m] = X\n  repeat 2 {\n    H = H * 2\n  }\n"
            "  Y = H\n}\n");
}

TEST(Format, Schedules) {
  EXPECT_EQ(format_text("schedule  A  for \"h100\"{group q by 128 ; stream k by 64\nlevel smem : Q,K,V}"),
            "schedule A for \"h100\" {\n  group q by 128\n  stream k by 64\n  level smem: Q, K, V\n}\n");
}

TEST(Format, ImportsAreRequoted) {
  EXPECT_EQ(format_text("import   \"a\\\"b.ncd\""), "import \"a\\\"b.ncd\"\n");
}

TEST(Format, CommentsAreKept) {
  EXPECT_EQ(format_text("# header\n\n\n\naxis q = 4   # trailing\n# before F\ndiagram F(X[q]) -> Y[q] {\n"
                        "      # inside\n  Y[q] = X[q] # last\n  # end of body\n}\n# end of file\n"),
            "# header\n\naxis q = 4  # trailing\n\n# before F\ndiagram F(X[q]) -> Y[q] {\n  # inside\n"
            "  Y[q] = X[q]  # last\n  # end of body\n}\n# end of file\n");
}

TEST(Format, TrailingCommentsOfConsecutiveLinesAlign) {
  EXPECT_EQ(format_text("diagram F(X[n]) -> Y[] {\n  S[] = X[n] # sum\n  Y[] = S / #n # mean\n}\n"),
            "diagram F(X[n]) -> Y[] {\n  S[] = X[n]    # sum\n  Y[] = S / #n  # mean\n}\n");
}

TEST(Format, BlankLinesCollapseToOne) {
  EXPECT_EQ(format_text("axis a = 1\n\n\n\naxis b = 2\naxis c = 3\n"), "axis a = 1\n\naxis b = 2\naxis c = 3\n");
  EXPECT_EQ(format_text("diagram F() -> Y[] {\n\n\n  A[] = 1\n\n\n  Y = A\n\n}\n"),
            "diagram F() -> Y[] {\n  A[] = 1\n\n  Y = A\n}\n");
}

TEST(Format, DiagramsAndSchedulesStandApart) {
  EXPECT_EQ(format_text("axis a = 1\ndiagram F() -> Y[] {\n  Y = 1\n}\ndiagram G() -> Y[] {\n  Y = 2\n}\nschedule F {}\naxis b\n"),
            "axis a = 1\n\ndiagram F() -> Y[] {\n  Y = 1\n}\n\ndiagram G() -> Y[] {\n  Y = 2\n}\n\nschedule F {\n}\n\naxis b\n");
}

TEST(Format, EmptyFile) {
  EXPECT_EQ(format_text(""), "");
  EXPECT_EQ(format_text("\n\n\n"), "");
  EXPECT_EQ(format_text("# only\n"), "# only\n");
}

TEST(Format, MultiLineStatementsJoin) {
  EXPECT_EQ(format_text("diagram F(X[i]) -> Y[i] {\n  Y[i] = X[i] +\n    X[i]  # both\n}\n"),
            "diagram F(X[i]) -> Y[i] {\n  Y[i] = X[i] + X[i]  # both\n}\n");
}

// ------------------------------------------------- properties over the tree

struct Corpus {
  std::string path;
  std::string text;
};

std::vector<Corpus> parseable_corpus() {
  std::vector<Corpus> out;
  std::vector<std::string> paths = test::library_files();
  for (const std::string &path : test::golden_files()) paths.push_back(path);
  for (const std::string &path : paths) {
    std::string text = test::read_file(path);
    if (test::parse_text(text)->ast) out.push_back({path, text});
  }
  return out;
}

TEST(FormatCorpus, HasFiles) {
  // Guards the properties below against silently checking nothing.
  EXPECT_FALSE(test::library_files().empty());
  EXPECT_GE(parseable_corpus().size(), 20u);
}

TEST(FormatCorpus, LibraryFilesParse) {
  for (const std::string &path : test::library_files()) {
    auto parsed = test::parse_text(test::read_file(path), path);
    EXPECT_TRUE(parsed->ast) << path << "\n" << parsed->messages();
  }
}

TEST(FormatCorpus, LibraryFilesAreCanonical) {
  // The stdlib and the examples are shipped formatted (`ncd fmt --check` passes on them).
  for (const std::string &path : test::library_files()) {
    std::string text = test::read_file(path);
    EXPECT_EQ(format_text(text), text) << path << " is not in canonical form";
  }
}

TEST(FormatCorpus, Idempotent) {
  for (const Corpus &file : parseable_corpus()) {
    std::string once = format_text(file.text);
    std::string twice;
    ASSERT_NO_THROW(twice = format_text(once)) << file.path << ": the formatted text does not parse:\n" << once;
    EXPECT_EQ(twice, once) << file.path;
  }
}

TEST(FormatCorpus, RoundTripKeepsTheAst) {
  for (const Corpus &file : parseable_corpus())
    EXPECT_EQ(test::dump_text(format_text(file.text)), test::dump_text(file.text)) << file.path;
}

TEST(FormatCorpus, KeepsEveryComment) {
  for (const Corpus &file : parseable_corpus()) {
    auto before = test::parse_text(file.text);
    auto after = test::parse_text(format_text(file.text));
    ASSERT_TRUE(after->ast) << file.path;
    std::vector<std::string> a, b;
    for (const auto &comment : before->ast->comments) a.push_back(comment.text);
    for (const auto &comment : after->ast->comments) b.push_back(comment.text);
    EXPECT_EQ(b, a) << file.path;
  }
}

TEST(FormatCorpus, OutputIsTidy) {
  for (const Corpus &file : parseable_corpus()) {
    std::string out = format_text(file.text);
    if (out.empty()) continue;
    EXPECT_EQ(out.back(), '\n') << file.path;
    EXPECT_EQ(out.find("\n\n\n"), std::string::npos) << file.path << ": two blank lines in a row";
    EXPECT_EQ(out.find(" \n"), std::string::npos) << file.path << ": trailing blank";
    EXPECT_EQ(out.find("\n\t"), std::string::npos) << file.path << ": indented with a tab";
    EXPECT_NE(out.substr(0, 1), "\n") << file.path << ": leading blank line";
    EXPECT_EQ(out.find("\n\n", out.size() - 2), std::string::npos) << file.path << ": trailing blank line";
  }
}

}  // namespace
}  // namespace ncd
