// CUDA indexing kernels along one dim of a contiguous [outer, n, inner] block: index_select and
// gather (pure data movement, dispatched on element size), index_add and scatter_add (atomic
// adds: native for f32/f64/i32/i64, a 32-bit compare-and-swap loop for bf16/f16, a plain store
// of true for bool), and the range check the engine runs before indexing.
#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

// ---- atomic add of one element ----

template <class H> __device__ __forceinline__ void atomic_add_half(H* addr, H v) {
  // CAS on the aligned 32-bit word holding the 16-bit value; rounds as the CPU's H(float + float).
  const uintptr_t a = reinterpret_cast<uintptr_t>(addr);
  unsigned int* word = reinterpret_cast<unsigned int*>(a & ~uintptr_t(3));
  const unsigned int shift = (a & 2u) ? 16u : 0u;
  const float add = float(v);
  unsigned int old = *word, assumed;
  do {
    assumed = old;
    const H cur = H::from_bits(uint16_t((assumed >> shift) & 0xffffu));
    const H sum = H(float(cur) + add);
    const unsigned int next = (assumed & ~(0xffffu << shift)) | (unsigned int)(sum.bits) << shift;
    old = atomicCAS(word, assumed, next);
  } while (old != assumed);
}

template <class T> __device__ __forceinline__ void atomic_add(T* addr, T v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double> || std::is_same_v<T, int32_t>) {
    atomicAdd(addr, v);
  } else if constexpr (std::is_same_v<T, int64_t>) {
    static_assert(sizeof(unsigned long long) == sizeof(int64_t));
    atomicAdd(reinterpret_cast<unsigned long long*>(addr), static_cast<unsigned long long>(v));  // wraps
  } else if constexpr (std::is_same_v<T, bool>) {
    if (v) *addr = true;  // dst || v: every racing writer stores the same value
  } else {
    atomic_add_half(addr, v);
  }
}

// ---- index_select / index_add ----

// out[o, j, i] = in[o, idx[j], i]
template <class U>
__global__ void index_select_kernel(const U* in, const int64_t* idx, U* out, int64_t total, int64_t n_in,
                                    int64_t n_idx, int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, q = p / inner, j = q % n_idx, o = q / n_idx;
    out[p] = in[(o * n_in + idx[j]) * inner + i];
  }
}

// out[o, idx[j], i] += src[o, j, i]
template <class T>
__global__ void index_add_kernel(const T* src, const int64_t* idx, T* out, int64_t total, int64_t n_out,
                                 int64_t n_idx, int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, q = p / inner, j = q % n_idx, o = q / n_idx;
    atomic_add(out + (o * n_out + idx[j]) * inner + i, src[p]);
  }
}

void index_select(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer,
                  int64_t n_in, int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_bits(t, [&]<class U>() {
    index_select_kernel<U><<<grid_for(total), kThreads, 0, stream(device)>>>(
        static_cast<const U*>(in), idx, static_cast<U*>(out), total, n_in, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

void index_add(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer,
               int64_t n_out, int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_all(t, [&]<class T>() {
    index_add_kernel<T><<<grid_for(total), kThreads, 0, stream(device)>>>(
        static_cast<const T*>(src), idx, static_cast<T*>(out), total, n_out, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- gather / scatter_add ----

// out[o, j, i] = in[o, idx[o, j, i], i]
template <class U>
__global__ void gather_kernel(const U* in, const int64_t* idx, U* out, int64_t total, int64_t n_in,
                              int64_t n_idx, int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, o = p / (n_idx * inner);
    out[p] = in[(o * n_in + idx[p]) * inner + i];
  }
}

// out[o, idx[o, j, i], i] += src[o, j, i]
template <class T>
__global__ void scatter_add_kernel(const T* src, const int64_t* idx, T* out, int64_t total, int64_t n_out,
                                   int64_t n_idx, int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, o = p / (n_idx * inner);
    atomic_add(out + (o * n_out + idx[p]) * inner + i, src[p]);
  }
}

void gather(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
            int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_bits(t, [&]<class U>() {
    gather_kernel<U><<<grid_for(total), kThreads, 0, stream(device)>>>(
        static_cast<const U*>(in), idx, static_cast<U*>(out), total, n_in, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

void scatter_add(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer,
                 int64_t n_out, int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_all(t, [&]<class T>() {
    scatter_add_kernel<T><<<grid_for(total), kThreads, 0, stream(device)>>>(
        static_cast<const T*>(src), idx, static_cast<T*>(out), total, n_out, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

// ---- range check ----

// *first = min position p with idx[p] outside [0, limit); *first starts above any position.
__global__ void find_out_of_range_kernel(const int64_t* idx, int64_t n, int64_t limit, unsigned long long* first) {
  for (int64_t p = global_index(); p < n; p += grid_stride()) {
    const int64_t v = idx[p];
    if (v < 0 || v >= limit) atomicMin(first, (unsigned long long)p);
  }
}

int64_t find_out_of_range(int device, const int64_t* idx, int64_t n, int64_t limit) {
  if (n <= 0) return -1;
  cudaStream_t s = stream(device);
  auto* first = static_cast<unsigned long long*>(device_alloc(device, sizeof(unsigned long long)));
  unsigned long long host = 0;
  try {
    CUDA_CHECK(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), s));  // ULLONG_MAX
    find_out_of_range_kernel<<<grid_for(n), kThreads, 0, s>>>(idx, n, limit, first);
    CUDA_CHECK_LAUNCH();
    CUDA_CHECK(cudaMemcpyAsync(&host, first, sizeof(host), cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  } catch (...) {
    device_free(device, first, sizeof(unsigned long long));
    throw;
  }
  device_free(device, first, sizeof(unsigned long long));
  return host < (unsigned long long)n ? int64_t(host) : -1;
}

}  // namespace

void register_indexing(Backend& b) {
  b.index_select = index_select;
  b.index_add = index_add;
  b.gather = gather;
  b.scatter_add = scatter_add;
  b.find_out_of_range = find_out_of_range;
}

}  // namespace dualflow::gpu
