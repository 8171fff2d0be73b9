// Internal to kernels/cuda: device-side helpers shared by the .cu files: compute/storage type
// maps that mirror the CPU backend, launch geometry, dtype dispatch and warp/block reductions.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "kernels/common/backend.h"
#include "kernels/common/half.h"
#include "kernels/cuda/cuda_backend.h"

namespace dualflow::gpu {

// ---- types ----

using dualflow::Compute;  // one definition, kernels/common/scalar_ops.h
using dualflow::store_as;

template <class T>
constexpr bool is_half_v = std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>;
template <class T>
constexpr bool is_float_like_v = std::is_floating_point_v<T> || is_half_v<T>;

// Double/int64 value -> T as the CPU's fills do (16-bit floats through float).
template <class T>
__host__ __device__ __forceinline__ T from_double(double v) {
  if constexpr (is_half_v<T>) return T(float(v));
  else if constexpr (std::is_same_v<T, bool>) return v != 0.0;
  else return T(v);
}

// ---- launch geometry ----

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items (kernels loop, so the grid may be capped).
inline unsigned grid_for(int64_t n, int threads = kThreads) {
  int64_t blocks = (n + threads - 1) / threads;
  return unsigned(std::clamp<int64_t>(blocks, 1, int64_t(1) << 20));
}

__device__ __forceinline__ int64_t global_index() {
  return int64_t(blockIdx.x) * int64_t(blockDim.x) + int64_t(threadIdx.x);
}
__device__ __forceinline__ int64_t grid_stride() { return int64_t(gridDim.x) * int64_t(blockDim.x); }

// ---- dtype dispatch (host) ----

[[noreturn]] inline void unsupported(const char* what, DType t) {
  throw std::runtime_error(std::string("cuda backend: ") + what + " does not support dtype " +
                           std::string(dtype_name(t)));
}

template <class F>
void dispatch_all(DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::bf16: f.template operator()<bf16_t>(); return;
    case DType::f16: f.template operator()<f16_t>(); return;
    case DType::i64: f.template operator()<int64_t>(); return;
    case DType::i32: f.template operator()<int32_t>(); return;
    case DType::b8: f.template operator()<bool>(); return;
  }
  unsupported("dispatch", t);
}

template <class F>
void dispatch_floating(const char* what, DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    case DType::bf16: f.template operator()<bf16_t>(); return;
    case DType::f16: f.template operator()<f16_t>(); return;
    default: unsupported(what, t);
  }
}

// The unsigned integer type with T's size, for kernels that just move bits.
template <size_t S>
struct BitsOf;
template <>
struct BitsOf<1> {
  using type = uint8_t;
};
template <>
struct BitsOf<2> {
  using type = uint16_t;
};
template <>
struct BitsOf<4> {
  using type = uint32_t;
};
template <>
struct BitsOf<8> {
  using type = uint64_t;
};
template <class T>
using bits_t = typename BitsOf<sizeof(T)>::type;

// Dispatch on element size only, for kernels that just move bits.
template <class F>
void dispatch_bits(DType t, F&& f) {
  switch (dtype_size(t)) {
    case 1: f.template operator()<uint8_t>(); return;
    case 2: f.template operator()<uint16_t>(); return;
    case 4: f.template operator()<uint32_t>(); return;
    case 8: f.template operator()<uint64_t>(); return;
    default: unsupported("dispatch_bits", t);
  }
}

// ---- warp / block reductions ----
// `op(a, b)` combines two partial values; every thread of the block must call these, and
// blockDim.x must be a multiple of 32.

template <class V>
__device__ __forceinline__ V shfl_xor(V v, int lane_mask) {
  if constexpr (sizeof(V) <= 8 && std::is_arithmetic_v<V>) {
    return __shfl_xor_sync(0xffffffffu, v, lane_mask);
  } else {
    return V::shfl_xor(v, lane_mask);
  }
}

template <class V, class Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

// Reduces over the block; every thread gets the result. `scratch` holds >= 33 values in
// shared memory; it may be reused by the next call (the call starts with a barrier).
template <class V, class Op>
__device__ V block_reduce(V v, Op op, V* scratch) {
  v = warp_reduce(v, op);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nwarps = int(blockDim.x + 31) >> 5;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (threadIdx.x == 0) {
    V acc = scratch[0];
    for (int w = 1; w < nwarps; ++w) acc = op(acc, scratch[w]);
    scratch[32] = acc;
  }
  __syncthreads();
  return scratch[32];
}

struct SumOp {
  template <class V>
  __device__ __forceinline__ V operator()(V a, V b) const {
    return a + b;
  }
};

}  // namespace dualflow::gpu
