// The CUDA backend table ("cuda"): the caching allocator and copies of memory.cu plus the
// kernels registered by each file; and the device count, 0 when no driver or GPU answers.
#include "kernels/cuda/cuda_backend.h"

namespace dualflow {
namespace gpu {
namespace {

Backend make() {
  Backend b{};
  b.name = "cuda";
  register_memory(b);
  register_elementwise(b);
  register_reduce(b);
  register_rowwise(b);
  register_gemm(b);
  register_indexing(b);
  register_conv(b);
  register_random(b);
  register_optim(b);
  return b;
}

}  // namespace
}  // namespace gpu

const Backend* cuda_backend() {
  static const Backend table = gpu::make();
  return &table;
}

int cuda_device_count() {
  static const int count = [] {
    int n = 0;
    const cudaError_t err = cudaGetDeviceCount(&n);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();  // no driver / no device: clear the error, report none
      return 0;
    }
    return n < 0 ? 0 : n;
  }();
  return count;
}

}  // namespace dualflow
