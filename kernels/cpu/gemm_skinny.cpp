// GEMMs with a small side (see gemm_skinny.h). Each form keeps the small operand in a local
// array, reads the large one once in its storage order, and leaves the vectorisation to the
// compiler (the loops over the long contiguous dimension).
#include "kernels/cpu/gemm_skinny.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/scratch.h"

namespace dualflow::cpu {
namespace {

// op(M)[row][col] of a row-major M with leading dimension ld, transposed where `trans`.
template <class T>
inline T op_at(const T* m, int64_t ld, bool trans, int64_t row, int64_t col) {
  return trans ? m[col * ld + row] : m[row * ld + col];
}

// The stored value of one element: alpha * sum plus the bias or beta * C.
template <class T>
inline T finish(T sum, T alpha, T beta, const T* bias, int64_t j, const T* c_old) {
  if (bias) return alpha * sum + bias[j];
  if (beta == T(0)) return alpha * sum;
  return alpha * sum + beta * *c_old;
}

// Calls f.template operator()<E>() with the small extent e (1 .. kSkinnyExtent) as a constant,
// so that the loops over it unroll.
template <class F>
void with_constant_extent(int64_t e, F&& f) {
  static_assert(kSkinnyExtent == 8);
  switch (e) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    default: return f.template operator()<8>();
  }
}

// k <= kSkinnyExtent: C[i][:] = alpha * sum_p op(A)[i][p] * op(B)[p][:], op(B)'s rows copied
// out contiguous first. K is k as a constant, so that the sum over it unrolls inside the
// vectorised loop over the row.
template <class T, int K>
void small_k_rows(bool trans_a, int64_t rows, int64_t cols, T alpha, const T* a, int64_t lda, const T* b_rows, T beta,
                  T* c, int64_t ldc, const T* bias) {
  for (int64_t i = 0; i < rows; ++i) {
    T a_row[K];
    for (int p = 0; p < K; ++p) a_row[p] = op_at(a, lda, trans_a, i, p);
    T* c_row = c + i * ldc;
#pragma omp simd
    for (int64_t j = 0; j < cols; ++j) {
      T sum = a_row[0] * b_rows[j];
      for (int p = 1; p < K; ++p) sum += a_row[p] * b_rows[p * cols + j];
      c_row[j] = finish(sum, alpha, beta, bias, j, c_row + j);
    }
  }
}

template <class T>
void small_k(bool trans_a, bool trans_b, int64_t rows, int64_t cols, int64_t k, T alpha, const T* a, int64_t lda,
             const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias) {
  thread_local std::vector<T> buffer;
  T* b_rows = scratch(buffer, size_t(k * cols));
  for (int64_t p = 0; p < k; ++p)
    for (int64_t j = 0; j < cols; ++j) b_rows[p * cols + j] = op_at(b, ldb, trans_b, p, j);
  with_constant_extent(
      k, [&]<int K>() { small_k_rows<T, K>(trans_a, rows, cols, alpha, a, lda, b_rows, beta, c, ldc, bias); });
}

// cols <= kSkinnyExtent, op(A) = A (rows contiguous along k): C[i][j] = alpha * <A[i], op(B)[:, j]>,
// op(B)'s columns copied out contiguous first. N is cols as a constant: the N sums of a row
// run in one pass over it.
template <class T, int N>
void small_n_rows(int64_t rows, int64_t k, T alpha, const T* a, int64_t lda, const T* b_cols, T beta, T* c, int64_t ldc,
                  const T* bias) {
  // R rows at a time share each load of op(B); R x N vector sums of kLanes products each, added
  // across at the end. GCC's vector type keeps them in registers (a plain array of lanes was
  // spilled and ran at half the speed).
  constexpr int R = N <= 2 ? 4 : N <= 4 ? 2 : 1;
  constexpr int kLanes = 64 / sizeof(T);
  typedef T Vec __attribute__((vector_size(64)));
  const int64_t whole = k / kLanes * kLanes;
  for (int64_t i0 = 0; i0 < rows; i0 += R) {
    const int r_here = int(std::min<int64_t>(R, rows - i0));
    Vec lanes[R][N] = {};
    for (int64_t p = 0; p < whole; p += kLanes) {
      Vec x[R];
      for (int r = 0; r < R; ++r) std::memcpy(&x[r], a + (i0 + std::min(r, r_here - 1)) * lda + p, sizeof(Vec));
#pragma GCC unroll 8
      for (int j = 0; j < N; ++j) {
        Vec y;
        std::memcpy(&y, b_cols + j * k + p, sizeof(Vec));
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) lanes[r][j] += x[r] * y;
      }
    }
    for (int r = 0; r < r_here; ++r) {
      const T* a_row = a + (i0 + r) * lda;
      T* c_row = c + (i0 + r) * ldc;
      for (int j = 0; j < N; ++j) {
        T sum = T(0);
        for (int l = 0; l < kLanes; ++l) sum += lanes[r][j][l];
        for (int64_t p = whole; p < k; ++p) sum += a_row[p] * b_cols[j * k + p];
        c_row[j] = finish(sum, alpha, beta, bias, j, c_row + j);
      }
    }
  }
}

template <class T>
void small_n(bool trans_b, int64_t rows, int64_t cols, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc, const T* bias) {
  thread_local std::vector<T> buffer;
  T* b_cols = scratch(buffer, size_t(cols * k));
  for (int64_t j = 0; j < cols; ++j)
    for (int64_t p = 0; p < k; ++p) b_cols[j * k + p] = op_at(b, ldb, trans_b, p, j);
  with_constant_extent(cols, [&]<int N>() { small_n_rows<T, N>(rows, k, alpha, a, lda, b_cols, beta, c, ldc, bias); });
}

// rows <= kSkinnyExtent, op(B) = B (rows contiguous along its columns): C[i][:] = alpha *
// sum_p op(A)[i][p] * B[p][:], summed in a local block of columns at a time.
template <class T>
void small_m(bool trans_a, int64_t rows, int64_t cols, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
             int64_t ldb, T beta, T* c, int64_t ldc, const T* bias) {
  constexpr int64_t kBlock = 256;
  T sums[kSkinnyExtent][kBlock];
  for (int64_t j0 = 0; j0 < cols; j0 += kBlock) {
    const int64_t width = std::min(kBlock, cols - j0);
    for (int64_t i = 0; i < rows; ++i) std::fill(sums[i], sums[i] + width, T(0));
    for (int64_t p = 0; p < k; ++p) {
      const T* b_row = b + p * ldb + j0;
      for (int64_t i = 0; i < rows; ++i) {
        const T a_ip = op_at(a, lda, trans_a, i, p);
        T* sum = sums[i];
#pragma omp simd
        for (int64_t j = 0; j < width; ++j) sum[j] += a_ip * b_row[j];
      }
    }
    for (int64_t i = 0; i < rows; ++i) {
      T* c_row = c + i * ldc + j0;
      const T* bias_here = bias ? bias + j0 : nullptr;
#pragma omp simd
      for (int64_t j = 0; j < width; ++j) c_row[j] = finish(sums[i][j], alpha, beta, bias_here, j, c_row + j);
    }
  }
}

}  // namespace

template <class T>
bool gemm_skinny(bool trans_a, bool trans_b, int64_t rows, int64_t cols, int64_t k, T alpha, const T* a, int64_t lda,
                 const T* b, int64_t ldb, T beta, T* c, int64_t ldc, const T* bias) {
  // alpha = 0 multiplies nothing (BLAS reads neither A nor B then, so a NaN there stays out).
  if (rows <= 0 || cols <= 0 || k <= 0 || alpha == T(0)) return false;
  if (k <= kSkinnyExtent) {
    small_k(trans_a, trans_b, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
  } else if (cols <= kSkinnyExtent && !trans_a) {
    small_n(trans_b, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
  } else if (rows <= kSkinnyExtent && !trans_b) {
    small_m(trans_a, rows, cols, k, alpha, a, lda, b, ldb, beta, c, ldc, bias);
  } else {
    return false;
  }
  return true;
}

template bool gemm_skinny<float>(bool, bool, int64_t, int64_t, int64_t, float, const float*, int64_t, const float*,
                                 int64_t, float, float*, int64_t, const float*);
template bool gemm_skinny<double>(bool, bool, int64_t, int64_t, int64_t, double, const double*, int64_t, const double*,
                                  int64_t, double, double*, int64_t, const double*);

}  // namespace dualflow::cpu
