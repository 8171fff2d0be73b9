// Conditional flow matching: the regression loss of a velocity network onto a path's
// conditional velocity, classifier-free guidance at sampling, and sampling by integrating the
// learned ODE from noise (t = 0) to data (t = 1). Conventions as in the Flow Matching paper:
// x_0 ~ N(0, I) noise, x_1 data.
#pragma once
#include <functional>

#include "engine/dualflow.h"

#include "train/paths.h"
#include "train/solvers.h"

namespace dualflow {

// A velocity network as the methods see it: v(x [N, ...], t [N], h [N] (MeanFlow's t - r;
// undefined for plain flow matching), labels i64 [N] or undefined).
using VelocityNet = std::function<Tensor(const Tensor& x, const Tensor& t, const Tensor& h, const Tensor& labels)>;

// mean over batch and dims of (v(x_t, t) - u_t)^2 with (x_t, u_t) drawn from the path.
Tensor cfm_loss(const VelocityNet& net, const ProbabilityPath& path, const Tensor& x0, const Tensor& x1,
                const Tensor& t, const Tensor& labels = Tensor());

struct GuidanceOptions {
  Tensor labels;            // i64 [N]; undefined: unconditional
  int64_t null_label = -1;  // the null class index (needed when scale != 1)
  double scale = 1.0;       // omega: v = omega * v(x|c) + (1 - omega) * v(x|null); 1 = no guidance
};

// The ODE right-hand side for the solvers: the network at scalar time t for the whole batch,
// with classifier-free guidance when scale != 1 (both branches in one batched call).
VelocityField velocity_field(const VelocityNet& net, const GuidanceOptions& guidance = {});

// Integrates noise x0 from t = 0 to t = t_end (1, or just below it for a path whose velocity
// is singular at t = 1) under the network (no gradients recorded).
OdeResult sample_flow(const VelocityNet& net, const Tensor& x0, const OdeOptions& options,
                      const GuidanceOptions& guidance = {}, double t_end = 1.0);

}  // namespace dualflow
