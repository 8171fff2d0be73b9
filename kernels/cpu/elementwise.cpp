// CPU elementwise kernels (fill, cast-copy, unary, fused unary backward, binary, addcmul,
// where) over one strided/broadcasting n-d iterator. Contiguous and scalar-broadcast inner rows
// take loops the compiler vectorises; everything else takes the strided loop.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

// Elements per chunk: an op of fewer than twice this stays on one thread. Workers spin between
// jobs (thread_pool.cpp), so a hand-off costs a few cache-line transfers, not a wake-up; at 2
// threads the toy2d MeanFlow step ran about 2% faster with this grain than with 32,768.
constexpr int64_t kGrain = 8192;

// Calls row(n, ptrs, inner_strides) for consecutive runs along the innermost dim, covering the
// linear range [begin, end) of the layout. ptrs are byte pointers, strides are in elements.
template <int N, class Row>
void for_rows(const ElemLayout& l, char* const base[N], const size_t esize[N], int64_t begin, int64_t end, Row&& row) {
  if (l.ndim == 0) {  // a single element
    char* p[N];
    int64_t s[N];
    for (int k = 0; k < N; ++k) {
      p[k] = base[k];
      s[k] = 0;
    }
    row(int64_t(1), p, s);
    return;
  }
  const int last = l.ndim - 1;
  int64_t coord[kMaxDims];
  int64_t rem = begin;
  for (int d = last; d >= 0; --d) {
    coord[d] = rem % l.sizes[d];
    rem /= l.sizes[d];
  }
  int64_t inner_stride[N];
  for (int k = 0; k < N; ++k) inner_stride[k] = l.strides[k][last];
  while (begin < end) {
    char* p[N];
    for (int k = 0; k < N; ++k) {
      int64_t off = 0;
      for (int d = 0; d <= last; ++d) off += coord[d] * l.strides[k][d];
      p[k] = base[k] + off * int64_t(esize[k]);
    }
    int64_t n = std::min(l.sizes[last] - coord[last], end - begin);
    row(n, p, inner_stride);
    begin += n;
    coord[last] += n;
    for (int d = last; d > 0 && coord[d] == l.sizes[d]; --d) {
      coord[d] = 0;
      ++coord[d - 1];
    }
  }
}

template <int N, class Row>
void run(const ElemLayout& l, char* const base[N], const size_t esize[N], Row&& row) {
  parallel_for(l.numel(), kGrain, [&](int64_t b, int64_t e) { for_rows<N>(l, base, esize, b, e, row); });
}

void fill(int, DType t, void* out, const ElemLayout& l, double value) {
  dispatch_dtype(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    const T v = store_as<T>(C(value));
    char* base[1] = {static_cast<char*>(out)};
    size_t es[1] = {sizeof(T)};
    run<1>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
      T* o = reinterpret_cast<T*>(p[0]);
      if (s[0] == 1) {
        for (int64_t i = 0; i < n; ++i) o[i] = v;
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = v;
      }
    });
  });
}

void copy(int, DType src_t, const void* src, DType dst_t, void* dst, const ElemLayout& l) {
  dispatch_dtype(dst_t, [&]<class D>() {
    dispatch_dtype(src_t, [&]<class S>() {
      char* base[2] = {static_cast<char*>(dst), const_cast<char*>(static_cast<const char*>(src))};
      size_t es[2] = {sizeof(D), sizeof(S)};
      run<2>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
        D* o = reinterpret_cast<D*>(p[0]);
        const S* x = reinterpret_cast<const S*>(p[1]);
        if constexpr (std::is_same_v<D, S>) {
          if (s[0] == 1 && s[1] == 1) {
            // Short runs (the rows of a narrow slice, such as 2 coordinates concatenated in front
            // of a time embedding) cost more as a memcpy call each than as a loop.
            if (n * int64_t(sizeof(D)) >= 128) {
              std::memcpy(o, x, size_t(n) * sizeof(D));
            } else {
              for (int64_t i = 0; i < n; ++i) o[i] = x[i];
            }
            return;
          }
          for (int64_t i = 0; i < n; ++i) o[i * s[0]] = x[i * s[1]];
        } else {
          using C =
              std::conditional_t<std::is_same_v<S, double> || std::is_same_v<D, double>, double,
                                 std::conditional_t<std::is_integral_v<S> && std::is_integral_v<D>, int64_t, float>>;
          // integer <-> integer goes through int64; anything with a float through float/double
          using Mid = std::conditional_t<
              (std::is_same_v<S, int64_t> || std::is_same_v<D, int64_t>)&&!std::is_same_v<C, int64_t>, double, C>;
          if (s[0] == 1 && s[1] == 1) {
            for (int64_t i = 0; i < n; ++i) o[i] = store_as<D>(Mid(typename Compute<S>::type(x[i])));
          } else {
            for (int64_t i = 0; i < n; ++i) o[i * s[0]] = store_as<D>(Mid(typename Compute<S>::type(x[i * s[1]])));
          }
        }
      });
    });
  });
}

template <class T, class F>
void unary_loop(const void* x, void* y, const ElemLayout& l, F f) {
  char* base[2] = {static_cast<char*>(y), const_cast<char*>(static_cast<const char*>(x))};
  size_t es[2] = {sizeof(T), sizeof(T)};
  run<2>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
    T* __restrict o = reinterpret_cast<T*>(p[0]);
    const T* __restrict a = reinterpret_cast<const T*>(p[1]);
    if (s[0] == 1 && s[1] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(a[i * s[1]]);
    }
  });
}

// sin and cos computed in f32 (f32 and the 16-bit floats) run the vectorised
// scalar::sin_cos_f32, which holds for |x| <= kTrigFastLimit. A second pass recomputes the
// elements beyond it (and inf, nan) with the library; where there are none it only compares.
template <class C, UnaryOp Op>
constexpr bool kTrigFixup = std::is_same_v<C, float> && (Op == UnaryOp::Sin || Op == UnaryOp::Cos);

// f(x) (or f'(x) with `derivative`) of sin or cos by the library (the shared formulas in f64),
// for the elements beyond the fast range.
template <UnaryOp Op>
float library_trig(float x, bool derivative) {
  return float(derivative ? scalar::unary_derivative<double>(Op, x, 0.0, 0.0) : scalar::unary<double>(Op, x, 0.0, 0.0));
}

template <class T, UnaryOp Op, int N, class F>
void trig_fixup(const ElemLayout& l, char** base, size_t* es, F recompute) {
  run<N>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
    const T* xp = reinterpret_cast<const T*>(p[N - 1]);
    const int64_t stride = s[N - 1];
    float largest = 0.0f;  // a vectorised scan first; the scalar pass only where it found some
    if (stride == 1) {
#pragma omp simd reduction(max : largest)
      for (int64_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(float(xp[i])));
    } else {
      for (int64_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(float(xp[i * stride])));
    }
    // A nan may or may not reach `largest`; either way its element is right (the fast form
    // gives nan for nan, and so does the library).
    if (largest <= scalar::kTrigFastLimit) return;
    for (int64_t i = 0; i < n; ++i) {
      const float v = float(xp[i * stride]);
      if (!(std::fabs(v) <= scalar::kTrigFastLimit)) recompute(p, s, i, v);
    }
  });
}

// Instantiates a loop per op so the op's switch is resolved outside the inner loop.
template <class T, class C, UnaryOp Op>
void unary_fixed(const void* x, void* y, const ElemLayout& l, C a, C b) {
  unary_loop<T>(x, y, l, [a, b](T v) { return store_as<T>(scalar::unary<C>(Op, C(v), a, b)); });
  if constexpr (kTrigFixup<C, Op>) {
    char* base[2] = {static_cast<char*>(y), const_cast<char*>(static_cast<const char*>(x))};
    size_t es[2] = {sizeof(T), sizeof(T)};
    trig_fixup<T, Op, 2>(l, base, es, [](char** p, const int64_t* s, int64_t i, float v) {
      reinterpret_cast<T*>(p[0])[i * s[0]] = store_as<T>(library_trig<Op>(v, false));
    });
  }
}

template <class T, class C>
void unary_typed(UnaryOp op, const void* x, void* y, const ElemLayout& l, C a, C b) {
  switch (op) {
#define DF_UNARY_CASE(NAME) \
  case UnaryOp::NAME: return unary_fixed<T, C, UnaryOp::NAME>(x, y, l, a, b);
    DF_FOR_EACH_UNARY_OP(DF_UNARY_CASE)
#undef DF_UNARY_CASE
    default: break;
  }
}

void unary(int, UnaryOp op, DType t, const void* x, void* y, const ElemLayout& l, double a, double b) {
  dispatch_dtype(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    unary_typed<T, C>(op, x, y, l, C(a), C(b));
  });
}

template <class T, class C, UnaryOp Op>
void unary_backward_fixed(const void* g, const void* x, void* out, const ElemLayout& l, C a, C b) {
  char* base[3] = {static_cast<char*>(out), const_cast<char*>(static_cast<const char*>(g)),
                   const_cast<char*>(static_cast<const char*>(x))};
  size_t es[3] = {sizeof(T), sizeof(T), sizeof(T)};
  run<3>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
    T* __restrict o = reinterpret_cast<T*>(p[0]);
    const T* __restrict gp = reinterpret_cast<const T*>(p[1]);
    const T* __restrict xp = reinterpret_cast<const T*>(p[2]);
    auto f = [&](T gv, T xv) { return T(C(gv) * scalar::unary_derivative<C>(Op, C(xv), a, b)); };
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(gp[i], xp[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(gp[i * s[1]], xp[i * s[2]]);
    }
  });
  if constexpr (kTrigFixup<C, Op>) {
    trig_fixup<T, Op, 3>(l, base, es, [](char** p, const int64_t* s, int64_t i, float v) {
      const T gv = reinterpret_cast<const T*>(p[1])[i * s[1]];
      reinterpret_cast<T*>(p[0])[i * s[0]] = T(C(gv) * library_trig<Op>(v, true));
    });
  }
}

void unary_backward(int, UnaryOp op, DType t, const void* g, const void* x, void* out, const ElemLayout& l, double a,
                    double b) {
  auto go = [&]<class T>() {
    using C = typename Compute<T>::type;
    switch (op) {
// clang-format off
#define DF_UB_CASE(NAME) case UnaryOp::NAME: return unary_backward_fixed<T, C, UnaryOp::NAME>(g, x, out, l, C(a), C(b));
    DF_FOR_EACH_UNARY_OP(DF_UB_CASE)
#undef DF_UB_CASE
        // clang-format on
      default: break;
    }
  };
  switch (t) {
    case DType::f32: go.template operator()<float>(); break;
    case DType::f64: go.template operator()<double>(); break;
    case DType::bf16: go.template operator()<bf16_t>(); break;
    case DType::f16: go.template operator()<f16_t>(); break;
    default: break;
  }
}

template <class T, class R, class F>
void binary_loop(const void* x, const void* y, void* out, const ElemLayout& l, F f) {
  char* base[3] = {static_cast<char*>(out), const_cast<char*>(static_cast<const char*>(x)),
                   const_cast<char*>(static_cast<const char*>(y))};
  size_t es[3] = {sizeof(R), sizeof(T), sizeof(T)};
  run<3>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
    R* __restrict o = reinterpret_cast<R*>(p[0]);
    const T* __restrict a = reinterpret_cast<const T*>(p[1]);
    const T* __restrict b = reinterpret_cast<const T*>(p[2]);
    if (s[0] == 1 && s[1] == 1 && s[2] == 1) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], b[i]);
    } else if (s[0] == 1 && s[1] == 1 && s[2] == 0) {
      const T bv = b[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(a[i], bv);
    } else if (s[0] == 1 && s[1] == 0 && s[2] == 1) {
      const T av = a[0];
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) o[i] = f(av, b[i]);
    } else {
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(a[i * s[1]], b[i * s[2]]);
    }
  });
}

template <class T, class C, BinaryOp Op>
void binary_fixed(const void* x, const void* y, void* out, const ElemLayout& l) {
  if constexpr (binary_is_comparison(Op)) {
    binary_loop<T, bool>(x, y, out, l, [](T a, T b) { return scalar::compare<C>(Op, C(a), C(b)); });
  } else {
    binary_loop<T, T>(x, y, out, l, [](T a, T b) { return store_as<T>(scalar::binary<C>(Op, C(a), C(b))); });
  }
}

void binary(int, BinaryOp op, DType t, const void* x, const void* y, void* out, const ElemLayout& l) {
  dispatch_dtype(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    switch (op) {
// clang-format off
#define DF_BIN_CASE(NAME) case BinaryOp::NAME: return binary_fixed<T, C, BinaryOp::NAME>(x, y, out, l);
    DF_FOR_EACH_BINARY_OP(DF_BIN_CASE)
#undef DF_BIN_CASE
        // clang-format on
      default: break;
    }
  });
}

// out = x + a * b (rounded once per element in the compute type), one pass where the
// composed ops take two.
void addcmul(int, DType t, const void* x, const void* a, const void* b, void* out, const ElemLayout& l) {
  dispatch_dtype(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    char* base[4] = {static_cast<char*>(out), const_cast<char*>(static_cast<const char*>(x)),
                     const_cast<char*>(static_cast<const char*>(a)), const_cast<char*>(static_cast<const char*>(b))};
    size_t es[4] = {sizeof(T), sizeof(T), sizeof(T), sizeof(T)};
    run<4>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
      T* __restrict o = reinterpret_cast<T*>(p[0]);
      const T* __restrict xp = reinterpret_cast<const T*>(p[1]);
      const T* __restrict ap = reinterpret_cast<const T*>(p[2]);
      const T* __restrict bp = reinterpret_cast<const T*>(p[3]);
      auto f = [](T xv, T av, T bv) { return store_as<T>(C(xv) + C(av) * C(bv)); };
      if (s[0] == 1 && s[1] == 1 && s[2] == 1 && s[3] == 1) {
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) o[i] = f(xp[i], ap[i], bp[i]);
      } else if (s[0] == 1 && s[1] == 1 && s[2] == 0 && s[3] == 1) {
        const T av = ap[0];
#pragma omp simd
        for (int64_t i = 0; i < n; ++i) o[i] = f(xp[i], av, bp[i]);
      } else {
        for (int64_t i = 0; i < n; ++i) o[i * s[0]] = f(xp[i * s[1]], ap[i * s[2]], bp[i * s[3]]);
      }
    });
  });
}

void where(int, DType t, const void* cond, const void* x, const void* y, void* out, const ElemLayout& l) {
  dispatch_dtype(t, [&]<class T>() {
    char* base[4] = {static_cast<char*>(out), const_cast<char*>(static_cast<const char*>(cond)),
                     const_cast<char*>(static_cast<const char*>(x)), const_cast<char*>(static_cast<const char*>(y))};
    size_t es[4] = {sizeof(T), 1, sizeof(T), sizeof(T)};
    run<4>(l, base, es, [&](int64_t n, char** p, const int64_t* s) {
      T* o = reinterpret_cast<T*>(p[0]);
      const bool* c = reinterpret_cast<const bool*>(p[1]);
      const T* a = reinterpret_cast<const T*>(p[2]);
      const T* b = reinterpret_cast<const T*>(p[3]);
      for (int64_t i = 0; i < n; ++i) o[i * s[0]] = c[i * s[1]] ? a[i * s[2]] : b[i * s[3]];
    });
  });
}

}  // namespace

void register_elementwise(Backend& b) {
  b.fill = fill;
  b.copy = copy;
  b.unary = unary;
  b.unary_backward = unary_backward;
  b.binary = binary;
  b.where = where;
  b.addcmul = addcmul;
}

}  // namespace dualflow::cpu
