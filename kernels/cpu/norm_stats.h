// What the fused normalisation kernels (LayerNorm, GroupNorm) share: a run's mean and
// 1 / sqrt(var + eps), in two passes (the mean, then the centred squares) summed in vector lanes,
// accurate without a double per element; and their dispatch over f32 and f64.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/common/dtype.h"

namespace dualflow::cpu {
// Internal linkage: the including files are compiled with different vector widths, and each
// must keep its own copy (one shared copy would make results depend on the link order).
namespace {

template <class T>
struct MeanRstd {
  T mean, rstd;
};

template <class T>
inline MeanRstd<T> mean_rstd(const T* x, int64_t len, double eps) {
  T mean = 0, var = 0;
#pragma omp simd reduction(+ : mean)
  for (int64_t i = 0; i < len; ++i) mean += x[i];
  mean /= T(len);
#pragma omp simd reduction(+ : var)
  for (int64_t i = 0; i < len; ++i) var += (x[i] - mean) * (x[i] - mean);
  var /= T(len);
  return {mean, T(1) / std::sqrt(var + T(eps))};
}

// The first 64-byte aligned element at or after p (a scratch buffer over-allocated by 64 bytes).
template <class T>
T* aligned64(T* p) {
  const auto addr = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<T*>((addr + 63) & ~std::uintptr_t(63));
}

// Calls f(T{}) with T = float or double for t = f32 or f64 (the fused kernels' two types).
template <class F>
void for_float_types(DType t, F&& f) {
  if (t == DType::f32) f(float{});
  if (t == DType::f64) f(double{});
}

}  // namespace
}  // namespace dualflow::cpu
