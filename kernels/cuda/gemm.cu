// CUDA GEMM through cuBLAS: the row-major C = op(A) op(B) of GemmArgs is the column-major
// C^T = op(B)^T op(A)^T, one cublasGemmStridedBatchedEx call for the whole batch. f32 (TF32
// tensor cores when enabled), f64, and bf16/f16 with f32 accumulation.
#include <atomic>
#include <climits>
#include <mutex>
#include <string>

#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {

namespace {

std::atomic<bool> g_tf32{false};

struct HandleSlot {
  std::once_flag once;
  cublasHandle_t handle = nullptr;
};

// Leaked on purpose: handles must outlive tensors destroyed during static destruction.
HandleSlot* handle_slots() {
  static HandleSlot* slots = new HandleSlot[kMaxDevices];
  return slots;
}

}  // namespace

void set_cuda_tf32(bool on) { g_tf32.store(on, std::memory_order_relaxed); }
bool cuda_tf32() { return g_tf32.load(std::memory_order_relaxed); }

cublasHandle_t cublas_handle(int device) {
  cudaStream_t s = stream(device);  // validates the index and makes the device current
  HandleSlot& slot = handle_slots()[device];
  std::call_once(slot.once, [&] {
    cublasHandle_t h = nullptr;
    CUBLAS_CHECK(cublasCreate(&h));
    cublasStatus_t st = cublasSetStream(h, s);
    if (st != CUBLAS_STATUS_SUCCESS) {
      cublasDestroy(h);
      CUBLAS_CHECK(st);
    }
    slot.handle = h;
  });
  return slot.handle;
}

namespace {

// out[b, r, c] = beta * out[b, r, c] (0 when beta == 0, never reading out) for r < m, c < n;
// with a bias row, out[b, r, c] = bias[c] instead.
template <class T>
__global__ void initialise_c(T* c, int64_t m, int64_t n, int64_t ldc, int64_t stride_c, int64_t batch, double beta,
                             const T* bias) {
  const int64_t total = batch * m * n;
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t col = p % n, q = p / n, row = q % m, b = q / m;
    T* e = c + b * stride_c + row * ldc + col;
    using Cm = std::conditional_t<std::is_same_v<T, double>, double, float>;
    *e = bias ? bias[col] : beta == 0.0 ? T(Cm(0)) : T(Cm(beta) * Cm(*e));
  }
}

void gemm(int device, const GemmArgs& g) {
  // This backend leaves gemm_activations and gemm_multipliers unset: the engine runs the
  // activation and the product as their own ops.
  if (g.activation)
    throw std::runtime_error("cuda backend: gemm applies no activation to its output (gemm_activations is false)");
  if (g.multiplier)
    throw std::runtime_error("cuda backend: gemm applies no multiplier to its output (gemm_multipliers is false)");
  if (g.m <= 0 || g.n <= 0 || g.batch <= 0) return;
  // C = beta * C, or the bias rows: all of C when k is 0 (alpha * empty product = 0), and
  // the bias for cuBLAS (which has no bias operand) to add the product onto with beta = 1.
  if (g.k <= 0 || g.bias) {
    dispatch_floating("gemm", g.dtype, [&]<class T>() {
      initialise_c<T><<<grid_for(g.batch * g.m * g.n), kThreads, 0, stream(device)>>>(
          static_cast<T*>(g.c), g.m, g.n, g.ldc, g.stride_c, g.batch, g.beta, static_cast<const T*>(g.bias));
      CUDA_CHECK_LAUNCH();
    });
    if (g.k <= 0) return;
  }
  cudaDataType_t data_type;
  cublasComputeType_t compute;
  bool f64 = false;
  switch (g.dtype) {
    case DType::f32:
      data_type = CUDA_R_32F;
      compute = (g.allow_tf32 || cuda_tf32()) ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
      break;
    case DType::f64:
      data_type = CUDA_R_64F;
      compute = CUBLAS_COMPUTE_64F;
      f64 = true;
      break;
    case DType::bf16:
      data_type = CUDA_R_16BF;
      compute = CUBLAS_COMPUTE_32F;
      break;
    case DType::f16:
      data_type = CUDA_R_16F;
      compute = CUBLAS_COMPUTE_32F;
      break;
    default: unsupported("gemm", g.dtype);
  }
  const double beta_d = g.bias ? 1.0 : g.beta;
  const float alpha_f = float(g.alpha), beta_f = float(beta_d);
  const void* alpha = f64 ? static_cast<const void*>(&g.alpha) : static_cast<const void*>(&alpha_f);
  const void* beta = f64 ? static_cast<const void*>(&beta_d) : static_cast<const void*>(&beta_f);

  // Column-major view: C^T [n x m] = op(B)^T [n x k] * op(A)^T [k x m]. A row-major matrix with
  // leading dim ld is its own transpose in column-major with the same ld, so B goes first with
  // B's transpose flag and A second with A's.
  const cublasOperation_t op_first = g.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = g.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasHandle_t h = cublas_handle(device);
  const bool fits_int = g.m <= INT_MAX && g.n <= INT_MAX && g.k <= INT_MAX && g.lda <= INT_MAX && g.ldb <= INT_MAX &&
                        g.ldc <= INT_MAX && g.batch <= INT_MAX;
  if (fits_int) {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, op_first, op_second, int(g.n), int(g.m), int(g.k), alpha, g.b, data_type,
                                            int(g.ldb), (long long)g.stride_b, g.a, data_type, int(g.lda),
                                            (long long)g.stride_a, beta, g.c, data_type, int(g.ldc),
                                            (long long)g.stride_c, int(g.batch), compute, CUBLAS_GEMM_DEFAULT));
  } else {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(h, op_first, op_second, g.n, g.m, g.k, alpha, g.b, data_type, g.ldb,
                                               (long long)g.stride_b, g.a, data_type, g.lda, (long long)g.stride_a,
                                               beta, g.c, data_type, g.ldc, (long long)g.stride_c, g.batch, compute,
                                               CUBLAS_GEMM_DEFAULT));
  }
}

}  // namespace

void register_gemm(Backend& b) { b.gemm = gemm; }

}  // namespace dualflow::gpu
