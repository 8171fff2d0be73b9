// The activation a GEMM applies to its output as it stores it (GemmArgs::activation): a Linear
// and the activation after it in one pass over the output instead of two. The AVX-512 kernel
// runs it on each finished block of rows while the block is in L2; the BLAS paths on each
// thread's block of C right after its product.
#pragma once
#include <cstdint>

#include "kernels/common/scalar_ops.h"

namespace dualflow::cpu {

// Replaces each value v of a rows x cols block (row stride ld) by f(v), storing f'(v) at the
// same place in `derivative` when that is given. f(v) and f'(v) have the bits the elementwise
// unary kernel and its backward kernel compute.
template <class T>
using BlockActivation = void (*)(T* c, T* derivative, int64_t ld, int64_t rows, int64_t cols);

// The block function of a GEMM activation (float or double), or nullptr for an op that is none
// (see gemm_activation_supported).
template <class T>
BlockActivation<T> block_activation(UnaryOp op);

}  // namespace dualflow::cpu
