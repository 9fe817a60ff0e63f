// Tensors: dtype rounding (bit-exact round-to-nearest-even), conversions
// between tensors and file arrays, and deterministic random data.
#include "ncd/tensor.h"

#include "elements.h"

#include <unistd.h>

#include <cstdio>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

namespace ncd {
namespace {

uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// A binary floating-point format narrower than float32.
struct Format {
  int mantissa;      // stored mantissa bits
  int exponent;      // exponent bits
  int emin;          // exponent of the smallest normal number
  double max;        // largest finite value
  bool has_inf;      // IEEE-like (overflow to infinity) or "fn" (saturate, no infinities)
  uint32_t nan;      // the encoding of NaN (sign bit clear)
};

constexpr Format kF16{10, 5, -14, 65504.0, true, 0x7e00};
constexpr Format kBF16{7, 8, -126, 3.38953138925153547590470800371487867e38, true, 0x7fc0};
constexpr Format kE4M3{3, 4, -6, 448.0, false, 0x7f};
constexpr Format kE5M2{2, 5, -14, 57344.0, true, 0x7e};

// Rounds |x| (finite, > 0) to the format's precision with an unbounded exponent
// range above and gradual underflow below; ties go to even.
double round_magnitude(double a, const Format &f) {
  int e;
  std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1): floor(log2 a) = e - 1
  int exponent = std::max(e - 1, f.emin);
  double quantum = std::ldexp(1.0, exponent - f.mantissa);
  return std::nearbyint(a / quantum) * quantum;  // exact division; default rounding is to nearest even
}

float round_format(float x, const Format &f) {
  if (std::isnan(x)) return x;
  double a = std::fabs(static_cast<double>(x));
  double r;
  if (std::isinf(x)) {
    r = f.has_inf ? a : f.max;
  } else if (a == 0) {
    return x;
  } else {
    r = round_magnitude(a, f);
    if (r > f.max) r = f.has_inf ? std::numeric_limits<double>::infinity() : f.max;
  }
  return static_cast<float>(std::signbit(x) ? -r : r);
}

uint32_t encode(float x, const Format &f) {
  const int width = 1 + f.exponent + f.mantissa;
  const uint32_t sign = std::signbit(x) ? (1u << (width - 1)) : 0u;
  if (std::isnan(x)) return sign | f.nan;
  float v = round_format(x, f);
  double a = std::fabs(static_cast<double>(v));
  const uint32_t exponent_mask = (1u << f.exponent) - 1;
  if (std::isinf(v)) return sign | (exponent_mask << f.mantissa);
  if (a == 0) return sign;
  int e;
  std::frexp(a, &e);
  int exponent = e - 1;
  const int bias = 1 - f.emin;
  if (exponent < f.emin) {
    auto mantissa = static_cast<uint32_t>(std::ldexp(a, f.mantissa - f.emin));
    return sign | mantissa;
  }
  auto mantissa = static_cast<uint32_t>(std::ldexp(a, f.mantissa - exponent)) - (1u << f.mantissa);
  return sign | (static_cast<uint32_t>(exponent + bias) << f.mantissa) | mantissa;
}

float decode(uint32_t bits, const Format &f) {
  const int width = 1 + f.exponent + f.mantissa;
  bool negative = (bits >> (width - 1)) & 1;
  uint32_t exponent = (bits >> f.mantissa) & ((1u << f.exponent) - 1);
  uint32_t mantissa = bits & ((1u << f.mantissa) - 1);
  const uint32_t exponent_max = (1u << f.exponent) - 1;
  const int bias = 1 - f.emin;
  double value;
  if (f.has_inf && exponent == exponent_max) {
    value = mantissa == 0 ? std::numeric_limits<double>::infinity() : std::numeric_limits<double>::quiet_NaN();
  } else if (!f.has_inf && exponent == exponent_max && mantissa == (1u << f.mantissa) - 1) {
    value = std::numeric_limits<double>::quiet_NaN();  // e4m3fn: S.1111.111 is NaN
  } else if (exponent == 0) {
    value = std::ldexp(static_cast<double>(mantissa), f.emin - f.mantissa);
  } else {
    value = std::ldexp(static_cast<double>(mantissa + (1u << f.mantissa)), static_cast<int>(exponent) - bias - f.mantissa);
  }
  return static_cast<float>(negative ? -value : value);
}

}  // namespace

// ---------------------------------------------------------------- dtypes

uint16_t bf16_bits(float x) {
  uint32_t u = float_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even; overflow carries into infinity
  return static_cast<uint16_t>(u >> 16);
}
float bf16_from_bits(uint16_t bits) { return bits_float(static_cast<uint32_t>(bits) << 16); }
float round_to_bf16(float x) { return bf16_from_bits(bf16_bits(x)); }

uint16_t f16_bits(float x) { return static_cast<uint16_t>(encode(x, kF16)); }
float f16_from_bits(uint16_t bits) { return decode(bits, kF16); }
float round_to_f16(float x) { return round_format(x, kF16); }

uint8_t f8e4m3_bits(float x) { return static_cast<uint8_t>(encode(x, kE4M3)); }
float f8e4m3_from_bits(uint8_t bits) { return decode(bits, kE4M3); }
float round_to_f8e4m3(float x) { return round_format(x, kE4M3); }

uint8_t f8e5m2_bits(float x) { return static_cast<uint8_t>(encode(x, kE5M2)); }
float f8e5m2_from_bits(uint8_t bits) { return decode(bits, kE5M2); }
float round_to_f8e5m2(float x) { return round_format(x, kE5M2); }

int32_t float_to_i32(float x) {
  if (std::isnan(x)) return 0;
  double t = std::trunc(static_cast<double>(x));
  if (t >= 2147483647.0) return std::numeric_limits<int32_t>::max();
  if (t <= -2147483648.0) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(t);
}

float convert_float(float x, ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return x;
    case ir::DType::F16: return round_to_f16(x);
    case ir::DType::BF16: return round_to_bf16(x);
    case ir::DType::F8E4M3: return round_to_f8e4m3(x);
    case ir::DType::F8E5M2: return round_to_f8e5m2(x);
    case ir::DType::I8: {
      if (std::isnan(x)) return 0;
      float t = std::trunc(x);
      return t > 127 ? 127.0f : t < -128 ? -128.0f : t;
    }
    case ir::DType::I32: return static_cast<float>(float_to_i32(x));
    case ir::DType::Bool: return x != 0 ? 1.0f : 0.0f;
  }
  return x;
}

// One loop per dtype, so that each inlines its rounding (and the simple ones vectorise).
void convert_floats(float *data, int64_t n, ir::DType dtype) {
  auto each = [&](auto round) {
    for (int64_t i = 0; i < n; ++i) data[i] = round(data[i]);
  };
  switch (dtype) {
    case ir::DType::F32: return;
    case ir::DType::BF16: return each([](float x) { return round_to_bf16(x); });
    case ir::DType::F16: return each([](float x) { return round_to_f16(x); });
    case ir::DType::F8E4M3: return each([](float x) { return round_to_f8e4m3(x); });
    case ir::DType::F8E5M2: return each([](float x) { return round_to_f8e5m2(x); });
    case ir::DType::Bool: return each([](float x) { return x != 0 ? 1.0f : 0.0f; });
    case ir::DType::I8:
    case ir::DType::I32: return each([dtype](float x) { return convert_float(x, dtype); });
  }
}

// ---------------------------------------------------------------- tensors

uint64_t available_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (meminfo >> key >> value) {
    std::getline(meminfo, unit);
    if (key == "MemAvailable:") return value * 1024;
  }
  long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

std::string bytes_text(double bytes) {
  static const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  int unit = 0;
  while (bytes >= 1024 && unit < 6) {
    bytes /= 1024;
    ++unit;
  }
  char text[64];
  std::snprintf(text, sizeof text, unit == 0 ? "%.0f %s" : "%.2f %s", bytes, units[unit]);
  return text;
}

Tensor Tensor::zeros(ir::DType dtype, std::vector<int64_t> shape) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  if (t.is_int())
    t.ints.assign(static_cast<size_t>(t.size()), 0);
  else
    t.values.assign(static_cast<size_t>(t.size()), 0.0f);
  return t;
}

int64_t Tensor::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

std::string shape_text(const std::vector<int64_t> &shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) out += ",";
  return out + ")";
}

// ---------------------------------------------------------------- arrays

int element_bytes(ElementType type) {
  switch (type) {
    case ElementType::Bool: case ElementType::U8: case ElementType::I8:
    case ElementType::F8E4M3: case ElementType::F8E5M2: return 1;
    case ElementType::I16: case ElementType::U16: case ElementType::F16: case ElementType::BF16: return 2;
    case ElementType::I32: case ElementType::U32: case ElementType::F32: return 4;
    case ElementType::I64: case ElementType::U64: case ElementType::F64: return 8;
  }
  return 1;
}

std::string element_type_name(ElementType type) {
  switch (type) {
    case ElementType::Bool: return "bool";
    case ElementType::U8: return "uint8";
    case ElementType::I8: return "int8";
    case ElementType::I16: return "int16";
    case ElementType::U16: return "uint16";
    case ElementType::I32: return "int32";
    case ElementType::U32: return "uint32";
    case ElementType::I64: return "int64";
    case ElementType::U64: return "uint64";
    case ElementType::F16: return "float16";
    case ElementType::BF16: return "bfloat16";
    case ElementType::F32: return "float32";
    case ElementType::F64: return "float64";
    case ElementType::F8E4M3: return "float8_e4m3";
    case ElementType::F8E5M2: return "float8_e5m2";
  }
  return "?";
}

int64_t RawArray::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

template <typename T>
T load(const uint8_t *p) {
  T v;
  std::memcpy(&v, p, sizeof(T));  // little-endian host (x86-64, aarch64)
  return v;
}

template <typename T>
void store(uint8_t *p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

}  // namespace

double data::element_value(const uint8_t *p, ElementType type) {
  switch (type) {
    case ElementType::Bool: return *p != 0 ? 1.0 : 0.0;
    case ElementType::U8: return *p;
    case ElementType::I8: return static_cast<int8_t>(*p);
    case ElementType::I16: return load<int16_t>(p);
    case ElementType::U16: return load<uint16_t>(p);
    case ElementType::I32: return load<int32_t>(p);
    case ElementType::U32: return load<uint32_t>(p);
    case ElementType::I64: return static_cast<double>(load<int64_t>(p));
    case ElementType::U64: return static_cast<double>(load<uint64_t>(p));
    case ElementType::F16: return f16_from_bits(load<uint16_t>(p));
    case ElementType::BF16: return bf16_from_bits(load<uint16_t>(p));
    case ElementType::F32: return load<float>(p);
    case ElementType::F64: return load<double>(p);
    case ElementType::F8E4M3: return f8e4m3_from_bits(*p);
    case ElementType::F8E5M2: return f8e5m2_from_bits(*p);
  }
  return 0;
}

void data::store_float_element(float value, ElementType type, uint8_t *p) {
  switch (type) {
    case ElementType::F32: store<float>(p, value); break;
    case ElementType::F16: store<uint16_t>(p, f16_bits(value)); break;
    case ElementType::BF16: store<uint16_t>(p, bf16_bits(value)); break;
    case ElementType::F8E4M3: *p = f8e4m3_bits(value); break;
    case ElementType::F8E5M2: *p = f8e5m2_bits(value); break;
    default: break;
  }
}

namespace {

// Element i of an array as a double.
double element_as_double(const RawArray &a, int64_t i) {
  return data::element_value(a.data.data() + i * element_bytes(a.type), a.type);
}

const char *dtype_storage_hint(ir::DType dtype) {
  switch (dtype) {
    case ir::DType::F32: return "float32";
    case ir::DType::F16: return "float16";
    case ir::DType::BF16: return "float32 or bfloat16";
    case ir::DType::F8E4M3: return "float32 or float8_e4m3";
    case ir::DType::F8E5M2: return "float32 or float8_e5m2";
    case ir::DType::I8: return "int8";
    case ir::DType::I32: return "int32 or int64";
    case ir::DType::Bool: return "bool";
  }
  return "?";
}

bool accepts(ir::DType dtype, ElementType type) {
  switch (dtype) {
    case ir::DType::F32: return type == ElementType::F32;
    case ir::DType::F16: return type == ElementType::F16;
    case ir::DType::BF16: return type == ElementType::BF16 || type == ElementType::F32;
    case ir::DType::F8E4M3: return type == ElementType::F8E4M3 || type == ElementType::F32;
    case ir::DType::F8E5M2: return type == ElementType::F8E5M2 || type == ElementType::F32;
    case ir::DType::I8: return type == ElementType::I8;
    case ir::DType::I32: return type == ElementType::I32 || type == ElementType::I64;
    case ir::DType::Bool: return type == ElementType::Bool;
  }
  return false;
}

}  // namespace

RawArray array_from_tensor(const Tensor &tensor, bool npy) {
  RawArray a;
  a.shape = tensor.shape;
  const int64_t n = tensor.size();
  switch (tensor.dtype) {
    case ir::DType::F32: a.type = ElementType::F32; break;
    case ir::DType::F16: a.type = ElementType::F16; break;
    case ir::DType::BF16: a.type = npy ? ElementType::F32 : ElementType::BF16; break;
    case ir::DType::F8E4M3: a.type = npy ? ElementType::F32 : ElementType::F8E4M3; break;
    case ir::DType::F8E5M2: a.type = npy ? ElementType::F32 : ElementType::F8E5M2; break;
    case ir::DType::I8: a.type = ElementType::I8; break;
    case ir::DType::I32: a.type = ElementType::I32; break;
    case ir::DType::Bool: a.type = ElementType::Bool; break;
  }
  const int width = element_bytes(a.type);
  a.data.resize(static_cast<size_t>(n * width));
  uint8_t *out = a.data.data();
  for (int64_t i = 0; i < n; ++i) {
    uint8_t *p = out + i * width;
    switch (a.type) {
      case ElementType::F32:
      case ElementType::F16:
      case ElementType::BF16:
      case ElementType::F8E4M3:
      case ElementType::F8E5M2: data::store_float_element(tensor.values[static_cast<size_t>(i)], a.type, p); break;
      case ElementType::I8: *p = static_cast<uint8_t>(static_cast<int8_t>(tensor.values[static_cast<size_t>(i)])); break;
      case ElementType::I32: store<int32_t>(p, tensor.ints[static_cast<size_t>(i)]); break;
      case ElementType::Bool: *p = tensor.values[static_cast<size_t>(i)] != 0 ? 1 : 0; break;
      default: break;
    }
  }
  return a;
}

bool tensor_from_array(const RawArray &array, ir::DType dtype, const std::vector<int64_t> &shape, Tensor &out,
                       std::string &error) {
  if (!accepts(dtype, array.type)) {
    error = "has dtype " + element_type_name(array.type) + ", but " + std::string(ir::dtype_name(dtype)) +
            " data is stored as " + dtype_storage_hint(dtype);
    return false;
  }
  if (array.shape != shape) {
    error = "has shape " + shape_text(array.shape) + ", expected shape " + shape_text(shape);
    return false;
  }
  out = Tensor::zeros(dtype, shape);
  const int64_t n = out.size();
  if (dtype == ir::DType::I32) {
    for (int64_t i = 0; i < n; ++i) {
      const uint8_t *p = array.data.data() + i * element_bytes(array.type);
      int64_t v = array.type == ElementType::I64 ? load<int64_t>(p) : load<int32_t>(p);
      if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max()) {
        error = "holds " + std::to_string(v) + " at element " + std::to_string(i) + ", which does not fit in i32";
        return false;
      }
      out.ints[static_cast<size_t>(i)] = static_cast<int32_t>(v);
    }
    return true;
  }
  if (array.type == ElementType::F32) {
    std::memcpy(out.values.data(), array.data.data(), static_cast<size_t>(n) * 4);
    convert_floats(out.values.data(), n, dtype);
    return true;
  }
  for (int64_t i = 0; i < n; ++i)
    out.values[static_cast<size_t>(i)] = convert_float(static_cast<float>(element_as_double(array, i)), dtype);
  return true;
}

// ---------------------------------------------------------------- random

namespace {

using data::kGolden;
using data::mix64;
using data::fnv1a64;

}  // namespace

uint64_t data::fnv1a64(const std::string &text) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

Tensor random_tensor(uint64_t seed, const std::string &name, ir::DType dtype, const std::vector<int64_t> &shape,
                     const RandomSpec &spec) {
  Tensor t = Tensor::zeros(dtype, shape);
  const uint64_t key = (seed * kGolden) ^ fnv1a64(name);
  const int64_t n = t.size();
  switch (dtype) {
    case ir::DType::I32:
    case ir::DType::I8: {
      uint64_t range = static_cast<uint64_t>(std::max<int64_t>(spec.high - spec.low, 1));
      for (int64_t i = 0; i < n; ++i) {
        int64_t v = spec.low + static_cast<int64_t>(mix64(key + static_cast<uint64_t>(i + 1) * kGolden) % range);
        if (dtype == ir::DType::I32)
          t.ints[static_cast<size_t>(i)] = static_cast<int32_t>(v);
        else
          t.values[static_cast<size_t>(i)] = static_cast<float>(v);
      }
      return t;
    }
    case ir::DType::Bool:
      for (int64_t i = 0; i < n; ++i)
        t.values[static_cast<size_t>(i)] = (mix64(key + static_cast<uint64_t>(i + 1) * kGolden) >> 63) ? 1.0f : 0.0f;
      return t;
    default: break;
  }
  // Floats: the sum of the four 16-bit lanes of one hash is Irwin-Hall(4)
  // distributed (mean 4·(2^16 - 1)/2, variance 4·(2^32 - 1)/12); centred and
  // scaled it has mean 0 and standard deviation `scale`, within |z| < 2·√3.
  // Integer arithmetic up to one float multiplication: the same bits on every
  // machine, and no libm call per element (cos and log dominated the time).
  const float coefficient = static_cast<float>(spec.scale * std::sqrt(3.0) / 65536.0);
  float *out = t.values.data();
  for (int64_t i = 0; i < n; ++i) {
    uint64_t h = mix64(key + static_cast<uint64_t>(i + 1) * kGolden);
    int64_t sum = static_cast<int64_t>((h & 0xffff) + ((h >> 16) & 0xffff) + ((h >> 32) & 0xffff) + (h >> 48));
    out[i] = static_cast<float>(sum - 131070) * coefficient;
  }
  convert_floats(out, n, dtype);
  return t;
}

}  // namespace ncd
