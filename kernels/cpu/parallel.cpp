// The engine's parallel_for over one shared ThreadPool (thread_pool.h) of num_threads() - 1
// workers beside the calling thread.
#include "kernels/cpu/parallel.h"

#include <atomic>
#include <memory>
#include <mutex>
#include <thread>

#include "kernels/cpu/thread_pool.h"

namespace dualflow::cpu {
namespace {

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

std::atomic<int> g_threads{0};
std::mutex g_pool_mutex;
std::shared_ptr<ThreadPool> g_pool;

// The shared pool for `threads` threads (the caller is one of them). A job holds its own
// reference, so a change of the thread count never destroys a pool under a running job.
std::shared_ptr<ThreadPool> pool_for(int threads) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool || g_pool->workers() != threads - 1) g_pool = std::make_shared<ThreadPool>(threads - 1);
  return g_pool;
}

}  // namespace

void set_num_threads(int n) {
  if (n < 1) n = 1;
  g_threads.store(n);
}

int num_threads() {
  int n = g_threads.load();
  if (n == 0) {
    n = default_threads();
    int expected = 0;
    if (!g_threads.compare_exchange_strong(expected, n)) n = expected;
  }
  return n;
}

namespace detail {
bool run_on_pool(int64_t total, int64_t chunks, ChunkFn fn, void* context) {
  if (ThreadPool::in_job() || chunks < 2) return false;
  return pool_for(num_threads())->run(total, chunks, fn, context);
}
}  // namespace detail

}  // namespace dualflow::cpu
