// CPU im2col / col2im: the data movement that turns a 2-D convolution into one GEMM per image,
// and the weight gradient that interleaves the two per image (for the geometries that
// conv_direct.cpp does not take itself).
// col2im is written as a gather (each image element sums the column entries that read it), so
// it needs no atomics and is deterministic.
#include <cblas.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/sum_f64.h"

namespace dualflow::cpu {
namespace {

// The first output index o with o*stride + off >= 0 and the end with o*stride + off < limit,
// clipped to [0, out): inside [lo, hi) the window reads the image without bounds checks.
inline void valid_range(int64_t off, int64_t stride, int64_t limit, int64_t out, int64_t* lo, int64_t* hi) {
  int64_t a = off >= 0 ? 0 : (-off + stride - 1) / stride;
  int64_t b = limit - off <= 0 ? 0 : (limit - off + stride - 1) / stride;
  *lo = std::min(a, out);
  *hi = std::max(*lo, std::min(b, out));
}

// The kh*kw rows of L window entries that one [h, w] plane contributes to the column matrix.
template <class T>
void im2col_plane(const T* src, T* dst_base, const ConvGeometry& g) {
  const int64_t L = g.out_h * g.out_w;
  for (int64_t ky = 0; ky < g.kh; ++ky)
    for (int64_t kx = 0; kx < g.kw; ++kx) {
      T* dst = dst_base + (ky * g.kw + kx) * L;
      const int64_t off_y = ky * g.dil_h - g.pad_h, off_x = kx * g.dil_w - g.pad_w;
      int64_t ox_lo, ox_hi;
      valid_range(off_x, g.stride_w, g.w, g.out_w, &ox_lo, &ox_hi);
      for (int64_t oy = 0; oy < g.out_h; ++oy) {
        T* row = dst + oy * g.out_w;
        const int64_t iy = oy * g.stride_h + off_y;
        if (iy < 0 || iy >= g.h) {
          for (int64_t ox = 0; ox < g.out_w; ++ox) row[ox] = T(0);
          continue;
        }
        const T* in = src + iy * g.w + off_x;
        for (int64_t ox = 0; ox < ox_lo; ++ox) row[ox] = T(0);
        if (g.stride_w == 1)
          for (int64_t ox = ox_lo; ox < ox_hi; ++ox) row[ox] = in[ox];
        else
          for (int64_t ox = ox_lo; ox < ox_hi; ++ox) row[ox] = in[ox * g.stride_w];
        for (int64_t ox = ox_hi; ox < g.out_w; ++ox) row[ox] = T(0);
      }
    }
}

void im2col(int, DType t, const void* xv, void* colsv, const ConvGeometry& g) {
  dispatch_dtype(t, [&]<class T>() {
    const T* x = static_cast<const T*>(xv);
    T* cols = static_cast<T*>(colsv);
    const int64_t L = g.out_h * g.out_w, plane = g.h * g.w, kk = g.kh * g.kw;
    parallel_for(g.n * g.c, 1, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) im2col_plane(x + nc * plane, cols + nc * kk * L, g);
    });
  });
}

// dw [o, c*kh*kw] = sum over images i of gout[i] [o, L] x cols(x[i]) [c*kh*kw, L]^T. Each
// task owns a block of input channels: it writes the window rows of those channels for one
// image at a time into a buffer that stays in cache (the whole batch's column matrix is nine
// times the activation) and multiplies them into its own columns of dw, image after image.
// The blocks are a fixed size, not a share per thread: OpenBLAS's rounding depends on a GEMM's
// shape (its edge kernels), so this way dw has the same bits at any thread count.
template <class T>
void weight_grad_typed(const T* x, const T* gout, T* dw, const ConvGeometry& g, int64_t o) {
  const int64_t L = g.out_h * g.out_w, plane = g.h * g.w, kk = g.kh * g.kw, ck = g.c * kk;
  constexpr int64_t channels_per_task = 16;
  const int64_t tasks = (g.c + channels_per_task - 1) / channels_per_task;
  parallel_for(tasks, 1, [&](int64_t first, int64_t last) {
    std::vector<T> cols(size_t(std::min(g.c, channels_per_task) * kk * L));
    for (int64_t task = first; task < last; ++task) {
      const int64_t c0 = task * channels_per_task, c1 = std::min(g.c, c0 + channels_per_task);
      for (int64_t i = 0; i < g.n; ++i) {
        for (int64_t ci = c0; ci < c1; ++ci)
          im2col_plane(x + (i * g.c + ci) * plane, cols.data() + (ci - c0) * kk * L, g);
        const T* go = gout + i * o * L;
        T* out = dw + c0 * kk;
        const int m = int(o), n = int((c1 - c0) * kk), k = int(L);
        if constexpr (std::is_same_v<T, float>)
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, go, k, cols.data(), k, i ? 1.0f : 0.0f,
                      out, int(ck));
        else
          cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0, go, k, cols.data(), k, i ? 1.0 : 0.0, out,
                      int(ck));
      }
    }
  });
}

// db [o] = gout summed over images and positions, in f64 and in that order.
template <class T>
void bias_grad_typed(const T* gout, T* db, int64_t n, int64_t o, int64_t positions) {
  parallel_for(o, 1, [&](int64_t o0, int64_t o1) {
    for (int64_t oc = o0; oc < o1; ++oc) {
      double total = 0.0;
      for (int64_t i = 0; i < n; ++i) total += sum_f64(gout + (i * o + oc) * positions, positions);
      db[oc] = T(total);
    }
  });
}

template <class T>
void weight_and_bias_grad(const void* x, const void* gout, void* dw, void* db, const ConvGeometry& g, int64_t o) {
  weight_grad_typed(static_cast<const T*>(x), static_cast<const T*>(gout), static_cast<T*>(dw), g, o);
  if (db) bias_grad_typed(static_cast<const T*>(gout), static_cast<T*>(db), g.n, o, g.out_h * g.out_w);
}

void conv2d_weight_grad(int, DType t, const void* x, const void* gout, void* dw, void* db, const ConvGeometry& g,
                        int64_t out_channels) {
  if (g.n == 0) return;
  if (conv2d_direct_weight_grad(t, x, gout, dw, db, g, out_channels)) return;
  if (t == DType::f32) weight_and_bias_grad<float>(x, gout, dw, db, g, out_channels);
  if (t == DType::f64) weight_and_bias_grad<double>(x, gout, dw, db, g, out_channels);
}

void col2im(int, DType t, const void* colsv, void* xv, const ConvGeometry& g) {
  dispatch_dtype(t, [&]<class T>() {
    using Acc = std::conditional_t<std::is_same_v<T, double>, double,
                                   std::conditional_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, T, float>>;
    const T* cols = static_cast<const T*>(colsv);
    T* x = static_cast<T*>(xv);
    const int64_t L = g.out_h * g.out_w, plane = g.h * g.w, kk = g.kh * g.kw;
    parallel_for(g.n * g.c, 1, [&](int64_t b, int64_t e) {
      std::vector<Acc> acc(plane);
      for (int64_t nc = b; nc < e; ++nc) {
        std::fill(acc.begin(), acc.end(), Acc(0));
        const T* src_base = cols + nc * kk * L;
        // The same loops as im2col with the copy reversed: accumulation order is fixed.
        for (int64_t ky = 0; ky < g.kh; ++ky)
          for (int64_t kx = 0; kx < g.kw; ++kx) {
            const T* src = src_base + (ky * g.kw + kx) * L;
            const int64_t off_y = ky * g.dil_h - g.pad_h, off_x = kx * g.dil_w - g.pad_w;
            int64_t ox_lo, ox_hi;
            valid_range(off_x, g.stride_w, g.w, g.out_w, &ox_lo, &ox_hi);
            for (int64_t oy = 0; oy < g.out_h; ++oy) {
              const int64_t iy = oy * g.stride_h + off_y;
              if (iy < 0 || iy >= g.h) continue;
              const T* row = src + oy * g.out_w;
              Acc* out = acc.data() + iy * g.w + off_x;
              for (int64_t ox = ox_lo; ox < ox_hi; ++ox) out[ox * g.stride_w] += Acc(row[ox]);
            }
          }
        T* dst = x + nc * plane;
        for (int64_t i = 0; i < plane; ++i) dst[i] = T(acc[i]);
      }
    });
  });
}

}  // namespace

void register_conv(Backend& b) {
  b.im2col = im2col;
  b.col2im = col2im;
  b.conv2d_weight_grad = conv2d_weight_grad;
}

}  // namespace dualflow::cpu
