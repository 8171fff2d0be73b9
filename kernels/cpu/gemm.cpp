// CPU GEMM through OpenBLAS (single-threaded sgemm/dgemm calls spread over the engine's pool; f32 through the
// engine's own AVX-512 kernel on CPUs that have it, sgemm_avx512.h; blocks with a side of at
// most 8 through the engine's skinny loops, gemm_skinny.h); 16-bit floats are
// widened to f32 around sgemm since OpenBLAS has no bf16/f16 GEMM in Debian's build.
#include <cblas.h>

#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/cpu/blas_kernels.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/gemm_epilogue.h"
#include "kernels/cpu/gemm_skinny.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/sgemm_avx512.h"

namespace dualflow::cpu {
namespace {

template <class H>
void gemm_half(const GemmArgs& g) {
  // Widen each batch entry densely (rows of length ld) to f32, multiply, narrow. The last row
  // is read only up to its last element: an operand may be a view that ends there.
  const H* A = static_cast<const H*>(g.a);
  const H* B = static_cast<const H*>(g.b);
  H* Cp = static_cast<H*>(g.c);
  const int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  auto span = [](int64_t rows, int64_t cols, int64_t ld) { return size_t(rows > 0 ? (rows - 1) * ld + cols : 0); };
  std::vector<float> a(span(a_rows, a_cols, g.lda)), b(span(b_rows, b_cols, g.ldb)), c(span(g.m, g.n, g.ldc));
  for (int64_t bi = 0; bi < g.batch; ++bi) {
    for (size_t i = 0; i < a.size(); ++i) a[i] = float(A[bi * g.stride_a + int64_t(i)]);
    for (size_t i = 0; i < b.size(); ++i) b[i] = float(B[bi * g.stride_b + int64_t(i)]);
    const H* bias = static_cast<const H*>(g.bias);
    for (size_t i = 0; i < c.size(); ++i) {
      const int64_t col = int64_t(i) % g.ldc;  // the gap between rows (col >= n) is never stored back
      if (bias) c[i] = col < g.n ? float(bias[col]) : 0.f;
      else c[i] = g.beta == 0.0 ? 0.f : float(Cp[bi * g.stride_c + int64_t(i)]);
    }
    cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans, int(g.m),
                int(g.n), int(g.k), float(g.alpha), a.data(), int(g.lda), b.data(), int(g.ldb),
                bias ? 1.0f : float(g.beta), c.data(), int(g.ldc));
    if (g.activation) {
      // On the product rounded to H, in f32, as the 16-bit elementwise kernels compute: the bits
      // of the activation applied to the stored product.
      for (float& v : c) v = float(H(v));
      const BlockEpilogue<float> activate = block_activation<float>(*g.activation);
      activate(c.data(), nullptr, g.ldc, g.m, g.n);
    }
    for (int64_t r = 0; r < g.m; ++r)
      for (int64_t col = 0; col < g.n; ++col) Cp[bi * g.stride_c + r * g.ldc + col] = H(c[size_t(r * g.ldc + col)]);
  }
}

// The epilogue a product asks for (an activation, a multiplier or none) and its matrix for
// batch entry bi, at C's offsets: the activation's derivative, which it writes, or the
// multiplier, which it only reads (its own batch stride may be 0, one for every entry).
template <class T>
std::pair<BlockEpilogue<T>, T*> epilogue_of(const GemmArgs& g, int64_t bi) {
  if (g.activation)
    return {block_activation<T>(*g.activation),
            g.derivative ? static_cast<T*>(g.derivative) + bi * g.stride_c : nullptr};
  if (g.multiplier)
    return {block_multiplier<T>(), const_cast<T*>(static_cast<const T*>(g.multiplier)) + bi * g.stride_multiplier};
  return {nullptr, nullptr};
}

// One single-threaded BLAS call on rows [r0, r1) and columns [c0, c1) of C for batch entry bi.
template <class T>
void gemm_block(const GemmArgs& g, int64_t bi, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
  const T* A = static_cast<const T*>(g.a) + bi * g.stride_a + (g.trans_a ? r0 : r0 * g.lda);
  const T* B = static_cast<const T*>(g.b) + bi * g.stride_b + (g.trans_b ? c0 * g.ldb : c0);
  T* C = static_cast<T*>(g.c) + bi * g.stride_c + r0 * g.ldc + c0;
  const T* bias = g.bias ? static_cast<const T*>(g.bias) + c0 : nullptr;
  auto [epilogue, aux] = epilogue_of<T>(g, bi);
  if (aux) aux += r0 * g.ldc + c0;
  const auto ta = g.trans_a ? CblasTrans : CblasNoTrans;
  const auto tb = g.trans_b ? CblasTrans : CblasNoTrans;
  if (gemm_skinny<T>(g.trans_a, g.trans_b, r1 - r0, c1 - c0, g.k, T(g.alpha), A, g.lda, B, g.ldb, T(g.beta), C, g.ldc,
                     bias)) {
    if (epilogue) epilogue(C, aux, g.ldc, r1 - r0, c1 - c0);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (sgemm_avx512_supported() && r1 - r0 >= sgemm_avx512_min_m && c1 - c0 >= sgemm_avx512_min_n &&
        g.k >= sgemm_avx512_min_k)
      return sgemm_avx512(g.trans_a, g.trans_b, r1 - r0, c1 - c0, g.k, float(g.alpha), A, g.lda, B, g.ldb,
                          float(g.beta), C, g.ldc, bias, epilogue, aux);
  }
  // BLAS has no bias: this block of C starts as the bias rows, which the product then adds to
  // (filled here, inside the block's task, so that it splits across threads with the product).
  double beta = g.beta;
  if (bias) {
    for (int64_t r = 0; r < r1 - r0; ++r) std::copy(bias, bias + (c1 - c0), C + r * g.ldc);
    beta = 1.0;
  }
  if constexpr (std::is_same_v<T, float>) {
    cblas_sgemm(CblasRowMajor, ta, tb, int(r1 - r0), int(c1 - c0), int(g.k), float(g.alpha), A, int(g.lda), B,
                int(g.ldb), float(beta), C, int(g.ldc));
  } else {
    cblas_dgemm(CblasRowMajor, ta, tb, int(r1 - r0), int(c1 - c0), int(g.k), g.alpha, A, int(g.lda), B, int(g.ldb),
                beta, C, int(g.ldc));
  }
  // Inside the block's task, while its rows are still in this core's cache.
  if (epilogue) epilogue(C, aux, g.ldc, r1 - r0, c1 - c0);
}

// The engine's pool splits the work (batch entries, then row or column blocks of C) and every
// BLAS call runs single-threaded: OpenBLAS's own threads would compete with the pool's for the
// same cores, and a batch of small GEMMs parallelises better across entries than inside each.
//
// Below kParallelGemmFlops a GEMM runs on the calling thread, where the pool's hand-off would
// be a large part of its few microseconds; above it even OpenBLAS's narrow GEMMs (a toy2d
// network's 2-column output layer, k = 2 in its gradient) gain from a second core. (Lowering
// it to 0.25 MFLOP made no difference measurable on the toy2d MeanFlow step.) A product that
// touches kParallelGemmValues values or more splits however few its FLOPs: a skinny one runs at
// the speed of memory (768 x 256 x 2, 0.8 MFLOP, writes 768 KiB of C in about 40 us on one core).
constexpr double kParallelGemmFlops = 1e6, kParallelGemmValues = 65536;

// Whether the threads compute an f32 product together (sgemm_avx512_shared), taking its rows in
// pieces, rather than one fixed block of rows each. A thread slowed by another process on its
// core, or by a cold cache, then leaves rows to the others instead of keeping them waiting:
// alternating the two per call in the 2-thread toy2d MeanFlow step on a busy host, the
// products took 0.5-8% less time this way (even with the fixed blocks on a quiet one). It
// takes products whose every piece would run the AVX-512 kernel (not the skinny loops), and
// whose packed op(B), which each thread keeps whole, fits in kSharedRowsPackedB bytes.
constexpr double kSharedRowsPackedB = 1 << 20;
// Rows a thread takes at a time from its own range and from another's: 4 and 2 register tiles
// (a B panel loaded into L1 serves at least that many).
constexpr int64_t kOwnPieceRows = 48, kStolenPieceRows = 24;

bool shares_rows(const GemmArgs& g) {
  return sgemm_avx512_supported() && g.m >= 2 * sgemm_avx512_min_m && g.m < (int64_t(1) << 31) &&
         g.n >= sgemm_avx512_min_n && g.k > kSkinnyExtent && g.k >= sgemm_avx512_min_k &&
         double(g.n + 31) * double(g.k) * sizeof(float) <= kSharedRowsPackedB;
}

void gemm_shared_rows(const GemmArgs& g, int threads) {
  RowShares rows(g.m, threads, kOwnPieceRows, kStolenPieceRows);
  const float* bias = static_cast<const float*>(g.bias);
  const auto [epilogue, aux] = epilogue_of<float>(g, 0);
  // One chunk per share; if the pool runs them all on the calling thread, the first takes every
  // row and the others find none.
  parallel_for_chunks(threads, threads, [&](int64_t begin, int64_t end) {
    for (int64_t self = begin; self < end; ++self)
      sgemm_avx512_shared(g.trans_a, g.trans_b, g.m, g.n, g.k, float(g.alpha), static_cast<const float*>(g.a), g.lda,
                          static_cast<const float*>(g.b), g.ldb, float(g.beta), static_cast<float*>(g.c), g.ldc, bias,
                          epilogue, aux, rows, int(self));
  });
}

template <class T>
void gemm_parallel(const GemmArgs& g) {
  const int threads = num_threads();
  const double flops = 2.0 * double(g.m) * double(g.n) * double(g.k) * double(g.batch);
  const double values =
      (double(g.m) * double(g.k) + double(g.k) * double(g.n) + double(g.m) * double(g.n)) * double(g.batch);
  const bool parallel = flops >= kParallelGemmFlops || values >= kParallelGemmValues;
  int64_t splits = 1;
  if (threads > 1 && parallel && g.batch < threads) splits = (threads + g.batch - 1) / g.batch;
  const bool split_rows = g.m >= g.n;
  const int64_t extent = split_rows ? g.m : g.n;
  splits = std::max<int64_t>(1, std::min<int64_t>(splits, extent / 16));
  if constexpr (std::is_same_v<T, float>) {
    if (splits > 1 && g.batch == 1 && split_rows && shares_rows(g)) return gemm_shared_rows(g, threads);
  }
  const int64_t tasks = g.batch * splits;
  const int64_t grain = parallel ? 1 : tasks;  // small work stays on the calling thread
  parallel_for(tasks, grain, [&](int64_t begin, int64_t end) {
    for (int64_t task = begin; task < end; ++task) {
      const int64_t bi = task / splits, part = task % splits;
      const int64_t lo = extent * part / splits, hi = extent * (part + 1) / splits;
      if (split_rows) gemm_block<T>(g, bi, lo, hi, 0, g.n);
      else gemm_block<T>(g, bi, 0, g.m, lo, hi);
    }
  });
}

void gemm(int, const GemmArgs& g) {
  if (g.dtype == DType::f32) return gemm_parallel<float>(g);
  if (g.dtype == DType::f64) return gemm_parallel<double>(g);
  if ((g.dtype == DType::bf16 || g.dtype == DType::f16) && (g.derivative || g.multiplier))
    throw std::runtime_error("cpu backend: gemm: an activation's derivative and a multiplier are for f32 and f64 only");
  if (g.dtype == DType::bf16) return gemm_half<bf16_t>(g);
  if (g.dtype == DType::f16) return gemm_half<f16_t>(g);
}

}  // namespace

void register_gemm(Backend& b) {
  choose_blas_kernels();        // before the first GEMM
  openblas_set_num_threads(1);  // see gemm_parallel
  b.gemm = gemm;
  b.gemm_activations = true;
  b.gemm_multipliers = true;
}

}  // namespace dualflow::cpu
