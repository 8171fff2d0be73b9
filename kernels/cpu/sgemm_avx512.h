// The engine's own single-threaded f32 GEMM for AVX-512 CPUs whose OpenBLAS multiplies with
// narrower kernels: an OPENBLAS_CORETYPE of Haswell set in the environment, or a release that
// runs its AVX2 (Haswell, Zen) kernels on a CPU it does not know to have AVX-512. There
// OpenBLAS reaches about half of the core's FMA peak; where OpenBLAS runs its own AVX-512
// kernels (SkylakeX, Cooperlake, SapphireRapids) it keeps the GEMMs.
#pragma once

#include <cstdint>
#include <string>

#include "kernels/cpu/gemm_activation.h"

namespace dualflow::cpu {

// Whether this build has the kernel and this CPU can run it.
bool sgemm_avx512_supported();
// Whether f32 GEMMs of at least sgemm_avx512_min_* run sgemm_avx512, and why (for `dualflow info`).
bool sgemm_avx512_active();
std::string sgemm_avx512_reason();

// Shapes below these keep OpenBLAS: a 12x32 register tile would mostly hold padding.
constexpr int64_t sgemm_avx512_min_m = 12, sgemm_avx512_min_n = 32, sgemm_avx512_min_k = 8;

// Row-major C = alpha * op(A) * op(B) + beta * C, op(A) m x k, op(B) k x n (BLAS semantics:
// C is not read where beta == 0); with `bias` (n values, beta == 0), C = alpha * op(A) * op(B)
// + bias in each row (at alpha = 1 the bits of C filled with the bias and beta = 1). With
// `activate` (gemm_activation.h), each finished block of rows is then passed through it, with
// the derivative into `derivative` (C's offsets and stride) where given. Each element of C
// sums its k products in the same order whatever the blocks of rows and columns a caller
// splits the product into.
void sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias = nullptr,
                  BlockActivation<float> activate = nullptr, float* derivative = nullptr);

// op(B) packed once for threads that split C's rows between them (each would otherwise pack
// all of op(B) itself): panels of 32 columns over all of k, sgemm_avx512_packed_b_floats(n, k)
// floats in all. sgemm_avx512_pack_b writes panels [first_panel, last_panel) of the
// sgemm_avx512_b_panels(n), so that threads can pack disjoint panels at once.
int64_t sgemm_avx512_b_panels(int64_t n);
int64_t sgemm_avx512_packed_b_floats(int64_t n, int64_t k);
void sgemm_avx512_pack_b(bool trans_b, const float* b, int64_t ldb, int64_t n, int64_t k, int64_t first_panel,
                         int64_t last_panel, float* packed);
// The kernel's register tile's rows, and its blocks of C's columns and of k: each element sums
// its k products one k block after the other.
constexpr int64_t sgemm_avx512_tile_rows = 12, sgemm_avx512_column_block = 1024, sgemm_avx512_k_block = 256;
// One block (the columns from column_block, the k steps from k_block) of sgemm_avx512 with
// op(B) packed whole by sgemm_avx512_pack_b, for the rows it is given. Run over every block,
// k blocks in order, it gives sgemm_avx512's bits (for alpha != 0; sgemm_avx512 takes the
// products of alpha = 0 or k = 0, which multiply nothing).
void sgemm_avx512_prepacked_block(bool trans_a, int64_t m, int64_t n, int64_t k, int64_t column_block, int64_t k_block,
                                  float alpha, const float* a, int64_t lda, const float* packed_b, float beta, float* c,
                                  int64_t ldc, const float* bias, BlockActivation<float> activate, float* derivative);

}  // namespace dualflow::cpu
