// CPU reductions over the middle dim of a contiguous [outer, r, inner] block: sums keep
// float lanes per block and add blocks in double, so large f32 sums stay accurate; inner > 1
// accumulates whole rows at a time so the inner loop is contiguous.
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class T>
struct Acc {
  using type = double;
};
template <>
struct Acc<int64_t> {
  using type = int64_t;
};
template <>
struct Acc<int32_t> {
  using type = int64_t;
};
template <>
struct Acc<bool> {
  using type = int64_t;
};

template <class T>
double sum_row(const T* x, int64_t r) {
  using C = std::conditional_t<std::is_same_v<T, double>, double, float>;
  double total = 0;
  constexpr int64_t kBlock = 4096;
  for (int64_t b0 = 0; b0 < r; b0 += kBlock) {
    int64_t b1 = std::min(r, b0 + kBlock);
    C lanes[8] = {};
    int64_t i = b0;
    for (; i + 8 <= b1; i += 8)
      for (int j = 0; j < 8; ++j) lanes[j] += C(x[i + j]);
    C s = 0;
    for (; i < b1; ++i) s += C(x[i]);
    for (int j = 0; j < 8; ++j) s += lanes[j];
    total += double(s);
  }
  return total;
}

template <class T>
void reduce_typed(ReduceOp op, const T* in, void* out_v, int64_t outer, int64_t r, int64_t inner) {
  using C = std::conditional_t<std::is_floating_point_v<T> || std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>,
                               double, int64_t>;
  const bool arg = op == ReduceOp::ArgMax || op == ReduceOp::ArgMin;
  const bool is_max = op == ReduceOp::Max || op == ReduceOp::ArgMax;
  T* out = static_cast<T*>(out_v);
  int64_t* out_idx = static_cast<int64_t*>(out_v);
  auto better = [&](C v, C best) {
    if (v != v) return !(best != best);  // NaN wins (propagates), first NaN kept
    if (best != best) return false;
    return is_max ? v > best : v < best;
  };
  if (inner == 1) {
    parallel_for(outer, grain_for(16384, r), [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o) {
        const T* x = in + o * r;
        if (op == ReduceOp::Sum) {
          if constexpr (std::is_integral_v<T>) {
            int64_t s = 0;
            for (int64_t i = 0; i < r; ++i) s += int64_t(x[i]);
            out[o] = T(s);
          } else {
            double total = sum_row(x, r);
            if constexpr (std::is_same_v<T, double>) out[o] = total;
            else out[o] = T(float(total));
          }
          continue;
        }
        C best = C(x[0]);
        int64_t bi = 0;
        for (int64_t i = 1; i < r; ++i) {
          C v = C(x[i]);
          if (better(v, best)) {
            best = v;
            bi = i;
          }
        }
        if (arg) out_idx[o] = bi;
        else if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) out[o] = T(float(best));
        else out[o] = T(best);
      }
    });
    return;
  }
  // inner > 1: accumulate rows of `inner` contiguous values. Each output reads r inputs, so the
  // grain is counted in inputs as above: a bias gradient (one sum over 1,024 rows of 256
  // columns) splits across threads instead of running on the caller alone.
  parallel_for(outer * inner, grain_for(16384, r), [&](int64_t b, int64_t e) {
    // split the [outer*inner] output range into per-outer column ranges
    int64_t pos = b;
    std::vector<typename Acc<T>::type> acc;
    std::vector<int64_t> idx;
    while (pos < e) {
      int64_t o = pos / inner, c0 = pos % inner;
      int64_t c1 = std::min(inner, c0 + (e - pos));
      int64_t w = c1 - c0;
      const T* base = in + o * r * inner;
      if (op == ReduceOp::Sum) {
        acc.assign(size_t(w), 0);
        for (int64_t i = 0; i < r; ++i) {
          const T* row = base + i * inner + c0;
          for (int64_t j = 0; j < w; ++j) acc[size_t(j)] += typename Acc<T>::type(row[j]);
        }
        for (int64_t j = 0; j < w; ++j) {
          if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>)
            out[o * inner + c0 + j] = T(float(acc[size_t(j)]));
          else out[o * inner + c0 + j] = T(acc[size_t(j)]);
        }
      } else {
        std::vector<C> best(static_cast<size_t>(w));
        idx.assign(size_t(w), 0);
        for (int64_t j = 0; j < w; ++j) best[size_t(j)] = C(base[c0 + j]);
        for (int64_t i = 1; i < r; ++i) {
          const T* row = base + i * inner + c0;
          for (int64_t j = 0; j < w; ++j) {
            C v = C(row[j]);
            if (better(v, best[size_t(j)])) {
              best[size_t(j)] = v;
              idx[size_t(j)] = i;
            }
          }
        }
        for (int64_t j = 0; j < w; ++j) {
          if (arg) out_idx[o * inner + c0 + j] = idx[size_t(j)];
          else if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>)
            out[o * inner + c0 + j] = T(float(best[size_t(j)]));
          else out[o * inner + c0 + j] = T(best[size_t(j)]);
        }
      }
      pos += w;
    }
  });
}

void reduce(int, ReduceOp op, DType t, const void* in, void* out, int64_t outer, int64_t r, int64_t inner) {
  switch (t) {
    case DType::f32: return reduce_typed(op, static_cast<const float*>(in), out, outer, r, inner);
    case DType::f64: return reduce_typed(op, static_cast<const double*>(in), out, outer, r, inner);
    case DType::bf16: return reduce_typed(op, static_cast<const bf16_t*>(in), out, outer, r, inner);
    case DType::f16: return reduce_typed(op, static_cast<const f16_t*>(in), out, outer, r, inner);
    case DType::i64: return reduce_typed(op, static_cast<const int64_t*>(in), out, outer, r, inner);
    case DType::i32: return reduce_typed(op, static_cast<const int32_t*>(in), out, outer, r, inner);
    case DType::b8: return reduce_typed(op, static_cast<const bool*>(in), out, outer, r, inner);
  }
}

}  // namespace

void register_reduce(Backend& b) { b.reduce = reduce; }

}  // namespace dualflow::cpu
