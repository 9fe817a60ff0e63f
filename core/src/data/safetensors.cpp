// The safetensors format (https://github.com/huggingface/safetensors):
//   8 bytes   N, the header length (unsigned little-endian)
//   N bytes   a JSON object: {"NAME": {"dtype": "F32", "shape": [..], "data_offsets": [BEGIN, END]}, ...,
//             "__metadata__": {"key": "value"}}   (optional; string values)
//   the rest  the byte buffer; offsets are relative to its start, and the
//             tensors cover it entirely, without holes or overlaps.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>

#include "ncd/tensor.h"

namespace ncd {
namespace {

constexpr uint64_t kMaxHeader = 100u << 20;  // the reference implementation's limit

const std::pair<const char *, ElementType> kTypes[] = {
    {"BOOL", ElementType::Bool}, {"U8", ElementType::U8},         {"I8", ElementType::I8},
    {"I16", ElementType::I16},   {"U16", ElementType::U16},       {"I32", ElementType::I32},
    {"U32", ElementType::U32},   {"I64", ElementType::I64},       {"U64", ElementType::U64},
    {"F16", ElementType::F16},   {"BF16", ElementType::BF16},     {"F32", ElementType::F32},
    {"F64", ElementType::F64},   {"F8_E4M3", ElementType::F8E4M3}, {"F8_E5M2", ElementType::F8E5M2}};

const char *type_code(ElementType type) {
  for (auto &[code, value] : kTypes)
    if (value == type) return code;
  return "?";
}

}  // namespace

namespace {

// The header's entries, checked against a buffer of `buffer_size` bytes: the
// one definition of a valid header, for parse_safetensors (which then copies
// the data) and read_safetensors_header (which never reads it).
bool parse_header(const char *text, uint64_t header_length, uint64_t buffer_size, SafetensorsHeader &out,
                  std::string &error) {
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text, text + header_length);
  } catch (const nlohmann::json::exception &e) {
    // parse_error for bad syntax, out_of_range for a number no type holds (1e400).
    std::string what = e.what();
    auto where = what.find("] ");
    error = "malformed header: invalid JSON (" + (where != std::string::npos ? what.substr(where + 2) : what) + ")";
    return false;
  }
  if (!header.is_object()) {
    error = "malformed header: the JSON header is not an object";
    return false;
  }
  struct Range {
    uint64_t begin, end;
    std::string name;
  };
  std::vector<Range> ranges;
  out.tensors.clear();
  out.metadata.clear();
  out.data_start = 8 + header_length;
  for (auto &[name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) {
        error = "malformed header: \"__metadata__\" is not an object";
        return false;
      }
      for (auto &[key, value] : entry.items()) {
        if (!value.is_string()) {
          error = "malformed header: metadata \"" + key + "\" is not a string";
          return false;
        }
        out.metadata[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object() || !entry.contains("dtype") || !entry.contains("shape") || !entry.contains("data_offsets")) {
      error = "malformed header: " + where + " needs \"dtype\", \"shape\" and \"data_offsets\"";
      return false;
    }
    if (!entry["dtype"].is_string()) {
      error = "malformed header: the dtype of " + where + " is not a string";
      return false;
    }
    std::string code = entry["dtype"].get<std::string>();
    SafetensorsEntry array;
    bool known = false;
    for (auto &[c, type] : kTypes)
      if (code == c) {
        array.type = type;
        known = true;
      }
    if (!known) {
      error = where + " has unsupported dtype \"" + code + "\"";
      return false;
    }
    if (!entry["shape"].is_array()) {
      error = "malformed header: the shape of " + where + " is not a list";
      return false;
    }
    uint64_t count = 1;
    for (auto &d : entry["shape"]) {
      if (!d.is_number_unsigned()) {
        error = "malformed header: the shape of " + where + " holds something other than non-negative integers";
        return false;
      }
      uint64_t dim = d.get<uint64_t>();
      // Each extent on its own too: beside a 0 extent, any product is 0.
      if (dim > (uint64_t{1} << 40) || (dim != 0 && count > (uint64_t{1} << 40) / dim)) {
        error = "malformed header: the shape of " + where + " is too large";
        return false;
      }
      count *= dim;
      array.shape.push_back(static_cast<int64_t>(dim));
    }
    auto &offsets = entry["data_offsets"];
    if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() || !offsets[1].is_number_unsigned()) {
      error = "malformed header: the data_offsets of " + where + " are not [BEGIN, END]";
      return false;
    }
    uint64_t begin = offsets[0].get<uint64_t>(), end = offsets[1].get<uint64_t>();
    if (begin > end) {
      error = "malformed header: " + where + " has data_offsets [" + std::to_string(begin) + ", " + std::to_string(end) +
              "] with BEGIN after END";
      return false;
    }
    if (end > buffer_size) {
      error = "truncated: " + where + " has data up to byte " + std::to_string(end) + " of the buffer, but the buffer has " +
              std::to_string(buffer_size) + " bytes";
      return false;
    }
    uint64_t expected = count * static_cast<uint64_t>(element_bytes(array.type));
    if (end - begin != expected) {
      error = "malformed: " + where + " of shape " + shape_text(array.shape) + " and dtype " + code + " needs " +
              std::to_string(expected) + " bytes, but its data_offsets span " + std::to_string(end - begin);
      return false;
    }
    array.begin = begin;
    array.end = end;
    ranges.push_back({begin, end, name});
    out.tensors[name] = std::move(array);
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range &a, const Range &b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t position = 0;
  for (const Range &r : ranges) {
    if (r.begin < position) {
      error = "malformed: the data of tensor '" + r.name + "' overlaps another tensor's";
      return false;
    }
    if (r.begin > position) {
      error = "malformed: bytes " + std::to_string(position) + " to " + std::to_string(r.begin) +
              " of the buffer belong to no tensor";
      return false;
    }
    position = r.end;
  }
  if (position != buffer_size) {
    error = "malformed: " + std::to_string(buffer_size - position) + " bytes after the last tensor's data belong to no tensor";
    return false;
  }
  return true;
}

uint64_t header_length_of(const unsigned char *bytes) {
  uint64_t length = 0;
  for (int i = 0; i < 8; ++i) length |= static_cast<uint64_t>(bytes[i]) << (8 * i);
  return length;
}

}  // namespace

std::string safetensors_type_code(ElementType type) { return type_code(type); }

bool parse_safetensors(const std::string &bytes, SafetensorsFile &out, std::string &error) {
  if (bytes.size() < 8) {
    error = "truncated: a safetensors file starts with an 8-byte header length, but the file has " +
            std::to_string(bytes.size()) + " bytes";
    return false;
  }
  uint64_t header_length = header_length_of(reinterpret_cast<const unsigned char *>(bytes.data()));
  if (header_length > kMaxHeader) {
    error = "malformed: the header length is " + std::to_string(header_length) + " bytes (more than 100 MiB)";
    return false;
  }
  if (bytes.size() - 8 < header_length) {
    error = "truncated: the header is " + std::to_string(header_length) + " bytes long, but the file has only " +
            std::to_string(bytes.size() - 8) + " bytes after the header length";
    return false;
  }
  SafetensorsHeader header;
  if (!parse_header(bytes.data() + 8, header_length, bytes.size() - 8 - header_length, header, error)) return false;
  out.tensors.clear();
  out.metadata = std::move(header.metadata);
  for (auto &[name, entry] : header.tensors) {
    RawArray array;
    array.type = entry.type;
    array.shape = entry.shape;
    array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header.data_start + entry.begin),
                      bytes.begin() + static_cast<std::ptrdiff_t>(header.data_start + entry.end));
    if (array.type == ElementType::Bool)
      for (auto &b : array.data) b = b != 0;
    out.tensors[name] = std::move(array);
  }
  return true;
}

bool read_safetensors_header(const std::string &path, SafetensorsHeader &out, std::string &error) {
  std::error_code code;
  if (std::filesystem::is_directory(path, code)) {
    error = path + ": is a directory";
    return false;
  }
  // Its size bounds the header and the data; a FIFO or a device has none to trust (and opening a FIFO blocks).
  if (std::filesystem::exists(path, code) && !std::filesystem::is_regular_file(path, code)) {
    error = path + ": not a regular file";
    return false;
  }
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    error = path + ": cannot open: " + std::strerror(errno);
    return false;
  }
  file.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(file.tellg());
  file.seekg(0);
  unsigned char prefix[8];
  if (size < 8 || !file.read(reinterpret_cast<char *>(prefix), 8)) {
    error = path + ": truncated: a safetensors file starts with an 8-byte header length, but the file has " +
            std::to_string(size) + " bytes";
    return false;
  }
  uint64_t header_length = header_length_of(prefix);
  if (header_length > kMaxHeader) {
    error = path + ": malformed: the header length is " + std::to_string(header_length) + " bytes (more than 100 MiB)";
    return false;
  }
  if (size - 8 < header_length) {
    error = path + ": truncated: the header is " + std::to_string(header_length) +
            " bytes long, but the file has only " + std::to_string(size - 8) + " bytes after the header length";
    return false;
  }
  std::string text(header_length, '\0');
  if (!file.read(text.data(), static_cast<std::streamsize>(header_length))) {
    error = path + ": cannot read: " + std::strerror(errno);
    return false;
  }
  std::string problem;
  if (!parse_header(text.data(), header_length, size - 8 - header_length, out, problem)) {
    error = path + ": " + problem;
    return false;
  }
  return true;
}

bool read_safetensors(const std::string &path, SafetensorsFile &out, std::string &error) {
  std::string bytes;
  if (!read_file_bytes(path, bytes, error)) return false;
  std::string problem;
  if (!parse_safetensors(bytes, out, problem)) {
    error = path + ": " + problem;
    return false;
  }
  return true;
}

std::string safetensors_bytes(const SafetensorsFile &file) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!file.metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (auto &[key, value] : file.metadata) meta[key] = value;
    header["__metadata__"] = meta;
  }
  uint64_t offset = 0;
  for (auto &[name, array] : file.tensors) {
    nlohmann::ordered_json entry;
    entry["dtype"] = type_code(array.type);
    entry["shape"] = array.shape;
    entry["data_offsets"] = {offset, offset + array.data.size()};
    offset += array.data.size();
    header[name] = entry;
  }
  std::string text = header.dump();
  // Pad with spaces so that the data start is 8-byte aligned, as the reference writer does.
  while ((8 + text.size()) % 8 != 0) text += ' ';
  std::string out;
  uint64_t length = text.size();
  for (int i = 0; i < 8; ++i) out += static_cast<char>((length >> (8 * i)) & 0xff);
  out += text;
  for (auto &[name, array] : file.tensors)  // an empty tensor's data() may be null: memcpy from null is undefined
    if (!array.data.empty()) out.append(reinterpret_cast<const char *>(array.data.data()), array.data.size());
  return out;
}

}  // namespace ncd
