// The CPU backend table: 64-byte aligned host memory (large blocks cached for reuse, so a
// training loop does not page-fault fresh memory every step) plus each file's kernels.
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <vector>

#include "kernels/cpu/cpu_backend.h"

namespace dualflow {
namespace cpu {
namespace {

constexpr size_t kCacheFrom = size_t(1) << 18;   // blocks of 256 KiB and more are cached
constexpr size_t kCacheLimit = size_t(4) << 30;  // at most 4 GiB held idle

// Large sizes round up to 1/8 of their power of two, so nearby sizes share blocks.
size_t rounded(size_t bytes) {
  if (bytes < kCacheFrom) return (bytes + 63) / 64 * 64;
  size_t pow2 = size_t(1) << (63 - __builtin_clzll(bytes));
  size_t step = pow2 / 8;
  return (bytes + step - 1) / step * step;
}

struct BlockCache {
  std::mutex mu;
  std::multimap<size_t, void*> idle;
  size_t idle_bytes = 0;
};
BlockCache& cache() {
  static BlockCache* c = new BlockCache();  // never destroyed: frees may run during exit
  return *c;
}

void* alloc(int, size_t bytes) {
  size_t size = rounded(bytes == 0 ? 1 : bytes);
  if (size >= kCacheFrom) {
    BlockCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    auto it = c.idle.find(size);
    if (it != c.idle.end()) {
      void* p = it->second;
      c.idle.erase(it);
      c.idle_bytes -= size;
      return p;
    }
  }
  void* p = nullptr;
  if (posix_memalign(&p, 64, size) != 0) throw std::bad_alloc();
  return p;
}

void free_mem(int, void* p, size_t bytes) {
  size_t size = rounded(bytes == 0 ? 1 : bytes);
  if (size >= kCacheFrom) {
    BlockCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.idle_bytes + size <= kCacheLimit) {
      c.idle.emplace(size, p);
      c.idle_bytes += size;
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
