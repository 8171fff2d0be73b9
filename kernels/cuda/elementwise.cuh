// Internal to kernels/cuda: the elementwise launcher shared by elementwise.cu and
// elementwise_unary.cu. A functor gets the element offsets of its N operands (operand 0 is the
// output) and does one element; the launcher picks a contiguous or a strided kernel.
#pragma once
#include <climits>

#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {

// Offsets for one linear index of the layout. The index is split over dims last to first;
// dim 0 takes the remainder so a 1-d layout needs no division. `Index` is the type the
// division runs in (32-bit when the layout has fewer than 2^31 elements: much cheaper).
template <int N, class Index>
__device__ __forceinline__ void layout_offsets(const ElemLayout& l, Index i, int64_t* off) {
#pragma unroll
  for (int k = 0; k < N; ++k) off[k] = 0;
  Index rem = i;
  for (int d = l.ndim - 1; d > 0; --d) {
    const Index size = Index(l.sizes[d]);
    const Index c = rem % size;
    rem /= size;
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += int64_t(c) * l.strides[k][d];
  }
  if (l.ndim > 0) {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] += int64_t(rem) * l.strides[k][0];
  }
}

template <int N, class F>
__global__ void __launch_bounds__(kThreads) elementwise_strided(F f, ElemLayout l, int64_t n) {
  int64_t off[N];
  if (n <= int64_t(INT32_MAX)) {
    const uint32_t step = gridDim.x * blockDim.x;
    for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < uint32_t(n); i += step) {
      layout_offsets<N, uint32_t>(l, i, off);
      f(off);
    }
  } else {
    for (int64_t i = global_index(); i < n; i += grid_stride()) {
      layout_offsets<N, int64_t>(l, i, off);
      f(off);
    }
  }
}

template <int N, class F>
__global__ void __launch_bounds__(kThreads) elementwise_contiguous(F f, int64_t n) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    int64_t off[N];
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = i;
    f(off);
  }
}

// True when every operand walks the layout densely (a single dim of stride 1, or a scalar).
inline bool layout_contiguous(const ElemLayout& l, int n_operands) {
  if (l.ndim == 0) return true;
  if (l.ndim != 1) return false;
  for (int k = 0; k < n_operands; ++k)
    if (l.strides[k][0] != 1) return false;
  return true;
}

template <int N, class F>
void launch_elementwise(int device, const ElemLayout& l, const F& f) {
  const int64_t n = l.numel();
  if (n <= 0) return;
  cudaStream_t s = stream(device);
  if (layout_contiguous(l, N)) {
    elementwise_contiguous<N, F><<<grid_for(n), kThreads, 0, s>>>(f, n);
  } else {
    elementwise_strided<N, F><<<grid_for(n), kThreads, 0, s>>>(f, l, n);
  }
  CUDA_CHECK_LAUNCH();
}

// Defined in elementwise_unary.cu, registered by elementwise.cu.
void unary(int device, UnaryOp op, DType t, const void* x, void* y, const ElemLayout& l, double a, double b);
void unary_backward(int device, UnaryOp op, DType t, const void* g, const void* x, void* out, const ElemLayout& l,
                    double a, double b);

}  // namespace dualflow::gpu
