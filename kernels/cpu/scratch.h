// Per-thread scratch buffers that only grow. Resizing a std::vector down and then up again
// zeroes the regrown part each time: a GEMM called with alternating sizes paid a memset per
// call for it. Internal to kernels/cpu.
#pragma once
#include <cstddef>
#include <vector>

namespace dualflow::cpu {

// At least n elements of `buffer` (their values left as they were), as a pointer.
template <class T>
T* scratch(std::vector<T>& buffer, size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

}  // namespace dualflow::cpu
