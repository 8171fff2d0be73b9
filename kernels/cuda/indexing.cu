// CUDA indexing kernels along one dim of a contiguous [outer, n, inner] block: index_select and
// gather (pure data movement, dispatched on element size), index_add and scatter_add, and the
// range check the engine runs before indexing.
//
// The adds are deterministic and equal the CPU backend bit for bit: every output element is
// summed by one thread in the CPU's order (j ascending), never by racing atomics, whose order
// changes from run to run. That is what makes a CUDA run that resumes from a checkpoint repeat
// an uninterrupted one exactly: an embedding's gradient is an index_add with repeated indices.
// index_add sorts the indices once (CUB's stable radix sort keeps j ascending within a target),
// then a thread per (outer, target, inner) element walks its run of the sorted positions.
// scatter_add has a separate index per column, so a thread per (outer, inner) column walks j.
#include <cub/device/device_radix_sort.cuh>

#include <bit>

#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

// ---- one add, as the CPU's add_into rounds it ----

template <class T>
__device__ __forceinline__ T add_as_cpu(T acc, T v) {
  if constexpr (is_half_v<T>) return T(float(acc) + float(v));
  else if constexpr (std::is_same_v<T, bool>) return acc || v;
  else if constexpr (std::is_same_v<T, int64_t>)  // wraps, as the CPU's two's-complement add does
    return int64_t(static_cast<unsigned long long>(acc) + static_cast<unsigned long long>(v));
  else return T(acc + v);
}

// Device scratch freed on every path (kernels throw through CUDA_CHECK).
class Scratch {
 public:
  Scratch(int device, size_t bytes)
      : device_(device), bytes_(bytes), ptr_(bytes ? device_alloc(device, bytes) : nullptr) {}
  ~Scratch() {
    if (ptr_) device_free(device_, ptr_, bytes_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  int device_;
  size_t bytes_;
  void* ptr_;
};

// ---- index_select / index_add ----

// out[o, j, i] = in[o, idx[j], i]
template <class U>
__global__ void index_select_kernel(const U* in, const int64_t* idx, U* out, int64_t total, int64_t n_in, int64_t n_idx,
                                    int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, q = p / inner, j = q % n_idx, o = q / n_idx;
    out[p] = in[(o * n_in + idx[j]) * inner + i];
  }
}

__global__ void iota_kernel(int64_t* v, int64_t n) {
  for (int64_t p = global_index(); p < n; p += grid_stride()) v[p] = p;
}

// out[o, key, i] += src[o, j, i] for the positions j of each run of equal keys in `keys` (sorted,
// with `pos` the original positions, ascending within a run); the thread at a run's first entry
// sums the whole run, the others have nothing to do.
template <class T>
__global__ void index_add_runs_kernel(const T* src, const unsigned long long* keys, const int64_t* pos, T* out,
                                      int64_t total, int64_t n_out, int64_t n_idx, int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, q = p / inner, k = q % n_idx, o = q / n_idx;
    const unsigned long long key = keys[k];
    if (k > 0 && keys[k - 1] == key) continue;
    T* dst = out + (o * n_out + int64_t(key)) * inner + i;
    T acc = *dst;
    for (int64_t m = k; m < n_idx && keys[m] == key; ++m) acc = add_as_cpu(acc, src[(o * n_idx + pos[m]) * inner + i]);
    *dst = acc;
  }
}

void index_select(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
                  int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_bits(t, [&]<class U>() {
    index_select_kernel<U><<<grid_for(total), kThreads, 0, stream(device)>>>(
        static_cast<const U*>(in), idx, static_cast<U*>(out), total, n_in, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

void index_add(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
               int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  cudaStream_t s = stream(device);
  // The indices were range-checked, so they are in [0, n_out): sort them as unsigned keys on just
  // the bits that can be set.
  const auto* keys_in = reinterpret_cast<const unsigned long long*>(idx);
  const int end_bit = std::max(1, int(std::bit_width(uint64_t(std::max<int64_t>(n_out - 1, 1)))));
  const size_t n = size_t(n_idx);
  Scratch keys(device, n * sizeof(unsigned long long)), pos_in(device, n * sizeof(int64_t)),
      pos(device, n * sizeof(int64_t));
  size_t temp_bytes = 0;
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys_in, keys.as<unsigned long long>(),
                                             pos_in.as<int64_t>(), pos.as<int64_t>(), n_idx, 0, end_bit, s));
  Scratch temp(device, std::max<size_t>(temp_bytes, 1));
  iota_kernel<<<grid_for(n_idx), kThreads, 0, s>>>(pos_in.as<int64_t>(), n_idx);
  CUDA_CHECK_LAUNCH();
  CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as<void>(), temp_bytes, keys_in, keys.as<unsigned long long>(),
                                             pos_in.as<int64_t>(), pos.as<int64_t>(), n_idx, 0, end_bit, s));
  dispatch_all(t, [&]<class T>() {
    index_add_runs_kernel<T><<<grid_for(total), kThreads, 0, s>>>(static_cast<const T*>(src),
                                                                  keys.as<unsigned long long>(), pos.as<int64_t>(),
                                                                  static_cast<T*>(out), total, n_out, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
  // The scratch is freed on return, stream-ordered: a later allocation that reuses it runs after
  // these kernels.
}

// ---- gather / scatter_add ----

// out[o, j, i] = in[o, idx[o, j, i], i]
template <class U>
__global__ void gather_kernel(const U* in, const int64_t* idx, U* out, int64_t total, int64_t n_in, int64_t n_idx,
                              int64_t inner) {
  for (int64_t p = global_index(); p < total; p += grid_stride()) {
    const int64_t i = p % inner, o = p / (n_idx * inner);
    out[p] = in[(o * n_in + idx[p]) * inner + i];
  }
}

// out[o, idx[o, j, i], i] += src[o, j, i], one thread per (o, i) column walking j in order
template <class T>
__global__ void scatter_add_kernel(const T* src, const int64_t* idx, T* out, int64_t columns, int64_t n_out,
                                   int64_t n_idx, int64_t inner) {
  for (int64_t c = global_index(); c < columns; c += grid_stride()) {
    const int64_t i = c % inner, o = c / inner;
    for (int64_t j = 0; j < n_idx; ++j) {
      const int64_t p = (o * n_idx + j) * inner + i;
      T* dst = out + (o * n_out + idx[p]) * inner + i;
      *dst = add_as_cpu(*dst, src[p]);
    }
  }
}

void gather(int device, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
            int64_t n_idx, int64_t inner) {
  const int64_t total = outer * n_idx * inner;
  if (total <= 0) return;
  dispatch_bits(t, [&]<class U>() {
    gather_kernel<U><<<grid_for(total), kThreads, 0, stream(device)>>>(static_cast<const U*>(in), idx,
                                                                       static_cast<U*>(out), total, n_in, n_idx, inner);
    CUDA_CHECK_LAUNCH();
  });
}

void scatter_add(int device, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
                 int64_t n_idx, int64_t inner) {
  const int64_t columns = outer * inner;
  if (columns <= 0 || n_idx <= 0) return;
  dispatch_all(t, [&]<class T>() {
    scatter_add_kernel<T><<<grid_for(columns), kThreads, 0, stream(device)>>>(
        static_cast<const T*>(src), idx, static_cast<T*>(out), columns, n_out, n_idx, inner);
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
