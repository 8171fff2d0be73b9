// CPU row kernels: softmax, log-softmax and logsumexp with the max subtracted, and
// layer/RMS normalisation with mean and variance accumulated in double.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class T>
void rowwise_typed(RowOp op, const T* in, T* out, int64_t rows, int64_t cols) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  parallel_for(rows, grain_for(8192, cols), [&](int64_t b, int64_t e) {
    std::vector<C> ex(static_cast<size_t>(cols));
    for (int64_t rI = b; rI < e; ++rI) {
      const T* x = in + rI * cols;
      C mx = -std::numeric_limits<C>::infinity();
#pragma omp simd reduction(max : mx)
      for (int64_t i = 0; i < cols; ++i) mx = std::max(mx, C(x[i]));
      if (std::isinf(mx)) mx = mx < 0 ? C(0) : mx;  // all -inf row: avoid inf - inf
      // exp once per element, into a row buffer; sum in vector lanes.
      C s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t i = 0; i < cols; ++i) {
        C v = scalar::fast_exp<C>(C(x[i]) - mx);
        ex[size_t(i)] = v;
        s += v;
      }
      C lse = C(std::log(s)) + mx;
      if (op == RowOp::LogSumExp) {
        out[rI] = T(lse);
        continue;
      }
      T* y = out + rI * cols;
      if (op == RowOp::LogSoftmax) {
        for (int64_t i = 0; i < cols; ++i) y[i] = T(C(x[i]) - lse);
      } else {
        C inv = C(1) / s;
        for (int64_t i = 0; i < cols; ++i) y[i] = T(ex[size_t(i)] * inv);
      }
    }
  });
}

void rowwise(int, RowOp op, DType t, const void* in, void* out, int64_t rows, int64_t cols) {
  switch (t) {
    case DType::f32: return rowwise_typed(op, static_cast<const float*>(in), static_cast<float*>(out), rows, cols);
    case DType::f64: return rowwise_typed(op, static_cast<const double*>(in), static_cast<double*>(out), rows, cols);
    case DType::bf16: return rowwise_typed(op, static_cast<const bf16_t*>(in), static_cast<bf16_t*>(out), rows, cols);
    case DType::f16: return rowwise_typed(op, static_cast<const f16_t*>(in), static_cast<f16_t*>(out), rows, cols);
    default: break;
  }
}

template <class T>
void normalize_typed(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t cols, double eps, bool rms) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  parallel_for(rows, grain_for(8192, cols), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * cols;
      T* yr = y + r * cols;
      // Two passes (mean, then centred squares) in vector lanes: accurate without a double per element.
      C mean = 0;
      if (!rms) {
#pragma omp simd reduction(+ : mean)
        for (int64_t i = 0; i < cols; ++i) mean += C(xr[i]);
        mean /= C(cols);
      }
      C var = 0;
#pragma omp simd reduction(+ : var)
      for (int64_t i = 0; i < cols; ++i) {
        C d = C(xr[i]) - mean;
        var += d * d;
      }
      var /= C(cols);
      C rstd = C(1) / std::sqrt(var + C(eps));
      if (w && bias) {
        for (int64_t i = 0; i < cols; ++i) yr[i] = T((C(xr[i]) - mean) * rstd * C(w[i]) + C(bias[i]));
      } else if (w) {
        for (int64_t i = 0; i < cols; ++i) yr[i] = T((C(xr[i]) - mean) * rstd * C(w[i]));
      } else if (bias) {
        for (int64_t i = 0; i < cols; ++i) yr[i] = T((C(xr[i]) - mean) * rstd + C(bias[i]));
      } else {
        for (int64_t i = 0; i < cols; ++i) yr[i] = T((C(xr[i]) - mean) * rstd);
      }
    }
  });
}

void normalize_rows(int, DType t, const void* x, const void* w, const void* b, void* y, int64_t rows, int64_t cols,
                    double eps, bool rms) {
  switch (t) {
#define DF_NORM(D, T)                                                                                    \
  case D:                                                                                                \
    return normalize_typed(static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), \
                           static_cast<T*>(y), rows, cols, eps, rms);
    DF_NORM(DType::f32, float)
    DF_NORM(DType::f64, double) DF_NORM(DType::bf16, bf16_t) DF_NORM(DType::f16, f16_t)
#undef DF_NORM
        default : break;
  }
}

}  // namespace

void register_rowwise(Backend& b) {
  b.rowwise = rowwise;
  b.normalize_rows = normalize_rows;
}

}  // namespace dualflow::cpu
