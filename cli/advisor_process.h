// Running an external advisor (docs/ADVISOR.md): one command, a request on its
// standard input, an answer on its standard output, within a deadline and a
// size cap. Whatever the command does (hangs, crashes, floods its output,
// forks children that linger), ncd gets a result back and no process of the
// advisor is left behind.
#pragma once

#include <cstddef>
#include <string>

namespace ncd::cli {

struct ProcessResult {
  enum class Status {
    Exited,       // `code` is the exit status
    Signaled,     // `code` is the signal
    TimedOut,     // the deadline passed: the process group was killed
    TooLarge,     // standard output passed the cap: the process group was killed
    StartFailed,  // no process ran: `error` says why
  };
  Status status = Status::StartFailed;
  int code = 0;
  std::string out;    // standard output (at most the cap)
  std::string err;    // the last few KiB of standard error
  std::string error;  // StartFailed: why
  double seconds = 0;
};

// Runs `command` with /bin/sh -c in a process group of its own, writes `input`
// to its standard input (interleaved with reading its outputs, so a full pipe
// never deadlocks either side), and collects its standard output up to
// `max_output` bytes. At `timeout_seconds`, or past the cap, the whole group
// is killed (SIGKILL) and reaped; once the command exits, whatever it left
// running in its group is killed too.
ProcessResult run_process(const std::string &command, const std::string &input, double timeout_seconds,
                          size_t max_output);

// "exited with status 3", "was killed by signal 11 (Segmentation fault)",
// "did not answer within 2 s", ...: the result as the tail of a sentence.
std::string describe_failure(const ProcessResult &result, double timeout_seconds, size_t max_output);

}  // namespace ncd::cli
