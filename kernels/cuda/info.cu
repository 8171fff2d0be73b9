// Version and device descriptions of the CUDA backend for `dualflow info`.
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <string>

#include "kernels/common/backend.h"

namespace dualflow {

std::string cuda_build_info() {
  int runtime = 0, driver = 0;
  cudaRuntimeGetVersion(&runtime);
  if (cudaDriverGetVersion(&driver) != cudaSuccess) driver = 0;
  std::string s =
      "built for CUDA " + std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
  s += ", runtime " + std::to_string(runtime / 1000) + "." + std::to_string((runtime % 1000) / 10);
  s +=
      driver ? ", driver " + std::to_string(driver / 1000) + "." + std::to_string((driver % 1000) / 10) : ", no driver";
  s += ", cuBLAS " + std::to_string(CUBLAS_VER_MAJOR) + "." + std::to_string(CUBLAS_VER_MINOR);
  size_t cudnn = cudnnGetVersion();
  s += ", cuDNN " + std::to_string(cudnn / 10000) + "." + std::to_string((cudnn % 10000) / 100) + "." +
       std::to_string(cudnn % 100);
  return s;
}

std::string cuda_device_name(int device) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "(unavailable)";
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) + ", " +
         std::to_string(prop.totalGlobalMem >> 20) + " MiB)";
}

}  // namespace dualflow
