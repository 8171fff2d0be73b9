// Reflow (rectified flow, Liu et al. 2022): draw coupled pairs (x_0, x_1 = ODE(x_0)) from a
// trained flow and train a new flow on them with the CondOT path and the pairs kept together.
// The new flow's paths cross less, so it is straighter and few-step sampling loses less.
// Straightness is measured as in the paper:
//   S = ∫_0^1 E || (x_1 − x_0) − v(x_t, t) ||^2 dt  along the model's own trajectories,
// which is 0 exactly when every trajectory is a straight line travelled at constant speed.
#pragma once
#include "train/cfm.h"
#include "train/solvers.h"

namespace dualflow {

struct ReflowPairs {
  Tensor x0, x1;  // [N, ...]: noise and where the teacher's ODE takes it
};

// Draws n noise points N(0, source_std^2 I) of `sample_shape` and integrates the teacher from
// t = 0 to t_end, `chunk` samples at a time (bounding memory), without gradients.
ReflowPairs draw_reflow_pairs(const VelocityNet& teacher, int64_t n, const Shape& sample_shape,
                              const OdeOptions& options, Generator& gen, TensorOptions opts, int64_t chunk = 4096,
                              double source_std = 1.0, double t_end = 1.0);

// S above, estimated on the trajectories from noise x0 with a `steps`-step Euler discretisation
// (left Riemann sum of the squared deviation), without gradients. Returns S per sample [N].
Tensor flow_straightness(const VelocityNet& net, const Tensor& x0, int64_t steps);

}  // namespace dualflow
