// Source files and locations.
//
// Every AST node and IR operation carries a SourceLocation so that any later
// stage (sema, passes, the cost model, backends) can point a diagnostic at the
// text the user wrote. Files are owned by one SourceManager per run.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ncd {

struct SourceLocation {
  int file = -1;   // index into SourceManager, -1 when there is no location
  int line = 0;    // 1-based
  int column = 0;  // 1-based, in bytes
  int length = 1;  // bytes covered by the span on its first line

  bool valid() const { return file >= 0 && line > 0; }
};

struct SourceFile {
  std::string path;      // as the user or the import named it
  std::string resolved;  // canonical absolute path, used to detect re-imports
  std::string text;
  std::vector<size_t> line_starts;
  std::string_view line(int number) const;
};

class SourceManager {
 public:
  int add(std::string path, std::string resolved, std::string text);
  const SourceFile &file(int id) const { return *files_.at(static_cast<size_t>(id)); }
  int find_resolved(const std::string &resolved) const;
  size_t size() const { return files_.size(); }
  // "path:line:col" for messages; "<unknown>" for an invalid location.
  std::string describe(const SourceLocation &location) const;

 private:
  std::vector<std::unique_ptr<SourceFile>> files_;
};

}  // namespace ncd
