// CPU random fills from the shared Philox formulas (so CUDA draws the same numbers), and
// arange; both contiguous.
#include "kernels/common/scalar_ops.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>

namespace dualflow::cpu {
namespace {

// Walks whole Philox blocks: each block is computed once for its lanes, and each normal pair
// shares one logarithm, where element-by-element sampling would redo both per element. The
// values are sample()'s, bit for bit.
void random(int, philox::Dist dist, DType t, void* out, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  const bool f64 = t == DType::f64;
  const int lanes = philox::lanes(dist, f64);
  const int stride = dist == philox::Dist::Normal ? 2 : 1;
  const int64_t blocks = (n + lanes - 1) / lanes;
  dispatch_dtype(t, [&]<class T>() {
    T* y = static_cast<T*>(out);
    // A block costs tens of nanoseconds (ten Philox rounds, and a logarithm and a sine for
    // normals), so a batch's thousand or two values already pay for a second thread.
    parallel_for(blocks, grain_for(1024, lanes), [&](int64_t jb, int64_t je) {
      for (int64_t j = jb; j < je; ++j) {
        const philox::Block blk = philox::block(seed, offset + uint64_t(j));
        const int64_t first = j * lanes;
        const int count = int(std::min<int64_t>(lanes, n - first));
        for (int lane = 0; lane < count; lane += stride) {
          double mate = 0.0;
          const double v = philox::sample_lane(dist, f64, blk, lane, a, b, stride == 2 ? &mate : nullptr);
          y[first + lane] = store_as<T>(v);
          if (stride == 2 && lane + 1 < count) y[first + lane + 1] = store_as<T>(mate);
        }
      }
    });
  });
}

void arange(int, DType t, void* out, int64_t n, double start, double step) {
  dispatch_dtype(t, [&]<class T>() {
    T* y = static_cast<T*>(out);
    parallel_for(n, 8192, [&](int64_t b, int64_t e) {  // as the elementwise ops
      for (int64_t i = b; i < e; ++i) y[i] = store_as<T>(start + step * double(i));
    });
  });
}

}  // namespace

void register_random(Backend& b) {
  b.random = random;
  b.arange = arange;
}

}  // namespace dualflow::cpu
