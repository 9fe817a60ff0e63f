// Diagnostics: errors, warnings and notes pointed at source text.
//
// Every stage reports through one DiagnosticEngine so that a run can show
// several errors at once, in the conventional `file:line:col: error: message`
// form followed by the source line and a caret under the span.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "ncd/source.h"

namespace ncd {

enum class Severity { Note, Warning, Error };

struct Diagnostic {
  Severity severity = Severity::Error;
  SourceLocation location;
  std::string message;
  struct Note {
    SourceLocation location;
    std::string message;
  };
  std::vector<Note> notes;
};

class DiagnosticEngine {
 public:
  explicit DiagnosticEngine(const SourceManager &sources) : sources_(sources) {}

  Diagnostic &error(SourceLocation location, std::string message);
  Diagnostic &warning(SourceLocation location, std::string message);
  // Errors that stop the run early past this many, to keep the output readable.
  static constexpr int kMaxErrors = 50;

  int error_count() const { return errors_; }
  int warning_count() const { return warnings_; }
  bool has_errors() const { return errors_ > 0; }
  bool too_many_errors() const { return errors_ >= kMaxErrors; }
  const std::vector<Diagnostic> &all() const { return diagnostics_; }

  // Prints everything collected so far (and forgets it), colouring when asked.
  void flush(std::ostream &out, bool color);
  void set_warnings_enabled(bool enabled) { warnings_enabled_ = enabled; }

 private:
  const SourceManager &sources_;
  std::vector<Diagnostic> diagnostics_;
  Diagnostic discarded_;
  int errors_ = 0;
  int warnings_ = 0;
  bool warnings_enabled_ = true;
  bool limit_reported_ = false;
};

// The closest candidate by edit distance, or "" when none is close enough to be
// a plausible misspelling.
std::string closest_name(const std::string &name, const std::vector<std::string> &candidates);
// ", did you mean 'x'?" or "" — appended to "unknown ..." messages.
std::string did_you_mean(const std::string &name, const std::vector<std::string> &candidates);

}  // namespace ncd
