// Fused in-place optimizer updates on tensors (SGD, Adam/AdamW, the EMA's lerp): one backend
// kernel per tensor, following torch.optim's single-tensor formulas (kernels/common/optim_math.h),
// recording no autograd graph. The optimizers of train/optim.h are built on them.
#pragma once
#include "engine/tensor.h"
#include "kernels/common/optim_args.h"

namespace dualflow {

// Every tensor must be contiguous, of one dtype (f32 or f64), on one device and of one shape;
// anything else is refused with the offending tensor named.
namespace optim {
void sgd_step_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buf, const SgdStepArgs& a);
void adam_step_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                const AdamStepArgs& a);
// shadow <- shadow + weight * (x - shadow), in ATen's lerp arithmetic.
void lerp_(const Tensor& shadow, const Tensor& x, double weight);
// t <- t * factor in place, for a contiguous floating tensor (gradient clipping).
void scale_(const Tensor& t, double factor);
}  // namespace optim

}  // namespace dualflow
