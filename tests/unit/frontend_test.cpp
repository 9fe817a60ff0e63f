// The front end as a library: compile_file, imports, -D, dependencies.
#include "ncd/frontend.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ncd/ir_print.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace ncd {
namespace {

class Frontend : public ::testing::Test {
 protected:
  void SetUp() override {
    dir = test::make_temp_dir();
    cwd = fs::current_path();
    fs::current_path(dir);
  }
  void TearDown() override {
    fs::current_path(cwd);
    fs::remove_all(dir);
  }
  void put(const std::string &name, const std::string &text) {
    fs::create_directories(fs::path(name).parent_path().empty() ? "." : fs::path(name).parent_path());
    std::ofstream(name) << text;
  }
  std::string messages(Compilation &compilation) {
    std::ostringstream out;
    compilation.diagnostics.flush(out, false);
    return out.str();
  }
  std::string dir;
  fs::path cwd;
};

TEST_F(Frontend, CompilesAndRecordsDependencies) {
  put("lib/g.ncd", "axis i = 4\ndiagram G(A[i]) -> C[i] {\n  C[i] = A[i] * 2\n}\n");
  put("lib/h.ncd", "import \"g.ncd\"\naxis z = 2\ndiagram H(A[z]) -> C[z] {\n  C[z] = G[i = z](A)\n}\n");
  put("main.ncd", "import \"lib/g.ncd\"\nimport \"lib/h.ncd\"\naxis j = 4\n"
                  "diagram F(X[j]) -> Y[j] {\n  Y[j] = G[i = j](X)\n}\n");
  Compilation compilation;
  ASSERT_TRUE(compile_file("main.ncd", {}, compilation)) << messages(compilation);
  // lib/g.ncd is imported twice but loaded once.
  EXPECT_EQ(compilation.dependencies(), (std::vector<std::string>{"main.ncd", "lib/g.ncd", "lib/h.ncd"}));
  EXPECT_EQ(compilation.program.modules.size(), 3u);
  ASSERT_EQ(compilation.program.root_diagrams().size(), 1u);
  EXPECT_EQ(compilation.program.root_diagrams()[0]->name, "F");
  EXPECT_NE(compilation.program.find_diagram("G"), nullptr);
  EXPECT_NE(compilation.program.find_diagram("H"), nullptr);
  EXPECT_EQ(compilation.program.find_diagram("Nope"), nullptr);
}

TEST_F(Frontend, StopAfterParse) {
  put("bad_sema.ncd", "diagram F(X[nope]) -> Y[nope] {\n  Y = X\n}\n");
  CompileOptions options;
  options.stop_after_parse = true;
  Compilation compilation;
  EXPECT_TRUE(compile_file("bad_sema.ncd", options, compilation)) << messages(compilation);
  Compilation full;
  EXPECT_FALSE(compile_file("bad_sema.ncd", {}, full));
}

TEST_F(Frontend, DefinesOverrideAndDerive) {
  put("m.ncd", "axis heads = 8, d = 64, model = heads * d\ndiagram F(X[model]) -> Y[model] {\n  Y = X\n}\n");
  CompileOptions options;
  options.defines = {"heads=16"};
  Compilation compilation;
  ASSERT_TRUE(compile_file("m.ncd", options, compilation)) << messages(compilation);
  const auto &axes = compilation.program.axes;
  ASSERT_EQ(axes.size(), 3u);
  EXPECT_EQ(axes[0].name, "heads");
  EXPECT_EQ(axes[0].size, 16);
  EXPECT_TRUE(axes[0].overridden);
  EXPECT_EQ(axes[0].default_size, 8);
  EXPECT_TRUE(axes[2].derived);
  EXPECT_EQ(axes[2].size, 1024);
  EXPECT_EQ(compilation.program.size_poly(2).to_string([&](int id) { return axes[static_cast<size_t>(id)].name; }),
            "heads*d");
  EXPECT_EQ(compilation.program.axis_label(2), "model(1024)");
}

TEST_F(Frontend, SymbolicAxesStaySymbolic) {
  put("s.ncd", "axis n\ndiagram F(X[n]) -> Y[n] {\n  Y = X\n}\n");
  Compilation compilation;
  ASSERT_TRUE(compile_file("s.ncd", {}, compilation)) << messages(compilation);
  EXPECT_FALSE(compilation.program.axes[0].size.has_value());
  EXPECT_EQ(compilation.program.axis_label(0), "n");
}

TEST_F(Frontend, IncludeDirectories) {
  put("inc/lib.ncd", "axis i = 4\ndiagram G(A[i]) -> C[i] {\n  C[i] = A[i]\n}\n");
  put("main.ncd", "import \"lib.ncd\"\naxis i = 4\ndiagram F(X[i]) -> Y[i] {\n  Y[i] = G(X)\n}\n");
  Compilation without;
  EXPECT_FALSE(compile_file("main.ncd", {}, without));
  CompileOptions options;
  options.include_dirs = {"inc"};
  Compilation with;
  EXPECT_TRUE(compile_file("main.ncd", options, with)) << messages(with);
}

TEST_F(Frontend, TheStdlibIsOnTheSearchPath) {
  std::vector<std::string> path = default_search_path();
  bool found = false;
  std::error_code error;
  for (const std::string &dir : path) found = found || fs::equivalent(dir, fs::path(test::source_root()) / "stdlib", error);
  EXPECT_TRUE(found);
}

TEST_F(Frontend, ReadTextFileErrors) {
  std::string text, error;
  EXPECT_FALSE(read_text_file("missing.ncd", text, error));
  EXPECT_EQ(error, "cannot open 'missing.ncd': No such file or directory");
  fs::create_directory("folder.ncd");
  EXPECT_FALSE(read_text_file("folder.ncd", text, error));
  EXPECT_EQ(error, "'folder.ncd' is a directory");
  put("ok.ncd", "axis q\n");
  EXPECT_TRUE(read_text_file("ok.ncd", text, error));
  EXPECT_EQ(text, "axis q\n");
}

TEST_F(Frontend, JsonAndTextPrintersCoverEveryDiagram) {
  for (const std::string &path : test::library_files()) {
    Compilation compilation;
    if (!compile_file(path, {}, compilation)) continue;
    std::string text = print_ir(compilation.program, compilation.sources, nullptr);
    std::string json = ir_to_json(compilation.program, compilation.sources, nullptr);
    for (const ir::Diagram *diagram : compilation.program.root_diagrams()) {
      EXPECT_NE(text.find("diagram " + diagram->name + " "), std::string::npos) << path;
      EXPECT_NE(json.find("\"name\": \"" + diagram->name + "\""), std::string::npos) << path;
    }
  }
}

}  // namespace
}  // namespace ncd
