// CPU random fills from the shared Philox formulas (so CUDA draws the same numbers), and
// arange; both contiguous.
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class T, class V>
void store_range(void* out, int64_t n, V&& value_of) {
  T* y = static_cast<T*>(out);
  // A draw costs tens of nanoseconds (a Philox block, and a logarithm and a sine for normals),
  // so a batch's thousand or two values already pay for a second thread.
  parallel_for(n, 1024, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      double v = value_of(i);
      if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) y[i] = T(float(v));
      else if constexpr (std::is_same_v<T, bool>) y[i] = v != 0.0;
      else y[i] = T(v);
    }
  });
}

template <class V>
void store_any(DType t, void* out, int64_t n, V&& value_of) {
  switch (t) {
    case DType::f32: return store_range<float>(out, n, value_of);
    case DType::f64: return store_range<double>(out, n, value_of);
    case DType::bf16: return store_range<bf16_t>(out, n, value_of);
    case DType::f16: return store_range<f16_t>(out, n, value_of);
    case DType::i64: return store_range<int64_t>(out, n, value_of);
    case DType::i32: return store_range<int32_t>(out, n, value_of);
    case DType::b8: return store_range<bool>(out, n, value_of);
  }
}

void random(int, philox::Dist dist, DType t, void* out, int64_t n, uint64_t seed, uint64_t offset, double a, double b) {
  const bool f64 = t == DType::f64;
  store_any(t, out, n, [&](int64_t i) { return philox::sample(dist, f64, seed, offset, uint64_t(i), a, b); });
}

void arange(int, DType t, void* out, int64_t n, double start, double step) {
  store_any(t, out, n, [&](int64_t i) { return start + step * double(i); });
}

}  // namespace

void register_random(Backend& b) {
  b.random = random;
  b.arange = arange;
}

}  // namespace dualflow::cpu
