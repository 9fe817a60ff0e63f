// Sizes and strides of generated code. An axis the program leaves without a
// size (symbolic, no -D) is a runtime argument of the host function
// (docs/CUDA.md, "Runtime sizes"), so every size, stride, element count and
// workspace offset that involves it is an integer polynomial in those
// arguments, printed into the code as an expression. A Sz is such a
// polynomial; a plain number is the polynomial with one constant term, and
// prints as before.
//
// Two kinds of question are asked of a size, and they must not be confused:
// facts the code relies on (equal strides, a multiple of 8 for 16-byte
// copies) are answered exactly, for every value of the runtime sizes; choices
// that only affect speed (a block tile, whether to pack) use `hint()`, the
// value at the planning sizes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ncd::cuda::detail {

class Sz {
 public:
  Sz() = default;
  Sz(int64_t value) : hint_(value) {  // NOLINT: a number is a constant size
    if (value != 0) terms_[{}] = value;
  }
  // A runtime size: `code` is how generated code reads it (ncd_n.seq).
  static Sz symbol(const std::string &code, int64_t hint) {
    Sz s;
    s.terms_[{code}] = 1;
    s.hint_ = hint;
    return s;
  }

  bool known() const { return terms_.empty() || (terms_.size() == 1 && terms_.begin()->first.empty()); }
  std::optional<int64_t> constant() const {
    if (!known()) return std::nullopt;
    return terms_.empty() ? 0 : terms_.begin()->second;
  }
  // The value at the planning sizes: for choices of speed, never of correctness.
  int64_t hint() const { return hint_; }
  // True when the size is a multiple of `k` whatever the runtime sizes are.
  bool multiple_of(int64_t k) const {
    for (const auto &[monomial, coefficient] : terms_)
      if (coefficient % k != 0) return false;
    return true;
  }

  friend Sz operator+(const Sz &a, const Sz &b) {
    Sz s = a;
    for (const auto &[monomial, coefficient] : b.terms_) s.add(monomial, coefficient);
    s.hint_ = a.hint_ + b.hint_;
    return s;
  }
  friend Sz operator-(const Sz &a, const Sz &b) { return a + b * Sz(-1); }
  friend Sz operator*(const Sz &a, const Sz &b) {
    Sz s;
    for (const auto &[ma, ca] : a.terms_)
      for (const auto &[mb, cb] : b.terms_) {
        std::vector<std::string> m = ma;
        m.insert(m.end(), mb.begin(), mb.end());
        std::sort(m.begin(), m.end());
        s.add(m, ca * cb);
      }
    s.hint_ = a.hint_ * b.hint_;
    return s;
  }
  Sz &operator+=(const Sz &b) { return *this = *this + b; }
  Sz &operator*=(const Sz &b) { return *this = *this * b; }
  // Exact equality of the polynomials: equal for every runtime size.
  friend bool operator==(const Sz &a, const Sz &b) { return a.terms_ == b.terms_; }
  friend bool operator!=(const Sz &a, const Sz &b) { return !(a == b); }

  // The C++ expression (int64_t arithmetic); a constant prints as its digits.
  std::string code() const {
    if (terms_.empty()) return "0";
    std::string s;
    for (const auto &[monomial, coefficient] : terms_) {
      std::string term;
      int64_t c = coefficient;
      if (!s.empty()) {
        s += c < 0 ? " - " : " + ";
        c = c < 0 ? -c : c;
      }
      if (monomial.empty() || c != 1) term = std::to_string(c);
      for (const std::string &factor : monomial) term += (term.empty() ? "" : " * ") + factor;
      s += term;
    }
    const bool bare = terms_.size() == 1 && terms_.begin()->second == 1 && terms_.begin()->first.size() == 1;
    return known() || bare ? s : "(" + s + ")";
  }

 private:
  void add(const std::vector<std::string> &monomial, int64_t coefficient) {
    int64_t &c = terms_[monomial];
    c += coefficient;
    if (c == 0) terms_.erase(monomial);
  }
  std::map<std::vector<std::string>, int64_t> terms_;  // monomial (sorted factors) -> coefficient
  int64_t hint_ = 0;
};

inline std::string str(const Sz &s) { return s.code(); }

}  // namespace ncd::cuda::detail
