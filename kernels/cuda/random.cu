// CUDA random fills from the shared Philox formulas (element i = philox::sample(..., i, ...),
// so a seed draws the same numbers as on the CPU) and arange; both contiguous.
#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

template <class T>
__global__ void random_kernel(philox::Dist dist, bool f64, T* out, int64_t n, uint64_t seed, uint64_t offset, double a,
                              double b) {
  for (int64_t i = global_index(); i < n; i += grid_stride())
    out[i] = from_double<T>(philox::sample(dist, f64, seed, offset, uint64_t(i), a, b));
}

template <class T>
__global__ void arange_kernel(T* out, int64_t n, double start, double step) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) out[i] = from_double<T>(start + step * double(i));
}

void random(int device, philox::Dist dist, DType t, void* out, int64_t n, uint64_t seed, uint64_t offset, double a,
            double b) {
  if (n <= 0) return;
  const bool f64 = t == DType::f64;
  dispatch_all(t, [&]<class T>() {
    random_kernel<T>
        <<<grid_for(n), kThreads, 0, stream(device)>>>(dist, f64, static_cast<T*>(out), n, seed, offset, a, b);
    CUDA_CHECK_LAUNCH();
  });
}

void arange(int device, DType t, void* out, int64_t n, double start, double step) {
  if (n <= 0) return;
  dispatch_all(t, [&]<class T>() {
    arange_kernel<T><<<grid_for(n), kThreads, 0, stream(device)>>>(static_cast<T*>(out), n, start, step);
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_random(Backend& b) {
  b.random = random;
  b.arange = arange;
}

}  // namespace dualflow::gpu
