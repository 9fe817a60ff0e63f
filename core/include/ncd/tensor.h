// Tensors as backends and tools exchange them, dtype rounding, and the tensor
// file formats (.npy, safetensors).
//
// A Tensor is dense, row-major (C order), in the axis order of the value it
// holds. Its elements are kept as float32 for every dtype but i32 (narrow
// floats hold values exactly representable in their dtype, bool holds 0/1,
// i8 holds integers), and as int32 for i32, so that integer data is exact.
//
// Rounding to the narrow float dtypes is bit-exact round-to-nearest-even
// (docs/RUN.md, "Dtypes"): f16 and f8e5m2 overflow to infinity like IEEE
// formats; f8e4m3 (the "fn" variant: no infinities) saturates to ±448;
// NaN stays NaN. Conversion to integers truncates toward zero and saturates
// (NaN gives 0); conversion to bool is x != 0.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "ncd/ir.h"

namespace ncd {

// ---------------------------------------------------------------- dtypes

float round_to_bf16(float x);
float round_to_f16(float x);
float round_to_f8e4m3(float x);
float round_to_f8e5m2(float x);
// The value a float32 takes when stored in `dtype` (for i32: the truncated,
// saturated integer as a float; use float_to_i32 for the exact integer).
float convert_float(float x, ir::DType dtype);
// In place over n values; a no-op for f32.
void convert_floats(float *data, int64_t n, ir::DType dtype);
int32_t float_to_i32(float x);

// Bit encodings (for safetensors and tests).
uint16_t bf16_bits(float x);  // of round_to_bf16(x)
float bf16_from_bits(uint16_t bits);
uint16_t f16_bits(float x);
float f16_from_bits(uint16_t bits);
uint8_t f8e4m3_bits(float x);
float f8e4m3_from_bits(uint8_t bits);
uint8_t f8e5m2_bits(float x);
float f8e5m2_from_bits(uint8_t bits);

// ---------------------------------------------------------------- tensors

struct Tensor {
  ir::DType dtype = ir::DType::F32;
  std::vector<int64_t> shape;
  std::vector<float> values;  // every dtype but i32
  std::vector<int32_t> ints;  // i32

  static Tensor zeros(ir::DType dtype, std::vector<int64_t> shape);
  int64_t size() const;
  bool is_int() const { return dtype == ir::DType::I32; }
  float get(int64_t i) const { return is_int() ? static_cast<float>(ints[static_cast<size_t>(i)]) : values[static_cast<size_t>(i)]; }
  double get_double(int64_t i) const {
    return is_int() ? static_cast<double>(ints[static_cast<size_t>(i)]) : static_cast<double>(values[static_cast<size_t>(i)]);
  }
};

// "(8, 64)"
std::string shape_text(const std::vector<int64_t> &shape);

// The memory the system can still give this process without swapping
// (MemAvailable), in bytes; 0 when unknown. Allocations larger than this are
// refused with a message instead of being left to the kernel's OOM killer,
// which memory overcommit would otherwise invite.
uint64_t available_memory();
// "1.50 GiB"-style text of a byte count.
std::string bytes_text(double bytes);

// ---------------------------------------------------------------- arrays in files

// Element types of tensor files; data are little-endian, row-major.
enum class ElementType { Bool, U8, I8, I16, U16, I32, U32, I64, U64, F16, BF16, F32, F64, F8E4M3, F8E5M2 };
int element_bytes(ElementType type);
// NumPy's name ("float32") or, for types NumPy lacks, ours ("bfloat16", "float8_e4m3").
std::string element_type_name(ElementType type);

struct RawArray {
  ElementType type = ElementType::F32;
  std::vector<int64_t> shape;
  std::vector<uint8_t> data;  // little-endian, C order, size = elements * element_bytes
  int64_t size() const;
};

// The array a tensor is stored as. For .npy (`npy` true) bf16 and f8 tensors are
// written as float32 (their values are exact in float32); safetensors keeps them.
RawArray array_from_tensor(const Tensor &tensor, bool npy);

// Converts a file's array to a tensor of `dtype` and `shape`. Accepted element
// types: the dtype's own (f32: float32, f16: float16, bf16: bfloat16, ...),
// float32 for bf16/f8 (rounded to the dtype), int64 for i32 (values must fit).
// On a mismatch, `error` says what was found and what is expected (without the
// file name: the caller prefixes it).
bool tensor_from_array(const RawArray &array, ir::DType dtype, const std::vector<int64_t> &shape,
                       Tensor &out, std::string &error);

// ---------------------------------------------------------------- .npy

// Parses a .npy file's bytes (format versions 1.0, 2.0 and 3.0; little- and
// big-endian; C and Fortran order; bool, int8/16/32/64, uint8/16/32/64,
// float16/32/64). Fortran-ordered data is transposed to C order.
bool parse_npy(const std::string &bytes, RawArray &out, std::string &error);
// Reads a whole file of at most `limit` bytes (0: the memory available), in
// chunks, so that /dev/zero, a FIFO or a huge file stops at the limit instead
// of exhausting memory. On failure, says why (`reason`: strerror for Open and
// Read, the limit as text for TooLarge).
enum class ReadFailure { None, Directory, Open, TooLarge, Read };
ReadFailure read_file_limited(const std::string &path, uint64_t limit, std::string &bytes, std::string &reason);
// The same, with errors reading "PATH: cannot open: REASON", "PATH: is a
// directory", "PATH: larger than the limit of N" or "PATH: cannot read: REASON".
bool read_file_bytes(const std::string &path, std::string &bytes, std::string &error, uint64_t limit = 0);
// Errors name the file; `limit` as read_file_bytes.
bool read_npy(const std::string &path, RawArray &out, std::string &error, uint64_t limit = 0);
// Only the element type and shape of a regular .npy file (`out.data` stays
// empty), read from its first bytes: a file of the wrong shape is refused
// without reading its data.
bool read_npy_header(const std::string &path, RawArray &out, std::string &error);
// Version 1.0 (2.0 when the header needs it), little-endian, C order.
std::string npy_bytes(const RawArray &array);

// ---------------------------------------------------------------- safetensors

// The safetensors format (8-byte little-endian header length, a JSON header of
// {name: {dtype, shape, data_offsets}} and "__metadata__", then the data).
struct SafetensorsFile {
  std::map<std::string, RawArray> tensors;
  std::map<std::string, std::string> metadata;
};
bool parse_safetensors(const std::string &bytes, SafetensorsFile &out, std::string &error);
bool read_safetensors(const std::string &path, SafetensorsFile &out, std::string &error);  // errors name the file
std::string safetensors_bytes(const SafetensorsFile &file);

// A file's header alone (tensor types, shapes and data offsets, relative to
// `data_start` in the file), validated as parse_safetensors does, without
// reading the data: for tools that stream tensors from files larger than memory.
struct SafetensorsEntry {
  ElementType type = ElementType::F32;
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;
};
struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  uint64_t data_start = 0;  // 8 + the header length
};
bool read_safetensors_header(const std::string &path, SafetensorsHeader &out, std::string &error);  // errors name the file
// "F32", "BF16", ...: the dtype code of the format.
std::string safetensors_type_code(ElementType type);

// ---------------------------------------------------------------- random tensors

// Deterministic random data (docs/RUN.md, "Random data"): each tensor's stream
// depends only on the seed and its name, so the same name gets the same data
// in any diagram, and element i only on i (not on thread count). Floats:
// mean 0 and standard deviation `scale`, bell-shaped (Irwin-Hall of four
// uniforms, within ±2√3·scale); integers: uniform in [low, high); bool: true
// with probability 1/2. The result is rounded to `dtype`.
struct RandomSpec {
  double scale = 1.0;
  int64_t low = 0, high = 1;
};
Tensor random_tensor(uint64_t seed, const std::string &name, ir::DType dtype, const std::vector<int64_t> &shape,
                     const RandomSpec &spec);

}  // namespace ncd
