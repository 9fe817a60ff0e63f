// The advisor's subprocess (advisor_process.h): fork/exec of /bin/sh -c, three
// pipes driven by poll() against one deadline, the process group killed on a
// timeout or an oversized answer, and the child always reaped.
#include "advisor_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>

namespace ncd::cli {
namespace {

constexpr size_t kErrTail = 4096;

using Clock = std::chrono::steady_clock;

void close_fd(int &fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// SIGPIPE would kill ncd when the advisor exits without reading its request:
// ignored while the advisor runs, so the write fails with EPIPE instead.
class IgnoreSigpipe {
 public:
  IgnoreSigpipe() {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    sigemptyset(&ignore.sa_mask);
    sigaction(SIGPIPE, &ignore, &saved_);
  }
  ~IgnoreSigpipe() { sigaction(SIGPIPE, &saved_, nullptr); }

 private:
  struct sigaction saved_ {};
};

}  // namespace

ProcessResult run_process(const std::string &command, const std::string &input, double timeout_seconds,
                          size_t max_output) {
  ProcessResult result;
  IgnoreSigpipe sigpipe;
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    result.error = std::string("cannot create pipes: ") + std::strerror(errno);
    for (int *p : {in, out, err}) close_fd(p[0]), close_fd(p[1]);
    return result;
  }
  const auto start = Clock::now();
  pid_t pid = fork();
  if (pid < 0) {
    result.error = std::string("cannot fork: ") + std::strerror(errno);
    for (int *p : {in, out, err}) close_fd(p[0]), close_fd(p[1]);
    return result;
  }
  if (pid == 0) {
    // The child: only async-signal-safe calls until exec.
    setpgid(0, 0);
    signal(SIGPIPE, SIG_DFL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execl("/bin/sh", "sh", "-c", command.c_str(), static_cast<char *>(nullptr));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: whichever runs first, the group exists before any kill
  close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
  if (input.empty()) close_fd(in[1]);

  const auto deadline = start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(std::max(0.0, timeout_seconds)));
  size_t written = 0;
  bool killed = false, exited = false;
  int status = 0;
  char buffer[65536];
  while (out[0] >= 0 || err[0] >= 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      result.status = ProcessResult::Status::TimedOut;
      killed = true;
      break;
    }
    pollfd fds[3];
    int n = 0;
    int slot_in = -1, slot_out = -1, slot_err = -1;
    if (in[1] >= 0) fds[slot_in = n++] = {in[1], POLLOUT, 0};
    if (out[0] >= 0) fds[slot_out = n++] = {out[0], POLLIN, 0};
    if (err[0] >= 0) fds[slot_err = n++] = {err[0], POLLIN, 0};
    int ready = poll(fds, static_cast<nfds_t>(n), static_cast<int>(std::min<long long>(left, 100)));
    if (ready < 0 && errno != EINTR) {
      result.status = ProcessResult::Status::StartFailed;
      result.error = std::string("poll failed: ") + std::strerror(errno);
      killed = true;
      break;
    }
    // The command has exited, but something it started may still hold the
    // pipes: its group is killed, so that what it wrote can be read to the end.
    if (!exited && waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      kill(-pid, SIGKILL);
    }
    if (ready <= 0) continue;
    if (slot_in >= 0 && (fds[slot_in].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t w = write(in[1], input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<size_t>(w);
      // EPIPE: the advisor does not read its request; its answer still counts.
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || written == input.size()) close_fd(in[1]);
    }
    if (slot_out >= 0 && (fds[slot_out].revents & (POLLIN | POLLERR | POLLHUP))) {
      ssize_t r = read(out[0], buffer, sizeof buffer);
      if (r > 0) {
        result.out.append(buffer, static_cast<size_t>(r));
        if (result.out.size() > max_output) {
          result.out.resize(max_output);
          result.status = ProcessResult::Status::TooLarge;
          killed = true;
          break;
        }
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(out[0]);
      }
    }
    if (slot_err >= 0 && (fds[slot_err].revents & (POLLIN | POLLERR | POLLHUP))) {
      ssize_t r = read(err[0], buffer, sizeof buffer);
      if (r > 0) {
        result.err.append(buffer, static_cast<size_t>(r));
        if (result.err.size() > 2 * kErrTail) result.err.erase(0, result.err.size() - kErrTail);
      } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
        close_fd(err[0]);
      }
    }
  }
  close_fd(in[1]);
  close_fd(out[0]);
  close_fd(err[0]);
  if (!killed && !exited) {
    // Both outputs are closed; the command may still be running (it closed
    // them, or a child of its holds nothing): wait for it until the deadline.
    while (true) {
      pid_t done = waitpid(pid, &status, WNOHANG);
      if (done == pid) {
        exited = true;
        break;
      }
      if (done < 0 && errno != EINTR) break;
      if (Clock::now() >= deadline) {
        result.status = ProcessResult::Status::TimedOut;
        killed = true;
        break;
      }
      usleep(10000);
    }
  }
  kill(-pid, SIGKILL);  // the group: a timeout's advisor, or what an exited one left running
  if (killed && !exited) {
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  } else if (killed) {
    // Exited, but the answer was cut (a timeout or the cap): the status stays the failure's.
  } else if (WIFEXITED(status)) {
    result.status = ProcessResult::Status::Exited;
    result.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.status = ProcessResult::Status::Signaled;
    result.code = WTERMSIG(status);
  }
  if (result.err.size() > kErrTail) result.err.erase(0, result.err.size() - kErrTail);
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

std::string describe_failure(const ProcessResult &result, double timeout_seconds, size_t max_output) {
  char seconds[32];
  std::snprintf(seconds, sizeof seconds, "%g", timeout_seconds);
  switch (result.status) {
    case ProcessResult::Status::Exited:
      if (result.code == 127) return "could not be run (exit status 127: command not found?)";
      // The shell reports a command killed by signal N as status 128 + N.
      if (result.code > 128 && result.code < 128 + 65)
        return "was killed by signal " + std::to_string(result.code - 128) + " (" + strsignal(result.code - 128) +
               "; exit status " + std::to_string(result.code) + ")";
      return "exited with status " + std::to_string(result.code);
    case ProcessResult::Status::Signaled:
      return "was killed by signal " + std::to_string(result.code) + " (" + strsignal(result.code) + ")";
    case ProcessResult::Status::TimedOut:
      return std::string("did not answer within ") + seconds + " s (--advisor-timeout); it was killed";
    case ProcessResult::Status::TooLarge:
      return "wrote more than " + std::to_string(max_output) + " bytes; it was killed";
    case ProcessResult::Status::StartFailed: return "could not be started: " + result.error;
  }
  return "failed";
}

}  // namespace ncd::cli
