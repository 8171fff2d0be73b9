// CUDA unary kernels and their fused backward (out = g * f'(x)), one kernel per (dtype, op)
// so the op's switch is resolved at compile time; kept apart from elementwise.cu so the two
// halves of the elementwise instantiations compile in parallel.
#include "kernels/cuda/elementwise.cuh"

namespace dualflow::gpu {
namespace {

template <class T, class C, UnaryOp Op>
struct UnaryF {
  T* y;
  const T* x;
  C a, b;
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    y[off[0]] = store_as<T>(scalar::unary<C>(Op, C(x[off[1]]), a, b));
  }
};

template <class T, class C, UnaryOp Op>
struct UnaryBackwardF {
  T* out;
  const T* g;
  const T* x;
  C a, b;
  __device__ __forceinline__ void operator()(const int64_t* off) const {
    out[off[0]] = T(C(g[off[1]]) * scalar::unary_derivative<C>(Op, C(x[off[2]]), a, b));
  }
};

template <class T, class C, UnaryOp Op>
void unary_fixed(int device, const void* x, void* y, const ElemLayout& l, C a, C b) {
  if constexpr (is_float_like_v<T> || unary_allows_integers(Op)) {
    launch_elementwise<2>(device, l, UnaryF<T, C, Op>{static_cast<T*>(y), static_cast<const T*>(x), a, b});
  } else {
    throw std::runtime_error("cuda backend: unary op " + std::to_string(int(Op)) +
                             " is only defined for floating dtypes");
  }
}

template <class T, class C>
void unary_typed(int device, UnaryOp op, const void* x, void* y, const ElemLayout& l, C a, C b) {
  switch (op) {
#define DF_UNARY_CASE(NAME) \
  case UnaryOp::NAME: return unary_fixed<T, C, UnaryOp::NAME>(device, x, y, l, a, b);
    DF_FOR_EACH_UNARY_OP(DF_UNARY_CASE)
#undef DF_UNARY_CASE
    default: break;
  }
  throw std::runtime_error("cuda backend: unary: unknown op " + std::to_string(int(op)));
}

template <class T, class C>
void unary_backward_typed(int device, UnaryOp op, const void* g, const void* x, void* out, const ElemLayout& l, C a,
                          C b) {
  switch (op) {
#define DF_UB_CASE(NAME)                                                                                             \
  case UnaryOp::NAME:                                                                                                \
    return launch_elementwise<3>(device, l,                                                                          \
                                 UnaryBackwardF<T, C, UnaryOp::NAME>{static_cast<T*>(out), static_cast<const T*>(g), \
                                                                     static_cast<const T*>(x), a, b});
    DF_FOR_EACH_UNARY_OP(DF_UB_CASE)
#undef DF_UB_CASE
    default: break;
  }
  throw std::runtime_error("cuda backend: unary_backward: op " + std::to_string(int(op)) + " has no derivative kernel");
}

}  // namespace

void unary(int device, UnaryOp op, DType t, const void* x, void* y, const ElemLayout& l, double a, double b) {
  if (l.numel() <= 0) return;
  dispatch_all(t, [&]<class T>() {
    using C = typename Compute<T>::type;
    unary_typed<T, C>(device, op, x, y, l, C(a), C(b));
  });
}

void unary_backward(int device, UnaryOp op, DType t, const void* g, const void* x, void* out, const ElemLayout& l,
                    double a, double b) {
  if (l.numel() <= 0) return;
  dispatch_floating("unary_backward", t, [&]<class T>() {
    using C = typename Compute<T>::type;
    unary_backward_typed<T, C>(device, op, g, x, out, l, C(a), C(b));
  });
}

}  // namespace dualflow::gpu
