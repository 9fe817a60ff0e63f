// What the data files' code shares inside core/src/data: one element of a
// tensor file read as a number or written from one, and the counter-based
// hashing behind seeded data (random tensors, tensor.cpp; DARE's drop mask,
// merge.cpp).
#pragma once

#include <cstdint>
#include <string>

#include "ncd/tensor.h"

namespace ncd::data {

// An element at `p` (little-endian) as a double: integers exactly up to 2^53.
double element_value(const uint8_t *p, ElementType type);
// A float element at `p`, rounded to `type` as ncd rounds (tensor.h); other types are left unwritten.
void store_float_element(float value, ElementType type, uint8_t *p);

inline constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// SplitMix64's output function. Applied to a counter (key + (i + 1)·γ), it is
// SplitMix64's i-th output computed without the sequential state: element i
// depends only on the seed, the stream name and i, never on the order or the
// number of threads, and the loops that use it vectorise.
inline uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// FNV-1a, 64 bits: a stream's name as a key.
uint64_t fnv1a64(const std::string &text);

}  // namespace ncd::data
