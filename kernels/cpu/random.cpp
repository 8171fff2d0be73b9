// CPU random fills from the shared Philox formulas (so CUDA draws the same numbers), and
// arange; both contiguous.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <type_traits>

namespace dualflow::cpu {
namespace {

template <class T>
T from_double(double v) {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) return T(float(v));
  else if constexpr (std::is_same_v<T, bool>) return v != 0.0;
  else return T(v);
}

// Calls fill(T* out) with out typed as t's element.
template <class F>
void with_typed(DType t, void* out, F&& fill) {
  switch (t) {
    case DType::f32: return fill(static_cast<float*>(out));
    case DType::f64: return fill(static_cast<double*>(out));
    case DType::bf16: return fill(static_cast<bf16_t*>(out));
    case DType::f16: return fill(static_cast<f16_t*>(out));
    case DType::i64: return fill(static_cast<int64_t*>(out));
    case DType::i32: return fill(static_cast<int32_t*>(out));
    case DType::b8: return fill(static_cast<bool*>(out));
  }
}

// Walks whole Philox blocks: each block is computed once for its lanes, and each normal pair
// shares one logarithm, where element-by-element sampling would redo both per element. The
// values are sample()'s, bit for bit.
void random(int, philox::Dist dist, DType t, void* out, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  const bool f64 = t == DType::f64;
  const int lanes = philox::lanes(dist, f64);
  const int stride = dist == philox::Dist::Normal ? 2 : 1;
  const int64_t blocks = (n + lanes - 1) / lanes;
  with_typed(t, out, [&](auto* y) {
    using T = std::remove_pointer_t<decltype(y)>;
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
          y[first + lane] = from_double<T>(v);
          if (stride == 2 && lane + 1 < count) y[first + lane + 1] = from_double<T>(mate);
        }
      }
    });
  });
}

void arange(int, DType t, void* out, int64_t n, double start, double step) {
  with_typed(t, out, [&](auto* y) {
    using T = std::remove_pointer_t<decltype(y)>;
    parallel_for(n, 8192, [&](int64_t b, int64_t e) {  // as the elementwise ops
      for (int64_t i = b; i < e; ++i) y[i] = from_double<T>(start + step * double(i));
    });
  });
}

}  // namespace

void register_random(Backend& b) {
  b.random = random;
  b.arange = arange;
}

}  // namespace dualflow::cpu
