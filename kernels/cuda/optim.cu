// CUDA fused optimizer updates (SGD, Adam/AdamW, the EMA's lerp): one grid-stride kernel each
// over contiguous arrays, running the per-element formulas of kernels/common/optim_math.h that
// the CPU backend runs too, in the storage type (f32 or f64).
#include <string>

#include "kernels/common/optim_math.h"
#include "kernels/cuda/device_utils.cuh"

namespace dualflow::gpu {
namespace {

template <class F>
void dispatch_f32_f64(const char* what, DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    default: unsupported(what, t);
  }
}

template <class T, optim::WeightDecay WD, bool SmallLerp>
__global__ void adam_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ m, T* __restrict__ v, int64_t n,
                            optim::AdamScalars<T> s) {
  for (int64_t i = global_index(); i < n; i += grid_stride())
    optim::adam_element<T, WD, SmallLerp>(p[i], g[i], m[i], v[i], s);
}

void adam_step(int device, DType t, void* param, const void* grad, void* exp_avg, void* exp_avg_sq, int64_t n,
               const AdamStepArgs& a) {
  if (n <= 0) return;
  dispatch_f32_f64("adam_step", t, [&]<class T>() {
    const auto s = optim::AdamScalars<T>::from(a);
    optim::dispatch_adam(a, [&]<optim::WeightDecay WD, bool Small>() {
      adam_kernel<T, WD, Small>
          <<<grid_for(n), kThreads, 0, stream(device)>>>(static_cast<T*>(param), static_cast<const T*>(grad),
                                                         static_cast<T*>(exp_avg), static_cast<T*>(exp_avg_sq), n, s);
      CUDA_CHECK_LAUNCH();
    });
  });
}

template <class T, bool WD, bool Momentum, bool Nesterov, bool First>
__global__ void sgd_kernel(T* __restrict__ p, const T* __restrict__ g, T* __restrict__ buf, int64_t n,
                           optim::SgdScalars<T> s) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) {
    if constexpr (Momentum) {
      optim::sgd_element<T, WD, true, Nesterov, First>(p[i], g[i], buf[i], s);
    } else {
      T no_buffer = T(0);
      optim::sgd_element<T, WD, false, false, false>(p[i], g[i], no_buffer, s);
    }
  }
}

void sgd_step(int device, DType t, void* param, const void* grad, void* momentum_buf, int64_t n, const SgdStepArgs& a) {
  if (n <= 0) return;
  if (a.momentum != 0.0 && momentum_buf == nullptr)
    throw std::runtime_error("cuda backend: sgd_step: expected a momentum buffer with momentum != 0, got null");
  dispatch_f32_f64("sgd_step", t, [&]<class T>() {
    const auto s = optim::SgdScalars<T>::from(a);
    optim::dispatch_sgd(a, [&]<bool WD, bool M, bool N, bool F>() {
      sgd_kernel<T, WD, M, N, F><<<grid_for(n), kThreads, 0, stream(device)>>>(
          static_cast<T*>(param), static_cast<const T*>(grad), static_cast<T*>(momentum_buf), n, s);
      CUDA_CHECK_LAUNCH();
    });
  });
}

template <class T, bool Small>
__global__ void lerp_kernel(T* __restrict__ y, const T* __restrict__ x, int64_t n, T w) {
  for (int64_t i = global_index(); i < n; i += grid_stride()) y[i] = optim::lerp<T, Small>(y[i], x[i], w);
}

void lerp_inplace(int device, DType t, void* shadow, const void* x, int64_t n, double weight) {
  if (n <= 0) return;
  dispatch_f32_f64("lerp_", t, [&]<class T>() {
    T* y = static_cast<T*>(shadow);
    const T* xs = static_cast<const T*>(x);
    if (optim::lerp_weight_small(weight))
      lerp_kernel<T, true><<<grid_for(n), kThreads, 0, stream(device)>>>(y, xs, n, T(weight));
    else lerp_kernel<T, false><<<grid_for(n), kThreads, 0, stream(device)>>>(y, xs, n, T(weight));
    CUDA_CHECK_LAUNCH();
  });
}

}  // namespace

void register_optim(Backend& b) {
  b.adam_step = adam_step;
  b.sgd_step = sgd_step;
  b.lerp_ = lerp_inplace;
}

}  // namespace dualflow::gpu
