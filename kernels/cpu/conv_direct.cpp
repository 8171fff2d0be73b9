// CPU direct convolution for the U-Net's workhorse: 3x3 windows, stride 1, padding 1, f32, on
// AVX2 + FMA, and on AVX-512 where the build targets it. It reads each image once through a
// zero-bordered copy instead of writing the nine-times-larger im2col matrix and multiplying it
// by OpenBLAS: a register tile of R output rows by NV vectors of columns by OCB output
// channels sums its 9*C products in registers, broadcasting one weight against the R*NV
// vectors of a shifted input row. The same geometry's weight gradient (AVX-512 builds) runs
// here too, with the output channels along the lanes (weight_grad_direct). Other geometries
// and dtypes report no support, and the engine takes the im2col + GEMM path (conv.cpp).
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
#include "kernels/cpu/sum_f64.h"
#ifdef __AVX512F__
#include "kernels/cpu/avx512_layout.h"
#endif

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

// The vector operations a tile needs, for 8 lanes (AVX2) and 16 lanes (AVX-512).
struct Avx2 {
  using V = __m256;
  static constexpr int lanes = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V set1(float v) { return _mm256_set1_ps(v); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // The first `width` lanes (width >= 1).
  static void store(float* p, V v, int64_t width) {
    if (width >= lanes) return _mm256_storeu_ps(p, v);
    alignas(32) float row[lanes];
    _mm256_store_ps(row, v);
    std::memcpy(p, row, size_t(width) * sizeof(float));
  }
};

#ifdef __AVX512F__
struct Avx512 {
  using V = __m512;
  static constexpr int lanes = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V set1(float v) { return _mm512_set1_ps(v); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V fmadd(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // The first `width` lanes (width >= 1).
  static void store(float* p, V v, int64_t width) {
    if (width >= lanes) return _mm512_storeu_ps(p, v);
    _mm512_mask_storeu_ps(p, __mmask16((1u << width) - 1u), v);
  }
};
#endif

// One image's input with a zero border: [c, rows, row], where rows covers the last row tile's
// reads (h + 2, plus R - 1 rows a partial tile reads but does not store) and row covers the
// last column tile plus the window's 2 extra columns.
struct PaddedImage {
  int64_t rows = 0, row = 0;
  std::vector<float> data;
  void fill(const float* x, int64_t c, int64_t h, int64_t w, int64_t tile_rows, int64_t tile_width) {
    rows = (h + tile_rows - 1) / tile_rows * tile_rows + 2;
    row = (w + tile_width - 1) / tile_width * tile_width + 2;
    data.assign(size_t(c * rows * row), 0.0f);
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t y = 0; y < h; ++y)
        std::memcpy(&data[size_t((ci * rows + y + 1) * row + 1)], x + (ci * h + y) * w, size_t(w) * sizeof(float));
  }
};

// Output rows [oy, oy + R) x columns [col, col + lanes*NV) of OCB channels, for every tile of
// the image. `wp` holds this channel block's weights as [c][9][OCB]; `out` points at channel 0
// of the block, row 0, column 0. The loops over R, NV and OCB are unrolled in full so the
// accumulators stay in registers (R*NV*OCB of them, plus R*NV input vectors and a weight).
template <class S, int R, int NV, int OCB>
void conv_tile(const PaddedImage& xp, int64_t c, const float* wp, const float* bias, int64_t oc_valid, float* out,
               int64_t h, int64_t w) {
  using V = typename S::V;
  constexpr int L = S::lanes;
  const int64_t offsets[9] = {0, 1, 2, xp.row, xp.row + 1, xp.row + 2, 2 * xp.row, 2 * xp.row + 1, 2 * xp.row + 2};
  for (int64_t oy = 0; oy < h; oy += R) {
    for (int64_t col = 0; col < w; col += L * NV) {
      V acc[R][NV][OCB];
#pragma GCC unroll 24
      for (int j = 0; j < OCB; ++j) {
        const V b = S::set1(j < oc_valid ? bias[j] : 0.0f);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) acc[r][v][j] = b;
      }
      const float* wk = wp;
      for (int64_t ci = 0; ci < c; ++ci) {
        const float* base = xp.data.data() + (ci * xp.rows + oy) * xp.row + col;
#pragma GCC unroll 1
        for (int t = 0; t < 9; ++t, wk += OCB) {
          const float* in = base + offsets[t];
          V x[R][NV];
#pragma GCC unroll 4
          for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) x[r][v] = S::load(in + r * xp.row + L * v);
#pragma GCC unroll 24
          for (int j = 0; j < OCB; ++j) {
            const V wj = S::set1(wk[j]);
#pragma GCC unroll 4
            for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
              for (int v = 0; v < NV; ++v) acc[r][v][j] = S::fmadd(wj, x[r][v], acc[r][v][j]);
          }
        }
      }
      const int64_t width = std::min<int64_t>(L * NV, w - col);
#pragma GCC unroll 24
      for (int j = 0; j < OCB; ++j) {
        if (j >= oc_valid) continue;
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          if (oy + r >= h) continue;
          float* dst = out + j * h * w + (oy + r) * w + col;
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v)
            if (width > L * v) S::store(dst + L * v, acc[r][v][j], width - L * v);
        }
      }
    }
  }
}

// Weights as [o / OCB][c][9][OCB] and the bias as [o / OCB][OCB], the last block zero-padded:
// a tile reads its OCB weights of one tap, and its OCB biases, from one place.
struct BlockedWeights {
  int64_t blocks = 0;
  std::vector<float> weights, bias;
};

template <int OCB>
BlockedWeights block_weights(const float* w, const float* bias, int64_t c, int64_t o) {
  BlockedWeights b;
  b.blocks = (o + OCB - 1) / OCB;
  b.weights.assign(size_t(b.blocks * c * 9 * OCB), 0.0f);
  for (int64_t oc = 0; oc < o; ++oc)
    for (int64_t ci = 0; ci < c; ++ci)
      for (int64_t t = 0; t < 9; ++t)
        b.weights[size_t(((oc / OCB * c + ci) * 9 + t) * OCB + oc % OCB)] = w[(oc * c + ci) * 9 + t];
  b.bias.assign(size_t(b.blocks * OCB), 0.0f);
  if (bias) std::copy(bias, bias + o, b.bias.begin());
  return b;
}

template <class S, int R, int NV, int OCB>
void conv_all(const float* x, const float* w, const float* bias, float* out, const ConvGeometry& g, int64_t o) {
  const BlockedWeights bw = block_weights<OCB>(w, bias, g.c, o);
  parallel_for(g.n, 1, [&](int64_t b, int64_t e) {
    PaddedImage xp;
    for (int64_t n = b; n < e; ++n) {
      xp.fill(x + n * g.c * g.h * g.w, g.c, g.h, g.w, R, S::lanes * NV);
      float* image_out = out + n * o * g.h * g.w;
      for (int64_t ob = 0; ob < bw.blocks; ++ob)
        conv_tile<S, R, NV, OCB>(xp, g.c, bw.weights.data() + size_t(ob * g.c * 9 * OCB), bw.bias.data() + ob * OCB,
                                 std::min<int64_t>(OCB, o - ob * OCB), image_out + ob * OCB * g.h * g.w, g.h, g.w);
    }
  });
}

#ifdef __AVX512F__
// Images 8 wide or less: a 16-lane vector would hold one row and mostly nothing, so the tile
// runs along the zero-bordered image read as one flat array of rows w + 2 wide instead. Flat
// position p = y * (w + 2) + x is output (y, x) where x < w; the two border columns in every row
// compute values nobody reads, and the tile copies out the rest.
template <int NV, int OCB>
void conv_flat_image(const float* x, const float* wp, const float* bias, float* out, const ConvGeometry& g, int64_t o,
                     std::vector<float>& xp) {
  using S = Avx512;
  using V = S::V;
  constexpr int L = S::lanes, T = L * NV;
  const int64_t row = g.w + 2, positions = g.h * row, padded_positions = (positions + T - 1) / T * T;
  const int64_t plane = std::max((g.h + 2) * row, padded_positions + 2 * row + 2);
  xp.assign(size_t(g.c * plane), 0.0f);
  for (int64_t ci = 0; ci < g.c; ++ci)
    for (int64_t y = 0; y < g.h; ++y)
      std::memcpy(&xp[size_t(ci * plane + (y + 1) * row + 1)], x + (ci * g.h + y) * g.w, size_t(g.w) * sizeof(float));
  const int64_t offsets[9] = {0, 1, 2, row, row + 1, row + 2, 2 * row, 2 * row + 1, 2 * row + 2};
  for (int64_t ob = 0; ob * OCB < o; ++ob) {
    const int64_t oc_valid = std::min<int64_t>(OCB, o - ob * OCB);
    const float* wb = wp + ob * g.c * 9 * OCB;
    for (int64_t p0 = 0; p0 < padded_positions; p0 += T) {
      V acc[NV][OCB];
#pragma GCC unroll 24
      for (int j = 0; j < OCB; ++j) {
        const V b = S::set1(j < oc_valid ? bias[ob * OCB + j] : 0.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) acc[v][j] = b;
      }
      const float* wk = wb;
      for (int64_t ci = 0; ci < g.c; ++ci) {
        const float* base = xp.data() + ci * plane + p0;
#pragma GCC unroll 1
        for (int t = 0; t < 9; ++t, wk += OCB) {
          V xv[NV];
#pragma GCC unroll 4
          for (int v = 0; v < NV; ++v) xv[v] = S::load(base + offsets[t] + L * v);
#pragma GCC unroll 24
          for (int j = 0; j < OCB; ++j) {
            const V wj = S::set1(wk[j]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; ++v) acc[v][j] = S::fmadd(wj, xv[v], acc[v][j]);
          }
        }
      }
      alignas(64) float tile[OCB][T];
#pragma GCC unroll 24
      for (int j = 0; j < OCB; ++j)
#pragma GCC unroll 4
        for (int v = 0; v < NV; ++v) _mm512_store_ps(&tile[j][L * v], acc[v][j]);
      for (int64_t q = 0; q < T && p0 + q < positions; ++q) {
        const int64_t y = (p0 + q) / row, xo = (p0 + q) % row;
        if (xo >= g.w) continue;
        for (int64_t j = 0; j < oc_valid; ++j) out[((ob * OCB + j) * g.h + y) * g.w + xo] = tile[j][q];
      }
    }
  }
}

template <int NV, int OCB>
void conv_flat_all(const float* x, const float* w, const float* bias, float* out, const ConvGeometry& g, int64_t o) {
  const BlockedWeights bw = block_weights<OCB>(w, bias, g.c, o);
  parallel_for(g.n, 1, [&](int64_t b, int64_t e) {
    std::vector<float> xp;
    for (int64_t n = b; n < e; ++n)
      conv_flat_image<NV, OCB>(x + n * g.c * g.h * g.w, bw.weights.data(), bw.bias.data(), out + n * o * g.h * g.w, g,
                               o, xp);
  });
}

// The weight gradient dw[o, c, ky, kx] = sum over images n and positions (y, x) of
// gout[n, o, y, x] * x[n, c, y + ky - 1, x + kx - 1], with output channels along the vector
// lanes (im2col + GEMM writes nine copies of the input and, with OpenBLAS's AVX2 kernels on
// this path, ran at half the speed). A tile of 16 * NV output channels by 9 taps keeps its
// 9 * NV vector sums in registers along an image's positions: per position it loads NV vectors
// of the output gradient (stored channels last for the image) and broadcasts the 9 window
// values of one input channel, for 9 * NV FMAs. The sums are dw itself, so nothing is reduced
// across lanes: each image's sums start from zero and are added to dw's running sums (a few
// KiB) at its end, so rounding grows with one image's positions rather than the batch's.
// Each image's operands (its input planes with a zero border and its transposed gradient)
// are laid out once per thread and stay in L2. Threads split the input channels; each
// (o, c, tap) adds positions and then images in order, so the result has the same bits at any
// thread count.
template <int NV>
void weight_grad_tile(const float* xp, int64_t row, const float* gt, int64_t o_pad, int64_t h, int64_t w,
                      float* sums) {
  __m512 acc[9][NV];
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[t][v] = _mm512_setzero_ps();
  for (int64_t y = 0; y < h; ++y) {
    const float* r0 = xp + y * row;
    const float* r1 = r0 + row;
    const float* r2 = r1 + row;
    const float* gp = gt + y * w * o_pad;
    for (int64_t xx = 0; xx < w; ++xx, gp += o_pad) {
      __m512 gv[NV];
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) gv[v] = _mm512_loadu_ps(gp + 16 * v);
      const float* rows[3] = {r0 + xx, r1 + xx, r2 + xx};
#pragma GCC unroll 3
      for (int ky = 0; ky < 3; ++ky)
#pragma GCC unroll 3
        for (int kx = 0; kx < 3; ++kx) {
          const __m512 xv = _mm512_set1_ps(rows[ky][kx]);
#pragma GCC unroll 2
          for (int v = 0; v < NV; ++v) acc[ky * 3 + kx][v] = _mm512_fmadd_ps(gv[v], xv, acc[ky * 3 + kx][v]);
        }
    }
  }
#pragma GCC unroll 9
  for (int t = 0; t < 9; ++t)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      float* at = sums + t * o_pad + 16 * v;
      _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), acc[t][v]));
    }
}

void weight_grad_direct(const float* x, const float* gout, float* dw, float* db, const ConvGeometry& g, int64_t o) {
  const int64_t h = g.h, w = g.w, hw = h * w, row = w + 2, plane = (h + 2) * row;
  const int64_t vectors = (o + 15) / 16, o_pad = vectors * 16;
  parallel_for(g.c, 1, [&](int64_t c0, int64_t c1) {
    const int64_t cn = c1 - c0;
    std::vector<float> xb(size_t(cn * plane), 0.0f);  // the zero border is written once
    std::vector<float> gt(size_t(hw * o_pad), 0.0f);  // lanes past o stay zero
    std::vector<float> sums(size_t(cn * 9 * o_pad), 0.0f);
    // The bias gradient, summed (in f64) by the thread of the first input channels while it
    // lays out the output gradient anyway.
    const bool bias_here = db != nullptr && c0 == 0;
    std::vector<double> bias_sums(bias_here ? size_t(o) : 0, 0.0);
    for (int64_t n = 0; n < g.n; ++n) {
      for (int64_t ci = 0; ci < cn; ++ci)
        for (int64_t y = 0; y < h; ++y)
          std::memcpy(&xb[size_t(ci * plane + (y + 1) * row + 1)], x + ((n * g.c + c0 + ci) * h + y) * w,
                      size_t(w) * sizeof(float));
      const float* image_grad = gout + n * o * hw;
      channels_last(image_grad, o, h, w, gt.data(), w, 0, o_pad);
      for (int64_t oc = 0; bias_here && oc < o; ++oc) bias_sums[size_t(oc)] += sum_f64(image_grad + oc * hw, hw);
      for (int64_t ci = 0; ci < cn; ++ci) {
        const float* xp = xb.data() + ci * plane;
        float* s = sums.data() + ci * 9 * o_pad;
        int64_t v = 0;
        for (; v + 2 <= vectors; v += 2) weight_grad_tile<2>(xp, row, gt.data() + v * 16, o_pad, h, w, s + v * 16);
        if (v < vectors) weight_grad_tile<1>(xp, row, gt.data() + v * 16, o_pad, h, w, s + v * 16);
      }
    }
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t ci = 0; ci < cn; ++ci)
        for (int64_t t = 0; t < 9; ++t) dw[(oc * g.c + c0 + ci) * 9 + t] = sums[size_t((ci * 9 + t) * o_pad + oc)];
    for (int64_t oc = 0; bias_here && oc < o; ++oc) db[oc] = float(bias_sums[size_t(oc)]);
  });
}
#endif  // __AVX512F__

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
  // Tiles chosen so few lanes run past the image's right edge: 16-lane vectors, along flat
  // rows up to 8 wide, two rows at once up to 16 wide, two vectors of one row beyond; 8-lane
  // ones where the build has no AVX-512. With AVX-512, blocks of 11 output channels: the
  // U-Net's 32, 64, 96 and 128 channels fill 97-99% of them (12 left 11% of the FMAs on zero
  // weights at 32 and 64), and the 28x28x32 and 14x14x64 convolutions ran 10-12% faster.
#ifdef __AVX512F__
  if (conv2d_winograd_supports(t, g, out_channels)) return conv2d_winograd(xf, wf, bf, of, g, out_channels);
  if (g.w <= 8) return conv_flat_all<2, 11>(xf, wf, bf, of, g, out_channels);
  if (g.w <= 16) return conv_all<Avx512, 2, 1, 11>(xf, wf, bf, of, g, out_channels);
  return conv_all<Avx512, 1, 2, 11>(xf, wf, bf, of, g, out_channels);
#else
  if (g.w <= 8) return conv_all<Avx2, 1, 1, 12>(xf, wf, bf, of, g, out_channels);
  return conv_all<Avx2, 1, 2, 6>(xf, wf, bf, of, g, out_channels);
#endif
#else
  (void)x, (void)w, (void)bias, (void)out;
#endif
}

}  // namespace

bool conv2d_direct_weight_grad(DType t, const void* x, const void* gout, void* dw, void* db, const ConvGeometry& g,
                               int64_t out_channels) {
#if defined(DUALFLOW_CONV_DIRECT) && defined(__AVX512F__)
  if (!conv2d_direct_supports(t, g, out_channels)) return false;
  if (conv2d_winograd_supports(t, g, out_channels)) {
    conv2d_winograd_weight_grad(static_cast<const float*>(x), static_cast<const float*>(gout), static_cast<float*>(dw),
                                static_cast<float*>(db), g, out_channels);
    return true;
  }
  weight_grad_direct(static_cast<const float*>(x), static_cast<const float*>(gout), static_cast<float*>(dw),
                     static_cast<float*>(db), g, out_channels);
  return true;
#else
  (void)t, (void)x, (void)gout, (void)dw, (void)db, (void)g, (void)out_channels;
  return false;
#endif
}

void register_conv_direct(Backend& b) {
  b.conv2d_direct_supports = conv2d_direct_supports;
  b.conv2d_direct = conv2d_direct;
}

}  // namespace dualflow::cpu
