// Internal to kernels/cuda: error-check macros, per-device streams and cuBLAS handles, the
// caching allocator's entry points, and the functions each file uses to register its kernels.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "kernels/common/backend.h"

namespace dualflow::gpu {

// Throw std::runtime_error("CUDA error at file:line: <expr>: <error string>").
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line);

#define CUDA_CHECK(expr)                                                                                         \
  do {                                                                                                           \
    cudaError_t df_cuda_err_ = (expr);                                                                           \
    if (df_cuda_err_ != cudaSuccess) ::dualflow::gpu::throw_cuda_error(df_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(expr)                                                           \
  do {                                                                               \
    cublasStatus_t df_cublas_st_ = (expr);                                           \
    if (df_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::dualflow::gpu::throw_cublas_error(df_cublas_st_, #expr, __FILE__, __LINE__); \
  } while (0)

// Checks that the last kernel launch was accepted (launch configuration, missing image, ...).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// The most devices the backend keeps per-device state for.
constexpr int kMaxDevices = 64;

// Makes `device` current on the calling thread (no-op when it already is).
void set_device(int device);
// Makes `device` current and returns its stream (created on first use); every kernel, copy
// and cuBLAS call of the backend for that device goes to this one stream.
cudaStream_t stream(int device);
// Number of streaming multiprocessors of `device` (cached).
int sm_count(int device);
// The device's cuBLAS handle, bound to stream(device); makes `device` current.
cublasHandle_t cublas_handle(int device);

// f32 GEMMs use TF32 tensor cores when on (off by default).
void set_cuda_tf32(bool on);
bool cuda_tf32();

// Caching allocator (memory.cu): blocks stay with the allocator after free and are reused by
// later allocations of the same size class; memory use is stream-ordered on stream(device).
void* device_alloc(int device, size_t bytes);
void device_free(int device, void* ptr, size_t bytes) noexcept;

void register_memory(Backend& b);
void register_elementwise(Backend& b);
void register_reduce(Backend& b);
void register_rowwise(Backend& b);
void register_gemm(Backend& b);
void register_indexing(Backend& b);
void register_conv(Backend& b);
void register_random(Backend& b);
void register_optim(Backend& b);

}  // namespace dualflow::gpu
