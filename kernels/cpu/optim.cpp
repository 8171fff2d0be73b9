// CPU fused optimizer updates (SGD, Adam/AdamW, the EMA's lerp): one pass over contiguous
// arrays, in the storage type (f32 or f64) like PyTorch's single-tensor path. Each update's
// options become template flags, so the inner loops are branch-free and vectorise.
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/common/optim_math.h"
#include "kernels/cpu/cpu_backend.h"
#include "kernels/cpu/parallel.h"

namespace dualflow::cpu {
namespace {

constexpr int64_t kGrain = 32768;

template <class F>
void dispatch_f32_f64(const char* what, DType t, F&& f) {
  switch (t) {
    case DType::f32: f.template operator()<float>(); return;
    case DType::f64: f.template operator()<double>(); return;
    default:
      throw std::runtime_error(std::string("cpu backend: ") + what + ": expected f32 or f64, got " +
                               std::string(dtype_name(t)));
  }
}

template <class T, optim::WeightDecay WD, bool SmallLerp>
void adam_loop(T* __restrict p, const T* __restrict g, T* __restrict m, T* __restrict v, int64_t n,
               const optim::AdamScalars<T>& s) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) optim::adam_element<T, WD, SmallLerp>(p[i], g[i], m[i], v[i], s);
  });
}

void adam_step(int, DType t, void* param, const void* grad, void* exp_avg, void* exp_avg_sq, int64_t n,
               const AdamStepArgs& a) {
  if (n <= 0) return;
  dispatch_f32_f64("adam_step", t, [&]<class T>() {
    const auto s = optim::AdamScalars<T>::from(a);
    T* p = static_cast<T*>(param);
    const T* g = static_cast<const T*>(grad);
    T* m = static_cast<T*>(exp_avg);
    T* v = static_cast<T*>(exp_avg_sq);
    optim::dispatch_adam(a, [&]<optim::WeightDecay WD, bool Small>() { adam_loop<T, WD, Small>(p, g, m, v, n, s); });
  });
}

template <class T, bool WD, bool Momentum, bool Nesterov, bool First>
void sgd_loop(T* __restrict p, const T* __restrict g, T* __restrict buf, int64_t n, const optim::SgdScalars<T>& s) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
    if constexpr (Momentum) {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) optim::sgd_element<T, WD, true, Nesterov, First>(p[i], g[i], buf[i], s);
    } else {
#pragma omp simd
      for (int64_t i = b; i < e; ++i) {
        T no_buffer = T(0);
        optim::sgd_element<T, WD, false, false, false>(p[i], g[i], no_buffer, s);
      }
    }
  });
}

void sgd_step(int, DType t, void* param, const void* grad, void* momentum_buf, int64_t n, const SgdStepArgs& a) {
  if (n <= 0) return;
  if (a.momentum != 0.0 && momentum_buf == nullptr)
    throw std::runtime_error("cpu backend: sgd_step: expected a momentum buffer with momentum != 0, got null");
  dispatch_f32_f64("sgd_step", t, [&]<class T>() {
    const auto s = optim::SgdScalars<T>::from(a);
    T* p = static_cast<T*>(param);
    const T* g = static_cast<const T*>(grad);
    T* buf = static_cast<T*>(momentum_buf);
    optim::dispatch_sgd(a, [&]<bool WD, bool M, bool N, bool F>() { sgd_loop<T, WD, M, N, F>(p, g, buf, n, s); });
  });
}

template <class T, bool Small>
void lerp_loop(T* __restrict y, const T* __restrict x, int64_t n, T w) {
  parallel_for(n, kGrain, [&](int64_t b, int64_t e) {
#pragma omp simd
    for (int64_t i = b; i < e; ++i) y[i] = optim::lerp<T, Small>(y[i], x[i], w);
  });
}

void lerp_inplace(int, DType t, void* shadow, const void* x, int64_t n, double weight) {
  if (n <= 0) return;
  dispatch_f32_f64("lerp_", t, [&]<class T>() {
    T* y = static_cast<T*>(shadow);
    const T* xs = static_cast<const T*>(x);
    if (optim::lerp_weight_small(weight)) lerp_loop<T, true>(y, xs, n, T(weight));
    else lerp_loop<T, false>(y, xs, n, T(weight));
  });
}

}  // namespace

void register_optim(Backend& b) {
  b.adam_step = adam_step;
  b.sgd_step = sgd_step;
  b.lerp_ = lerp_inplace;
}

}  // namespace dualflow::cpu
