// CPU threading: one knob for the engine's loops, GEMMs included (OpenBLAS runs single-threaded
// inside the pool's chunks), and a chunked parallel-for over the engine's thread pool
// (parallel.cpp). Idle workers sleep instead of spinning: spinning OpenMP workers beside
// OpenBLAS's own threads on the same cores once made a 2-thread step 3x slower than 1 thread.
#pragma once
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace dualflow::cpu {

void set_num_threads(int n);
int num_threads();

namespace detail {
using ChunkFn = void (*)(void* context, int64_t begin, int64_t end);
// Runs fn over `chunks` contiguous pieces of [0, total) on the pool and the calling thread;
// returns false (running nothing) when the pool is busy or this is already a pool thread.
bool run_on_pool(int64_t total, int64_t chunks, ChunkFn fn, void* context);
}  // namespace detail

// The grain, in items, of a loop whose items each touch `values_per_item` values: the fewest
// items whose values reach `values`, so that a chunk is worth a hand-off whatever the item size.
inline int64_t grain_for(int64_t values, int64_t values_per_item) {
  return std::max<int64_t>(1, values / std::max<int64_t>(values_per_item, 1));
}

// Runs fn(begin, end) over [0, total) in `chunks` contiguous pieces taken in turn by whichever
// thread is free (more pieces than threads let a thread that runs slower take fewer); on the
// calling thread alone where the pool is busy or this is a pool thread.
template <class F>
void parallel_for_chunks(int64_t total, int64_t chunks, F&& fn) {
  if (total <= 0) return;
  chunks = std::clamp<int64_t>(chunks, 1, total);
  if (num_threads() > 1 && chunks > 1) {
    using Fn = std::remove_reference_t<F>;
    auto trampoline = [](void* c, int64_t b, int64_t e) { (*static_cast<Fn*>(c))(b, e); };
    if (detail::run_on_pool(total, chunks, trampoline, const_cast<void*>(static_cast<const void*>(&fn)))) return;
  }
  fn(int64_t(0), total);
}

// Runs fn(begin, end) over [0, total) in contiguous chunks; in parallel only when the work
// is at least `grain` units. Nested calls run on the calling thread.
template <class F>
void parallel_for(int64_t total, int64_t grain, F&& fn) {
  const int threads = num_threads();
  if (threads > 1 && total >= 2 * grain)
    return parallel_for_chunks(total, std::min<int64_t>(threads, total / std::max<int64_t>(grain, 1)),
                               std::forward<F>(fn));
  if (total > 0) fn(int64_t(0), total);
}

}  // namespace dualflow::cpu
