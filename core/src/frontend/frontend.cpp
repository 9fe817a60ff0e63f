// The front-end driver: reading files, resolving imports through the search
// path, detecting import cycles, then handing the parsed modules to sema and
// the verifier.
#include "ncd/frontend.h"

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "../support/path_list.h"
#include "ncd/parser.h"
#include "ncd/sema.h"
#include "ncd/tensor.h"
#include "ncd/verifier.h"

#ifndef NCD_SOURCE_STDLIB_DIR
#define NCD_SOURCE_STDLIB_DIR ""
#endif

namespace fs = std::filesystem;

namespace ncd {

bool read_text_file(const std::string &path, std::string &text, std::string &error) {
  // One byte over the parser's limit, so that the parser reports a file too large, located.
  std::string reason;
  switch (read_file_limited(path, kMaxSourceBytes + 1, text, reason)) {
    case ReadFailure::None: return true;
    case ReadFailure::Directory: error = "'" + path + "' is a directory"; break;
    case ReadFailure::Open: error = "cannot open '" + path + "': " + reason; break;
    case ReadFailure::TooLarge:
      error = "'" + path + "' is larger than " + std::to_string(kMaxSourceBytes >> 20) + " MiB, the limit for a text file";
      break;
    case ReadFailure::Read: error = "cannot read '" + path + "'"; break;
  }
  return false;
}

std::vector<std::string> default_search_path() {
  std::vector<std::string> out;
  if (const char *env = std::getenv("NCD_PATH")) append_path_list(env, out);
  // The installed stdlib sits at <prefix>/share/ncd/stdlib beside <prefix>/bin/ncd.
  std::error_code code;
  fs::path self = fs::read_symlink("/proc/self/exe", code);
  if (!code) {
    fs::path installed = self.parent_path().parent_path() / "share" / "ncd" / "stdlib";
    if (fs::is_directory(installed, code)) out.push_back(installed.string());
  }
  if (std::string(NCD_SOURCE_STDLIB_DIR).size() > 0) out.push_back(NCD_SOURCE_STDLIB_DIR);
  return out;
}

std::vector<std::string> Compilation::dependencies() const {
  // make resolves prerequisites against its working folder: an import found
  // elsewhere (e.g. "std/nn.ncd" in the stdlib) is listed by its real path.
  std::vector<std::string> out;
  for (const auto &module : modules) out.push_back(prerequisite_path(module.path, module.resolved));
  return out;
}

std::string prerequisite_path(const std::string &as_given, const std::string &resolved) {
  std::error_code code;
  return fs::exists(as_given, code) && fs::equivalent(as_given, resolved, code) ? as_given : resolved;
}

std::string relative_to_cwd(const std::string &path) {
  std::error_code code;
  fs::path relative = fs::relative(path, fs::current_path(), code);
  if (!code && !relative.empty() && relative.string().rfind("..", 0) != 0) return relative.string();
  return "";
}

namespace {

class Loader {
 public:
  Loader(const CompileOptions &options, Compilation &compilation)
      : options_(options), c_(compilation) {
    search_ = options.include_dirs;
    for (auto &dir : default_search_path()) search_.push_back(dir);
  }

  // Loads `path` (and, recursively, its imports); returns the module index or -1.
  // `given`: the root's text when it comes from memory rather than a file.
  int load(const std::string &display_path, const std::string &resolved, SourceLocation importer,
           const std::string *given = nullptr) {
    for (size_t i = 0; i < stack_.size(); ++i)
      if (c_.modules[static_cast<size_t>(stack_[i])].resolved == resolved) {
        std::string cycle;
        for (size_t k = i; k < stack_.size(); ++k)
          cycle += c_.modules[static_cast<size_t>(stack_[k])].path + " -> ";
        cycle += display_path;
        c_.diagnostics.error(importer, "import cycle: " + cycle);
        return -1;
      }
    for (size_t i = 0; i < c_.modules.size(); ++i)
      if (c_.modules[i].resolved == resolved) return static_cast<int>(i);

    std::string text, error;
    if (given) {
      text = *given;
    } else if (!read_text_file(resolved, text, error)) {
      c_.diagnostics.error(importer, error);
      return -1;
    }
    int file_id = c_.sources.add(display_path, resolved, std::move(text));
    int index = static_cast<int>(c_.modules.size());
    c_.modules.push_back({file_id, display_path, resolved, nullptr, {}});
    auto ast = parse_file(c_.sources, file_id, c_.diagnostics);
    if (!ast) return index;
    stack_.push_back(index);
    std::vector<int> imports;
    for (const ast::Item &item : ast->items) {
      if (item.kind != ast::Item::Kind::Import) continue;
      std::string found = resolve_import(item.import_path, c_.modules[static_cast<size_t>(index)].resolved);
      if (found.empty()) {
        report_missing(item, c_.modules[static_cast<size_t>(index)].resolved);
        continue;
      }
      int imported = load(display_name(item.import_path, found), found, item.location);
      if (imported >= 0) imports.push_back(imported);
    }
    stack_.pop_back();
    c_.modules[static_cast<size_t>(index)].ast = std::move(ast);
    c_.modules[static_cast<size_t>(index)].imports = imports;
    return index;
  }

  static std::string absolute(const std::string &path) {
    std::error_code code;
    fs::path canonical = fs::weakly_canonical(fs::absolute(path), code);
    return code ? path : canonical.string();
  }

 private:
  std::vector<std::string> candidates_for(const std::string &importer_resolved) const {
    std::vector<std::string> dirs{fs::path(importer_resolved).parent_path().string()};
    for (const auto &dir : search_) dirs.push_back(dir);
    return dirs;
  }

  std::string resolve_import(const std::string &path, const std::string &importer_resolved) const {
    if (fs::path(path).is_absolute()) return fs::is_regular_file(path) ? absolute(path) : "";
    std::error_code code;
    for (const auto &dir : candidates_for(importer_resolved)) {
      fs::path candidate = fs::path(dir) / path;
      if (fs::is_regular_file(candidate, code)) return absolute(candidate.string());
    }
    return "";
  }

  // Imports found through the search path are shown as written; others relative to the cwd.
  static std::string display_name(const std::string &written, const std::string &resolved) {
    std::string relative = relative_to_cwd(resolved);
    if (!relative.empty()) return relative;
    return written.rfind("std/", 0) == 0 ? written : resolved;
  }

  void report_missing(const ast::Item &item, const std::string &importer) {
    std::vector<std::string> dirs = candidates_for(importer);
    // Offer the closest existing .ncd file under the same relative folder.
    std::vector<std::string> known;
    std::error_code code;
    fs::path wanted(item.import_path);
    for (const auto &dir : dirs) {
      fs::path folder = fs::path(dir) / wanted.parent_path();
      if (!fs::is_directory(folder, code)) continue;
      for (const auto &entry : fs::directory_iterator(folder, code))
        if (entry.path().extension() == ".ncd")
          known.push_back((wanted.parent_path() / entry.path().filename()).string());
    }
    std::string searched;
    for (size_t i = 0; i < dirs.size(); ++i) searched += (i ? ", " : "") + dirs[i];
    auto &error = c_.diagnostics.error(
        item.location, "cannot find import '" + item.import_path + "'" +
                           did_you_mean(item.import_path, known));
    error.notes.push_back({{}, "searched: " + searched});
  }

  const CompileOptions &options_;
  Compilation &c_;
  std::vector<std::string> search_;
  std::vector<int> stack_;
};

// Sema and the verifier on what the loader read.
bool lower_loaded(const CompileOptions &options, Compilation &out) {
  if (out.diagnostics.has_errors()) return false;
  if (options.stop_after_parse) return true;
  lower_to_ir(out, options.defines);
  if (out.diagnostics.has_errors()) return false;
  // A verifier failure is a bug in ncd, not in the input: it ends the run as an internal error.
  std::vector<std::string> violations = verify(out.program);
  if (!violations.empty()) {
    std::string message = "IR verifier failed after lowering:";
    for (const std::string &violation : violations) message += "\n  " + violation;
    throw std::logic_error(message);
  }
  return true;
}

}  // namespace

bool compile_file(const std::string &path, const CompileOptions &options, Compilation &out) {
  Loader loader(options, out);
  loader.load(path, Loader::absolute(path), {});
  return lower_loaded(options, out);
}

bool compile_text(const std::string &path, const std::string &text, const CompileOptions &options, Compilation &out) {
  Loader loader(options, out);
  loader.load(path, Loader::absolute(path), {}, &text);
  return lower_loaded(options, out);
}

}  // namespace ncd
