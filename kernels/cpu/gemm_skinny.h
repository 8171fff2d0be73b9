// GEMMs with one side of at most kSkinnyExtent (a 2-D network's output layer and its
// gradients: x [N, 256] times W^T [256, 2], G [N, 2] times W [2, 256], G^T [2, N] times X [N, 256]).
// Their work is a pass over the large operand, so they run at the speed of memory, where a
// general blocked GEMM spends most of its time packing and on tiles that are mostly padding.
#pragma once
#include <cstdint>

namespace dualflow::cpu {

// The largest M, N or K the skinny loops take.
constexpr int64_t kSkinnyExtent = 8;

// C[rows, cols] = alpha * op(A)[rows, k] op(B)[k, cols] + (bias, if given, in every row; else
// beta * C, C unread where beta == 0), row-major with leading dimensions lda, ldb and ldc.
// Returns false, computing nothing, for alpha = 0 or k = 0 and when the shape or layout is not
// one of the three it takes:
// k small (a sum of k outer products), cols small with op(A)'s rows contiguous (dot products),
// rows small with op(B)'s rows contiguous (a sum of scaled rows of B).
template <class T>
bool gemm_skinny(bool trans_a, bool trans_b, int64_t rows, int64_t cols, int64_t k, T alpha, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias);

}  // namespace dualflow::cpu
