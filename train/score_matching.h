// Denoising score matching on an affine Gaussian path, the diffusion baseline that the Flow
// Matching paper compares against: the network predicts the noise x_0 that produced x_t
// (epsilon prediction; the score is −epsilon / sigma_t), trained by mean squared error, and is
// sampled through the probability-flow ODE.
//
// The probability-flow ODE needs no separate solver: for x_t = alpha_t x_1 + sigma_t x_0 the
// marginal velocity is E[u_t | x_t] = d_alpha x̂_1 + d_sigma ε̂ with x̂_1 = (x_t − sigma_t ε̂) / alpha_t,
// which for the VP path simplifies to (d_alpha / alpha)(x + score) = ½ β (x + score): exactly
// the probability-flow ODE of the VP SDE run from noise to data. So the epsilon network, put
// through AffinePath::epsilon_to_velocity, is a velocity network like any other, and every
// sampler and the likelihood apply to it unchanged.
#pragma once
#include "train/cfm.h"
#include "train/paths.h"

namespace dualflow {

// mean over batch and dims of (eps(x_t, t) − x_0)^2 with x_t = alpha_t x_1 + sigma_t x_0.
Tensor denoising_score_matching_loss(const VelocityNet& epsilon_net, const AffinePath& path, const Tensor& x0,
                                     const Tensor& x1, const Tensor& t, const Tensor& labels = Tensor());

// The velocity of the probability-flow ODE from an epsilon-predicting network (see above).
// Singular where alpha_t = 0, so the path must keep alpha_t > 0 on the times it is evaluated
// at (VP and VE do for all t; CondOT, cosine and polynomial paths have alpha_0 = 0).
VelocityNet probability_flow_velocity(const VelocityNet& epsilon_net, std::shared_ptr<const AffinePath> path);

}  // namespace dualflow
