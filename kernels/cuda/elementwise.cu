// CUDA elementwise kernels: fill, cast-copy between any two dtypes, binary arithmetic and
// comparisons, where; all over the strided/contiguous launcher of elementwise.cuh. The
// unary kernels live in elementwise_unary.cu; this file registers both.
#include <cstring>

#include "kernels/cuda/elementwise.cuh"

namespace dualflow::gpu {
namespace {

// ---- fill ----

template <class U>
struct FillF {
  U* o;
  U v;
  __device__ __forceinline__ void operator()(const int64_t* off) const { o[off[0]] = v; }
};

void fill(int device, DType t, void* out, const ElemLayout& l, double value) {
  const int64_t n = l.numel();
  if (n <= 0) return;
  dispatch_all(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    const T v = store_as<T>(C(value));  // same conversion as the CPU backend
    unsigned char bytes[sizeof(T)];
    std::memcpy(bytes, &v, sizeof(T));
    bool uniform = true;  // every byte equal: a memset does it
    for (size_t i = 1; i < sizeof(T); ++i) uniform &= bytes[i] == bytes[0];
    if (uniform && layout_contiguous(l, 1)) {
      CUDA_CHECK(cudaMemsetAsync(out, bytes[0], size_t(n) * sizeof(T), stream(device)));
      return;
    }
    using U = bits_t<T>;
    U bits;
    std::memcpy(&bits, &v, sizeof(U));
    launch_elementwise<1>(device, l, FillF<U>{static_cast<U*>(out), bits});
  });
}

// ---- copy with cast ----

// src -> dst exactly as the CPU backend converts: integer <-> integer through int64, anything
// with a double or an int64 through double, the rest through float.
template <class D, class S>
__device__ __forceinline__ D convert(S v) {
  using C = std::conditional_t<std::is_same_v<S, double> || std::is_same_v<D, double>, double,
                               std::conditional_t<std::is_integral_v<S> && std::is_integral_v<D>, int64_t, float>>;
  using Mid =
      std::conditional_t<(std::is_same_v<S, int64_t> || std::is_same_v<D, int64_t>)&&!std::is_same_v<C, int64_t>,
                         double, C>;
  return store_as<D>(Mid(typename Compute<S>::type(v)));
}

template <class D, class S>
struct CastF {
  D* o;
  const S* x;
  __device__ __forceinline__ void operator()(const int64_t* off) const { o[off[0]] = convert<D>(x[off[1]]); }
};

template <class U>
struct MoveF {
  U* o;
  const U* x;
  __device__ __forceinline__ void operator()(const int64_t* off) const { o[off[0]] = x[off[1]]; }
};

void copy(int device, DType src_t, const void* src, DType dst_t, void* dst, const ElemLayout& l) {
  const int64_t n = l.numel();
  if (n <= 0) return;
  if (src_t == dst_t) {
    if (layout_contiguous(l, 2)) {
      if (dst != src)
        CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(n) * dtype_size(dst_t), cudaMemcpyDeviceToDevice, stream(device)));
      return;
    }
    dispatch_bits(dst_t, [&]<class U>() {
      launch_elementwise<2>(device, l, MoveF<U>{static_cast<U*>(dst), static_cast<const U*>(src)});
    });
    return;
  }
  dispatch_all(dst_t, [&]<class D>() {
    dispatch_all(src_t, [&]<class S>() {
      if constexpr (!std::is_same_v<D, S>)
        launch_elementwise<2>(device, l, CastF<D, S>{static_cast<D*>(dst), static_cast<const S*>(src)});
    });
  });
}

// ---- binary ----

template <class T, class C, BinaryOp Op>
struct BinaryF {
  void* out;
  const T* x;
  const T* y;
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    if constexpr (binary_is_comparison(Op)) {
      static_cast<bool*>(out)[off[0]] = scalar::compare<C>(Op, C(x[off[1]]), C(y[off[2]]));
    } else {
      static_cast<T*>(out)[off[0]] = store_as<T>(scalar::binary<C>(Op, C(x[off[1]]), C(y[off[2]])));
    }
  }
};

void binary(int device, BinaryOp op, DType t, const void* x, const void* y, void* out, const ElemLayout& l) {
  dispatch_all(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    const T* xp = static_cast<const T*>(x);
    const T* yp = static_cast<const T*>(y);
    switch (op) {
#define DF_BIN_CASE(NAME) \
  case BinaryOp::NAME:    \
    return launch_elementwise<3>(device, l, BinaryF<T, C, BinaryOp::NAME>{out, xp, yp});
      DF_FOR_EACH_BINARY_OP(DF_BIN_CASE)
#undef DF_BIN_CASE
      default: break;
    }
    throw std::runtime_error("cuda backend: binary: unknown op " + std::to_string(int(op)));
  });
}

// ---- where ----

template <class U>
struct WhereF {
  U* o;
  const bool* c;
  const U* x;
  const U* y;
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    o[off[0]] = c[off[1]] ? x[off[2]] : y[off[3]];
  }
};

void where(int device, DType t, const void* cond, const void* x, const void* y, void* out, const ElemLayout& l) {
  dispatch_bits(t, [&]<class U>() {
    launch_elementwise<4>(device, l,
                          WhereF<U>{static_cast<U*>(out), static_cast<const bool*>(cond), static_cast<const U*>(x),
                                    static_cast<const U*>(y)});
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
}

}  // namespace dualflow::gpu
