// CPU im2col / col2im: the data movement that turns a 2-D convolution into one GEMM per image.
// col2im is written as a gather (each image element sums the column entries that read it), so
// it needs no atomics and is deterministic.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

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

void im2col(int, DType t, const void* xv, void* colsv, const ConvGeometry& g) {
  dispatch_dtype(t, [&]<class T>() {
    const T* x = static_cast<const T*>(xv);
    T* cols = static_cast<T*>(colsv);
    const int64_t L = g.out_h * g.out_w, plane = g.h * g.w, kk = g.kh * g.kw;
    parallel_for(g.n * g.c, 1, [&](int64_t b, int64_t e) {
      for (int64_t nc = b; nc < e; ++nc) {
        const T* src = x + nc * plane;
        T* dst_base = cols + nc * kk * L;
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
    });
  });
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
}

}  // namespace dualflow::cpu
