// The gradient half of a training step, shared by every training loop: zero the gradients,
// backpropagate a finite loss, clip, and tell a non-finite loss or gradient apart so the loop
// can stop naming the step (a NaN or an infinity never reaches the optimizer or a checkpoint).
#pragma once

#include <functional>
#include <string>

#include "engine/dualflow.h"
#include "train/optim.h"

namespace dualflow {

struct GradientStep {
  double loss = 0;       // the loss as f64
  double grad_norm = 0;  // before clipping; NaN when the loss was not finite (no backward ran)

  bool finite() const;
  // "loss" or "gradient norm": the first quantity that is not finite, and its value.
  const char* bad_quantity() const;
  double bad_value() const;
  // The metrics record of a non-finite step, without its closing brace so a caller can add
  // the batch's statistics: {"step":S,"event":"non_finite","loss":…,"grad_norm":…
  std::string non_finite_record(int64_t step) const;
};

// Combines the gradients of several processes in place and replaces the loss by the combined
// one (train/parallel/); every process calls it each step, whether its own loss was finite or not.
using GradientCombiner = std::function<void(double& loss)>;

// opt.zero_grad(); if the loss is finite, loss.backward(); then `combine` when given; then, if
// the (combined) loss is finite, clip_grad_norm(params, clip) (clip <= 0: no clipping, the norm
// is still measured).
GradientStep compute_gradients(const Tensor& loss, Optimizer& opt, const NamedTensors& params, double clip,
                               const GradientCombiner& combine = {});

}  // namespace dualflow
