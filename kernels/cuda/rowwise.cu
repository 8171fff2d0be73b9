// CUDA row kernels, one block per row: softmax, log-softmax and logsumexp with the row max
// subtracted (exp through scalar::fast_exp like the CPU; the exp-sum accumulated in double), and
// layer/RMS normalisation with mean and variance accumulated in double (two passes).
#include <cmath>

#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

constexpr int kMaxRowThreads = 512;

// Threads per row block: a power of two from 32 to kMaxRowThreads, about one per column.
int row_threads(int64_t cols) {
  int t = 32;
  while (t < kMaxRowThreads && t < cols) t *= 2;
  return t;
}

// Max as the CPU's std::max(acc, v) = acc < v ? v : acc; a NaN v never enters the accumulator.
struct MaxOp {
  template <class V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return a < b ? b : a;
  }
};

template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    rowwise_kernel(RowOp op, const T* in, T* out, int64_t rows, int64_t cols) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ C cscratch[33];
  __shared__ double dscratch[33];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* x = in + row * cols;
    C mx = C(-INFINITY);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const C v = C(x[i]);
      mx = mx < v ? v : mx;
    }
    mx = block_reduce(mx, MaxOp{}, cscratch);
    if (mx == C(-INFINITY)) mx = C(0);  // all -inf row: avoid inf - inf (+inf stays, as on the CPU)
    double s = 0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += double(scalar::fast_exp<C>(C(x[i]) - mx));
    s = block_reduce(s, SumOp{}, dscratch);
    const C lse = C(log(s)) + mx;
    if (op == RowOp::LogSumExp) {
      if (threadIdx.x == 0) out[row] = T(lse);
      continue;
    }
    T* y = out + row * cols;
    if (op == RowOp::LogSoftmax) {
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) y[i] = T(C(x[i]) - lse);
    } else {
      const C inv = C(1.0 / s);
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) y[i] = T(scalar::fast_exp<C>(C(x[i]) - mx) * inv);
    }
  }
}

void rowwise(int device, RowOp op, DType t, const void* in, void* out, int64_t rows, int64_t cols) {
  if (rows <= 0) return;
  dispatch_floating("rowwise", t, [&]<class T>() {
    rowwise_kernel<T><<<grid_for(rows, 1), row_threads(cols), 0, stream(device)>>>(op, static_cast<const T*>(in),
                                                                                   static_cast<T*>(out), rows, cols);
    CUDA_CHECK_LAUNCH();
  });
}

template <class T>
__global__ void __launch_bounds__(kMaxRowThreads)
    normalize_kernel(const T* x, const T* w, const T* bias, T* y, int64_t rows, int64_t cols, double eps, bool rms) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  __shared__ double scratch[33];
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * cols;
    T* yr = y + row * cols;
    double mean = 0;
    if (!rms) {
      double s = 0;
      for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) s += double(xr[i]);
      mean = block_reduce(s, SumOp{}, scratch) / double(cols);
    }
    double var = 0;
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      const double d = double(xr[i]) - mean;
      var += d * d;
    }
    var = block_reduce(var, SumOp{}, scratch) / double(cols);
    const C rstd = C(1.0 / sqrt(var + eps));
    const C m = C(mean);
    for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
      C v = (C(xr[i]) - m) * rstd;
      if (w) v *= C(w[i]);
      if (bias) v += C(bias[i]);
      yr[i] = T(v);
    }
  }
}

void normalize_rows(int device, DType t, const void* x, const void* w, const void* b, void* y, int64_t rows,
                    int64_t cols, double eps, bool rms) {
  if (rows <= 0) return;
  dispatch_floating("normalize_rows", t, [&]<class T>() {
    normalize_kernel<T><<<grid_for(rows, 1), row_threads(cols), 0, stream(device)>>>(
        static_cast<const T*>(x), static_cast<const T*>(w), static_cast<const T*>(b), static_cast<T*>(y), rows, cols,
        eps, rms);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_rowwise(Backend& b) {
  b.rowwise = rowwise;
  b.normalize_rows = normalize_rows;
}

}  // namespace dualflow::gpu
