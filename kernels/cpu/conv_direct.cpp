// CPU direct convolution for the U-Net's workhorse: 3x3 windows, stride 1, padding 1, f32, on
// AVX2 + FMA. It reads each image once through a zero-bordered copy instead of writing the
// nine-times-larger im2col matrix and multiplying it by OpenBLAS: a register tile of output
// rows (2 vectors of 8 columns by 6 output channels, or 1 by 12 for images 8 wide or less)
// sums its 9*C products in registers, broadcasting one weight against two vectors of a
// shifted input row. Other geometries and dtypes report no support, and the engine takes the
// im2col + GEMM path (conv.cpp).
#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DUALFLOW_CONV_DIRECT 1
#endif

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

bool conv2d_direct_supports(DType t, const ConvGeometry& g, int64_t out_channels) {
#ifdef DUALFLOW_CONV_DIRECT
  return t == DType::f32 && g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 1 &&
         g.pad_w == 1 && g.dil_h == 1 && g.dil_w == 1 && g.c >= 1 && out_channels >= 1 && g.out_h == g.h &&
         g.out_w == g.w;
#else
  (void)t, (void)g, (void)out_channels;
  return false;
#endif
}

#ifdef DUALFLOW_CONV_DIRECT

// One image's input with a zero border: [c, h + 2, row] where row covers the widest read (the
// last column tile plus the window's 2 extra columns).
struct PaddedImage {
  int64_t rows = 0, row = 0;
  std::vector<float> data;
  void fill(const float* x, int64_t c, int64_t h, int64_t w, int64_t tile_width) {
    rows = h + 2;
    row = (w + tile_width - 1) / tile_width * tile_width + 2;
    data.assign(size_t(c * rows * row), 0.0f);
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t y = 0; y < h; ++y)
        std::memcpy(&data[size_t((ci * rows + y + 1) * row + 1)], x + (ci * h + y) * w, size_t(w) * sizeof(float));
  }
};

// Output rows [.., oy, col : col + 8*NV) of OCB channels. `wp` holds this channel block's
// weights as [c][9][OCB]; `out` points at channel 0 of the block, row 0, column 0.
template <int NV, int OCB>
void conv_tile(const PaddedImage& xp, int64_t c, const float* wp, const float* bias, int64_t oc_valid, float* out,
               int64_t h, int64_t w) {
  const int64_t offsets[9] = {0, 1, 2, xp.row, xp.row + 1, xp.row + 2, 2 * xp.row, 2 * xp.row + 1, 2 * xp.row + 2};
  for (int64_t oy = 0; oy < h; ++oy) {
    for (int64_t col = 0; col < w; col += 8 * NV) {
      __m256 acc[OCB][NV];
#pragma GCC unroll 12
      for (int j = 0; j < OCB; ++j)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_set1_ps(j < oc_valid ? bias[j] : 0.0f);
      const float* wk = wp;
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* base = xp.data.data() + (ci * xp.rows + oy) * xp.row + col;
#pragma GCC unroll 1
        for (int t = 0; t < 9; ++t, wk += OCB) {
          const float* in = base + offsets[t];
#pragma GCC unroll 12
          for (int j = 0; j < OCB; ++j) {
            const __m256 wj = _mm256_broadcast_ss(wk + j);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[j][v] = _mm256_fmadd_ps(wj, _mm256_loadu_ps(in + 8 * v), acc[j][v]);
          }
        }
      }
      const int64_t width = std::min<int64_t>(8 * NV, w - col);
      // Fully unrolled (a loop bounded at run time would make the accumulators an array in memory).
#pragma GCC unroll 12
      for (int j = 0; j < OCB; ++j) {
        if (j >= oc_valid) continue;
        float* dst = out + j * h * w + oy * w + col;
        if (width == 8 * NV) {
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) _mm256_storeu_ps(dst + 8 * v, acc[j][v]);
        } else {
          alignas(32) float row[8 * NV];
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) _mm256_store_ps(row + 8 * v, acc[j][v]);
          std::memcpy(dst, row, size_t(width) * sizeof(float));
        }
      }
    }
  }
}

template <int NV, int OCB>
void conv_image(const float* x, const std::vector<float>& packed, const float* bias, float* out, const ConvGeometry& g,
                int64_t o, PaddedImage& xp) {
  xp.fill(x, g.c, g.h, g.w, 8 * NV);
  for (int64_t ob = 0; ob * OCB < o; ++ob) {
    const int64_t oc_valid = std::min<int64_t>(OCB, o - ob * OCB);
    conv_tile<NV, OCB>(xp, g.c, packed.data() + size_t(ob * g.c * 9 * OCB), bias + ob * OCB, oc_valid,
                       out + ob * OCB * g.h * g.w, g.h, g.w);
  }
}

template <int NV, int OCB>
void conv_all(const float* x, const float* w, const float* bias, float* out, const ConvGeometry& g, int64_t o) {
  // Weights as [o / OCB][c][9][OCB], the last block zero-padded: a tile reads its OCB weights
  // of one tap from one place.
  const int64_t blocks = (o + OCB - 1) / OCB;
  std::vector<float> packed(size_t(blocks * g.c * 9 * OCB), 0.0f);
  for (int64_t oc = 0; oc < o; ++oc)
    for (int64_t ci = 0; ci < g.c; ++ci)
      for (int64_t t = 0; t < 9; ++t)
        packed[size_t(((oc / OCB * g.c + ci) * 9 + t) * OCB + oc % OCB)] = w[(oc * g.c + ci) * 9 + t];
  std::vector<float> zero_bias;
  if (!bias) zero_bias.assign(size_t(blocks * OCB), 0.0f);
  else {
    zero_bias.assign(bias, bias + o);
    zero_bias.resize(size_t(blocks * OCB), 0.0f);
  }
  parallel_for(g.n, 1, [&](int64_t b, int64_t e) {
    PaddedImage xp;
    for (int64_t n = b; n < e; ++n)
      conv_image<NV, OCB>(x + n * g.c * g.h * g.w, packed, zero_bias.data(), out + n * o * g.h * g.w, g, o, xp);
  });
}

#endif  // DUALFLOW_CONV_DIRECT

void conv2d_direct(int, DType t, const void* x, const void* w, const void* bias, void* out, const ConvGeometry& g,
                   int64_t out_channels) {
  if (!conv2d_direct_supports(t, g, out_channels))
    throw std::runtime_error("cpu backend: conv2d_direct called for a geometry it does not support");
#ifdef DUALFLOW_CONV_DIRECT
  const auto* xf = static_cast<const float*>(x);
  const auto* wf = static_cast<const float*>(w);
  const auto* bf = static_cast<const float*>(bias);
  auto* of = static_cast<float*>(out);
  if (g.w <= 8) conv_all<1, 12>(xf, wf, bf, of, g, out_channels);
  else conv_all<2, 6>(xf, wf, bf, of, g, out_channels);
#else
  (void)x, (void)w, (void)bias, (void)out;
#endif
}

}  // namespace

void register_conv_direct(Backend& b) {
  b.conv2d_direct_supports = conv2d_direct_supports;
  b.conv2d_direct = conv2d_direct;
}

}  // namespace dualflow::cpu
