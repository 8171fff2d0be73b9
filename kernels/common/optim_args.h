// The scalars of one fused optimizer update, shared by the engine's fused updates
// (engine/fused_updates.h) and the backends' kernels.
#pragma once

namespace dualflow {

// Scalars of one fused Adam/AdamW update (torch.optim.Adam / AdamW, non-amsgrad). The caller
// precomputes the bias corrections from its step count, so a kernel needs no state of its own.
struct AdamStepArgs {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.0;
  bool decoupled_weight_decay = false;  // AdamW: param *= 1 - lr * wd; Adam: grad += wd * param
  double bias_correction1 = 1.0;        // 1 - beta1^step
  double bias_correction2_sqrt = 1.0;   // sqrt(1 - beta2^step)
};

// Scalars of one fused SGD update (torch.optim.SGD). With momentum, `first_step` makes the
// buffer start as the gradient itself, as PyTorch does when the buffer does not exist yet.
struct SgdStepArgs {
  double lr = 1e-3;
  double momentum = 0.0;
  double dampening = 0.0;
  double weight_decay = 0.0;
  bool nesterov = false;
  bool first_step = false;
};

}  // namespace dualflow
