// 16-bit floating storage types (bf16 and IEEE f16) with bit-exact conversions usable on host
// and device alike, so CPU and CUDA round the same way (round to nearest even).
#pragma once
#include <cstdint>
#include <cstring>

#include "kernels/common/hd.h"

namespace dualflow {

DF_HD_INLINE uint32_t float_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}
DF_HD_INLINE float bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

struct bf16_t {
  uint16_t bits = 0;
  bf16_t() = default;
  DF_HD static bf16_t from_bits(uint16_t b) {
    bf16_t h;
    h.bits = b;
    return h;
  }
  DF_HD explicit bf16_t(float f) {
    uint32_t u = float_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
      bits = uint16_t((u >> 16) | 0x40u);
      return;
    }  // NaN stays NaN
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    bits = uint16_t((u + rounding) >> 16);
  }
  DF_HD operator float() const { return bits_float(uint32_t(bits) << 16); }
};

struct f16_t {
  uint16_t bits = 0;
  f16_t() = default;
  DF_HD static f16_t from_bits(uint16_t b) {
    f16_t h;
    h.bits = b;
    return h;
  }
  DF_HD explicit f16_t(float f) {
    uint32_t x = float_bits(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx > 0x7f800000u) {
      bits = uint16_t(sign | 0x7e00u);
      return;
    }  // NaN
    if (absx >= 0x477ff000u) {
      bits = uint16_t(sign | 0x7c00u);
      return;
    }                          // overflow -> inf
    if (absx < 0x38800000u) {  // subnormal or zero
      if (absx < 0x33000000u) {
        bits = uint16_t(sign);
        return;
      }
      uint32_t mant = (absx & 0x7fffffu) | 0x800000u;
      int shift = 113 - int(absx >> 23) + 13;  // 126 - exp + 14 - 1
      uint32_t half_mant = mant >> shift;
      uint32_t rem = mant & ((1u << shift) - 1u);
      uint32_t halfway = 1u << (shift - 1);
      if (rem > halfway || (rem == halfway && (half_mant & 1u))) ++half_mant;
      bits = uint16_t(sign | half_mant);
      return;
    }
    uint32_t e = ((absx >> 23) - 112u) << 10;
    uint32_t m = (absx >> 13) & 0x3ffu;
    uint32_t h = e | m;
    uint32_t rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    bits = uint16_t(sign | h);
  }
  DF_HD operator float() const {
    uint32_t sign = uint32_t(bits & 0x8000u) << 16;
    uint32_t e = (bits >> 10) & 0x1fu;
    uint32_t m = bits & 0x3ffu;
    if (e == 0) {
      if (m == 0) return bits_float(sign);
      float v = float(m) * (1.0f / 16777216.0f);  // m * 2^-24
      return sign ? -v : v;
    }
    if (e == 31) return bits_float(sign | 0x7f800000u | (m << 13));
    return bits_float(sign | ((e + 112u) << 23) | (m << 13));
  }
};

}  // namespace dualflow
