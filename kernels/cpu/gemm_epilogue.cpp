// The per-block epilogues of a GEMM's output (see gemm_epilogue.h). The activation's loop is
// the elementwise unary kernel's (the shared scalar formula in a vectorised loop over
// contiguous values), so a fused Linear and activation gives the bits of the two ops one after
// the other; the multiplier's is one product per value, as the elementwise product rounds.
#include "kernels/cpu/gemm_epilogue.h"

#include "kernels/common/backend.h"

namespace dualflow::cpu {
namespace {

template <class T, UnaryOp Op>
void activate_block(T* c, T* derivative, int64_t ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict row = c + r * ld;
    if (derivative) {
      // One loop for both, so that the compiler shares what f and f' have in common (SiLU's
      // sigmoid, GELU's tanh).
      T* __restrict d = derivative + r * ld;
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) {
        const T v = row[j];
        d[j] = scalar::unary_derivative<T>(Op, v, T(0), T(0));
        row[j] = scalar::unary<T>(Op, v, T(0), T(0));
      }
    } else {
#pragma omp simd
      for (int64_t j = 0; j < cols; ++j) row[j] = scalar::unary<T>(Op, row[j], T(0), T(0));
    }
  }
}

template <class T>
void multiply_block(T* c, T* factors, int64_t ld, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    T* __restrict row = c + r * ld;
    const T* __restrict f = factors + r * ld;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) row[j] = row[j] * f[j];
  }
}

}  // namespace

template <class T>
BlockEpilogue<T> block_activation(UnaryOp op) {
  switch (op) {
#define DF_GEMM_ACTIVATION_CASE(NAME) \
  case UnaryOp::NAME: return activate_block<T, UnaryOp::NAME>;
    DF_FOR_EACH_GEMM_ACTIVATION(DF_GEMM_ACTIVATION_CASE)
#undef DF_GEMM_ACTIVATION_CASE
    default: return nullptr;
  }
}

template <class T>
BlockEpilogue<T> block_multiplier() {
  return multiply_block<T>;
}

template BlockEpilogue<float> block_activation<float>(UnaryOp);
template BlockEpilogue<double> block_activation<double>(UnaryOp);
template BlockEpilogue<float> block_multiplier<float>();
template BlockEpilogue<double> block_multiplier<double>();

}  // namespace dualflow::cpu
