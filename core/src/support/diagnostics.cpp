// DiagnosticEngine: collects diagnostics and prints them with source excerpts.
#include "ncd/diagnostics.h"

#include <algorithm>

namespace ncd {

Diagnostic &DiagnosticEngine::error(SourceLocation location, std::string message) {
  // Past the limit, errors are counted but not kept: what follows is mostly cascade.
  if (errors_ >= kMaxErrors) {
    ++errors_;
    discarded_ = {};
    return discarded_;
  }
  ++errors_;
  diagnostics_.push_back({Severity::Error, location, std::move(message), {}});
  return diagnostics_.back();
}

Diagnostic &DiagnosticEngine::warning(SourceLocation location, std::string message) {
  if (!warnings_enabled_) {
    discarded_ = {};
    return discarded_;
  }
  ++warnings_;
  diagnostics_.push_back({Severity::Warning, location, std::move(message), {}});
  return diagnostics_.back();
}

namespace {

const char *severity_name(Severity severity) {
  switch (severity) {
    case Severity::Error: return "error";
    case Severity::Warning: return "warning";
    case Severity::Note: return "note";
  }
  return "error";
}

const char *severity_color(Severity severity) {
  switch (severity) {
    case Severity::Error: return "\033[1;31m";
    case Severity::Warning: return "\033[1;35m";
    case Severity::Note: return "\033[1;36m";
  }
  return "";
}

// Replaces bytes that would garble a terminal (control characters and bytes
// that are not valid UTF-8) with '?', so a binary file's excerpt stays one line.
std::string printable(std::string_view line) {
  std::string out;
  size_t i = 0;
  while (i < line.size()) {
    unsigned char byte = static_cast<unsigned char>(line[i]);
    if (byte < 0x80) {
      out += (byte < 0x20 && byte != '\t') || byte == 0x7f ? '?' : static_cast<char>(byte);
      ++i;
      continue;
    }
    size_t length = byte >= 0xF0 && byte <= 0xF4 ? 4 : byte >= 0xE0 && byte < 0xF0 ? 3 : byte >= 0xC2 && byte < 0xE0 ? 2 : 0;
    bool ok = length > 0 && i + length <= line.size();
    for (size_t k = 1; ok && k < length; ++k) ok = (static_cast<unsigned char>(line[i + k]) & 0xC0) == 0x80;
    if (!ok) {
      out += '?';
      ++i;
      continue;
    }
    out.append(line.substr(i, length));
    i += length;
  }
  return out;
}

}  // namespace

void DiagnosticEngine::flush(std::ostream &out, bool color) {
  auto print_one = [&](Severity severity, const SourceLocation &location,
                       const std::string &message) {
    const char *bold = color ? "\033[1m" : "";
    const char *reset = color ? "\033[0m" : "";
    if (location.valid())
      out << bold << sources_.describe(location) << ": " << reset;
    else
      out << bold << "ncd: " << reset;
    out << (color ? severity_color(severity) : "") << severity_name(severity) << ":" << reset
        << " " << bold << message << reset << "\n";
    if (!location.valid()) return;
    std::string_view line = sources_.file(location.file).line(location.line);
    if (line.size() > 400) return;  // a minified or binary line helps nobody
    out << "  " << printable(line) << "\n  ";
    // Columns are bytes; the caret is placed by characters so that UTF-8 text lines up.
    auto is_continuation = [](char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; };
    size_t column = static_cast<size_t>(std::max(1, location.column));
    for (size_t i = 0; i + 1 < column && i < line.size(); ++i)
      if (!is_continuation(line[i])) out << (line[i] == '\t' ? '\t' : ' ');
    size_t end = std::min(line.size(), column - 1 + static_cast<size_t>(std::max(1, location.length)));
    int length = 0;
    for (size_t i = column - 1; i < end; ++i)
      if (!is_continuation(line[i])) ++length;
    length = std::max(1, length);
    out << (color ? "\033[1;32m" : "") << '^' << std::string(static_cast<size_t>(length - 1), '~')
        << reset << "\n";
  };
  for (const Diagnostic &diagnostic : diagnostics_) {
    print_one(diagnostic.severity, diagnostic.location, diagnostic.message);
    for (const auto &note : diagnostic.notes) print_one(Severity::Note, note.location, note.message);
  }
  if (errors_ > kMaxErrors && !limit_reported_) {
    print_one(Severity::Error, {}, "too many errors (" + std::to_string(errors_) + "); only the first " +
                                       std::to_string(kMaxErrors) + " are shown");
    limit_reported_ = true;
  }
  diagnostics_.clear();
}

namespace {

size_t edit_distance(const std::string &a, const std::string &b) {
  // Optimal string alignment distance: a transposition counts as one edit.
  const size_t n = a.size(), m = b.size();
  std::vector<std::vector<size_t>> d(n + 1, std::vector<size_t>(m + 1));
  for (size_t i = 0; i <= n; ++i) d[i][0] = i;
  for (size_t j = 0; j <= m; ++j) d[0][j] = j;
  for (size_t i = 1; i <= n; ++i)
    for (size_t j = 1; j <= m; ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[n][m];
}

std::string lower(std::string s) {
  for (char &c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

std::string closest_name(const std::string &name, const std::vector<std::string> &candidates) {
  std::string best;
  size_t best_distance = 0;
  const size_t limit = std::max<size_t>(1, (name.size() + 2) / 3);
  for (const std::string &candidate : candidates) {
    if (candidate == name || candidate.empty()) continue;
    size_t distance = edit_distance(lower(name), lower(candidate));
    if (distance > limit || distance >= std::max(name.size(), candidate.size())) continue;
    if (best.empty() || distance < best_distance ||
        (distance == best_distance && candidate < best)) {
      best = candidate;
      best_distance = distance;
    }
  }
  return best;
}

std::string did_you_mean(const std::string &name, const std::vector<std::string> &candidates) {
  std::string best = closest_name(name, candidates);
  return best.empty() ? "" : "; did you mean '" + best + "'?";
}

}  // namespace ncd
