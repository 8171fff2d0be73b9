// The engine's own single-threaded f32 GEMM, used for every f32 product of at least
// sgemm_avx512_min_* on a CPU with AVX-512. Where OpenBLAS runs narrower kernels (an
// OPENBLAS_CORETYPE of Haswell, or a release that runs its AVX2 kernels on a CPU it does not
// know to have AVX-512) it reaches about half of the core's FMA peak. Where OpenBLAS runs its
// own AVX-512 kernels (SkylakeX here) the engine's is as fast on one thread on the networks'
// shapes, and it stores C once, with the bias and the activation added as it stores, where
// OpenBLAS first zeroes C or fills it with the bias and reads it back: the toy2d training steps
// ran about 6% faster on it, the DiT's as fast (see docs/PERFORMANCE.md).
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu/gemm_epilogue.h"
#include "kernels/cpu/row_shares.h"

namespace dualflow::cpu {

// Whether this build has the kernel and this CPU can run it: then f32 GEMMs of at least
// sgemm_avx512_min_* run sgemm_avx512. The reason, with OpenBLAS's kernels, for `dualflow info`.
bool sgemm_avx512_supported();
std::string sgemm_avx512_reason();

// Shapes below these keep OpenBLAS: a 12x32 register tile would mostly hold padding.
constexpr int64_t sgemm_avx512_min_m = 12, sgemm_avx512_min_n = 32, sgemm_avx512_min_k = 8;

// Row-major C = alpha * op(A) * op(B) + beta * C, op(A) m x k, op(B) k x n (BLAS semantics:
// C is not read where beta == 0); with `bias` (n values, beta == 0), C = alpha * op(A) * op(B)
// + bias in each row (at alpha = 1 the bits of C filled with the bias and beta = 1). With
// `epilogue` (gemm_epilogue.h), each finished block of rows is then passed through it, with
// its matrix `aux` (C's offsets and stride) where given. Each element of C
// sums its k products in the same order whatever the blocks of rows and columns a caller
// splits the product into.
void sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias = nullptr,
                  BlockEpilogue<float> epilogue = nullptr, float* aux = nullptr);

// The same product computed by several threads together, each calling this with its own share
// of `rows` (row_shares.h): each packs all of op(B) once, then multiplies the pieces of rows it
// is handed, so a thread that finishes early takes rows another has not reached. Same bits
// as sgemm_avx512 on the whole product, however the rows are shared out.
void sgemm_avx512_shared(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                         int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias,
                         BlockEpilogue<float> epilogue, float* aux, RowShares& rows, int self);

}  // namespace dualflow::cpu
