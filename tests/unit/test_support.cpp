#include "test_support.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "ncd/format.h"
#include "ncd/parser.h"

namespace fs = std::filesystem;

namespace ncd::test {

std::string source_root() { return NCD_TEST_SOURCE_ROOT; }

std::string Parsed::messages() {
  std::ostringstream out;
  diagnostics.flush(out, false);
  return out.str();
}

std::unique_ptr<Parsed> parse_text(const std::string &text, const std::string &path) {
  auto parsed = std::make_unique<Parsed>();
  parsed->file_id = parsed->sources.add(path, "/virtual/" + path, text);
  parsed->ast = parse_file(parsed->sources, parsed->file_id, parsed->diagnostics);
  return parsed;
}

std::string dump_text(const std::string &text) {
  auto parsed = parse_text(text);
  if (!parsed->ast) return "<syntax error>\n" + parsed->messages();
  return ast::dump(*parsed->ast, false);
}

std::string format_text(const std::string &text) {
  auto parsed = parse_text(text);
  if (!parsed->ast) throw std::runtime_error("does not parse:\n" + parsed->messages());
  return format_file(*parsed->ast, parsed->source());
}

std::string read_file(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

namespace {
std::vector<std::string> ncd_files_under(const std::vector<std::string> &folders) {
  std::vector<std::string> out;
  for (const std::string &folder : folders) {
    fs::path root = fs::path(source_root()) / folder;
    if (!fs::is_directory(root)) continue;
    for (const auto &entry : fs::recursive_directory_iterator(root))
      if (entry.is_regular_file() && entry.path().extension() == ".ncd") out.push_back(entry.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace

std::vector<std::string> library_files() { return ncd_files_under({"stdlib", "examples"}); }
std::vector<std::string> golden_files() {
  // pending/ holds inputs that hit known core bugs (see tests/KNOWN_ISSUES.md).
  std::vector<std::string> out;
  for (const std::string &path : ncd_files_under({"tests/golden"}))
    if (path.find("/tests/golden/pending/") == std::string::npos) out.push_back(path);
  return out;
}

std::string make_temp_dir() {
  std::string pattern = (fs::temp_directory_path() / "ncd-unit-XXXXXX").string();
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  if (!mkdtemp(name.data())) throw std::runtime_error("mkdtemp failed");
  return name.data();
}

}  // namespace ncd::test
