// Output files and Makefile dependency files. A regular file is replaced
// atomically (temporary file beside it, then rename; an interrupt removes the
// temporary); a symbolic link is written through to its target; a FIFO or a
// device node is written in place.
#include "ncd/output.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <iostream>

namespace ncd {

namespace {

// The temporary file being written, so that an interrupted run removes it:
// a fixed buffer, because only async-signal-safe calls may touch it.
char pending_temporary[4096];
// The signals that remove it: the ones that end a run by default and can be caught.
constexpr int kInterrupts[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
volatile sig_atomic_t pending_set = 0;

void remove_pending_and_reraise(int signal_number) {
  if (pending_set) ::unlink(pending_temporary);
  ::signal(signal_number, SIG_DFL);
  ::raise(signal_number);
}

// Installed once, and only over the default disposition: a caller that
// handles these signals itself keeps its handler.
void install_cleanup_handlers() {
  static bool installed = false;
  if (installed) return;
  installed = true;
  for (int signal_number : kInterrupts) {
    struct sigaction current {};
    if (::sigaction(signal_number, nullptr, &current) != 0 || current.sa_handler != SIG_DFL) continue;
    struct sigaction action {};
    action.sa_handler = remove_pending_and_reraise;
    sigemptyset(&action.sa_mask);
    ::sigaction(signal_number, &action, nullptr);
  }
}

void set_pending(const char *name) {
  pending_set = 0;
  if (!name || std::strlen(name) >= sizeof pending_temporary) return;
  std::memcpy(pending_temporary, name, std::strlen(name) + 1);
  pending_set = 1;
}

// Where writing a `path` that does not exist yet lands: through a dangling
// symbolic link to its target, which is created (as a compiler's -o does).
std::filesystem::path follow_links(const std::string &path) {
  namespace fs = std::filesystem;
  fs::path target(path);
  for (int hops = 0; hops < 40; ++hops) {
    std::error_code code;
    if (!fs::is_symlink(fs::symlink_status(target, code))) break;
    fs::path next = fs::read_symlink(target, code);
    if (code) break;
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  return target;
}

// The error for the last failed call, errno's reason included.
std::string cannot_write(const std::string &path) { return "cannot write '" + path + "': " + std::strerror(errno); }

bool write_all(int fd, const std::string &content) {
  size_t written = 0;
  while (written < content.size()) {
    ssize_t n = ::write(fd, content.data() + written, content.size() - written);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    written += static_cast<size_t>(n);
  }
  return true;
}

// A FIFO, a terminal or a device node is written in place: renaming over it
// would replace it with a regular file.
bool write_through(const std::string &path, const std::string &content, std::string &error) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    error = cannot_write(path);
    return false;
  }
  if (!write_all(fd, content)) {
    error = cannot_write(path);
    ::close(fd);
    return false;
  }
  if (::close(fd) != 0) {
    error = cannot_write(path);
    return false;
  }
  return true;
}

}  // namespace

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
  struct stat existing {};
  bool had_file = ::stat(path.c_str(), &existing) == 0;
  if (had_file && S_ISDIR(existing.st_mode)) {
    error = "cannot write '" + path + "': it is a directory";
    return false;
  }
  // open() follows every kind of link, /dev/stdout's /proc/self/fd/1 included.
  if (had_file && !S_ISREG(existing.st_mode)) return write_through(path, content, error);
  std::error_code code;
  fs::path target = had_file && fs::is_symlink(path, code) ? fs::canonical(path, code) : follow_links(path);
  if (code) target = path;
  fs::path folder = target.has_parent_path() ? target.parent_path() : fs::path(".");
  std::string temporary = (folder / ("." + target.filename().string() + ".tmpXXXXXX")).string();
  std::vector<char> name(temporary.begin(), temporary.end());
  name.push_back('\0');
  install_cleanup_handlers();
  // No interrupt between creating the temporary and recording its name.
  sigset_t interrupts, previous;
  sigemptyset(&interrupts);
  for (int signal_number : kInterrupts) sigaddset(&interrupts, signal_number);
  ::pthread_sigmask(SIG_BLOCK, &interrupts, &previous);
  int fd = mkstemp(name.data());
  if (fd >= 0) set_pending(name.data());
  ::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  if (fd < 0) {
    error = cannot_write(path);
    return false;
  }
  if (!write_all(fd, content)) {
    error = cannot_write(path);
    ::close(fd);
    ::unlink(name.data());
    pending_set = 0;
    return false;
  }
  // Keep the mode of the file being replaced, or the mode a plain create would give (mkstemp makes 0600).
  if (had_file) {
    fchmod(fd, existing.st_mode & 07777);
  } else {
    mode_t mask = umask(0);
    umask(mask);
    fchmod(fd, 0666 & ~mask);
  }
  bool ok = ::close(fd) == 0 && std::rename(name.data(), target.c_str()) == 0;
  if (!ok) {
    error = cannot_write(path);
    ::unlink(name.data());
  }
  pending_set = 0;
  return ok;
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
