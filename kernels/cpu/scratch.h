// Per-thread scratch buffers that only grow. Resizing a std::vector down and then up again
// zeroes the regrown part each time: a GEMM called with alternating sizes paid a memset per
// call for it. Internal to kernels/cpu.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace dualflow::cpu {

// At least n elements of `buffer` (their values left as they were), as a pointer aligned to a
// cache line: vector loads of packed panels then never straddle two lines (a std::vector's
// own data is only 16-byte aligned).
template <class T>
T* scratch(std::vector<T>& buffer, size_t n) {
  constexpr size_t line = 64, slack = (line + sizeof(T) - 1) / sizeof(T);
  if (buffer.size() < n + slack) buffer.resize(n + slack);
  const auto address = reinterpret_cast<uintptr_t>(buffer.data());
  return reinterpret_cast<T*>((address + line - 1) / line * line);
}

}  // namespace dualflow::cpu
