// Unit tests of the tensor SDK: dtype rounding, .npy and safetensors
// encoding, random data, param naming.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "ncd/frontend.h"
#include "ncd/instantiate.h"
#include "ncd/tensor.h"

namespace ncd {
namespace {

float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

TEST(Rounding, Bf16TiesGoToEven) {
  EXPECT_EQ(round_to_bf16(1.0f + std::ldexp(1.0f, -8)), 1.0f);
  EXPECT_EQ(round_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 1.0f + std::ldexp(1.0f, -6));
  EXPECT_EQ(round_to_bf16(1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20)), 1.0f + std::ldexp(1.0f, -7));
  EXPECT_EQ(round_to_bf16(-1.0f - std::ldexp(1.0f, -8)), -1.0f);
  EXPECT_TRUE(std::isinf(round_to_bf16(std::numeric_limits<float>::max())));
  EXPECT_TRUE(std::isnan(round_to_bf16(std::nanf(""))));
  EXPECT_EQ(round_to_bf16(bits_float(1)), 0.0f);  // the smallest float subnormal
}

TEST(Rounding, Bf16AndF16EveryEncodingRoundTrips) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    float b = bf16_from_bits(static_cast<uint16_t>(bits));
    if (!std::isnan(b)) {
      EXPECT_EQ(bf16_bits(b), bits);
      EXPECT_EQ(round_to_bf16(b), b);
    }
    float h = f16_from_bits(static_cast<uint16_t>(bits));
    if (!std::isnan(h)) {
      EXPECT_EQ(f16_bits(h), bits) << bits;
      EXPECT_EQ(round_to_f16(h), h);
    }
  }
}

TEST(Rounding, F16Limits) {
  EXPECT_EQ(round_to_f16(65504.0f), 65504.0f);
  EXPECT_EQ(round_to_f16(65519.0f), 65504.0f);
  EXPECT_TRUE(std::isinf(round_to_f16(65520.0f)));  // the tie rounds to even: past the largest value
  EXPECT_EQ(round_to_f16(std::ldexp(1.0f, -24)), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(round_to_f16(std::ldexp(1.0f, -25)), 0.0f);                   // tie with 0: even
  EXPECT_EQ(round_to_f16(3 * std::ldexp(1.0f, -26)), std::ldexp(1.0f, -24));
  EXPECT_EQ(round_to_f16(1.0f + std::ldexp(1.0f, -11)), 1.0f);
  EXPECT_EQ(f16_bits(-2.0f), 0xc000);
  EXPECT_EQ(f16_bits(std::numeric_limits<float>::infinity()), 0x7c00);
}

TEST(Rounding, F8) {
  for (uint32_t bits = 0; bits < 256; ++bits) {
    float a = f8e4m3_from_bits(static_cast<uint8_t>(bits));
    if (!std::isnan(a)) {
      EXPECT_EQ(f8e4m3_bits(a), bits) << bits;
    }
    float b = f8e5m2_from_bits(static_cast<uint8_t>(bits));
    if (!std::isnan(b)) {
      EXPECT_EQ(f8e5m2_bits(b), bits) << bits;
    }
  }
  EXPECT_EQ(round_to_f8e4m3(448.0f), 448.0f);
  EXPECT_EQ(round_to_f8e4m3(464.0f), 448.0f);    // tie, even
  EXPECT_EQ(round_to_f8e4m3(470.0f), 448.0f);    // saturates (no infinity in e4m3fn)
  EXPECT_EQ(round_to_f8e4m3(-1e9f), -448.0f);
  EXPECT_EQ(round_to_f8e4m3(std::numeric_limits<float>::infinity()), 448.0f);
  EXPECT_EQ(round_to_f8e4m3(std::ldexp(1.0f, -9)), std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(round_to_f8e4m3(std::ldexp(1.0f, -10)), 0.0f);
  EXPECT_EQ(f8e4m3_bits(std::nanf("")), 0x7f);
  EXPECT_TRUE(std::isnan(f8e4m3_from_bits(0xff)));
  EXPECT_EQ(f8e4m3_from_bits(0x7e), 448.0f);
  EXPECT_EQ(round_to_f8e5m2(57344.0f), 57344.0f);
  EXPECT_EQ(round_to_f8e5m2(61439.0f), 57344.0f);
  EXPECT_TRUE(std::isinf(round_to_f8e5m2(61440.0f)));  // tie past the largest value: infinity
  EXPECT_EQ(round_to_f8e5m2(1.125f), 1.0f);            // tie, even
  EXPECT_EQ(round_to_f8e5m2(1.375f), 1.5f);
}

TEST(Rounding, Integers) {
  EXPECT_EQ(float_to_i32(2.7f), 2);
  EXPECT_EQ(float_to_i32(-2.7f), -2);
  EXPECT_EQ(float_to_i32(std::nanf("")), 0);
  EXPECT_EQ(float_to_i32(1e10f), std::numeric_limits<int32_t>::max());
  EXPECT_EQ(float_to_i32(-1e10f), std::numeric_limits<int32_t>::min());
  EXPECT_EQ(convert_float(300.5f, ir::DType::I8), 127.0f);
  EXPECT_EQ(convert_float(-300.5f, ir::DType::I8), -128.0f);
  EXPECT_EQ(convert_float(-3.9f, ir::DType::I8), -3.0f);
  EXPECT_EQ(convert_float(0.25f, ir::DType::Bool), 1.0f);
  EXPECT_EQ(convert_float(-0.0f, ir::DType::Bool), 0.0f);
}

RawArray sample(ElementType type, std::vector<int64_t> shape) {
  RawArray a;
  a.type = type;
  a.shape = shape;
  a.data.resize(static_cast<size_t>(a.size() * element_bytes(type)));
  for (size_t i = 0; i < a.data.size(); ++i) a.data[i] = static_cast<uint8_t>((i * 37 + 11) & 0x7f);
  if (type == ElementType::Bool)
    for (auto &b : a.data) b &= 1;
  return a;
}

TEST(Npy, RoundTripsEveryTypeAndShape) {
  for (ElementType type : {ElementType::Bool, ElementType::U8, ElementType::I8, ElementType::I16, ElementType::U16,
                           ElementType::I32, ElementType::U32, ElementType::I64, ElementType::U64, ElementType::F16,
                           ElementType::F32, ElementType::F64})
    for (std::vector<int64_t> shape : {std::vector<int64_t>{}, {0}, {5}, {2, 3, 4}, {1, 1, 7}}) {
      RawArray a = sample(type, shape);
      std::string bytes = npy_bytes(a);
      EXPECT_EQ(bytes.size() - a.data.size(), 64u * ((bytes.size() - a.data.size()) / 64)) << "data aligned to 64";
      RawArray b;
      std::string error;
      ASSERT_TRUE(parse_npy(bytes, b, error)) << error;
      EXPECT_EQ(b.type, a.type);
      EXPECT_EQ(b.shape, a.shape);
      EXPECT_EQ(b.data, a.data);
    }
}

std::string handmade(const std::string &header, const std::string &data, int major = 1) {
  std::string text = header;
  size_t preamble = major == 1 ? 10 : 12;
  while ((preamble + text.size() + 1) % 64) text += ' ';
  text += '\n';
  std::string out("\x93NUMPY", 6);
  out += static_cast<char>(major);
  out += '\0';
  for (size_t i = 0; i < (major == 1 ? 2u : 4u); ++i) out += static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text + data;
}

TEST(Npy, BigEndianFortranOrder) {
  // [[1, 2, 3], [4, 5, 6]] as big-endian int32 in column-major order: 1 4 2 5 3 6.
  std::string data;
  for (int v : {1, 4, 2, 5, 3, 6}) data += std::string{0, 0, 0, static_cast<char>(v)};
  RawArray a;
  std::string error;
  ASSERT_TRUE(parse_npy(handmade("{'descr': '>i4', 'fortran_order': True, 'shape': (2, 3), }", data, 3), a, error))
      << error;
  ASSERT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  int32_t values[6];
  std::memcpy(values, a.data.data(), 24);
  for (int i = 0; i < 6; ++i) EXPECT_EQ(values[i], i + 1);
}

TEST(Npy, HeaderVariants) {
  RawArray a;
  std::string error;
  // Double quotes, no trailing comma, keys in another order, a Python 2 long.
  EXPECT_TRUE(parse_npy(handmade("{\"shape\": (2L,), \"fortran_order\": False, \"descr\": \"<f2\"}", std::string(4, '\0')),
                        a, error))
      << error;
  EXPECT_EQ(a.type, ElementType::F16);
  EXPECT_FALSE(parse_npy(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", std::string(8, '\0')),
                         a, error));
  EXPECT_EQ(error, "malformed header: unexpected key 'extra' in the header");
}

TEST(Safetensors, RoundTrip) {
  SafetensorsFile file;
  file.metadata["format"] = "pt";
  for (ElementType type : {ElementType::BF16, ElementType::F8E4M3, ElementType::F8E5M2, ElementType::F32,
                           ElementType::I64, ElementType::Bool})
    file.tensors["t." + element_type_name(type)] = sample(type, {3, 2});
  file.tensors["empty"] = sample(ElementType::F16, {0, 4});
  std::string bytes = safetensors_bytes(file);
  SafetensorsFile back;
  std::string error;
  ASSERT_TRUE(parse_safetensors(bytes, back, error)) << error;
  EXPECT_EQ(back.metadata, file.metadata);
  ASSERT_EQ(back.tensors.size(), file.tensors.size());
  for (auto &[name, array] : file.tensors) {
    EXPECT_EQ(back.tensors[name].type, array.type) << name;
    EXPECT_EQ(back.tensors[name].shape, array.shape) << name;
    EXPECT_EQ(back.tensors[name].data, array.data) << name;
  }
}

TEST(Tensors, FromArrayConvertsAndChecks) {
  Tensor t = Tensor::zeros(ir::DType::BF16, {2});
  t.values = {1.5f, -3.0f};
  RawArray a = array_from_tensor(t, false);
  EXPECT_EQ(a.type, ElementType::BF16);
  Tensor back;
  std::string error;
  ASSERT_TRUE(tensor_from_array(a, ir::DType::BF16, {2}, back, error)) << error;
  EXPECT_EQ(back.values, t.values);
  EXPECT_FALSE(tensor_from_array(a, ir::DType::F32, {2}, back, error));
  EXPECT_EQ(error, "has dtype bfloat16, but f32 data is stored as float32");
  EXPECT_FALSE(tensor_from_array(a, ir::DType::BF16, {1, 2}, back, error));
  EXPECT_EQ(error, "has shape (2,), expected shape (1, 2)");
}

TEST(Random, DeterministicPerName) {
  RandomSpec spec;
  Tensor a = random_tensor(1, "input/X", ir::DType::F32, {1000}, spec);
  Tensor b = random_tensor(1, "input/X", ir::DType::F32, {1000}, spec);
  Tensor c = random_tensor(1, "input/Y", ir::DType::F32, {1000}, spec);
  Tensor d = random_tensor(2, "input/X", ir::DType::F32, {1000}, spec);
  EXPECT_EQ(a.values, b.values);
  EXPECT_NE(a.values, c.values);
  EXPECT_NE(a.values, d.values);
  double mean = 0, square = 0;
  for (float v : a.values) {
    mean += v;
    square += static_cast<double>(v) * v;
  }
  mean /= 1000;
  EXPECT_NEAR(mean, 0.0, 0.15);
  EXPECT_NEAR(square / 1000 - mean * mean, 1.0, 0.2);
  spec.low = 0;
  spec.high = 7;
  Tensor ints = random_tensor(1, "input/ids", ir::DType::I32, {500}, spec);
  for (int32_t v : ints.ints) {
    EXPECT_GE(v, 0);
    EXPECT_LT(v, 7);
  }
  Tensor bf = random_tensor(1, "param/W", ir::DType::BF16, {100}, RandomSpec{});
  for (float v : bf.values) EXPECT_EQ(v, round_to_bf16(v));
}

TEST(ParamNames, CallSitesAndIterations) {
  Compilation compilation;
  CompileOptions options;
  ASSERT_TRUE(compile_file(NCD_TEST_SOURCE_ROOT "/tests/cpu/semantics.ncd", options, compilation));
  const ir::Diagram *loops = compilation.program.find_diagram("Loops");
  ASSERT_NE(loops, nullptr);
  std::vector<ParamInstance> params;
  std::string error;
  ASSERT_TRUE(list_param_instances(compilation.program, *loops, params, error)) << error;
  std::vector<std::string> paths;
  for (const auto &p : params) paths.push_back(p.path);
  std::vector<std::string> expected = {"V", "0@0.W", "1@0.W", "2@0.W"};
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 2; ++j)
      for (const char *name : {"W", "b"})
        expected.push_back(std::to_string(i) + "@1." + std::to_string(j) + "@2.Layer." + name);
  EXPECT_EQ(paths, expected);
  const ir::Diagram *calls = compilation.program.find_diagram("Calls");
  ASSERT_TRUE(list_param_instances(compilation.program, *calls, params, error)) << error;
  paths.clear();
  for (const auto &p : params) paths.push_back(p.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"Layer@0.W", "Layer@0.b", "Layer@1.W", "Layer@1.b"}));
  EXPECT_EQ(params[0].shape, (std::vector<int64_t>{4, 4}));
}

TEST(ParamNames, CalleeSizesFollowBindings) {
  Compilation compilation;
  CompileOptions options;
  options.defines = {"seq=8", "heads=2", "d=4", "hidden=12"};
  ASSERT_TRUE(compile_file(NCD_TEST_SOURCE_ROOT "/stdlib/std/transformer.ncd", options, compilation));
  const ir::Diagram *block = compilation.program.find_diagram("GPT2Block");
  std::vector<ParamInstance> params;
  std::string error;
  ASSERT_TRUE(list_param_instances(compilation.program, *block, params, error)) << error;
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto &p : params) shapes[p.path] = p.shape;
  EXPECT_EQ(shapes["ln_1.gamma"], (std::vector<int64_t>{8}));
  EXPECT_EQ(shapes["CausalMultiHeadAttention.Wq"], (std::vector<int64_t>{8, 2, 4}));
  EXPECT_EQ(shapes["FFN.W1"], (std::vector<int64_t>{8, 12}));
  EXPECT_EQ(shapes["ln_2.beta"], (std::vector<int64_t>{8}));
  EXPECT_EQ(params.size(), 16u);
}

}  // namespace
}  // namespace ncd
