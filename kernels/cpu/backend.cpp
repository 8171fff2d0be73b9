// The CPU backend table: 64-byte aligned host memory plus the kernels registered by each file.
#include <cstdlib>
#include <cstring>
#include <new>

#include "kernels/cpu/cpu_backend.h"

namespace dualflow {
namespace cpu {
namespace {

void* alloc(int, size_t bytes) {
  if (bytes == 0) bytes = 1;
  void* p = nullptr;
  if (posix_memalign(&p, 64, (bytes + 63) / 64 * 64) != 0) throw std::bad_alloc();
  return p;
}
void free_mem(int, void* p, size_t) { std::free(p); }
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
  register_random(b);
  return b;
}

}  // namespace
}  // namespace cpu

const Backend& cpu_backend() {
  static const Backend table = cpu::make();
  return table;
}

}  // namespace dualflow
