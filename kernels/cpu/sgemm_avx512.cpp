// Single-threaded f32 GEMM on AVX-512 (see sgemm_avx512.h for when the engine takes it).
// The classic blocking: for each block of NC columns and KC steps of k, op(B) is packed into
// panels of 32 columns ([k][32], zero-padded); for each block of MC rows, a transposed A into
// panels of 12 rows ([k][12]), unless it is read in place (as an untransposed A always is, see
// multiply_block); a 12x32 register tile (24 vector sums) then runs along k, loading two vectors
// of B and broadcasting 12 values of A per step for 24 FMAs. A B panel (KC x 32 floats, 32 KiB)
// stays in L1 while the tile walks down the A block (MC x KC, 96 KiB, in L2). Partial tiles at
// the right and bottom edges store through lane masks.
#include "kernels/cpu/sgemm_avx512.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/blas_kernels.h"
#include "kernels/cpu/scratch.h"

#if defined(__AVX512F__)
#include <immintrin.h>

#include "kernels/cpu/avx512_layout.h"
#define DUALFLOW_SGEMM_AVX512 1
#endif

namespace dualflow::cpu {

bool sgemm_avx512_supported() {
#ifdef DUALFLOW_SGEMM_AVX512
  static const bool supported = __builtin_cpu_supports("avx512f");  // asked once: it is on every GEMM's path
  return supported;
#else
  return false;
#endif
}

std::string sgemm_avx512_reason() {
#ifdef DUALFLOW_SGEMM_AVX512
  const std::string core = choose_blas_kernels().used;
  if (!sgemm_avx512_supported()) return "the CPU has no AVX-512; OpenBLAS's " + core + " kernels";
  return "the engine's AVX-512 kernel (OpenBLAS's " + core + " kernels for the shapes it leaves)";
#else
  return "OpenBLAS (this build has no AVX-512 code)";
#endif
}

#ifdef DUALFLOW_SGEMM_AVX512
namespace {

constexpr int64_t MR = 12, NR = 32, KC = 256, MC = 96, NC = 1024;

// op(A)[r][p] for rows [r0, r0 + rows) and steps [p0, p0 + kc) into panels of MR rows:
// panel q holds [p][MR] for rows q*MR ..; rows past `rows` are zero.
void pack_a(bool trans, const float* a, int64_t lda, int64_t r0, int64_t rows, int64_t p0, int64_t kc, float* out) {
  for (int64_t q = 0; q < rows; q += MR) {
    const int64_t mr = std::min(MR, rows - q);
    float* panel = out + q * kc;
    if (trans) {  // op(A)[r][p] = a[p * lda + r]: MR contiguous values per step
      const __mmask16 valid = __mmask16((1u << mr) - 1), panel_row = __mmask16((1u << MR) - 1);
      for (int64_t p = 0; p < kc; ++p)
        _mm512_mask_storeu_ps(panel + p * MR, panel_row, _mm512_maskz_loadu_ps(valid, a + (p0 + p) * lda + r0 + q));
    } else {  // op(A)[r][p] = a[r * lda + p]: read along each row
      if (mr < MR) std::memset(panel, 0, size_t(kc * MR) * sizeof(float));
      for (int64_t i = 0; i < mr; ++i) {
        const float* src = a + (r0 + q + i) * lda + p0;
        for (int64_t p = 0; p < kc; ++p) panel[p * MR + i] = src[p];
      }
    }
  }
}

// op(B)[p][col] for steps [p0, p0 + kc) and columns [c0, c0 + cols) into panels of NR columns:
// the panel of columns q*NR .. holds [p][NR] at out + q * panel_stride; columns past `cols`
// are zero.
void pack_b(bool trans, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t c0, int64_t cols, float* out,
            int64_t panel_stride) {
  for (int64_t q = 0; q < cols; q += NR) {
    const int64_t nr = std::min(NR, cols - q);
    float* panel = out + q / NR * panel_stride;
    if (!trans) {  // op(B)[p][col] = b[p * ldb + col]: NR contiguous values per step
      const __mmask16 m0 = __mmask16(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
      const __mmask16 m1 = __mmask16(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
      for (int64_t p = 0; p < kc; ++p) {
        const float* src = b + (p0 + p) * ldb + c0 + q;
        _mm512_storeu_ps(panel + p * NR, _mm512_maskz_loadu_ps(m0, src));
        _mm512_storeu_ps(panel + p * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
      }
    } else {  // op(B)[p][col] = b[col * ldb + p]: 16 columns by 16 steps transposed at a time
      for (int64_t j0 = 0; j0 < NR; j0 += 16) {
        const int64_t jn = std::clamp<int64_t>(nr - j0, 0, 16);
        for (int64_t p = 0; p < kc; p += 16) {
          const int64_t pn = std::min<int64_t>(16, kc - p);
          const __mmask16 steps = __mmask16((1u << pn) - 1);
          __m512 r[16];
          for (int64_t j = 0; j < 16; ++j)
            r[j] = j < jn ? _mm512_maskz_loadu_ps(steps, b + (c0 + q + j0 + j) * ldb + p0 + p) : _mm512_setzero_ps();
          transpose16(r);
          for (int64_t i = 0; i < pn; ++i) _mm512_storeu_ps(panel + (p + i) * NR + j0, r[i]);
        }
      }
    }
  }
}

// Where a register tile reads its MR rows of op(A) from.
enum class ARead {
  packed,      // a packed panel: [p][MR]
  rows,        // untransposed A in place: MR rows read along k (MR sequential streams)
  transposed,  // transposed A in place: the MR values of each step are contiguous in A's storage
};

// C[0..mr) x [0..nr) = alpha * (A x B panel) + beta * C (C unread where beta == 0), plus
// bias[0..nr) in every row where bias is given (then beta == 0). A is read as `Read` says, with
// all MR rows present where it is read in place.
template <ARead Read>
void micro_tile(int64_t kc, const float* ap, int64_t lda, const float* bp, float* c, int64_t ldc, int64_t mr,
                int64_t nr, float alpha, float beta, const float* bias) {
  // C's tile is read or written only after the k loop; fetching its rows now hides the
  // latency of lines that are often in no cache (C is swept once per block of k).
  for (int64_t i = 0; i < mr; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + nr - 1), _MM_HINT_T0);
  }
  __m512 acc[MR][2];
#pragma GCC unroll 12
  for (int i = 0; i < MR; ++i) acc[i][0] = acc[i][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
  for (int64_t p = 0; p < kc; ++p) {
    const __m512 b0 = _mm512_loadu_ps(bp + p * NR), b1 = _mm512_loadu_ps(bp + p * NR + 16);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) {
      const __m512 a = _mm512_set1_ps(Read == ARead::packed ? ap[p * MR + i]
                                      : Read == ARead::rows ? ap[i * lda + p]
                                                            : ap[p * lda + i]);
      acc[i][0] = _mm512_fmadd_ps(a, b0, acc[i][0]);
      acc[i][1] = _mm512_fmadd_ps(a, b1, acc[i][1]);
    }
  }
  const __mmask16 m0 = __mmask16(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  const __mmask16 m1 = __mmask16(nr >= 32 ? 0xFFFF : nr > 16 ? (1u << (nr - 16)) - 1 : 0);
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  // One rounding of alpha * sum + bias, written as the fused multiply-add the compiler would
  // otherwise be free to form or not; at alpha = 1 these are the bits of C = bias, beta = 1.
  const __m512 bias0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
  const __m512 bias1 = bias ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
  for (int64_t i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    __m512 r0 = _mm512_mul_ps(va, acc[i][0]), r1 = _mm512_mul_ps(va, acc[i][1]);
    if (bias) {
      r0 = _mm512_fmadd_ps(va, acc[i][0], bias0);
      r1 = _mm512_fmadd_ps(va, acc[i][1], bias1);
    } else if (beta != 0.0f) {
      r0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, row), r0);
      r1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, row + 16), r1);
    }
    _mm512_mask_storeu_ps(row, m0, r0);
    _mm512_mask_storeu_ps(row + 16, m1, r1);
  }
}

// One block of NC columns and KC steps of k for rows [0, m): op(B)'s panels for it are at
// b_panels + j * panel_stride (j = 0, 1, .. for its columns jc .. in steps of NR).
void multiply_block(bool trans_a, int64_t m, int64_t jc, int64_t nc, int64_t pc, int64_t kc, int64_t k, float alpha,
                    const float* a, int64_t lda, const float* b_panels, int64_t panel_stride, float beta, float* c,
                    int64_t ldc, const float* bias, BlockEpilogue<float> epilogue, float* aux) {
  thread_local std::vector<float> a_buffer;
  float* a_packed = scratch(a_buffer, size_t(MC * KC));
  // The first k block applies beta or the bias; later ones add onto what earlier ones stored.
  const float beta_here = pc == 0 ? beta : 1.0f;
  const float* bias_here = pc == 0 ? bias : nullptr;
  // The last k block finishes each block of rows: the epilogue runs on it while it is in L2
  // (an activation on each register tile instead ran slower than a separate pass).
  const BlockEpilogue<float> epilogue_here = pc + kc >= k ? epilogue : nullptr;
  for (int64_t ic = 0; ic < m; ic += MC) {
    const int64_t mc = std::min(MC, m - ic);
    // A is read in place, but for a last panel of fewer than MR rows. Untransposed A always:
    // its rows are contiguous in k, and packing would only copy them. Transposed A where the
    // block is at most 256 columns wide and A's stored rows at most 512 values long: then each
    // value of A serves few panels of B and packing cost more than it saved (weight gradients
    // of 256 x 256 x 768 and 256 x 130 x 768 ran 6-7% faster in place, 256 x 64 x 2048 17%),
    // while wider blocks, whose many panels reuse each value, and longer rows, whose values of
    // one step fall into few sets of L1, ran up to 3% (1,024 columns or rows) and 13%
    // (rows of 1,536) slower.
    const bool in_place = !trans_a || (nc <= 256 && lda <= 512);
    const int64_t direct_rows = in_place ? mc / MR * MR : 0;
    if (direct_rows < mc)
      pack_a(trans_a, a, lda, ic + direct_rows, mc - direct_rows, pc, kc, a_packed + direct_rows * kc);
    for (int64_t jr = 0; jr < nc; jr += NR)
      for (int64_t ir = 0; ir < mc; ir += MR) {
        float* tile = c + (ic + ir) * ldc + jc + jr;
        const float* panel = b_panels + jr / NR * panel_stride;
        const int64_t mr = std::min(MR, mc - ir), nr = std::min(NR, nc - jr);
        const float* tile_bias = bias_here ? bias_here + jc + jr : nullptr;
        if (ir >= direct_rows)
          micro_tile<ARead::packed>(kc, a_packed + ir * kc, MR, panel, tile, ldc, mr, nr, alpha, beta_here, tile_bias);
        else if (trans_a)
          micro_tile<ARead::transposed>(kc, a + pc * lda + ic + ir, lda, panel, tile, ldc, mr, nr, alpha, beta_here,
                                        tile_bias);
        else
          micro_tile<ARead::rows>(kc, a + (ic + ir) * lda + pc, lda, panel, tile, ldc, mr, nr, alpha, beta_here,
                                  tile_bias);
      }
    if (epilogue_here) {
      float* block = c + ic * ldc + jc;
      epilogue_here(block, aux ? aux + (block - c) : nullptr, ldc, mc, nc);
    }
  }
}

// The product where beta, bias and alpha leave nothing to multiply: C = bias, beta * C or 0.
bool trivial_product(int64_t m, int64_t n, int64_t k, float alpha, float beta, float* c, int64_t ldc, const float* bias,
                     BlockEpilogue<float> epilogue, float* aux) {
  if (k > 0 && alpha != 0.0f) return false;
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = bias ? bias[j] : beta == 0.0f ? 0.0f : beta * c[i * ldc + j];
  if (epilogue) epilogue(c, aux, ldc, m, n);
  return true;
}

}  // namespace

void sgemm_avx512(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a, int64_t lda,
                  const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias,
                  BlockEpilogue<float> epilogue, float* aux) {
  if (m <= 0 || n <= 0 || trivial_product(m, n, k, alpha, beta, c, ldc, bias, epilogue, aux)) return;
  thread_local std::vector<float> b_buffer;
  float* b_packed = scratch(b_buffer, size_t(std::min(NC, (n + NR - 1) / NR * NR) * KC));
  for (int64_t jc = 0; jc < n; jc += NC) {
    const int64_t nc = std::min(NC, n - jc);
    for (int64_t pc = 0; pc < k; pc += KC) {
      const int64_t kc = std::min(KC, k - pc);
      pack_b(trans_b, b, ldb, pc, kc, jc, nc, b_packed, NR * kc);
      multiply_block(trans_a, m, jc, nc, pc, kc, k, alpha, a, lda, b_packed, NR * kc, beta, c, ldc, bias, epilogue,
                     aux);
    }
  }
}

void sgemm_avx512_shared(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                         int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc, const float* bias,
                         BlockEpilogue<float> epilogue, float* aux, RowShares& rows, int self) {
  if (m <= 0 || n <= 0) return;
  // All of op(B), block by block ((jc, pc) in order, each of ceil(nc / NR) panels of kc steps),
  // packed by each thread on its first piece (a thread that gets none packs nothing).
  int64_t whole = 0;
  for (int64_t jc = 0; jc < n; jc += NC) whole += (std::min(NC, n - jc) + NR - 1) / NR * NR * k;
  thread_local std::vector<float> b_buffer;
  float* b_packed = scratch(b_buffer, size_t(whole));
  bool packed = false;
  int64_t r0 = 0, r1 = 0;
  while (rows.next(self, r0, r1)) {
    const float* a_rows = trans_a ? a + r0 : a + r0 * lda;
    float* c_rows = c + r0 * ldc;
    float* aux_rows = aux ? aux + r0 * ldc : nullptr;
    if (trivial_product(r1 - r0, n, k, alpha, beta, c_rows, ldc, bias, epilogue, aux_rows)) continue;
    float* block = b_packed;
    for (int64_t jc = 0; jc < n; jc += NC)
      for (int64_t pc = 0; pc < k; pc += KC) {
        const int64_t nc = std::min(NC, n - jc), kc = std::min(KC, k - pc);
        if (!packed) pack_b(trans_b, b, ldb, pc, kc, jc, nc, block, NR * kc);
        multiply_block(trans_a, r1 - r0, jc, nc, pc, kc, k, alpha, a_rows, lda, block, NR * kc, beta, c_rows, ldc, bias,
                       epilogue, aux_rows);
        block += (nc + NR - 1) / NR * NR * kc;
      }
    packed = true;
  }
}

#else
// Never called: sgemm_avx512_supported() is false in builds without AVX-512.
void sgemm_avx512_shared(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t,
                         float, float*, int64_t, const float*, BlockEpilogue<float>, float*, RowShares&, int) {}
void sgemm_avx512(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*, int64_t, float,
                  float*, int64_t, const float*, BlockEpilogue<float>, float*) {}
#endif

}  // namespace dualflow::cpu
