// CPU indexing kernels along one dim of a contiguous [outer, n, inner] block: index_select and
// its adjoint index_add, gather and its adjoint scatter_add. Indices were range-checked by
// the engine before these run. Adds accumulate serially per outer block (no races).
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

template <class T>
inline void add_into(T& dst, T v) {
  if constexpr (std::is_same_v<T, bf16_t> || std::is_same_v<T, f16_t>) dst = T(float(dst) + float(v));
  else if constexpr (std::is_same_v<T, bool>) dst = dst || v;
  else dst = T(dst + v);
}

void index_select(int, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in,
                  int64_t n_idx, int64_t inner) {
  dispatch_dtype(t, [&]<class T>() {
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    parallel_for(outer * n_idx, grain_for(16384, inner), [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t o = p / n_idx, j = p % n_idx;
        const T* src = x + (o * n_in + idx[j]) * inner;
        T* dst = y + p * inner;
        for (int64_t i = 0; i < inner; ++i) dst[i] = src[i];
      }
    });
  });
}

void index_add(int, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
               int64_t n_idx, int64_t inner) {
  dispatch_dtype(t, [&]<class T>() {
    const T* s = static_cast<const T*>(src);
    T* y = static_cast<T*>(out);
    parallel_for(outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t j = 0; j < n_idx; ++j) {
          const T* sr = s + (o * n_idx + j) * inner;
          T* dr = y + (o * n_out + idx[j]) * inner;
          for (int64_t i = 0; i < inner; ++i) add_into(dr[i], sr[i]);
        }
    });
  });
}

void gather(int, DType t, const void* in, const int64_t* idx, void* out, int64_t outer, int64_t n_in, int64_t n_idx,
            int64_t inner) {
  dispatch_dtype(t, [&]<class T>() {
    const T* x = static_cast<const T*>(in);
    T* y = static_cast<T*>(out);
    parallel_for(outer * n_idx * inner, 32768, [&](int64_t b, int64_t e) {
      for (int64_t p = b; p < e; ++p) {
        int64_t i = p % inner, o = p / (n_idx * inner);
        y[p] = x[(o * n_in + idx[p]) * inner + i];
      }
    });
  });
}

void scatter_add(int, DType t, const void* src, const int64_t* idx, void* out, int64_t outer, int64_t n_out,
                 int64_t n_idx, int64_t inner) {
  dispatch_dtype(t, [&]<class T>() {
    const T* s = static_cast<const T*>(src);
    T* y = static_cast<T*>(out);
    parallel_for(outer, 1, [&](int64_t b, int64_t e) {
      for (int64_t o = b; o < e; ++o)
        for (int64_t j = 0; j < n_idx; ++j)
          for (int64_t i = 0; i < inner; ++i) {
            int64_t p = (o * n_idx + j) * inner + i;
            add_into(y[(o * n_out + idx[p]) * inner + i], s[p]);
          }
    });
  });
}

int64_t find_out_of_range(int, const int64_t* idx, int64_t n, int64_t limit) {
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= limit) return i;
  return -1;
}

}  // namespace

void register_indexing(Backend& b) {
  b.index_select = index_select;
  b.index_add = index_add;
  b.gather = gather;
  b.scatter_add = scatter_add;
  b.find_out_of_range = find_out_of_range;
}

}  // namespace dualflow::cpu
