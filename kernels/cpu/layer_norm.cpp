// CPU LayerNorm over rows, fused: forward (saving each row's mean and rstd), backward and
// tangent, with an affine weight and bias that may change every `group` consecutive rows (a
// DiT's adaLN modulation: one row of (1 + scale, shift) per image, shared by its tokens).
// The engine's rules in engine ops read and write the activation about a dozen times for the
// backward and as often for the tangent; these kernels read it once per row (the row stays
// in L1). f32 sums in f32 vector lanes, like the row normalisation; f64 in f64. The engine
// keeps the rules in engine ops for nesting and batched directions.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/norm_stats.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

int64_t row_grain(int64_t n) { return grain_for(8192, n); }

template <class T>
void layer_norm_typed(const T* x, const T* w, const T* b, T* y, double* mean_out, double* rstd_out, int64_t rows,
                      int64_t n, int64_t group, double eps) {
  parallel_for(rows, row_grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* xr = x + r * n;
      const T* wr = w ? w + (r / group) * n : nullptr;
      const T* br = b ? b + (r / group) * n : nullptr;
      T* yr = y + r * n;
      const auto [mean, rstd] = mean_rstd(xr, n, eps);
      mean_out[r] = double(mean);
      rstd_out[r] = double(rstd);
      // The row normalisation's expressions, so that both give the same bits.
      if (wr && br) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd * wr[i] + br[i];
      } else if (wr) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd * wr[i];
      } else if (br) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd + br[i];
      } else {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) yr[i] = (xr[i] - mean) * rstd;
      }
    }
  });
}

// With xhat = (x - mean) * rstd and dh = dy * w:
//   dx = rstd * (dh - mean(dh) - xhat * mean(dh * xhat))   (means over the row)
//   dw = sum dy * xhat,  db = sum dy                       (over each group's rows)
// The group sums go through fixed blocks of at most kBlock rows, summed in block order
// afterwards: the same bits for any thread count.
constexpr int64_t kBlock = 32;

template <class T>
void layer_norm_backward_typed(const T* dy, const T* x, const double* mean_in, const double* rstd_in, const T* w, T* dx,
                               T* dw, T* db, int64_t rows, int64_t n, int64_t group) {
  const int64_t groups = rows / group, blocks_per_group = (group + kBlock - 1) / kBlock;
  const int64_t blocks = groups * blocks_per_group;
  std::vector<T> part_w(dw ? size_t(blocks * n) : 0), part_b(db ? size_t(blocks * n) : 0);
  parallel_for(blocks, std::max<int64_t>(1, row_grain(n) / kBlock), [&](int64_t begin, int64_t end) {
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t g = blk / blocks_per_group, first = g * group + (blk % blocks_per_group) * kBlock;
      const int64_t last = std::min(first + kBlock, (g + 1) * group);
      const T* wg = w ? w + g * n : nullptr;
      T* pw = dw ? part_w.data() + blk * n : nullptr;
      T* pb = db ? part_b.data() + blk * n : nullptr;
      if (pw) std::fill(pw, pw + n, T(0));
      if (pb) std::fill(pb, pb + n, T(0));
      for (int64_t r = first; r < last; ++r) {
        const T* dyr = dy + r * n;
        const T* xr = x + r * n;
        const T mean = T(mean_in[r]), rstd = T(rstd_in[r]);
        if (pw) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) pw[i] += dyr[i] * ((xr[i] - mean) * rstd);
        }
        if (pb) {
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) pb[i] += dyr[i];
        }
        if (!dx) continue;
        // dh = dy * w is formed twice rather than stored: a reduction loop that also stores
        // into a scratch buffer may be peeled to that buffer's alignment, and then its sums
        // would depend on where the buffer happened to be allocated.
        T sum_dh = 0, sum_dh_xhat = 0;
#pragma omp simd reduction(+ : sum_dh, sum_dh_xhat)
        for (int64_t i = 0; i < n; ++i) {
          const T h = wg ? dyr[i] * wg[i] : dyr[i];
          sum_dh += h;
          sum_dh_xhat += h * ((xr[i] - mean) * rstd);
        }
        const T mean_dh = sum_dh / T(n), mean_dh_xhat = sum_dh_xhat / T(n);
        T* dxr = dx + r * n;
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          const T h = wg ? dyr[i] * wg[i] : dyr[i];
          dxr[i] = rstd * (h - mean_dh - (xr[i] - mean) * rstd * mean_dh_xhat);
        }
      }
    }
  });
  if (!dw && !db) return;
  parallel_for(groups, 1, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g)
      for (auto [part, out] : {std::pair{&part_w, dw}, std::pair{&part_b, db}}) {
        if (!out) continue;
        T* o = out + g * n;
        std::copy_n(part->data() + g * blocks_per_group * n, n, o);
        for (int64_t k = 1; k < blocks_per_group; ++k) {
          const T* p = part->data() + (g * blocks_per_group + k) * n;
#pragma omp simd
          for (int64_t i = 0; i < n; ++i) o[i] += p[i];
        }
      }
  });
}

// The tangent: ty = rstd * (tx - mean(tx) - xhat * mean(tx * xhat)) * w + xhat * tw + tb.
template <class T>
void layer_norm_jvp_typed(const T* tx, const T* tw, const T* tb, const T* x, const double* mean_in,
                          const double* rstd_in, const T* w, T* ty, int64_t rows, int64_t n, int64_t group) {
  parallel_for(rows, row_grain(n), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t g = r / group;
      const T* xr = x + r * n;
      const T* wr = w ? w + g * n : nullptr;
      const T* twr = tw ? tw + g * n : nullptr;
      const T* tbr = tb ? tb + g * n : nullptr;
      const T mean = T(mean_in[r]), rstd = T(rstd_in[r]);
      T* tyr = ty + r * n;
      if (tx) {
        const T* txr = tx + r * n;
        T sum_t = 0, sum_t_xhat = 0;
#pragma omp simd reduction(+ : sum_t, sum_t_xhat)
        for (int64_t i = 0; i < n; ++i) {
          sum_t += txr[i];
          sum_t_xhat += txr[i] * ((xr[i] - mean) * rstd);
        }
        const T mean_t = sum_t / T(n), mean_t_xhat = sum_t_xhat / T(n);
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) {
          const T th = rstd * (txr[i] - mean_t - (xr[i] - mean) * rstd * mean_t_xhat);
          tyr[i] = wr ? th * wr[i] : th;
        }
      } else {
        std::fill(tyr, tyr + n, T(0));
      }
      if (twr) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) tyr[i] += (xr[i] - mean) * rstd * twr[i];
      }
      if (tbr) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) tyr[i] += tbr[i];
      }
    }
  });
}

void layer_norm(int, DType t, const void* x, const void* w, const void* b, void* y, double* mean, double* rstd,
                int64_t rows, int64_t n, int64_t group, double eps) {
  for_float_types(t, [&]<class T>(T) {
    layer_norm_typed(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y),
                     mean, rstd, rows, n, group, eps);
  });
}

void layer_norm_backward(int, DType t, const void* dy, const void* x, const double* mean, const double* rstd,
                         const void* w, void* dx, void* dw, void* db, int64_t rows, int64_t n, int64_t group) {
  for_float_types(t, [&]<class T>(T) {
    layer_norm_backward_typed(static_cast<const T*>(dy), static_cast<const T*>(x), mean, rstd, static_cast<const T*>(w),
                              static_cast<T*>(dx), static_cast<T*>(dw), static_cast<T*>(db), rows, n, group);
  });
}

void layer_norm_jvp(int, DType t, const void* tx, const void* tw, const void* tb, const void* x, const double* mean,
                    const double* rstd, const void* w, void* ty, int64_t rows, int64_t n, int64_t group) {
  for_float_types(t, [&]<class T>(T) {
    layer_norm_jvp_typed(static_cast<const T*>(tx), static_cast<const T*>(tw), static_cast<const T*>(tb),
                         static_cast<const T*>(x), mean, rstd, static_cast<const T*>(w), static_cast<T*>(ty), rows, n,
                         group);
  });
}

}  // namespace

void register_layer_norm(Backend& b) {
  b.layer_norm = layer_norm;
  b.layer_norm_backward = layer_norm_backward;
  b.layer_norm_jvp = layer_norm_jvp;
}

}  // namespace dualflow::cpu
