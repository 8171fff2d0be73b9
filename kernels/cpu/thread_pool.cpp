// The CPU thread pool (see thread_pool.h).
//
// Why no interleaving loses a wake-up or lets a worker touch a job it does not belong to:
// - Everything a worker waits for (a new generation, stop_) and everything the caller waits for
//   (remaining_ reaching 0, active_ reaching 0) changes under mutex_, or, for remaining_, is
//   followed by a notify made under mutex_; each wait re-checks its condition under mutex_. So
//   a condition that became true before a thread started waiting is seen, not waited for.
// - A worker starts knowing generation 0, the generation at construction, not whatever it reads
//   when the thread first runs: a job or the stop posted before a worker first runs is seen as
//   new (reading it at start was the old hang at exit: the worker took the destructor's stop
//   for one it had seen and slept forever).
// - A worker joins a job only under mutex_ while the job is open, counting itself in active_;
//   the caller closes the job only under mutex_ once every chunk is done and active_ is 0. So
//   between jobs no worker is inside work(), and the job's fields, written under mutex_ while
//   no job is open, are never read while they change. A worker that wakes late finds the job
//   closed (or finds no chunk left) and goes back to sleep.
// - An exception in a chunk is kept (the first one) and rethrown by the caller after the job
//   closes; the other chunks still run, so every counter reaches its end.
// - Nested parallel loops inside a chunk run serially (in_job), and a second thread that finds
//   the pool busy runs its loop serially (job_mutex_ is only tried), so no job waits on another.
#include "kernels/cpu/thread_pool.h"

#include <chrono>

namespace dualflow::cpu {

namespace {

thread_local bool t_in_pool_job = false;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// How long a waiting thread spins before it sleeps on a condition variable. A sleeping thread
// costs a wake-up of several microseconds on its next job, and a toy2d training step's
// serial gaps between parallel ops (small GEMMs, random draws, bookkeeping) run to hundreds of
// microseconds: at 0.1 ms the 2-thread MeanFlow step slept about 7 times a step, at 1 ms
// about once in 2.5 steps, and ran 3-7% faster. It is a time, not a count of pauses, since a
// pause takes 10 to 140 cycles depending on the CPU.
constexpr auto kSpinBeforeSleep = std::chrono::microseconds(1000);

// Spins until done() holds or kSpinBeforeSleep has passed; returns done().
template <class Done>
bool spin_until(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kSpinBeforeSleep;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (done()) return true;
      cpu_relax();
    }
    if (std::chrono::steady_clock::now() >= deadline) return done();
  }
}

}  // namespace

ThreadPool::ThreadPool(int workers) {
  for (int i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

bool ThreadPool::in_job() { return t_in_pool_job; }

bool ThreadPool::run(int64_t total, int64_t chunks, ChunkFn fn, void* context) {
  // Inside a chunk (of this or another pool) a job runs serially: the thread may already hold
  // job_mutex_, and a worker waiting on its own pool would wait on itself.
  if (t_in_pool_job) return false;
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
    job_open_ = true;
    ++generation_;
    published_generation_.store(generation_, std::memory_order_release);
  }
  wake_.notify_all();
  const bool was_in_job = t_in_pool_job;
  t_in_pool_job = true;
  work();
  t_in_pool_job = was_in_job;
  // The workers' chunks: spin briefly (they are usually nearly done), then sleep. The spin waits
  // for the workers to leave the job too, not only for the last chunk to end: a worker leaves
  // just after its last chunk, and a caller that took mutex_ in between would sleep on done_
  // and pay a wake-up on nearly every job whose last chunk a worker ran.
  spin_until(
      [&] { return remaining_.load(std::memory_order_acquire) == 0 && active_.load(std::memory_order_acquire) == 0; });
  std::exception_ptr error;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return remaining_.load() == 0 && active_.load() == 0; });
    job_open_ = false;
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
  return true;
}

void ThreadPool::work() {
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

void ThreadPool::worker_loop() {
  t_in_pool_job = true;
  uint64_t seen = 0;  // the generation at construction (see the top of this file)
  for (;;) {
    spin_until([&] { return published_generation_.load(std::memory_order_acquire) != seen; });
    std::unique_lock<std::mutex> lock(mutex_);
    wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    if (!job_open_) continue;  // woke after that job closed
    ++active_;
    lock.unlock();
    work();
    lock.lock();
    if (active_.fetch_sub(1) == 1) done_.notify_all();
  }
}

}  // namespace dualflow::cpu
