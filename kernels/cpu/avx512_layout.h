// Layout changes in AVX-512 registers: a 16x16 transpose of f32, masked loads of a block, and
// the channels-last copy of an image built on them, for the kernels that lay out their operands
// (the convolutions, GEMM packing). Only for translation units built with AVX-512.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>

namespace dualflow::cpu {

// r[i] = row i of a 16x16 block becomes column i. (GCC 12 reports the unpack and shuffle
// intrinsics' internal pass-through operand as uninitialised: a false positive, silenced here.)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
    t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
    t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
    t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
  }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}
#pragma GCC diagnostic pop

// Rows [0, rows) of 16 floats (the first `width` of each, the rest and the other rows zero),
// `stride` apart.
inline void load_block(const float* src, int64_t stride, int64_t rows, int64_t width, __m512 r[16]) {
  const __mmask16 valid = __mmask16((1u << width) - 1);
  for (int64_t j = 0; j < 16; ++j)
    r[j] = j < rows ? _mm512_maskz_loadu_ps(valid, src + j * stride) : _mm512_setzero_ps();
}

// dst[((y + border) * dst_cols + x + border) * stride + ch] = src[(ch * h + y) * w + x] for an
// image of c channels: 16 channels by 16 positions at a time (positions counted along the
// rows as one flat run, so narrow images fill whole blocks too), so both sides touch whole
// cache lines. Lanes from c up to the next multiple of 16 are written as zeros.
inline void channels_last(const float* src, int64_t c, int64_t h, int64_t w, float* dst, int64_t dst_cols,
                          int64_t border, int64_t stride) {
  const int64_t hw = h * w;
  for (int64_t c0 = 0; c0 < c; c0 += 16) {
    const int64_t cn = std::min<int64_t>(16, c - c0);
    for (int64_t p0 = 0; p0 < hw; p0 += 16) {
      const int64_t pn = std::min<int64_t>(16, hw - p0);
      __m512 r[16];
      // 16 planes read side by side outrun the hardware prefetcher: ask for the lines 4 blocks on.
      constexpr int64_t ahead = 4 * 16;
      for (int64_t j = 0; j < cn && p0 + ahead < hw; ++j)
        _mm_prefetch(reinterpret_cast<const char*>(src + (c0 + j) * hw + p0 + ahead), _MM_HINT_T0);
      load_block(src + c0 * hw + p0, hw, cn, pn, r);
      transpose16(r);
      int64_t y = p0 / w, x = p0 % w;  // stepped along, not divided per position
      for (int64_t j = 0; j < pn; ++j) {
        _mm512_storeu_ps(dst + ((y + border) * dst_cols + x + border) * stride + c0, r[j]);
        if (++x == w) x = 0, ++y;
      }
    }
  }
}

}  // namespace dualflow::cpu
