// CPU Winograd convolution F(4x4, 3x3) for the U-Net's 3x3, stride-1, padding-1 f32
// convolutions with at least 16 input and 16 output channels (AVX-512 builds). Each 6x6 input
// tile d and 3x3 filter g give a 4x4 output tile Y = A^T [(G g G^T) . (B^T d B)] A (Lavin and
// Gray, 2015): 36 products per input and output channel pair where the window sum takes 144,
// so 36 independent GEMMs [tiles x C] x [C x K] replace the direct kernel's 9-tap sums.
//
// Layout, per block of whole images (enough of them for about 32 tiles):
//   1. the images channels last with a zero border, P[image][row][column][C'] (C' = C rounded
//      up to 16, the extra channels zero), so each transform runs along 16 channels at once;
//   2. per chunk of tiles sized to stay in L2: the input transform V[36][tile][C'] (B^T d B),
//      the GEMMs M[36][tile][K'] = V[36] x U[36] with output channels along the lanes and a
//      register tile of 8 tiles by 32 channels (tile_gemm), and the output transform (A^T m A) into the
//      output channels last, Q[image][row][column][K'];
//   3. Q written out as NCHW with the bias added.
// The filters' transform U[36][C'][K'] = G g G^T runs once per call, along 16 output channels.
//
// Rounding: the transforms' constants (up to 8 in A, 5 in B, 1/24 in G) enlarge the f32
// rounding against the window sum by roughly one decimal digit; tests bound it. Every output
// tile is computed by one thread in a fixed order, so the result has the same bits at any
// thread count.
#include <algorithm>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/sum_f64.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include "kernels/cpu/avx512_layout.h"
#define DUALFLOW_CONV_WINOGRAD 1
#endif

namespace dualflow::cpu {

bool conv2d_winograd_supports(DType t, const ConvGeometry& g, int64_t out_channels) {
#ifdef DUALFLOW_CONV_WINOGRAD
  // Below 16 channels on either side the transforms cost more than the products they save;
  // below 4x4 pixels a tile is mostly padding.
  return t == DType::f32 && g.kh == 3 && g.kw == 3 && g.stride_h == 1 && g.stride_w == 1 && g.pad_h == 1 &&
         g.pad_w == 1 && g.dil_h == 1 && g.dil_w == 1 && g.out_h == g.h && g.out_w == g.w && g.c >= 16 &&
         out_channels >= 16 && g.h >= 4 && g.w >= 4;
#else
  (void)t, (void)g, (void)out_channels;
  return false;
#endif
}

#ifdef DUALFLOW_CONV_WINOGRAD
namespace {

using V = __m512;
constexpr int64_t kLanes = 16, kPoints = 36;

V add(V a, V b) { return _mm512_add_ps(a, b); }
V sub(V a, V b) { return _mm512_sub_ps(a, b); }
V fma(float s, V a, V b) { return _mm512_fmadd_ps(_mm512_set1_ps(s), a, b); }  // s * a + b

int64_t round16(int64_t v) { return (v + kLanes - 1) / kLanes * kLanes; }

// B^T d for 6 inputs (a column or a row of a tile).
[[gnu::always_inline]] inline void input_1d(const V d[6], V r[6]) {
  const V d4_d2 = sub(d[4], d[2]);
  r[0] = fma(4.0f, d[0], fma(-5.0f, d[2], d[4]));
  r[1] = fma(-4.0f, add(d[1], d[2]), add(d[3], d[4]));
  r[2] = fma(4.0f, sub(d[1], d[2]), sub(d[4], d[3]));
  r[3] = fma(2.0f, sub(d[3], d[1]), d4_d2);
  r[4] = fma(-2.0f, sub(d[3], d[1]), d4_d2);
  r[5] = fma(4.0f, d[1], fma(-5.0f, d[3], d[5]));
}

// A^T m for 6 inputs: 4 outputs.
[[gnu::always_inline]] inline void output_1d(const V m[6], V o[4]) {
  const V a = add(m[1], m[2]), b = sub(m[1], m[2]), c = add(m[3], m[4]), d = sub(m[3], m[4]);
  o[0] = add(add(m[0], a), c);
  o[1] = fma(2.0f, d, b);
  o[2] = fma(4.0f, c, a);
  o[3] = add(fma(8.0f, d, b), m[5]);
}

// G g for 3 inputs: 6 outputs.
[[gnu::always_inline]] inline void filter_1d(const V g[3], V s[6]) {
  const V even = add(g[0], g[2]);
  s[0] = _mm512_mul_ps(_mm512_set1_ps(0.25f), g[0]);
  s[1] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), add(even, g[1]));
  s[2] = _mm512_mul_ps(_mm512_set1_ps(-1.0f / 6.0f), sub(even, g[1]));
  const V outer = fma(1.0f / 24.0f, g[0], _mm512_mul_ps(_mm512_set1_ps(1.0f / 6.0f), g[2]));
  s[3] = fma(1.0f / 12.0f, g[1], outer);
  s[4] = fma(-1.0f / 12.0f, g[1], outer);
  s[5] = g[2];
}

// X^T t X for an In x In tile t (each element a vector of 16 channels), given the 1-D map
// x -> X^T x from In values to Out: down each column of the tile, then along each row of the
// result. load(a, b) reads t[a][b]; store(a, b, v) takes element [a][b] of the Out x Out result.
template <int In, int Out, void (*one_d)(const V*, V*), class Load, class Store>
void transform_2d(Load load, Store store) {
  V cols[In][Out];
  for (int b = 0; b < In; ++b) {
    V column[In];
    for (int a = 0; a < In; ++a) column[a] = load(a, b);
    one_d(column, cols[b]);
  }
  for (int a = 0; a < Out; ++a) {
    V row[In], r[Out];
    for (int b = 0; b < In; ++b) row[b] = cols[b][a];
    one_d(row, r);
    for (int b = 0; b < Out; ++b) store(a, b, r[b]);
  }
}

// U[36][C'][K'] from w[K][C][3][3], 16 output channels at a time.
std::vector<float> transform_filters(const float* w, int64_t c, int64_t k, int64_t cp, int64_t kp) {
  std::vector<float> u(size_t(kPoints * cp * kp), 0.0f);
  parallel_for(c, 1, [&](int64_t c0, int64_t c1) {
    alignas(64) float taps[9][kLanes];
    for (int64_t ci = c0; ci < c1; ++ci)
      for (int64_t k0 = 0; k0 < k; k0 += kLanes) {
        const int64_t kn = std::min(kLanes, k - k0);
        for (int t = 0; t < 9; ++t)
          for (int64_t j = 0; j < kLanes; ++j) taps[t][j] = j < kn ? w[((k0 + j) * c + ci) * 9 + t] : 0.0f;
        transform_2d<3, 6, filter_1d>(
            [&](int a, int b) { return _mm512_load_ps(taps[a * 3 + b]); },
            [&](int a, int b, V v) { _mm512_storeu_ps(&u[size_t(((a * 6 + b) * cp + ci) * kp + k0)], v); });
      }
  });
  return u;
}

// The per-point GEMMs of the forward pass and of the weight gradient, on operands the
// transforms already laid out for them (no packing): out[r][col] = (or +=) the sum over steps
// s of a[r * a_row + s * a_step] * b[s * b_step + col], for `rows` rows and `cols` columns (a
// multiple of 16). A register tile of R rows by NV vectors of columns keeps R * NV sums,
// broadcasting one value of a against NV vectors of b per row and step.
template <int R, int NV, bool Accumulate>
void tile_gemm(const float* a, int64_t a_row, int64_t a_step, const float* b, int64_t b_step, int64_t steps, float* out,
               int64_t out_row) {
  V acc[R][NV];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_setzero_ps();
  for (int64_t s = 0; s < steps; ++s) {
    V bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = _mm512_loadu_ps(b + s * b_step + kLanes * j);
    for (int r = 0; r < R; ++r) {
      const V av = _mm512_set1_ps(a[r * a_row + s * a_step]);
      for (int j = 0; j < NV; ++j) acc[r][j] = _mm512_fmadd_ps(av, bv[j], acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < NV; ++j) {
      float* at = out + r * out_row + kLanes * j;
      _mm512_storeu_ps(at, Accumulate ? _mm512_add_ps(_mm512_loadu_ps(at), acc[r][j]) : acc[r][j]);
    }
}

template <int NV, bool Accumulate>
void tile_gemm_rows(const float* a, int64_t rows, int64_t a_row, int64_t a_step, const float* b, int64_t b_step,
                    int64_t steps, float* out, int64_t out_row) {
  int64_t r = 0;
  for (; r + 8 <= rows; r += 8)
    tile_gemm<8, NV, Accumulate>(a + r * a_row, a_row, a_step, b, b_step, steps, out + r * out_row, out_row);
  const float* ar = a + r * a_row;
  float* o = out + r * out_row;
  switch (rows - r) {
    case 7: return tile_gemm<7, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 6: return tile_gemm<6, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 5: return tile_gemm<5, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 4: return tile_gemm<4, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 3: return tile_gemm<3, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 2: return tile_gemm<2, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    case 1: return tile_gemm<1, NV, Accumulate>(ar, a_row, a_step, b, b_step, steps, o, out_row);
    default: return;
  }
}

template <bool Accumulate>
void tile_gemm_all(const float* a, int64_t rows, int64_t a_row, int64_t a_step, const float* b, int64_t b_step,
                   int64_t cols, int64_t steps, float* out, int64_t out_row) {
  int64_t c0 = 0;
  for (; c0 + 2 * kLanes <= cols; c0 += 2 * kLanes)
    tile_gemm_rows<2, Accumulate>(a, rows, a_row, a_step, b + c0, b_step, steps, out + c0, out_row);
  if (c0 < cols) tile_gemm_rows<1, Accumulate>(a, rows, a_row, a_step, b + c0, b_step, steps, out + c0, out_row);
}

// A e for a 4-long column or row e of an output-gradient tile: 6 outputs (the adjoint of
// output_1d).
[[gnu::always_inline]] inline void grad_1d(const V e[4], V s[6]) {
  const V a = add(e[0], e[2]), b = add(e[1], e[3]), c = fma(4.0f, e[2], e[0]), d = fma(8.0f, e[3], add(e[1], e[1]));
  s[0] = e[0];
  s[1] = add(a, b);
  s[2] = sub(a, b);
  s[3] = add(c, d);
  s[4] = sub(c, d);
  s[5] = e[3];
}

// G^T s for 6 transformed weights: the 3 taps (the adjoint of filter_1d).
[[gnu::always_inline]] inline void filter_adjoint_1d(const V s[6], V z[3]) {
  const V sum12 = add(s[1], s[2]), sum34 = add(s[3], s[4]);
  z[0] = fma(0.25f, s[0], fma(-1.0f / 6.0f, sum12, _mm512_mul_ps(_mm512_set1_ps(1.0f / 24.0f), sum34)));
  z[1] = fma(-1.0f / 6.0f, sub(s[1], s[2]), _mm512_mul_ps(_mm512_set1_ps(1.0f / 12.0f), sub(s[3], s[4])));
  z[2] = add(fma(-1.0f / 6.0f, sum12, _mm512_mul_ps(_mm512_set1_ps(1.0f / 6.0f), sum34)), s[5]);
}

// B^T d B of every 16 channels of one tile of a channels-last image, into v[36][chunk][cp].
void transform_input_tile(const float* tile, int64_t cols, int64_t cp, float* v, int64_t chunk) {
  for (int64_t c0 = 0; c0 < cp; c0 += kLanes)
    transform_2d<6, 6, input_1d>([&](int a, int b) { return _mm512_loadu_ps(tile + (a * cols + b) * cp + c0); },
                                 [&](int a, int b, V r) { _mm512_storeu_ps(v + (a * 6 + b) * chunk * cp + c0, r); });
}

struct TileAt {
  int64_t image, y, x;  // image within the block; tile row and column
};

struct Tiling {
  int64_t tiles_h, tiles_w, rows, cols;  // tiles per image; padded image rows and columns
  int64_t images_per_block, chunk;       // images laid out at once; tiles per transform chunk
  // Tiles are numbered through a block image by image, row by row.
  TileAt at(int64_t index) const {
    const int64_t per_image = tiles_h * tiles_w;
    return {index / per_image, index % per_image / tiles_w, index % tiles_w};
  }
};

// Blocks of whole images with about 32 tiles; V and M (or V and the transformed output
// gradient) of one chunk of tiles within about 512 KiB (L2), in whole 8-tile register blocks.
Tiling tiling(const ConvGeometry& g, int64_t cp, int64_t kp) {
  Tiling t;
  t.tiles_h = (g.h + 3) / 4;
  t.tiles_w = (g.w + 3) / 4;
  t.rows = 4 * t.tiles_h + 2;
  t.cols = 4 * t.tiles_w + 2;
  const int64_t image_tiles = t.tiles_h * t.tiles_w;
  t.images_per_block = std::clamp<int64_t>((32 + image_tiles - 1) / image_tiles, 1, g.n);
  t.chunk = std::clamp<int64_t>(512 * 1024 / (kPoints * 4 * (cp + kp)) / 8 * 8, 8, 64);
  t.chunk = std::min(t.chunk, t.images_per_block * image_tiles);
  return t;
}

// V[36][chunk][C'] for tiles [t0, t0 + tn) of a block laid out channels last in p.
void transform_inputs(const Tiling& t, const float* p, int64_t image_p, int64_t cp, int64_t t0, int64_t tn, float* v) {
  for (int64_t tl = 0; tl < tn; ++tl) {
    const auto [img, ty, tx] = t.at(t0 + tl);
    transform_input_tile(p + img * image_p + (4 * ty * t.cols + 4 * tx) * cp, t.cols, cp, v + tl * cp, t.chunk);
  }
}

void convolve_block(const float* x, const float* bias, float* out, const std::vector<float>& u, const ConvGeometry& g,
                    int64_t k, int64_t cp, int64_t kp, const Tiling& t, int64_t n0, int64_t n1, std::vector<float>& p,
                    std::vector<float>& q, std::vector<float>& vbuf, std::vector<float>& mbuf) {
  const int64_t h = g.h, w = g.w, c = g.c, hw = h * w, images = n1 - n0;
  const int64_t image_p = t.rows * t.cols * cp, q_rows = 4 * t.tiles_h, q_cols = 4 * t.tiles_w;
  const int64_t image_q = q_rows * q_cols * kp, image_tiles = t.tiles_h * t.tiles_w;
  // 1. Channels last inside the zero border; rows and columns past the image are never
  //    written: zero.
  for (int64_t i = 0; i < images; ++i)
    channels_last(x + (n0 + i) * c * hw, c, h, w, p.data() + i * image_p, t.cols, 1, cp);
  // 2. Transform, multiply and transform back, a chunk of tiles at a time.
  const int64_t tiles = images * image_tiles;
  for (int64_t t0 = 0; t0 < tiles; t0 += t.chunk) {
    const int64_t tn = std::min(t.chunk, tiles - t0);
    transform_inputs(t, p.data(), image_p, cp, t0, tn, vbuf.data());
    // Per point, M [tiles x K'] = V [tiles x C'] x U [C' x K'].
    for (int64_t pt = 0; pt < kPoints; ++pt)
      tile_gemm_all<false>(vbuf.data() + pt * t.chunk * cp, tn, cp, 1, u.data() + pt * cp * kp, kp, kp, cp,
                           mbuf.data() + pt * t.chunk * kp, kp);
    for (int64_t tl = 0; tl < tn; ++tl) {
      const auto [img, ty, tx] = t.at(t0 + tl);
      float* dst = q.data() + img * image_q + (4 * ty * q_cols + 4 * tx) * kp;
      for (int64_t k0 = 0; k0 < kp; k0 += kLanes)
        transform_2d<6, 4, output_1d>(
            [&](int a, int b) { return _mm512_loadu_ps(&mbuf[size_t(((a * 6 + b) * t.chunk + tl) * kp + k0)]); },
            [&](int a, int b, V o) { _mm512_storeu_ps(dst + (a * q_cols + b) * kp + k0, o); });
    }
  }
  // 3. Back to NCHW with the bias, 16 channels by 16 flat positions at a time.
  for (int64_t i = 0; i < images; ++i)
    for (int64_t k0 = 0; k0 < k; k0 += kLanes) {
      const int64_t kn = std::min(kLanes, k - k0);
      const float* image = q.data() + i * image_q + k0;
      float* dst = out + ((n0 + i) * k + k0) * hw;
      for (int64_t p0 = 0; p0 < hw; p0 += kLanes) {
        const int64_t pn = std::min(kLanes, hw - p0);
        V r[16];
        int64_t y = p0 / w, xx = p0 % w;  // stepped along; lanes past the image repeat the last
        for (int64_t j = 0; j < kLanes; ++j) {
          r[j] = _mm512_loadu_ps(image + (y * q_cols + xx) * kp);
          if (j + 1 < pn && ++xx == w) xx = 0, ++y;
        }
        transpose16(r);
        const __mmask16 valid = __mmask16((1u << pn) - 1);
        for (int64_t j = 0; j < kn; ++j) {
          const V b = _mm512_set1_ps(bias ? bias[k0 + j] : 0.0f);
          _mm512_mask_storeu_ps(dst + j * hw + p0, valid, _mm512_add_ps(r[j], b));
        }
      }
    }
}

// dw[k][c] = G^T [sum over tiles of (A E A^T) . (B^T D B)] G, E the 4x4 output-gradient tile of
// channel k and D the 6x6 input tile of channel c: the forward's tiles, transformed by the
// adjoints of its output and filter transforms. Per point, the sum over tiles is a GEMM
// [K x tiles] x [tiles x C] (input channels along the lanes, 8 output channels by 32 input
// channels in registers: tile_gemm).
//
// The batch is cut into groups of whole images, as many as the batch and image size give
// (whatever the thread count); threads take groups, each group sums its own S[36][K'][C'] (and, in f64, its
// bias gradient), and the groups' sums are then added in group order. So every input is laid
// out and transformed once, and the result has the same bits at any thread count.
struct GradGroups {
  int64_t images, count;  // images per group; groups
};

GradGroups grad_groups(const ConvGeometry& g, const Tiling& t) {
  const int64_t image_tiles = t.tiles_h * t.tiles_w;
  GradGroups gg;
  // At least 128 tiles a group, and at most 8 groups: the groups' sums pass through memory
  // once more, which costs a thread more than a few groups save.
  const int64_t groups = std::clamp<int64_t>(g.n * image_tiles / 128, 1, 8);
  gg.images = (g.n + groups - 1) / groups;
  gg.count = (g.n + gg.images - 1) / gg.images;
  return gg;
}

// One thread's layouts and transforms, allocated once for all its groups (the zero borders
// and padding lanes of p and q are never written after).
struct GradScratch {
  std::vector<float> p, q, vbuf, ebuf;
  GradScratch(const Tiling& t, int64_t cp, int64_t kp)
      : p(size_t(t.images_per_block * t.rows * t.cols * cp), 0.0f),
        q(size_t(t.images_per_block * 16 * t.tiles_h * t.tiles_w * kp), 0.0f),
        vbuf(size_t(kPoints * t.chunk * cp)),
        ebuf(size_t(kPoints * t.chunk * kp)) {}
};

// S (zeroed by the caller) += the sums of images [n0, n1); bias_sums (if not null) += their
// output gradient summed per channel.
void weight_grad_sums(const float* x, const float* gout, const ConvGeometry& g, int64_t k, const Tiling& t,
                      int64_t n0, int64_t n1, GradScratch& scratch, float* sums, double* bias_sums) {
  const int64_t cp = round16(g.c), kp = round16(k), h = g.h, w = g.w, hw = h * w;
  const int64_t image_tiles = t.tiles_h * t.tiles_w, image_p = t.rows * t.cols * cp;
  const int64_t q_cols = 4 * t.tiles_w, image_q = 16 * image_tiles * kp;
  std::vector<float>&p = scratch.p, &q = scratch.q, &vbuf = scratch.vbuf, &ebuf = scratch.ebuf;
  for (int64_t b0 = n0; b0 < n1; b0 += t.images_per_block) {
    const int64_t images = std::min(t.images_per_block, n1 - b0), tiles = images * image_tiles;
    for (int64_t i = 0; i < images; ++i) {
      channels_last(x + (b0 + i) * g.c * hw, g.c, h, w, p.data() + i * image_p, t.cols, 1, cp);
      channels_last(gout + (b0 + i) * k * hw, k, h, w, q.data() + i * image_q, q_cols, 0, kp);
      for (int64_t oc = 0; bias_sums && oc < k; ++oc) bias_sums[oc] += sum_f64(gout + ((b0 + i) * k + oc) * hw, hw);
    }
    for (int64_t t0 = 0; t0 < tiles; t0 += t.chunk) {
      const int64_t tn = std::min(t.chunk, tiles - t0);
      for (int64_t tl = 0; tl < tn; ++tl) {  // both transforms of a tile while its data is in L1
        const auto [img, ty, tx] = t.at(t0 + tl);
        transform_input_tile(p.data() + img * image_p + (4 * ty * t.cols + 4 * tx) * cp, t.cols, cp,
                             vbuf.data() + tl * cp, t.chunk);
        const float* tile = q.data() + img * image_q + (4 * ty * q_cols + 4 * tx) * kp;
        for (int64_t k0 = 0; k0 < kp; k0 += kLanes)
          transform_2d<4, 6, grad_1d>(
              [&](int a, int b) { return _mm512_loadu_ps(tile + (a * q_cols + b) * kp + k0); },
              [&](int a, int b, V r) { _mm512_storeu_ps(&ebuf[size_t(((a * 6 + b) * t.chunk + tl) * kp + k0)], r); });
      }
      // Per point, S [K x C'] += E^T [K x tiles] x V [tiles x C']: the sums start at zero for
      // each chunk and are then added to S, so rounding grows with a chunk's tiles rather than
      // the batch's.
      for (int64_t pt = 0; pt < kPoints; ++pt)
        tile_gemm_all<true>(ebuf.data() + pt * t.chunk * kp, k, 1, kp, vbuf.data() + pt * t.chunk * cp, cp, cp, tn,
                            sums + pt * kp * cp, cp);
    }
  }
}

// dw from the summed S, back to the 3x3 taps 16 input channels at a time.
void taps_from_sums(const float* sums, int64_t c, int64_t k, float* dw) {
  const int64_t cp = round16(c), kp = round16(k);
  alignas(64) float taps[9][kLanes];
  for (int64_t oc = 0; oc < k; ++oc)
    for (int64_t v0 = 0; v0 < c; v0 += kLanes) {
      transform_2d<6, 3, filter_adjoint_1d>(
          [&](int a, int b) { return _mm512_loadu_ps(sums + ((a * 6 + b) * kp + oc) * cp + v0); },
          [&](int a, int b, V z) { _mm512_store_ps(taps[a * 3 + b], z); });
      for (int64_t j = 0; j < std::min(kLanes, c - v0); ++j)
        for (int tap = 0; tap < 9; ++tap) dw[(oc * c + v0 + j) * 9 + tap] = taps[tap][j];
    }
}

}  // namespace
#endif  // DUALFLOW_CONV_WINOGRAD

void conv2d_winograd(const float* x, const float* w, const float* bias, float* out, const ConvGeometry& g,
                     int64_t out_channels) {
#ifdef DUALFLOW_CONV_WINOGRAD
  const int64_t k = out_channels, cp = round16(g.c), kp = round16(k);
  const std::vector<float> u = transform_filters(w, g.c, k, cp, kp);
  const Tiling t = tiling(g, cp, kp);
  const int64_t image_tiles = t.tiles_h * t.tiles_w;
  const int64_t blocks = (g.n + t.images_per_block - 1) / t.images_per_block;
  parallel_for(blocks, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> p(size_t(t.images_per_block * t.rows * t.cols * cp), 0.0f);
    std::vector<float> q(size_t(t.images_per_block * 16 * image_tiles * kp));
    std::vector<float> vbuf(size_t(kPoints * t.chunk * cp)), mbuf(size_t(kPoints * t.chunk * kp));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t n0 = blk * t.images_per_block, n1 = std::min(g.n, n0 + t.images_per_block);
      convolve_block(x, bias, out, u, g, k, cp, kp, t, n0, n1, p, q, vbuf, mbuf);
    }
  });
#else
  (void)x, (void)w, (void)bias, (void)out, (void)g, (void)out_channels;
#endif
}

void conv2d_winograd_weight_grad(const float* x, const float* gout, float* dw, float* db, const ConvGeometry& g,
                                 int64_t out_channels) {
#ifdef DUALFLOW_CONV_WINOGRAD
  const int64_t k = out_channels, cp = round16(g.c), kp = round16(k), size = kPoints * kp * cp;
  const Tiling t = tiling(g, cp, kp);
  const GradGroups gg = grad_groups(g, t);
  std::vector<float> sums(size_t(gg.count * size), 0.0f);
  std::vector<double> bias_sums(db ? size_t(gg.count * k) : 0, 0.0);
  parallel_for(gg.count, 1, [&](int64_t g0, int64_t g1) {
    GradScratch scratch(t, cp, kp);
    for (int64_t gi = g0; gi < g1; ++gi)
      weight_grad_sums(x, gout, g, k, t, gi * gg.images, std::min(g.n, (gi + 1) * gg.images), scratch,
                       sums.data() + gi * size, db ? bias_sums.data() + gi * k : nullptr);
  });
  for (int64_t gi = 1; gi < gg.count; ++gi)  // in group order
    for (int64_t e = 0; e < size; ++e) sums[size_t(e)] += sums[size_t(gi * size + e)];
  taps_from_sums(sums.data(), g.c, k, dw);
  for (int64_t oc = 0; db && oc < k; ++oc) {
    double total = 0.0;
    for (int64_t gi = 0; gi < gg.count; ++gi) total += bias_sums[size_t(gi * k + oc)];
    db[oc] = float(total);
  }
#else
  (void)x, (void)gout, (void)dw, (void)db, (void)g, (void)out_channels;
#endif
}

}  // namespace dualflow::cpu
