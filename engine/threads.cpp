// CPU thread control (see threads.h): forwards to the CPU backend's pool.
#include "engine/threads.h"

#include "kernels/cpu/parallel.h"

namespace dualflow {

void set_cpu_threads(int n) { cpu::set_num_threads(n); }
int cpu_threads() { return cpu::num_threads(); }
void parallel_chunks(int64_t total, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) {
  cpu::parallel_for(total, grain, fn);
}

}  // namespace dualflow
