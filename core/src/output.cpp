// Atomic output files and Makefile dependency files.
#include "ncd/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace ncd {

bool write_output(const std::string &path, const std::string &content, std::string &error) {
  if (path == "-") {
    std::cout << content << std::flush;
    if (!std::cout) {
      error = "cannot write to standard output";
      return false;
    }
    return true;
  }
  namespace fs = std::filesystem;
  // Rewriting through a symbolic link updates the file it points to and keeps the link.
  std::error_code code;
  fs::path target(path);
  if (fs::is_symlink(target, code)) {
    fs::path resolved = fs::canonical(target, code);
    if (!code) target = resolved;
  }
  struct stat existing {};
  bool had_file = ::stat(target.c_str(), &existing) == 0;
  fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string temporary = (folder / ("." + target.filename().string() + ".tmpXXXXXX")).string();
  std::vector<char> name(temporary.begin(), temporary.end());
  name.push_back('\0');
  int fd = mkstemp(name.data());
  if (fd < 0) {
    error = "cannot write '" + path + "': " + std::strerror(errno);
    return false;
  }
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = "cannot write '" + path + "': " + std::strerror(errno);
      ::close(fd);
      ::unlink(name.data());
      return false;
    }
    written += static_cast<size_t>(n);
  }
  // Keep the mode of the file being replaced, or the mode a plain create would give (mkstemp makes 0600).
  if (had_file) {
    fchmod(fd, existing.st_mode & 07777);
  } else {
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
  }
  if (::close(fd) != 0 || std::rename(name.data(), target.c_str()) != 0) {
    error = "cannot write '" + path + "': " + std::strerror(errno);
    ::unlink(name.data());
    return false;
  }
  return true;
}

namespace {
std::string escape_make(const std::string &path) {
  std::string out;
  for (char c : path) {
    if (c == ' ' || c == '#') out += '\\';
    if (c == '$') out += '$';
    out += c;
  }
  return out;
}
}  // namespace

std::string make_dependency_file(const std::string &target, const std::vector<std::string> &dependencies) {
  std::string out = escape_make(target) + ":";
  for (const auto &dependency : dependencies) out += " \\\n  " + escape_make(dependency);
  out += "\n";
  for (size_t i = 1; i < dependencies.size(); ++i) out += "\n" + escape_make(dependencies[i]) + ":\n";
  return out;
}

}  // namespace ncd
