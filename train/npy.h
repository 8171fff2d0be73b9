// NumPy .npy files (format version 1.0): what `dualflow sample` writes so samples load with
// numpy.load. Written atomically like checkpoints.
#pragma once
#include <string>

#include "engine/dualflow.h"

namespace dualflow {

// Writes `t` (any device, dtype, strides) as a C-order float32 array of its shape.
void save_npy_f32(const std::string& path, const Tensor& t);
// The file's bytes, for tests: the 10-byte preamble, the header padded to 64 bytes, the data.
std::string npy_f32_bytes(const Tensor& t);

}  // namespace dualflow
