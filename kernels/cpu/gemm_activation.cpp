// The per-block activation of a GEMM's output (see gemm_activation.h). The loop is the
// elementwise unary kernel's (the shared scalar formula in a vectorised loop over contiguous
// values), so a fused Linear and activation gives the bits of the two ops one after the other.
#include "kernels/cpu/gemm_activation.h"

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

}  // namespace

template <class T>
BlockActivation<T> block_activation(UnaryOp op) {
  switch (op) {
#define DF_GEMM_ACTIVATION_CASE(NAME) \
  case UnaryOp::NAME: return activate_block<T, UnaryOp::NAME>;
    DF_FOR_EACH_GEMM_ACTIVATION(DF_GEMM_ACTIVATION_CASE)
#undef DF_GEMM_ACTIVATION_CASE
    default: return nullptr;
  }
}

template BlockActivation<float> block_activation<float>(UnaryOp);
template BlockActivation<double> block_activation<double>(UnaryOp);

}  // namespace dualflow::cpu
