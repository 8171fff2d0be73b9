// CPU GroupNorm, forward and backward, fused: one pass for a group's statistics, one for the
// output; the backward pass sums each channel's dy and dy * x once and forms dx in a second
// pass, where the same rule in engine ops (layer_norm over groups, then the affine ops)
// reads and writes the activation about fifteen times. The SiLU that follows GroupNorm in a
// U-Net block can run in the same passes (forward: on the output; backward: dy times silu' of
// the recomputed pre-activation). f32 sums in f32 vector lanes, like the row normalisation; f64
// in f64. The engine keeps the rules in engine ops for nesting and JVPs.
#include <cmath>
#include <type_traits>
#include <vector>

#include "kernels/common/scalar_ops.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/norm_stats.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class T>
void group_norm_typed(const T* x, const T* w, const T* b, T* y, double* mean_out, double* rstd_out, int64_t n,
                      int64_t c, int64_t s, int64_t groups, double eps, bool silu) {
  const int64_t cg = c / groups, len = cg * s;
  parallel_for(n * groups, grain_for(8192, len), [&](int64_t begin, int64_t end) {
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t first_channel = (ng % groups) * cg;
      const T* xg = x + ng * len;
      T* yg = y + ng * len;
      const auto [mean, rstd] = mean_rstd(xg, len, eps);
      mean_out[ng] = double(mean);
      rstd_out[ng] = double(rstd);
      for (int64_t k = 0; k < cg; ++k) {
        // y = x * scale + shift per channel.
        const T scale = rstd * (w ? w[first_channel + k] : T(1));
        const T shift = (b ? b[first_channel + k] : T(0)) - mean * scale;
        const T* xc = xg + k * s;
        T* yc = yg + k * s;
        if (silu) {
#pragma omp simd
          for (int64_t i = 0; i < s; ++i) yc[i] = scalar::unary<T>(UnaryOp::Silu, xc[i] * scale + shift, T(0), T(0));
        } else {
#pragma omp simd
          for (int64_t i = 0; i < s; ++i) yc[i] = xc[i] * scale + shift;
        }
      }
    }
  });
}

// With xhat = (x - mean) * rstd and dh = dy * w[c]:
//   dx = rstd * (dh - mean(dh) - xhat * mean(dh * xhat))   (means over the group)
//   dw[c] = sum dy * xhat,  db[c] = sum dy                 (over n and s)
// Per (image, channel): sum dy and sum dy * x give both sums over the group in one pass.
// With silu, dy here is the incoming gradient times silu'(h), h = x * rstd * w + (b - mean *
// rstd * w) as in the forward pass, written once per group into a buffer that stays in cache.
template <class T>
void group_norm_backward_typed(const T* dy_in, const T* x, const double* mean_in, const double* rstd_in, const T* w,
                               const T* b, T* dx, T* dw, T* db, int64_t n, int64_t c, int64_t s, int64_t groups,
                               bool silu) {
  const int64_t cg = c / groups, len = cg * s;
  // Per (image, channel) sums of dy * xhat and of dy, summed over the images afterwards in
  // image order (the same result for any thread count).
  std::vector<T> dy_xhat(size_t(n * c)), dy_sum(size_t(n * c));
  parallel_for(n * groups, grain_for(8192, len), [&](int64_t begin, int64_t end) {
    // 64-byte aligned, so that vectorised sums over it split the same way wherever it lies.
    std::vector<T> through_silu_storage(silu ? size_t(len) + 64 / sizeof(T) : 0);
    T* const through_silu = silu ? aligned64(through_silu_storage.data()) : nullptr;
    for (int64_t ng = begin; ng < end; ++ng) {
      const int64_t first = ng * cg;  // index of this group's first channel among the n * c
      const T mean = T(mean_in[ng]), rstd = T(rstd_in[ng]);
      const T* dy = dy_in;
      int64_t dy_first = first;  // where this group's dy starts in `dy`, in channels
      if (silu) {
        for (int64_t k = 0; k < cg; ++k) {
          const T scale = rstd * (w ? w[(first + k) % c] : T(1));
          const T shift = (b ? b[(first + k) % c] : T(0)) - mean * scale;
          const T* dyc = dy_in + (first + k) * s;
          const T* xc = x + (first + k) * s;
          T* out = through_silu + k * s;
#pragma omp simd
          for (int64_t i = 0; i < s; ++i)
            out[i] = dyc[i] * scalar::unary_derivative<T>(UnaryOp::Silu, xc[i] * scale + shift, T(0), T(0));
        }
        dy = through_silu;
        dy_first = 0;
      }
      T dh_sum = 0, dh_xhat_sum = 0;
      for (int64_t k = 0; k < cg; ++k) {
        const T* dyc = dy + (dy_first + k) * s;
        const T* xc = x + (first + k) * s;
        T sum_dy = 0, sum_dy_x = 0;
#pragma omp simd reduction(+ : sum_dy, sum_dy_x)
        for (int64_t i = 0; i < s; ++i) {
          sum_dy += dyc[i];
          sum_dy_x += dyc[i] * xc[i];
        }
        const T sum_dy_xhat = rstd * (sum_dy_x - mean * sum_dy);
        dy_xhat[size_t(first + k)] = sum_dy_xhat;
        dy_sum[size_t(first + k)] = sum_dy;
        const T wk = w ? w[(first + k) % c] : T(1);
        dh_sum += wk * sum_dy;
        dh_xhat_sum += wk * sum_dy_xhat;
      }
      if (!dx) continue;
      const T mean_dh = dh_sum / T(len), mean_dh_xhat = dh_xhat_sum / T(len);
      for (int64_t k = 0; k < cg; ++k) {
        // dx = a * dy + b1 * x + b0 per channel.
        const T wk = w ? w[(first + k) % c] : T(1);
        const T a = rstd * wk;
        const T b1 = -rstd * rstd * mean_dh_xhat;
        const T b0 = -rstd * mean_dh - b1 * mean;
        const T* dyc = dy + (dy_first + k) * s;
        const T* xc = x + (first + k) * s;
        T* dxc = dx + (first + k) * s;
#pragma omp simd
        for (int64_t i = 0; i < s; ++i) dxc[i] = a * dyc[i] + b1 * xc[i] + b0;
      }
    }
  });
  for (int64_t ch = 0; ch < c; ++ch) {
    T sw = 0, sb = 0;
    for (int64_t i = 0; i < n; ++i) {
      sw += dy_xhat[size_t(i * c + ch)];
      sb += dy_sum[size_t(i * c + ch)];
    }
    if (dw) dw[ch] = sw;
    if (db) db[ch] = sb;
  }
}

void group_norm(int, DType t, const void* x, const void* w, const void* b, void* y, double* mean, double* rstd,
                int64_t n, int64_t c, int64_t s, int64_t groups, double eps, bool silu) {
  for_float_types(t, [&]<class T>(T) {
    group_norm_typed(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y),
                     mean, rstd, n, c, s, groups, eps, silu);
  });
}

void group_norm_backward(int, DType t, const void* dy, const void* x, const double* mean, const double* rstd,
                         const void* w, const void* b, void* dx, void* dw, void* db, int64_t n, int64_t c, int64_t s,
                         int64_t groups, bool silu) {
  for_float_types(t, [&]<class T>(T) {
    group_norm_backward_typed(static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd, static_cast<const T*>(w),
                              static_cast<const T*>(b), static_cast<T*>(dx), static_cast<T*>(dw), static_cast<T*>(db),
                              n, c, s, groups, silu);
  });
}

}  // namespace

void register_group_norm(Backend& b) {
  b.group_norm = group_norm;
  b.group_norm_backward = group_norm_backward;
}

}  // namespace dualflow::cpu
