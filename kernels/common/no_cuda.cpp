// Stands in for the CUDA backend in builds configured without CUDA.
#include "kernels/common/backend.h"

namespace dualflow {
const Backend* cuda_backend() { return nullptr; }
int cuda_device_count() { return 0; }
std::string cuda_build_info() { return "not built (configure with -DDUALFLOW_CUDA=ON where nvcc exists)"; }
std::string cuda_device_name(int) { return ""; }
}  // namespace dualflow
