// CPU GEMM through OpenBLAS (sgemm/dgemm, one call per batch entry); 16-bit floats are widened
// to f32 around sgemm since OpenBLAS has no bf16/f16 GEMM in Debian's build.
#include <cblas.h>

#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class H>
void gemm_half(const GemmArgs& g) {
  // Widen each batch entry densely (rows of length ld) to f32, multiply, narrow.
  const H* A = static_cast<const H*>(g.a);
  const H* B = static_cast<const H*>(g.b);
  H* Cp = static_cast<H*>(g.c);
  int64_t a_rows = g.trans_a ? g.k : g.m, b_rows = g.trans_b ? g.n : g.k;
  std::vector<float> a(size_t(a_rows * g.lda)), b(size_t(b_rows * g.ldb)), c(size_t(g.m * g.ldc));
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(A[bi * g.stride_a + int64_t(i)]);
    for (size_t i = 0; i < b.size(); ++i) b[i] = float(B[bi * g.stride_b + int64_t(i)]);
    for (size_t i = 0; i < c.size(); ++i) c[i] = g.beta == 0.0 ? 0.f : float(Cp[bi * g.stride_c + int64_t(i)]);
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans,
                int(g.m), int(g.n), int(g.k), float(g.alpha), a.data(), int(g.lda), b.data(), int(g.ldb),
                float(g.beta), c.data(), int(g.ldc));
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col)
        Cp[bi * g.stride_c + r * g.ldc + col] = H(c[size_t(r * g.ldc + col)]);
  }
}

void gemm(int, const GemmArgs& g) {
  const auto ta = g.trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = g.trans_b ? CblasTrans : CblasNoTrans;
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    if (g.dtype == DType::f32) {
      cblas_sgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), float(g.alpha),
                  static_cast<const float*>(g.a) + bi * g.stride_a, int(g.lda),
                  static_cast<const float*>(g.b) + bi * g.stride_b, int(g.ldb), float(g.beta),
                  static_cast<float*>(g.c) + bi * g.stride_c, int(g.ldc));
    } else if (g.dtype == DType::f64) {
      cblas_dgemm(CblasRowMajor, ta, tb, int(g.m), int(g.n), int(g.k), g.alpha,
                  static_cast<const double*>(g.a) + bi * g.stride_a, int(g.lda),
                  static_cast<const double*>(g.b) + bi * g.stride_b, int(g.ldb), g.beta,
                  static_cast<double*>(g.c) + bi * g.stride_c, int(g.ldc));
    } else {
      break;
    }
  }
  if (g.dtype == DType::bf16) gemm_half<bf16_t>(g);
  if (g.dtype == DType::f16) gemm_half<f16_t>(g);
}

}  // namespace

void register_gemm(Backend& b) { b.gemm = gemm; }

}  // namespace dualflow::cpu
