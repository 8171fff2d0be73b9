// CPU threading: one knob for the engine's own loops (OpenMP) and OpenBLAS, and a chunked
// parallel-for that stays on the calling thread for small work so tiny ops cost no fork.
#pragma once
#include <algorithm>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace dualflow::cpu {

void set_num_threads(int n);
int num_threads();

// Runs fn(begin, end) over [0, total) in contiguous chunks; in parallel only when the work
// is at least `grain` units.
template <class F>
void parallel_for(int64_t total, int64_t grain, F&& fn) {
  if (total <= 0) return;
#ifdef _OPENMP
  int threads = num_threads();
  if (threads > 1 && total >= 2 * grain) {
    int64_t chunks = std::min<int64_t>(threads, total / grain);
#pragma omp parallel for num_threads(int(chunks)) schedule(static)
    for (int64_t c = 0; c < chunks; ++c) {
      int64_t begin = total * c / chunks, end = total * (c + 1) / chunks;
      fn(begin, end);
    }
    return;
  }
#endif
  fn(int64_t(0), total);
}

}  // namespace dualflow::cpu
