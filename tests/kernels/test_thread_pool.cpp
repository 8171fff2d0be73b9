// The CPU thread pool: every index of a job run exactly once, pools made and destroyed at once
// from many threads (and destroyed right after construction, before their workers first run:
// the old hang at exit), chunks that throw, jobs submitted from inside jobs, a busy pool, and
// workers and callers that sleep.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernels/cpu/thread_pool.h"

namespace dualflow::cpu {
namespace {

struct Counter {
  std::vector<std::atomic<int>>* hits;
};
void count_chunk(void* c, int64_t begin, int64_t end) {
  auto& hits = *static_cast<Counter*>(c)->hits;
  for (int64_t i = begin; i < end; ++i) hits[size_t(i)].fetch_add(1);
}

// Runs a job of `total` indices in `chunks` pieces and checks each index ran once.
bool each_index_once(ThreadPool& pool, int64_t total, int64_t chunks) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(total));
  Counter c{&hits};
  if (!pool.run(total, chunks, count_chunk, &c)) return false;
  for (auto& h : hits)
    if (h.load() != 1) return false;
  return true;
}

TEST_CASE("thread pool: every index once, job after job", "[kernels][pool]") {
  ThreadPool pool(3);
  int ok = 0;
  for (int job = 0; job < 3000; ++job) ok += each_index_once(pool, 1 + job % 97, 1 + job % 7);
  CHECK(ok == 3000);
}

TEST_CASE("thread pool: pools destroyed right after construction, and made and destroyed at once", "[kernels][pool]") {
  for (int i = 0; i < 300; ++i) ThreadPool pool(1 + i % 4);  // workers may not have started yet
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 40; ++i) {
        ThreadPool pool(1 + (t + i) % 3);
        if (i % 2 == 0) ok += each_index_once(pool, 50, 4);
      }
    });
  for (auto& th : threads) th.join();
  CHECK(ok == 8 * 20);
}

void throw_in_chunk_two(void* c, int64_t begin, int64_t end) {
  static_cast<std::atomic<int64_t>*>(c)->fetch_add(end - begin);
  if (begin <= 2 && 2 < end) throw std::runtime_error("chunk failed");
}

TEST_CASE("thread pool: a chunk that throws fails its job after the others ran; the pool goes on", "[kernels][pool]") {
  ThreadPool pool(2);
  for (int round = 0; round < 50; ++round) {
    std::atomic<int64_t> done{0};
    REQUIRE_THROWS_WITH(pool.run(8, 8, throw_in_chunk_two, &done), "chunk failed");
    CHECK(done.load() == 8);
    CHECK(each_index_once(pool, 100, 5));
  }
}

struct Nested {
  ThreadPool* same;
  ThreadPool* other;
  std::atomic<int> refused{0};
};
void submit_from_chunk(void* c, int64_t, int64_t) {
  auto* n = static_cast<Nested*>(c);
  std::atomic<int64_t> sink{0};
  // From inside a chunk neither pool takes a job: the caller runs it serially instead.
  n->refused += !n->same->run(4, 2, throw_in_chunk_two, &sink);
  n->refused += !n->other->run(4, 2, throw_in_chunk_two, &sink);
}

TEST_CASE("thread pool: jobs submitted from inside jobs are refused, never deadlock", "[kernels][pool]") {
  ThreadPool pool(2), other(2);
  Nested n{&pool, &other};
  for (int round = 0; round < 100; ++round) REQUIRE(pool.run(6, 6, submit_from_chunk, &n));
  CHECK(n.refused.load() == 100 * 6 * 2);
}

TEST_CASE("thread pool: a second thread finds the pool busy and is told so", "[kernels][pool]") {
  ThreadPool pool(1);
  std::atomic<bool> inside{false}, release{false};
  auto hold = [](void* c, int64_t, int64_t) {
    auto* flags = static_cast<std::pair<std::atomic<bool>*, std::atomic<bool>*>*>(c);
    flags->first->store(true);
    while (!flags->second->load()) std::this_thread::yield();
  };
  std::pair<std::atomic<bool>*, std::atomic<bool>*> flags{&inside, &release};
  std::thread holder([&] { pool.run(2, 2, hold, &flags); });
  while (!inside.load()) std::this_thread::yield();
  std::atomic<int64_t> sink{0};
  CHECK_FALSE(pool.run(4, 2, throw_in_chunk_two, &sink));
  release.store(true);
  holder.join();
  CHECK(each_index_once(pool, 10, 2));
}

TEST_CASE("thread pool: workers asleep between jobs, and a caller asleep while workers finish, miss no job",
          "[kernels][pool]") {
  // Idle workers sleep after a millisecond of spinning, and a caller whose workers still run
  // sleeps after one too: gaps and chunks of 3 ms take both paths, with quick jobs between.
  ThreadPool pool(2);
  auto slow_chunk = [](void* c, int64_t begin, int64_t end) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    count_chunk(c, begin, end);
  };
  for (int round = 0; round < 12; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 2 == 0 ? 3 : 0));
    std::vector<std::atomic<int>> hits(6);
    Counter c{&hits};
    REQUIRE(pool.run(6, 3, slow_chunk, &c));
    for (auto& h : hits) REQUIRE(h.load() == 1);
    REQUIRE(each_index_once(pool, 40, 3));
  }
}

}  // namespace
}  // namespace dualflow::cpu
