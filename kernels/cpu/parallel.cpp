// The engine's CPU thread pool: num_threads() - 1 workers that take chunks of one job at a time
// beside the calling thread. Idle workers spin for a few microseconds (back-to-back small ops
// start fast) and then block on a condition variable, leaving the cores to OpenBLAS.
#include "kernels/cpu/parallel.h"

#include <atomic>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dualflow::cpu {
namespace {

thread_local bool t_in_pool_job = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class Pool {
 public:
  explicit Pool(int workers) {
    for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
  }
  ~Pool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int workers() const { return int(threads_.size()); }

  bool run(int64_t total, int64_t chunks, detail::ChunkFn fn, void* context) {
    std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;  // another thread's job is running: go serial
    {
      std::lock_guard<std::mutex> lock(mutex_);
      fn_ = fn;
      context_ = context;
      total_ = total;
      chunks_ = chunks;
      next_.store(0);
      remaining_.store(chunks);
      error_ = nullptr;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    t_in_pool_job = true;
    work();
    t_in_pool_job = false;
    // Wait for the workers' chunks: spin briefly, then sleep.
    for (int i = 0; i < 4000 && remaining_.load(std::memory_order_acquire) > 0; ++i) cpu_relax();
    if (remaining_.load(std::memory_order_acquire) > 0) {
      std::unique_lock<std::mutex> lock(mutex_);
      done_.wait(lock, [&] { return remaining_.load() == 0; });
    }
    if (error_) std::rethrow_exception(error_);
    return true;
  }

 private:
  // Takes chunks of the current job until none is left.
  void work() {
    for (;;) {
      const int64_t c = next_.fetch_add(1);
      if (c >= chunks_) return;
      try {
        fn_(context_, total_ * c / chunks_, total_ * (c + 1) / chunks_);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) error_ = std::current_exception();
      }
      if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lock(mutex_);
        done_.notify_all();
      }
    }
  }

  void worker_loop() {
    t_in_pool_job = true;
    uint64_t seen = generation_.load();
    for (;;) {
      for (int i = 0; i < 4000 && generation_.load(std::memory_order_acquire) == seen; ++i) cpu_relax();
      if (generation_.load(std::memory_order_acquire) == seen) {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_.load() != seen; });
      }
      std::unique_lock<std::mutex> lock(mutex_);
      seen = generation_.load();
      if (stop_) return;
      lock.unlock();
      work();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<uint64_t> generation_{0};
  bool stop_ = false;
  detail::ChunkFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t total_ = 0;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};
  std::atomic<int64_t> remaining_{0};
  std::exception_ptr error_;
};

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n ? int(n) : 1;
}

std::atomic<int> g_threads{0};
std::mutex g_pool_mutex;
std::unique_ptr<Pool> g_pool;

Pool* pool_for(int threads) {
  std::lock_guard<std::mutex> lock(g_pool_mutex);
  if (!g_pool || g_pool->workers() != threads - 1) {
    g_pool.reset();
    g_pool = std::make_unique<Pool>(threads - 1);
  }
  return g_pool.get();
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
  if (t_in_pool_job || chunks < 2) return false;
  return pool_for(num_threads())->run(total, chunks, fn, context);
}
}  // namespace detail

}  // namespace dualflow::cpu
