// The CPU thread pool (see thread_pool.h).
//
// Why no interleaving loses a wake-up or lets a worker touch a job it does not belong to:
// - The caller writes a job's fields only while the gate is closed with no worker inside, then
//   opens the gate with the next generation (a sequentially consistent store, which publishes
//   the fields). A worker enters only by a compare-and-swap from "this generation, open, n
//   inside" to n + 1, so it enters only the open job it saw and reads fields written before
//   that job opened. The caller closes by a compare-and-swap from "open, 0 inside" to closed,
//   once every chunk is done, so no worker is inside or can enter while the next job's fields
//   are written. A worker that saw an older generation fails its compare-and-swap (the word
//   holds the generation) and waits for the next one.
// - Sleeping: a thread about to sleep counts itself (sleeping_workers_, caller_sleeping_) under
//   mutex_, then re-checks its condition under mutex_ before waiting; a thread that makes the
//   condition true first changes it, then reads that count, and notifies under mutex_ if it is
//   set. All of these are sequentially consistent, so either the sleeper sees the change or the
//   changer sees the sleeper, whose re-check and wait hold mutex_ against the notify.
// - A worker starts knowing generation 0, the generation at construction, not whatever it reads
//   when the thread first runs: a job or the stop posted before a worker first runs is seen as
//   new (reading it at start was the old hang at exit).
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
  stop_.store(true);
  {
    std::lock_guard<std::mutex> lock(mutex_);  // a worker between its re-check and its wait holds it
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

bool ThreadPool::in_job() { return t_in_pool_job; }

template <class Done>
void ThreadPool::caller_wait(Done done) {
  if (spin_until(done)) return;
  std::unique_lock<std::mutex> lock(mutex_);
  caller_sleeping_.store(true);
  done_.wait(lock, done);
  caller_sleeping_.store(false);
}

bool ThreadPool::run(int64_t total, int64_t chunks, ChunkFn fn, void* context) {
  // Inside a chunk (of this or another pool) a job runs serially: the thread may already hold
  // job_mutex_, and a worker waiting on its own pool would wait on itself.
  if (t_in_pool_job) return false;
  std::unique_lock<std::mutex> busy(job_mutex_, std::try_to_lock);
  if (!busy.owns_lock()) return false;  // another thread's job is running: go serial
  // The gate is closed and no worker is inside (the last job closed so): the fields are ours.
  fn_ = fn;
  context_ = context;
  total_ = total;
  chunks_ = chunks;
  next_.store(0, std::memory_order_relaxed);
  remaining_.store(chunks, std::memory_order_relaxed);
  error_ = nullptr;
  const uint64_t generation = (gate_.load(std::memory_order_relaxed) >> 32) + 1;
  const uint64_t open = (generation << 32) | kOpen;
  gate_.store(open);
  if (sleeping_workers_.load() > 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    wake_.notify_all();
  }
  t_in_pool_job = true;
  work();
  t_in_pool_job = false;
  // The workers' chunks: usually nearly done. Then close the gate, which succeeds only while no
  // worker is inside; a worker that entered after the last chunk finds none and leaves at once.
  for (;;) {
    caller_wait([&] { return remaining_.load() == 0 && (gate_.load() & kInsideMask) == 0; });
    uint64_t expected = open;
    if (gate_.compare_exchange_strong(expected, generation << 32)) break;
  }
  std::exception_ptr error;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    error = error_;
    error_ = nullptr;
  }
  if (error) std::rethrow_exception(error);
  return true;
}

bool ThreadPool::try_join(uint64_t generation) {
  uint64_t g = gate_.load();
  while ((g >> 32) == generation && (g & kOpen) != 0)
    if (gate_.compare_exchange_weak(g, g + 1)) return true;
  return false;
}

void ThreadPool::leave() {
  gate_.fetch_sub(1);
  wake_sleeping_caller();
}

void ThreadPool::wake_sleeping_caller() {
  if (!caller_sleeping_.load()) return;
  std::lock_guard<std::mutex> lock(mutex_);
  done_.notify_all();
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
    if (remaining_.fetch_sub(1) == 1) wake_sleeping_caller();
  }
}

void ThreadPool::worker_loop() {
  t_in_pool_job = true;
  uint64_t seen = 0;  // the generation at construction (see the top of this file)
  const auto news = [&] { return stop_.load() || (gate_.load() >> 32) != seen; };
  for (;;) {
    if (!spin_until(news)) {
      std::unique_lock<std::mutex> lock(mutex_);
      sleeping_workers_.fetch_add(1);
      wake_.wait(lock, news);
      sleeping_workers_.fetch_sub(1);
    }
    if (stop_.load()) return;
    seen = gate_.load() >> 32;
    if (!try_join(seen)) continue;  // that job closed already
    work();
    leave();
  }
}

}  // namespace dualflow::cpu
