// The CPU backend table: 64-byte aligned host memory (blocks of 1 KiB and more cached for reuse,
// so a training loop neither searches malloc's bins nor page-faults fresh memory every step) plus
// each file's kernels.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace dualflow {
namespace cpu {
namespace {

constexpr size_t kCacheFrom = size_t(1) << 10;   // blocks of 1 KiB and more are cached
constexpr size_t kCacheLimit = size_t(4) << 30;  // at most 4 GiB held idle

// Sizes of 1 KiB and more fall in classes of 1/8 of their power of two (at most 12.5% more
// than asked for), so nearby sizes share blocks; a class is its power and its eighth.
struct SizeClass {
  size_t bytes;  // the size the class allocates
  size_t index;  // into BlockCache::idle
};
SizeClass size_class(size_t bytes) {
  const int power = 63 - __builtin_clzll(bytes);
  const size_t step = (size_t(1) << power) / 8;
  const size_t eighths = (bytes - (size_t(1) << power) + step - 1) / step;  // 0..8
  const size_t rounded = (size_t(1) << power) + eighths * step;
  return {rounded, size_t(power) * 8 + eighths};  // eighths == 8 is the next power's class 0
}

// Idle blocks by class. Every size from 1 KiB up is cached, not only large ones: a training
// step allocates and frees the same few hundred tensors each time, and through malloc the
// middle sizes cost a search of its bins (and sometimes a page fault on memory it gave back)
// on the step's serial path.
struct BlockCache {
  std::mutex mu;
  std::vector<std::vector<void*>> idle = std::vector<std::vector<void*>>(64 * 8 + 1);
  size_t idle_bytes = 0;
};
BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: frees may run during exit
  return *c;
}

void* alloc(int, size_t bytes) {
  if (bytes < kCacheFrom) {
    void* p = nullptr;
    if (posix_memalign(&p, 64, std::max<size_t>(64, (bytes + 63) / 64 * 64)) != 0) throw std::bad_alloc();
    return p;
  }
  const SizeClass sc = size_class(bytes);
  {
    BlockCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    std::vector<void*>& idle = c.idle[sc.index];
    if (!idle.empty()) {
      void* p = idle.back();
      idle.pop_back();
      c.idle_bytes -= sc.bytes;
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, sc.bytes) != 0) throw std::bad_alloc();
  return p;
}

void free_mem(int, void* p, size_t bytes) {
  if (bytes >= kCacheFrom) {
    const SizeClass sc = size_class(bytes);
    BlockCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.idle_bytes + sc.bytes <= kCacheLimit) {
      c.idle[sc.index].push_back(p);
      c.idle_bytes += sc.bytes;
      return;
    }
  }
  std::free(p);
}
void copy_bytes(int, void* dst, const void* src, size_t bytes) { std::memcpy(dst, src, bytes); }
void synchronize(int) {}

Backend make() {
  Backend b{};
  b.name = "cpu";
  b.alloc = alloc;
  b.free = free_mem;
  b.copy_to_host = copy_bytes;
  b.copy_from_host = copy_bytes;
  b.copy_same_device = copy_bytes;
  b.synchronize = synchronize;
  register_elementwise(b);
  register_reduce(b);
  register_rowwise(b);
  register_gemm(b);
  register_indexing(b);
  register_conv(b);
  register_conv_direct(b);
  register_group_norm(b);
  register_layer_norm(b);
  register_random(b);
  register_optim(b);
  return b;
}

}  // namespace
}  // namespace cpu

const Backend& cpu_backend() {
  static const Backend table = cpu::make();
  return table;
}

}  // namespace dualflow
