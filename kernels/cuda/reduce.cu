// CUDA reductions over the middle dim of a contiguous [outer, r, inner] block. Sums accumulate
// in double (floats) or int64 (integers); max/min/argmax/argmin keep the first extreme and let
// the first NaN win, as the CPU backend does. Rows (inner == 1) reduce with a warp or a block per
// row; columns (inner > 1) with 32 columns x 8 row-slices per block. When there are too few
// outputs to fill the GPU, r is split over blocks and a second kernel combines the partials.
#include <cmath>

#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

// ---- reduction kinds: init / add one element / combine partials / store ----

template <class T>
struct SumKind {
  using Acc = std::conditional_t<is_float_like_v<T>, double, int64_t>;
  struct State {
    Acc v;
    static __device__ __forceinline__ State shfl_xor(State s, int m) {
      return State{__shfl_xor_sync(0xffffffffu, s.v, m)};
    }
  };
  __device__ __forceinline__ State init() const { return State{Acc(0)}; }
  __device__ __forceinline__ State add(State s, T x, int64_t) const { return State{s.v + Acc(x)}; }
  __device__ __forceinline__ State combine(State a, State b) const { return State{a.v + b.v}; }
  __device__ __forceinline__ void store(void* out, int64_t pos, State s) const {
    T* o = static_cast<T*>(out);
    if constexpr (std::is_same_v<T, double>) o[pos] = s.v;
    else if constexpr (is_float_like_v<T>) o[pos] = T(float(s.v));
    else o[pos] = T(s.v);  // integers wrap like the CPU's T(int64); bool: nonzero
  }
};

// Max, Min, ArgMax, ArgMin. `i` is the index along r of the value kept; -1 while empty.
template <class T>
struct ExtremeKind {
  using C = std::conditional_t<is_float_like_v<T>, double, int64_t>;
  struct State {
    C v;
    int64_t i;
    static __device__ __forceinline__ State shfl_xor(State s, int m) {
      return State{__shfl_xor_sync(0xffffffffu, s.v, m), __shfl_xor_sync(0xffffffffu, s.i, m)};
    }
  };
  bool is_max;
  bool arg;

  // The CPU's rule for replacing `best` by a later `v`: NaN wins (first NaN kept), else strictly better.
  __device__ __forceinline__ bool better(C v, C best) const {
    if (v != v) return !(best != best);
    if (best != best) return false;
    return is_max ? v > best : v < best;
  }
  __device__ __forceinline__ State init() const { return State{C(0), -1}; }
  // Elements reach a thread in increasing index order.
  __device__ __forceinline__ State add(State s, T x, int64_t i) const {
    const C v = C(x);
    if (s.i < 0 || better(v, s.v)) return State{v, i};
    return s;
  }
  // Order-free: the earlier index is kept unless the later one is strictly better, which gives
  // the sequential result whatever subsets the partials came from.
  __device__ __forceinline__ State combine(State a, State b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    if (b.i < a.i) {
      State t = a;
      a = b;
      b = t;
    }
    return better(b.v, a.v) ? b : a;
  }
  __device__ __forceinline__ void store(void* out, int64_t pos, State s) const {
    if (arg) {
      static_cast<int64_t*>(out)[pos] = s.i < 0 ? 0 : s.i;
      return;
    }
    T* o = static_cast<T*>(out);
    if constexpr (is_half_v<T>) o[pos] = T(float(s.v));
    else o[pos] = T(s.v);
  }
};

template <class K>
struct CombineOp {
  K k;
  template <class S>
  __device__ __forceinline__ S operator()(S a, S b) const {
    return k.combine(a, b);
  }
};

// ---- inner == 1 ----

constexpr int kWarpRowLimit = 512;  // rows up to this length take one warp each

template <class T, class K>
__global__ void __launch_bounds__(kThreads) reduce_rows_warp(const T* in, void* out, int64_t outer, int64_t r, K k) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x / 32;
  const int64_t step = int64_t(gridDim.x) * warps_per_block;
  for (int64_t row = int64_t(blockIdx.x) * warps_per_block + threadIdx.x / 32; row < outer; row += step) {
    const T* x = in + row * r;
    auto s = k.init();
    for (int64_t i = lane; i < r; i += 32) s = k.add(s, x[i], i);
    s = warp_reduce(s, CombineOp<K>{k});
    if (lane == 0) k.store(out, row, s);
  }
}

// One block per segment: segment g covers row g / splits, elements [c * chunk, (c + 1) * chunk)
// with c = g % splits. With splits == 1 the block stores the result; otherwise its partial.
template <class T, class K>
__global__ void __launch_bounds__(kThreads)
    reduce_rows_block(const T* in, void* out, typename K::State* partial, int64_t outer, int64_t r, int64_t splits,
                      int64_t chunk, K k) {
  __shared__ typename K::State scratch[33];
  const int64_t segments = outer * splits;
  for (int64_t g = blockIdx.x; g < segments; g += gridDim.x) {
    const int64_t row = g / splits, c = g % splits;
    const int64_t begin = c * chunk, end = begin + chunk < r ? begin + chunk : r;
    const T* x = in + row * r;
    auto s = k.init();
    for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) s = k.add(s, x[i], i);
    s = block_reduce(s, CombineOp<K>{k}, scratch);
    if (threadIdx.x == 0) {
      if (splits == 1) k.store(out, row, s);
      else partial[g] = s;
    }
  }
}

// ---- inner > 1 ----

constexpr int kColTile = 32, kColSlices = 8;

// Block (32, 8): 32 adjacent columns of one outer index, rows of r split over the 8 slices
// and over `splits` blocks (blockIdx.y). Partials are stored at [(o * inner + col) * splits + y].
template <class T, class K>
__global__ void __launch_bounds__(kColTile* kColSlices)
    reduce_cols(const T* in, void* out, typename K::State* partial, int64_t outer, int64_t r, int64_t inner,
                int64_t splits, K k) {
  __shared__ typename K::State scratch[kColSlices][kColTile];
  const int64_t col_tiles = (inner + kColTile - 1) / kColTile;
  const int64_t tiles = outer * col_tiles;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t split = blockIdx.y;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t o = tile / col_tiles;
    const int64_t col = (tile % col_tiles) * kColTile + tx;
    auto s = k.init();
    if (col < inner) {
      const T* base = in + o * r * inner + col;
      for (int64_t i = split * kColSlices + ty; i < r; i += splits * kColSlices) s = k.add(s, base[i * inner], i);
    }
    __syncthreads();  // scratch is free (previous tile done)
    scratch[ty][tx] = s;
    __syncthreads();
    if (ty == 0 && col < inner) {
      for (int y = 1; y < kColSlices; ++y) s = k.combine(s, scratch[y][tx]);
      const int64_t pos = o * inner + col;
      if (splits == 1) k.store(out, pos, s);
      else partial[pos * splits + split] = s;
    }
  }
}

// ---- partials ----

// One warp per output: combines partial[pos * splits .. + splits) and stores out[pos].
template <class K>
__global__ void __launch_bounds__(kThreads)
    combine_partials(const typename K::State* partial, void* out, int64_t outputs, int64_t splits, K k) {
  const int lane = threadIdx.x & 31;
  const int64_t warps_per_block = blockDim.x / 32;
  const int64_t step = int64_t(gridDim.x) * warps_per_block;
  for (int64_t pos = int64_t(blockIdx.x) * warps_per_block + threadIdx.x / 32; pos < outputs; pos += step) {
    auto s = k.init();
    for (int64_t j = lane; j < splits; j += 32) s = k.combine(s, partial[pos * splits + j]);
    s = warp_reduce(s, CombineOp<K>{k});
    if (lane == 0) k.store(out, pos, s);
  }
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

template <class T, class K>
void reduce_with(int device, const T* in, void* out, int64_t outer, int64_t r, int64_t inner, K k) {
  using State = typename K::State;
  cudaStream_t s = stream(device);
  const int64_t target_blocks = 4 * int64_t(sm_count(device));  // enough blocks to fill the GPU
  const int64_t outputs = outer * inner;
  if (inner == 1 && r <= kWarpRowLimit) {
    const int64_t warps_per_block = kThreads / 32;
    reduce_rows_warp<T, K><<<grid_for(outer, int(warps_per_block)), kThreads, 0, s>>>(in, out, outer, r, k);
    CUDA_CHECK_LAUNCH();
    return;
  }
  State* partial = nullptr;
  int64_t splits = 1;
  if (inner == 1) {
    if (outer < target_blocks) {
      // Each block should still see a few thousand elements.
      splits = std::min(ceil_div(target_blocks, outer), ceil_div(r, int64_t(kThreads) * 16));
      splits = std::max<int64_t>(splits, 1);
    }
    const int64_t chunk = ceil_div(r, splits);
    splits = ceil_div(r, chunk);  // no empty segment
    if (splits > 1) partial = static_cast<State*>(device_alloc(device, size_t(outputs * splits) * sizeof(State)));
    reduce_rows_block<T, K>
        <<<grid_for(outer * splits, 1), kThreads, 0, s>>>(in, out, partial, outer, r, splits, chunk, k);
    CUDA_CHECK_LAUNCH();
  } else {
    const int64_t tiles = outer * ceil_div(inner, kColTile);
    if (tiles < target_blocks) {
      splits = std::min(ceil_div(target_blocks, tiles), ceil_div(r, int64_t(kColSlices) * 64));
      splits = std::clamp<int64_t>(splits, 1, 65535);
    }
    if (splits > 1) partial = static_cast<State*>(device_alloc(device, size_t(outputs * splits) * sizeof(State)));
    dim3 grid(grid_for(tiles, 1), unsigned(splits));
    reduce_cols<T, K><<<grid, dim3(kColTile, kColSlices), 0, s>>>(in, out, partial, outer, r, inner, splits, k);
    CUDA_CHECK_LAUNCH();
  }
  if (partial) {
    combine_partials<K><<<grid_for(outputs, kThreads / 32), kThreads, 0, s>>>(partial, out, outputs, splits, k);
    // Stream-ordered: a later allocation that reuses the block runs after this kernel.
    device_free(device, partial, size_t(outputs * splits) * sizeof(State));
    CUDA_CHECK_LAUNCH();
  }
}

void reduce(int device, ReduceOp op, DType t, const void* in, void* out, int64_t outer, int64_t r, int64_t inner) {
  if (outer <= 0 || inner <= 0) return;
  dispatch_all(t, [&]<class T>() {
    const T* x = static_cast<const T*>(in);
    if (op == ReduceOp::Sum) {
      reduce_with(device, x, out, outer, r, inner, SumKind<T>{});
    } else {
      const bool is_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
      const bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
      reduce_with(device, x, out, outer, r, inner, ExtremeKind<T>{is_max, arg});
    }
  });
}

}  // namespace

void register_reduce(Backend& b) { b.reduce = reduce; }

}  // namespace dualflow::gpu
