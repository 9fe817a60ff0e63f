// The .npy format: https://numpy.org/doc/stable/reference/generated/numpy.lib.format.html
//
// A file is the magic "\x93NUMPY", a major and minor version byte, the header
// length (2 bytes little-endian in version 1, 4 bytes in versions 2 and 3),
// a Python dict literal {'descr': ..., 'fortran_order': ..., 'shape': ...}
// padded with spaces and ended by '\n', then the data. Every malformation is
// an error that says what is wrong and where; nothing is guessed.
#include <algorithm>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "ncd/tensor.h"

namespace ncd {
namespace {

constexpr int64_t kMaxElements = int64_t{1} << 40;

// A tiny parser for the header's dict literal.
class HeaderParser {
 public:
  explicit HeaderParser(const std::string &text) : s_(text) {}

  bool parse(std::string &descr, bool &fortran, std::vector<int64_t> &shape, std::string &error) {
    bool have_descr = false, have_fortran = false, have_shape = false;
    skip();
    if (!eat('{')) return fail("the header is not a dict literal", error);
    skip();
    while (!peek('}')) {
      std::string key;
      if (!string_literal(key)) return fail("expected a quoted key in the header", error);
      skip();
      if (!eat(':')) return fail("expected ':' after '" + key + "' in the header", error);
      skip();
      if (key == "descr") {
        if (peek('[')) return fail("structured dtypes (a descr list) are not supported", error);
        if (!string_literal(descr)) return fail("'descr' must be a string such as '<f4'", error);
        have_descr = true;
      } else if (key == "fortran_order") {
        if (s_.compare(i_, 4, "True") == 0) {
          fortran = true;
          i_ += 4;
        } else if (s_.compare(i_, 5, "False") == 0) {
          fortran = false;
          i_ += 5;
        } else {
          return fail("'fortran_order' must be True or False", error);
        }
        have_fortran = true;
      } else if (key == "shape") {
        if (!tuple(shape, error)) return false;
        have_shape = true;
      } else {
        return fail("unexpected key '" + key + "' in the header", error);
      }
      skip();
      if (eat(',')) {
        skip();
        continue;
      }
      skip();
      if (!peek('}')) return fail("expected ',' or '}' in the header", error);
    }
    ++i_;
    skip();
    if (i_ != s_.size()) return fail("unexpected text after the header's dict", error);
    if (!have_descr) return fail("the header has no 'descr'", error);
    if (!have_fortran) return fail("the header has no 'fortran_order'", error);
    if (!have_shape) return fail("the header has no 'shape'", error);
    return true;
  }

 private:
  bool fail(const std::string &message, std::string &error) {
    error = message;
    return false;
  }
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }
  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }
  bool eat(char c) {
    if (!peek(c)) return false;
    ++i_;
    return true;
  }
  bool string_literal(std::string &out) {
    if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) return false;
    char quote = s_[i_++];
    out.clear();
    while (i_ < s_.size() && s_[i_] != quote) {
      if (s_[i_] == '\\') return false;
      out += s_[i_++];
    }
    if (i_ >= s_.size()) return false;
    ++i_;
    return true;
  }
  bool tuple(std::vector<int64_t> &shape, std::string &error) {
    shape.clear();
    if (!eat('(')) return fail("'shape' must be a tuple such as (3, 4)", error);
    skip();
    while (!peek(')')) {
      if (i_ >= s_.size() || !std::isdigit(static_cast<unsigned char>(s_[i_])))
        return fail("'shape' must hold non-negative integers", error);
      int64_t value = 0;
      while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
        if (value > (std::numeric_limits<int64_t>::max() - 9) / 10) return fail("a dimension in 'shape' is too large", error);
        value = value * 10 + (s_[i_++] - '0');
      }
      if (i_ < s_.size() && s_[i_] == 'L') ++i_;  // Python 2 longs
      shape.push_back(value);
      skip();
      if (eat(',')) {
        skip();
        continue;
      }
      if (!peek(')')) return fail("expected ',' or ')' in 'shape'", error);
    }
    ++i_;
    return true;
  }

  const std::string &s_;
  size_t i_ = 0;
};

bool parse_descr(const std::string &descr, ElementType &type, bool &big_endian, std::string &error) {
  if (descr.size() < 2) {
    error = "unsupported dtype '" + descr + "'";
    return false;
  }
  char order = descr[0];
  std::string code = descr.substr(1);
  if (order != '<' && order != '>' && order != '|' && order != '=') {
    order = '=';
    code = descr;
  }
  static const std::pair<const char *, ElementType> kCodes[] = {
      {"b1", ElementType::Bool}, {"?", ElementType::Bool},   {"u1", ElementType::U8},  {"i1", ElementType::I8},
      {"i2", ElementType::I16},  {"u2", ElementType::U16},   {"i4", ElementType::I32}, {"u4", ElementType::U32},
      {"i8", ElementType::I64},  {"u8", ElementType::U64},   {"f2", ElementType::F16}, {"f4", ElementType::F32},
      {"f8", ElementType::F64}};
  bool found = false;
  for (auto &[name, value] : kCodes)
    if (code == name) {
      type = value;
      found = true;
    }
  if (!found) {
    error = "unsupported dtype '" + descr + "' (supported: bool, int8/16/32/64, uint8/16/32/64, float16/32/64)";
    return false;
  }
  if (order == '|' && element_bytes(type) > 1) {
    error = "dtype '" + descr + "' has no byte order";
    return false;
  }
  big_endian = order == '>';
  return true;
}

}  // namespace

namespace {

// What a .npy header says: enough to check a file before reading its data.
struct NpyHeader {
  ElementType type{};
  std::vector<int64_t> shape;
  bool fortran = false, big_endian = false;
  size_t data_start = 0;
};

// `bytes` holds at least the preamble and the header (the data may be missing).
bool parse_npy_header(const std::string &bytes, NpyHeader &out, std::string &error) {
  static const char kMagic[] = "\x93NUMPY";
  if (bytes.size() < 6 || bytes.compare(0, 6, std::string(kMagic, 6)) != 0) {
    error = "not a .npy file (the magic string \\x93NUMPY is missing)";
    return false;
  }
  if (bytes.size() < 10) {
    error = "truncated: the file ends inside its preamble";
    return false;
  }
  const int major = static_cast<unsigned char>(bytes[6]);
  const int minor = static_cast<unsigned char>(bytes[7]);
  if (major < 1 || major > 3 || minor != 0) {
    error = "unsupported .npy format version " + std::to_string(major) + "." + std::to_string(minor) +
            " (supported: 1.0, 2.0, 3.0)";
    return false;
  }
  size_t header_length, header_start;
  if (major == 1) {
    header_length = static_cast<unsigned char>(bytes[8]) | (static_cast<size_t>(static_cast<unsigned char>(bytes[9])) << 8);
    header_start = 10;
  } else {
    if (bytes.size() < 12) {
      error = "truncated: the file ends inside its preamble";
      return false;
    }
    header_length = 0;
    for (int i = 0; i < 4; ++i) header_length |= static_cast<size_t>(static_cast<unsigned char>(bytes[8 + i])) << (8 * i);
    header_start = 12;
  }
  if (bytes.size() < header_start + header_length) {
    error = "truncated: the header says it is " + std::to_string(header_length) + " bytes long, but the file has only " +
            std::to_string(bytes.size() - header_start) + " bytes after the preamble";
    return false;
  }
  std::string header = bytes.substr(header_start, header_length);
  if (header.empty() || header.back() != '\n') {
    error = "malformed header: it does not end with a newline";
    return false;
  }
  if (major < 3)
    for (unsigned char c : header)
      if (c >= 0x80) {
        error = "malformed header: non-ASCII text in a version " + std::to_string(major) + ".0 header";
        return false;
      }
  std::string descr;
  bool fortran = false;
  std::vector<int64_t> shape;
  std::string problem;
  if (!HeaderParser(header).parse(descr, fortran, shape, problem)) {
    error = "malformed header: " + problem;
    return false;
  }
  if (!parse_descr(descr, out.type, out.big_endian, problem)) {
    error = problem;
    return false;
  }
  out.shape = shape;
  out.fortran = fortran;
  out.data_start = header_start + header_length;
  return true;
}

}  // namespace

bool parse_npy(const std::string &bytes, RawArray &out, std::string &error) {
  NpyHeader parsed;
  if (!parse_npy_header(bytes, parsed, error)) return false;
  const ElementType type = parsed.type;
  const std::vector<int64_t> &shape = parsed.shape;
  const bool fortran = parsed.fortran, big_endian = parsed.big_endian;
  int64_t count = 1;
  for (int64_t d : shape) {
    if (d != 0 && count > kMaxElements / d) {
      error = "shape " + shape_text(shape) + " is too large";
      return false;
    }
    count *= d;
  }
  const int width = element_bytes(type);
  const size_t data_start = parsed.data_start;
  const size_t expected = static_cast<size_t>(count) * static_cast<size_t>(width);
  const size_t available = bytes.size() - data_start;
  if (available < expected) {
    error = "truncated: shape " + shape_text(shape) + " of " + element_type_name(type) + " needs " +
            std::to_string(expected) + " bytes of data, but the file has " + std::to_string(available);
    return false;
  }
  if (available > expected) {
    error = "malformed: " + std::to_string(available - expected) + " unexpected bytes after the data of shape " +
            shape_text(shape);
    return false;
  }
  out.type = type;
  out.shape = shape;
  out.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_start), bytes.end());
  if (big_endian && width > 1)
    for (size_t i = 0; i < out.data.size(); i += static_cast<size_t>(width))
      std::reverse(out.data.begin() + static_cast<std::ptrdiff_t>(i), out.data.begin() + static_cast<std::ptrdiff_t>(i) + width);
  if (type == ElementType::Bool)
    for (auto &b : out.data) b = b != 0;
  if (fortran && shape.size() > 1 && count > 0) {
    // Column-major to row-major: element (i0, ..., in) sits at sum(ik * prod(d0..dk-1)).
    std::vector<uint8_t> c_order(out.data.size());
    const size_t rank = shape.size();
    std::vector<int64_t> index(rank, 0);
    std::vector<int64_t> f_stride(rank, 1);
    for (size_t k = 1; k < rank; ++k) f_stride[k] = f_stride[k - 1] * shape[k - 1];
    for (int64_t linear = 0; linear < count; ++linear) {
      int64_t source = 0;
      for (size_t k = 0; k < rank; ++k) source += index[k] * f_stride[k];
      std::memcpy(&c_order[static_cast<size_t>(linear) * width], &out.data[static_cast<size_t>(source) * width], width);
      for (size_t k = rank; k-- > 0;) {
        if (++index[k] < shape[k]) break;
        index[k] = 0;
      }
    }
    out.data = std::move(c_order);
  }
  return true;
}

ReadFailure read_file_limited(const std::string &path, uint64_t limit, std::string &bytes, std::string &reason) {
  std::error_code code;
  if (std::filesystem::is_directory(path, code)) return ReadFailure::Directory;
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    reason = std::strerror(errno);
    return ReadFailure::Open;
  }
  if (limit == 0) limit = available_memory();
  if (limit == 0) limit = std::numeric_limits<uint64_t>::max();
  bytes.clear();
  std::string chunk(size_t{1} << 20, '\0');
  while (in) {
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    const auto got = static_cast<size_t>(in.gcount());
    if (bytes.size() + got > limit) {
      bytes.clear();
      bytes.shrink_to_fit();
      reason = bytes_text(static_cast<double>(limit));
      return ReadFailure::TooLarge;
    }
    bytes.append(chunk.data(), got);
  }
  if (in.bad()) {
    reason = std::strerror(errno);
    return ReadFailure::Read;
  }
  return ReadFailure::None;
}

bool read_file_bytes(const std::string &path, std::string &bytes, std::string &error, uint64_t limit) {
  std::string reason;
  switch (read_file_limited(path, limit, bytes, reason)) {
    case ReadFailure::None: return true;
    case ReadFailure::Directory: error = path + ": is a directory"; break;
    case ReadFailure::Open: error = path + ": cannot open: " + reason; break;
    case ReadFailure::TooLarge: error = path + ": larger than the limit of " + reason; break;
    case ReadFailure::Read: error = path + ": cannot read: " + reason; break;
  }
  return false;
}

bool read_npy_header(const std::string &path, RawArray &out, std::string &error) {
  // A header is at most a few hundred bytes in practice; 64 KiB covers any sane one.
  std::ifstream in(path, std::ios::binary);
  std::error_code code;
  if (!in || !std::filesystem::is_regular_file(path, code)) {
    error = path + ": not a readable regular file";
    return false;
  }
  std::string prefix(size_t{64} << 10, '\0');
  in.read(prefix.data(), static_cast<std::streamsize>(prefix.size()));
  prefix.resize(static_cast<size_t>(in.gcount()));
  NpyHeader parsed;
  std::string problem;
  if (!parse_npy_header(prefix, parsed, problem)) {
    error = path + ": " + problem;
    return false;
  }
  out.type = parsed.type;
  out.shape = parsed.shape;
  out.data.clear();
  return true;
}

bool read_npy(const std::string &path, RawArray &out, std::string &error, uint64_t limit) {
  std::string bytes;
  if (!read_file_bytes(path, bytes, error, limit)) return false;
  std::string problem;
  if (!parse_npy(bytes, out, problem)) {
    error = path + ": " + problem;
    return false;
  }
  return true;
}

std::string npy_bytes(const RawArray &array) {
  std::string descr;
  switch (array.type) {
    case ElementType::Bool: descr = "|b1"; break;
    case ElementType::U8: descr = "|u1"; break;
    case ElementType::I8: descr = "|i1"; break;
    case ElementType::I16: descr = "<i2"; break;
    case ElementType::U16: descr = "<u2"; break;
    case ElementType::I32: descr = "<i4"; break;
    case ElementType::U32: descr = "<u4"; break;
    case ElementType::I64: descr = "<i8"; break;
    case ElementType::U64: descr = "<u8"; break;
    case ElementType::F16: descr = "<f2"; break;
    case ElementType::F32: descr = "<f4"; break;
    case ElementType::F64: descr = "<f8"; break;
    // NumPy has no bfloat16/float8: callers convert to float32 first (array_from_tensor does).
    case ElementType::BF16: case ElementType::F8E4M3: case ElementType::F8E5M2: descr = "|V" + std::to_string(element_bytes(array.type)); break;
  }
  std::string shape = "(";
  for (size_t i = 0; i < array.shape.size(); ++i) shape += (i ? ", " : "") + std::to_string(array.shape[i]);
  if (array.shape.size() == 1) shape += ",";
  shape += ")";
  std::string header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  int major = 1;
  size_t preamble = 10;
  size_t total = preamble + header.size() + 1;
  if (total + 63 > 65535 + preamble) {
    major = 2;
    preamble = 12;
    total = preamble + header.size() + 1;
  }
  size_t padded = (total + 63) / 64 * 64;
  header.append(padded - total, ' ');
  header += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  size_t length = header.size();
  out += static_cast<char>(length & 0xff);
  out += static_cast<char>((length >> 8) & 0xff);
  if (major >= 2) {
    out += static_cast<char>((length >> 16) & 0xff);
    out += static_cast<char>((length >> 24) & 0xff);
  }
  out += header;
  out.append(reinterpret_cast<const char *>(array.data.data()), array.data.size());
  return out;
}

}  // namespace ncd
