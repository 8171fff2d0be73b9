// CPU thread control for programs and libraries above the engine: how many worker threads the
// CPU backend's parallel loops use. (The pool itself lives in kernels/cpu/.)
#pragma once
#include <cstdint>
#include <functional>

namespace dualflow {

// n >= 1 worker threads for the CPU backend from now on.
void set_cpu_threads(int n);
// The number in use (all cores unless set).
int cpu_threads();
// Runs fn(begin, end) over [0, total) in contiguous chunks on the CPU pool (in parallel only
// when total is at least 2 * grain); for programs that time the pool itself, such as the
// memory-bandwidth row of `dualflow bench kernels`.
void parallel_chunks(int64_t total, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

}  // namespace dualflow
