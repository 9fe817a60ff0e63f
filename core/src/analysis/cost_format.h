// Number formatting shared by the cost report, its errors and its plots
// (internal to ncd_core). Everything is deterministic: fixed precision, no
// locale.
#pragma once

#include <cmath>
#include <cstdio>
#include <string>

namespace ncd::costfmt {

// Three significant digits with an SI prefix: "2.15 G", "512 k", "3.00".
inline std::string si(double value, const char *unit) {
  if (value == 0) return std::string("0 ") + unit;
  if (!std::isfinite(value)) return std::string("inf ") + unit;
  static const char *prefixes[] = {"a", "f", "p", "n", "u", "m", "", "k", "M", "G", "T", "P", "E"};
  double magnitude = std::fabs(value);
  int exponent = static_cast<int>(std::floor(std::log10(magnitude) / 3.0));
  if (exponent < -6) exponent = -6;
  if (exponent > 6) exponent = 6;
  double scaled = value / std::pow(1000.0, exponent);
  // Rounding may carry into the next prefix (999.7 → 1.00 k).
  if (std::fabs(scaled) >= 999.5 && exponent < 6) {
    ++exponent;
    scaled = value / std::pow(1000.0, exponent);
  }
  char buffer[64];
  double a = std::fabs(scaled);
  const char *format = a >= 100 ? "%.0f %s%s" : a >= 10 ? "%.1f %s%s" : "%.2f %s%s";
  std::snprintf(buffer, sizeof buffer, format, scaled, prefixes[exponent + 6], unit);
  return buffer;
}

inline std::string bytes(double value) { return si(value, "B"); }
inline std::string flops(double value) { return si(value, "FLOP"); }
inline std::string seconds(double value) { return si(value, "s"); }
inline std::string joules(double value) { return si(value, "J"); }

// Binary units for capacities (how vendors state on-chip memories): "228 KiB".
inline std::string capacity(double value) {
  static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int i = 0;
  while (std::fabs(value) >= 1024 && i < 4) {
    value /= 1024;
    ++i;
  }
  char buffer[64];
  if (std::fabs(value - std::round(value)) < 0.005)
    std::snprintf(buffer, sizeof buffer, "%.0f %s", value, units[i]);
  else
    std::snprintf(buffer, sizeof buffer, "%.2f %s", value, units[i]);
  return buffer;
}

// A capacity as the vendor would state it: binary units when it is a whole
// number of KiB ("228 KiB"), decimal otherwise ("50.0 MB").
inline std::string memory(double value) {
  if (value >= 1024 && std::fmod(value, 1024.0) == 0) return capacity(value);
  return value < 1024 ? capacity(value) : bytes(value);
}

// A plain number for tables and JSON-adjacent text: integers exactly, others with 4 significant digits.
inline std::string number(double value) {
  char buffer[64];
  if (std::fabs(value - std::round(value)) < 1e-9 && std::fabs(value) < 1e15)
    std::snprintf(buffer, sizeof buffer, "%.0f", value);
  else
    std::snprintf(buffer, sizeof buffer, "%.4g", value);
  return buffer;
}

// Scientific with 3 significant digits: "2.87e-21".
inline std::string sci(double value) {
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.3g", value);
  return buffer;
}

}  // namespace ncd::costfmt
