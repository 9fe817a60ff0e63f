// SourceManager: owns the text of every file read in a run.
#include "ncd/source.h"

namespace ncd {

std::string_view SourceFile::line(int number) const {
  if (number < 1 || static_cast<size_t>(number) > line_starts.size()) return {};
  size_t begin = line_starts[static_cast<size_t>(number - 1)];
  size_t end = text.find('\n', begin);
  if (end == std::string::npos) end = text.size();
  if (end > begin && text[end - 1] == '\r') --end;
  return std::string_view(text).substr(begin, end - begin);
}

int SourceManager::add(std::string path, std::string resolved, std::string text) {
  auto file = std::make_unique<SourceFile>();
  file->path = std::move(path);
  file->resolved = std::move(resolved);
  file->text = std::move(text);
  file->line_starts.push_back(0);
  for (size_t i = 0; i < file->text.size(); ++i)
    if (file->text[i] == '\n') file->line_starts.push_back(i + 1);
  files_.push_back(std::move(file));
  return static_cast<int>(files_.size() - 1);
}

int SourceManager::find_resolved(const std::string &resolved) const {
  for (size_t i = 0; i < files_.size(); ++i)
    if (files_[i]->resolved == resolved) return static_cast<int>(i);
  return -1;
}

std::string SourceManager::describe(const SourceLocation &location) const {
  if (!location.valid()) return "<unknown>";
  return file(location.file).path + ":" + std::to_string(location.line) + ":" +
         std::to_string(location.column);
}

}  // namespace ncd
