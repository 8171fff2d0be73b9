// Stands in for the CUDA backend in builds configured without CUDA.
#include "kernels/common/backend.h"

namespace dualflow {
const Backend* cuda_backend() { return nullptr; }
int cuda_device_count() { return 0; }
}  // namespace dualflow
