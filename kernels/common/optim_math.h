// The per-element formulas of the fused optimizer updates (SGD, Adam/AdamW, lerp), written
// once for host and device so both backends run the same arithmetic in the same order as
// PyTorch's single-tensor implementations (torch/optim/sgd.py, adam.py; ATen's lerp):
//   SGD:  g += wd * p;  buf = first ? g : momentum * buf + (1 - dampening) * g;
//         g = nesterov ? g + momentum * buf : buf;  p += -lr * g
//   Adam: AdamW p *= 1 - lr * wd, or Adam g += wd * p;  m = lerp(m, g, 1 - beta1);
//         v = v * beta2 + (1 - beta2) * g * g;  p += -(lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps)
// Scalars are formed in double on the host and rounded to the storage type once, as PyTorch
// rounds its Python-float hyper-parameters.
#pragma once
#include <cmath>
#include <type_traits>

#include "kernels/common/backend.h"
#include "kernels/common/hd.h"

namespace dualflow::optim {

enum class WeightDecay { None, L2, Decoupled };

// ATen's lerp picks one of two algebraically equal forms by |weight| < 0.5; so do we, per call.
inline bool lerp_weight_small(double w) { return std::abs(w) < 0.5; }

template <class T, bool Small>
DF_HD inline T lerp(T self, T end, T weight) {
  if constexpr (Small) return self + weight * (end - self);
  else return end - (end - self) * (T(1) - weight);
}

template <class T>
DF_HD inline T sqrt_of(T x) {
  if constexpr (std::is_same_v<T, float>) return sqrtf(x);
  else return sqrt(x);
}

template <class T>
struct AdamScalars {
  T weight_decay, decay_factor, lerp_weight, beta2, one_minus_beta2, bias_correction2_sqrt, eps, neg_step_size;
  static AdamScalars from(const AdamStepArgs& a) {
    return AdamScalars{
        T(a.weight_decay), T(1.0 - a.lr * a.weight_decay), T(1.0 - a.beta1), T(a.beta2),
        T(1.0 - a.beta2),  T(a.bias_correction2_sqrt),     T(a.eps),         T(-(a.lr / a.bias_correction1))};
  }
};

template <class T, WeightDecay WD, bool SmallLerp>
DF_HD inline void adam_element(T& param, T grad, T& exp_avg, T& exp_avg_sq, const AdamScalars<T>& s) {
  T p = param, g = grad;
  if constexpr (WD == WeightDecay::Decoupled) p = p * s.decay_factor;
  if constexpr (WD == WeightDecay::L2) g = g + s.weight_decay * p;
  const T m = lerp<T, SmallLerp>(exp_avg, g, s.lerp_weight);
  const T v = exp_avg_sq * s.beta2 + s.one_minus_beta2 * g * g;
  const T denom = sqrt_of(v) / s.bias_correction2_sqrt + s.eps;
  param = p + s.neg_step_size * m / denom;
  exp_avg = m;
  exp_avg_sq = v;
}

// Calls f.template operator()<WeightDecay, bool small_lerp>() for the update `a` describes.
template <class F>
void dispatch_adam(const AdamStepArgs& a, F&& f) {
  const bool small = lerp_weight_small(1.0 - a.beta1);
  const WeightDecay wd = a.weight_decay == 0.0      ? WeightDecay::None
                         : a.decoupled_weight_decay ? WeightDecay::Decoupled
                                                    : WeightDecay::L2;
  auto go = [&]<WeightDecay WD>() {
    if (small) f.template operator()<WD, true>();
    else f.template operator()<WD, false>();
  };
  switch (wd) {
    case WeightDecay::None: go.template operator()<WeightDecay::None>(); break;
    case WeightDecay::L2: go.template operator()<WeightDecay::L2>(); break;
    case WeightDecay::Decoupled: go.template operator()<WeightDecay::Decoupled>(); break;
  }
}

template <class T>
struct SgdScalars {
  T weight_decay, momentum, one_minus_dampening, neg_lr;
  static SgdScalars from(const SgdStepArgs& a) {
    return SgdScalars{T(a.weight_decay), T(a.momentum), T(1.0 - a.dampening), T(-a.lr)};
  }
};

template <class T, bool WD, bool Momentum, bool Nesterov, bool First>
DF_HD inline void sgd_element(T& param, T grad, T& momentum_buf, const SgdScalars<T>& s) {
  T g = grad;
  if constexpr (WD) g = g + s.weight_decay * param;
  if constexpr (Momentum) {
    T buf;
    if constexpr (First) buf = g;
    else buf = momentum_buf * s.momentum + s.one_minus_dampening * g;
    momentum_buf = buf;
    if constexpr (Nesterov) g = g + s.momentum * buf;
    else g = buf;
  }
  param = param + s.neg_lr * g;
}

// Calls f.template operator()<WD, Momentum, Nesterov, First>() for the update `a` describes.
template <class F>
void dispatch_sgd(const SgdStepArgs& a, F&& f) {
  const bool wd = a.weight_decay != 0.0;
  auto with_wd = [&]<bool WD>() {
    if (a.momentum == 0.0) return f.template operator()<WD, false, false, false>();
    if (a.nesterov) {
      if (a.first_step) return f.template operator()<WD, true, true, true>();
      return f.template operator()<WD, true, true, false>();
    }
    if (a.first_step) return f.template operator()<WD, true, false, true>();
    return f.template operator()<WD, true, false, false>();
  };
  if (wd) with_wd.template operator()<true>();
  else with_wd.template operator()<false>();
}

}  // namespace dualflow::optim
