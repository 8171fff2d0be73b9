// The CPU thread pool: worker threads that run the chunks of one job at a time beside the
// calling thread (parallel.h's parallel_for submits to one shared pool). Idle workers spin for
// up to a millisecond, so the next op of a step starts without a wake-up, and then sleep on a
// condition variable, leaving the cores to other work.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace dualflow::cpu {

class ThreadPool {
 public:
  using ChunkFn = void (*)(void* context, int64_t begin, int64_t end);

  explicit ThreadPool(int workers);
  // Wakes and joins every worker, whether it has started running yet or not.
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int workers() const { return int(threads_.size()); }

  // Runs fn over `chunks` contiguous pieces of [0, total) on the workers and the calling
  // thread and returns when every piece is done; rethrows the first exception a piece threw.
  // Returns false, running nothing, when another thread's job holds the pool or when called
  // from inside a chunk.
  bool run(int64_t total, int64_t chunks, ChunkFn fn, void* context);

  // True inside a chunk run by a pool (any pool): nested parallel loops run serially there.
  static bool in_job();

 private:
  void work();
  void worker_loop();
  // Enters the job of `generation` if it is still open (counting this worker in gate_).
  bool try_join(uint64_t generation);
  void leave();
  // After a change the caller may be waiting for (the last chunk done, a worker out): notifies
  // it where it sleeps.
  void wake_sleeping_caller();
  // The caller's wait for `done`: a spin, then a sleep on done_ that the workers end.
  template <class Done>
  void caller_wait(Done done);

  // gate_ holds the job's generation (high 32 bits), whether workers may join it (kOpen) and how
  // many are inside it (the low bits), so that joining, leaving and closing are each one atomic
  // step on one word: a worker joins only an open job of the generation it saw, and the caller
  // closes the job only when no worker is inside. No lock is taken on the way in or out.
  static constexpr uint64_t kOpen = uint64_t(1) << 31, kInsideMask = kOpen - 1;
  std::atomic<uint64_t> gate_{0};
  std::atomic<bool> stop_{false};

  std::vector<std::thread> threads_;
  std::mutex job_mutex_;  // one job at a time
  // Sleeping and waking only (and error_): a thread that sleeps counts itself first, and a
  // thread that changes what a sleeper waits for checks that count, then notifies under mutex_.
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  std::atomic<int> sleeping_workers_{0};
  std::atomic<bool> caller_sleeping_{false};
  // The job, written by the caller only while the gate is closed and no worker is inside.
  ChunkFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t total_ = 0;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};       // the next chunk to take
  std::atomic<int64_t> remaining_{0};  // chunks not finished yet
  std::exception_ptr error_;
};

}  // namespace dualflow::cpu
