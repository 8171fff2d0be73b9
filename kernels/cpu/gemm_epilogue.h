// What a GEMM does to its output as it stores it, in place of a second pass over the output:
// the activation after a Linear (GemmArgs::activation), which also stores its derivative, or
// a product with a matrix (GemmArgs::multiplier), a tangent's product with that derivative.
// The AVX-512 kernel runs the epilogue on each finished block of rows while the block is in
// L2; the BLAS paths on each thread's block of C right after its product.
#pragma once
#include <cstdint>

#include "kernels/common/scalar_ops.h"

namespace dualflow::cpu {

// Runs on a rows x cols block of C (row stride ld). `aux` is a matrix at the same offsets and
// with the same row stride as C: an activation writes f'(v) there (where it is given), a
// multiplier reads the factors there (it is not written, but shares the type).
template <class T>
using BlockEpilogue = void (*)(T* c, T* aux, int64_t ld, int64_t rows, int64_t cols);

// The activation's epilogue (float or double), or nullptr for an op that is none (see
// gemm_activation_supported): each value v becomes f(v), and f'(v) goes to aux where that is
// given, with the bits the elementwise unary kernel and its backward kernel compute.
template <class T>
BlockEpilogue<T> block_activation(UnaryOp op);

// The multiplier's epilogue: each value v becomes v * aux, one rounding, the bits of the
// elementwise product of the stored output and aux.
template <class T>
BlockEpilogue<T> block_multiplier();

}  // namespace dualflow::cpu
