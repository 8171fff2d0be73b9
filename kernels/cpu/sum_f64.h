// A sum of floats or doubles in f64, in a fixed order that the compiler can vectorise: eight
// interleaved partial sums (the lanes of a vector), added pairwise at the end. One chain of
// dependent adds would wait on each add's latency; reordering freely (-ffast-math) would make
// the result depend on the compiler. Internal to kernels/cpu.
#pragma once
#include <cstdint>

namespace dualflow::cpu {

template <class T>
inline double sum_f64(const T* v, int64_t n) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) part[k] += double(v[i + k]);
  for (int k = 0; i < n; ++i, ++k) part[k] += double(v[i]);
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

}  // namespace dualflow::cpu
