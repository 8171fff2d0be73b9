// CUDA memory: per-device streams, error reporting, a size-bucketed caching allocator and the
// host/device copies of the backend table.
#include <atomic>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "kernels/cuda/cuda_backend.h"

namespace dualflow::gpu {

// ---- errors ----

[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("CUDA error at ") + file + ":" + std::to_string(line) + ": " + expr + ": " +
                           cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ")");
}

[[noreturn]] void throw_cublas_error(cublasStatus_t st, const char* expr, const char* file, int line) {
  throw std::runtime_error(std::string("cuBLAS error at ") + file + ":" + std::to_string(line) + ": " + expr + ": " +
                           cublasGetStatusName(st) + " (" + cublasGetStatusString(st) + ")");
}

// ---- devices and streams ----

namespace {

void check_device_index(int device) {
  if (device < 0 || device >= kMaxDevices)
    throw std::runtime_error("cuda backend: device index " + std::to_string(device) + " out of range");
}

struct StreamSlot {
  std::once_flag once;
  cudaStream_t stream = nullptr;
};

// Leaked on purpose: streams must outlive tensors destroyed during static destruction.
StreamSlot* stream_slots() {
  static StreamSlot* slots = new StreamSlot[kMaxDevices];
  return slots;
}

}  // namespace

void set_device(int device) {
  check_device_index(device);
  int current = -1;
  CUDA_CHECK(cudaGetDevice(&current));
  if (current != device) CUDA_CHECK(cudaSetDevice(device));
}

cudaStream_t stream(int device) {
  set_device(device);
  StreamSlot& slot = stream_slots()[device];
  std::call_once(slot.once, [&] { CUDA_CHECK(cudaStreamCreateWithFlags(&slot.stream, cudaStreamNonBlocking)); });
  return slot.stream;
}

int sm_count(int device) {
  check_device_index(device);
  static std::atomic<int> cache[kMaxDevices] = {};
  int n = cache[device].load(std::memory_order_relaxed);
  if (n > 0) return n;
  CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  if (n < 1) n = 1;
  cache[device].store(n, std::memory_order_relaxed);
  return n;
}

// ---- caching allocator ----

namespace {

constexpr size_t kSmallAlign = 512;              // small blocks: multiples of 512 bytes
constexpr size_t kSmallLimit = size_t(1) << 20;  // up to 1 MiB
constexpr size_t kLargeAlign = size_t(2) << 20;  // large blocks: multiples of 2 MiB ...

// The size class a request is served from. Small requests round up to 512 bytes; large ones
// to the next of 2^k * {1, 1.25, 1.5, 1.75} (at most 25% slack), in whole 2 MiB pages.
size_t round_size(size_t bytes) {
  if (bytes == 0) bytes = 1;
  if (bytes <= kSmallLimit) return (bytes + kSmallAlign - 1) / kSmallAlign * kSmallAlign;
  size_t pow2 = kSmallLimit;
  while (pow2 * 2 <= bytes) pow2 *= 2;  // pow2 <= bytes < 2 * pow2
  const size_t quarter = pow2 / 4;
  size_t rounded = (bytes + quarter - 1) / quarter * quarter;
  return (rounded + kLargeAlign - 1) / kLargeAlign * kLargeAlign;
}

struct DeviceCache {
  std::unordered_map<size_t, std::vector<void*>> free_blocks;  // size class -> blocks
  std::unordered_map<void*, size_t> sizes;                     // every block we own -> class
  size_t cached_bytes = 0;                                     // bytes sitting in free_blocks
};

struct Allocator {
  std::mutex mu;
  DeviceCache devices[kMaxDevices];

  // Returns every cached (free) block of `device` to the driver. Caller holds mu.
  void release_cached(int device) {
    DeviceCache& dc = devices[device];
    for (auto& [size, blocks] : dc.free_blocks) {
      for (void* p : blocks) {
        cudaFree(p);  // synchronizes the device: pending work on these blocks is finished
        dc.sizes.erase(p);
      }
    }
    dc.free_blocks.clear();
    dc.cached_bytes = 0;
  }

  void* alloc(int device, size_t bytes) {
    check_device_index(device);
    const size_t size = round_size(bytes);
    std::lock_guard<std::mutex> lock(mu);
    DeviceCache& dc = devices[device];
    auto it = dc.free_blocks.find(size);
    if (it != dc.free_blocks.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      dc.cached_bytes -= size;
      return p;
    }
    set_device(device);
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation && dc.cached_bytes > 0) {
      (void)cudaGetLastError();  // clear the failed allocation's error, then retry
      release_cached(device);
      err = cudaMalloc(&p, size);
    }
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      (void)cudaGetLastError();
      throw std::runtime_error("CUDA out of memory on device " + std::to_string(device) + ": tried to allocate " +
                               std::to_string(bytes) + " bytes (" + std::to_string(size) + " rounded); " +
                               std::to_string(free_b) + " of " + std::to_string(total_b) +
                               " bytes free: " + cudaGetErrorString(err));
    }
    dc.sizes.emplace(p, size);
    return p;
  }

  void free(int device, void* p) noexcept {
    if (!p || device < 0 || device >= kMaxDevices) return;
    try {
      std::lock_guard<std::mutex> lock(mu);
      DeviceCache& dc = devices[device];
      auto it = dc.sizes.find(p);
      if (it == dc.sizes.end()) return;  // not ours: nothing to do
      dc.free_blocks[it->second].push_back(p);
      dc.cached_bytes += it->second;
    } catch (...) {
      // Bookkeeping failed (out of host memory): drop the block rather than throw from free.
    }
  }
};

// Leaked on purpose (see stream_slots).
Allocator& allocator() {
  static Allocator* a = new Allocator();
  return *a;
}

void* alloc(int device, size_t bytes) { return allocator().alloc(device, bytes); }
void free_mem(int device, void* ptr, size_t) { allocator().free(device, ptr); }

void copy_to_host(int device, void* host_dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = stream(device);
  CUDA_CHECK(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, s));
  CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_from_host(int device, void* dst, const void* host_src, size_t bytes) {
  if (bytes == 0) return;
  cudaStream_t s = stream(device);
  CUDA_CHECK(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, s));
  CUDA_CHECK(cudaStreamSynchronize(s));  // the host buffer may be reused as soon as we return
}

void copy_same_device(int device, void* dst, const void* src, size_t bytes) {
  if (bytes == 0 || dst == src) return;
  CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream(device)));
}

void synchronize(int device) { CUDA_CHECK(cudaStreamSynchronize(stream(device))); }

}  // namespace

void* device_alloc(int device, size_t bytes) { return allocator().alloc(device, bytes); }
void device_free(int device, void* ptr, size_t) noexcept { allocator().free(device, ptr); }

void register_memory(Backend& b) {
  b.alloc = alloc;
  b.free = free_mem;
  b.copy_to_host = copy_to_host;
  b.copy_from_host = copy_from_host;
  b.copy_same_device = copy_same_device;
  b.synchronize = synchronize;
}

}  // namespace dualflow::gpu
