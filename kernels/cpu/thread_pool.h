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

  std::vector<std::thread> threads_;
  std::mutex job_mutex_;  // one job at a time
  std::mutex mutex_;      // guards everything below except the atomics' counting
  std::condition_variable wake_, done_;
  uint64_t generation_ = 0;                        // jobs opened so far
  std::atomic<uint64_t> published_generation_{0};  // generation_, for the workers' spin only
  bool stop_ = false;
  bool job_open_ = false;  // workers may join the current job
  // Workers inside work() for the current job: changed under mutex_, read without it by the
  // caller's spin so that it sees the job end without sleeping on done_.
  std::atomic<int> active_{0};
  ChunkFn fn_ = nullptr;
  void* context_ = nullptr;
  int64_t total_ = 0;
  int64_t chunks_ = 0;
  std::atomic<int64_t> next_{0};       // the next chunk to take
  std::atomic<int64_t> remaining_{0};  // chunks not finished yet
  std::exception_ptr error_;
};

}  // namespace dualflow::cpu
