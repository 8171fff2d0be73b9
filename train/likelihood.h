// Exact log-likelihood of a continuous normalizing flow (x_0 ~ N(0, I) noise at t = 0, data at
// t = 1): integrate [x, Δ] backwards from t = 1 to t = 0 with dΔ/dt = div v(x, t), Δ(1) = 0, so
//   log p_1(x) = log N(x_0; 0, I) − ∫_0^1 div v(x_t, t) dt = log N(x_0; 0, I) + Δ(0).
// The divergence is exact (forward mode along every basis direction, all sharing one primal pass)
// or Hutchinson's estimate εᵀ J ε averaged over one or more probes fixed along the trajectory.
// Plus bits/dim.
#pragma once
#include <cstdint>
#include <string>

#include "engine/random.h"
#include "engine/tensor.h"
#include "train/solvers.h"

namespace dualflow {

enum class DivergenceMethod { Exact, Hutchinson };
enum class ProbeDistribution { Rademacher, Gaussian };

// "exact", "hutchinson" / "rademacher", "gaussian"; anything else is refused with the list.
DivergenceMethod parse_divergence_method(const std::string& name);
ProbeDistribution parse_probe_distribution(const std::string& name);

struct VelocityAndDivergence {
  Tensor velocity;    // v(x, t), shaped like x
  Tensor divergence;  // [N]: tr(∂v/∂x) per sample (or its estimate)
};

// Both functions treat dim 0 of x as the batch and every other dim as the state, and differentiate
// the tangents (so the divergence back-propagates) exactly when grad mode is on: run them under
// NoGradGuard for evaluation.
// Exact: one primal pass of v and D tangent directions e_1..e_D at once (jvp_batched), so each
// ∂v_i/∂x_i is read off direction i. Tangent memory and time grow with D: meant for
// low-dimensional data.
VelocityAndDivergence velocity_and_divergence_exact(const VelocityField& v, const Tensor& x, double t);
// Hutchinson: εᵀ (∂v/∂x) ε along `probe`, shaped like x (one probe per sample) or [N, P, ...the
// state dims] (P probes per sample, averaged, all P directions sharing one primal pass);
// unbiased when E[εεᵀ] = I, its variance falling as 1/P.
VelocityAndDivergence velocity_and_divergence_hutchinson(const VelocityField& v, const Tensor& x, double t,
                                                         const Tensor& probe);

// The shape of `probes` probes per sample of x: x's shape for one, [N, P, ...state dims] for more.
Shape probe_shape(const Shape& x_shape, int64_t probes);
// Probes with E[εεᵀ] = I: Rademacher (±1, lower variance) or standard normal.
Tensor sample_probe(const Shape& shape, ProbeDistribution dist, Generator& gen, TensorOptions opts);

// log N(x; 0, I) summed over all but dim 0: [N].
Tensor standard_normal_log_prob(const Tensor& x);
// log N(x; 0, std^2 I) summed over all but dim 0: [N].
Tensor isotropic_normal_log_prob(const Tensor& x, double std);

struct LikelihoodOptions {
  // Integrates from t = t_data to t = 0; an explicit time_grid must therefore run from t_data
  // down to 0.
  OdeOptions ode;
  // Where the data sits in time: 1, or slightly less for paths whose velocity is singular at
  // t = 1 (the VP path: d sigma / dt -> infinity as sigma -> 0).
  double t_data = 1.0;
  // The source density at t = 0 is N(0, prior_std^2 I): 1 for most paths, sigma_max for the
  // variance-exploding path.
  double prior_std = 1.0;
  DivergenceMethod divergence = DivergenceMethod::Exact;
  ProbeDistribution probe = ProbeDistribution::Rademacher;
  // Hutchinson probes per sample, averaged (their directions share one primal pass of v).
  int64_t probes = 1;
};

struct LikelihoodResult {
  Tensor log_likelihood;       // [N] log p_1(x)
  Tensor noise;                // x_0: where the reverse flow takes x (shaped like x)
  Tensor log_prior;            // [N] log N(x_0; 0, prior_std^2 I)
  Tensor divergence_integral;  // [N] ∫_0^t_data div v(x_t, t) dt
  int64_t nfe = 0;             // evaluations of the augmented field (each one pass of v with a JVP)
  int64_t accepted_steps = 0;
  int64_t rejected_steps = 0;
};

// Runs under the caller's grad mode: with grad mode on, log_likelihood back-propagates through
// the solver into whatever v depends on (discretise-then-differentiate; use a fixed-step method
// to keep the graph bounded). Hutchinson probes are drawn once per call from `gen`.
LikelihoodResult cnf_log_likelihood(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options,
                                    Generator& gen);
// Exact divergence only (needs no randomness).
LikelihoodResult cnf_log_likelihood(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options = {});
// With the Hutchinson probes given (of probe_shape(x, options.probes); undefined for the exact divergence), for a
// caller that draws them itself (a data-parallel step draws the whole batch's and keeps its rows).
LikelihoodResult cnf_log_likelihood_with_probe(const VelocityField& v, const Tensor& x,
                                               const LikelihoodOptions& options, const Tensor& probe);

// The maximum-likelihood CNF objective: −mean over the batch of log p_1(x), differentiable
// through the solver (run it with grad mode on and a fixed-step method).
Tensor cnf_nll_loss(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options, Generator& gen);
Tensor cnf_nll_loss(const VelocityField& v, const Tensor& x, const LikelihoodOptions& options, const Tensor& probe);

// Bits per dimension of discrete data (`levels` values per dimension, 256 for 8-bit images)
// modelled after uniform dequantisation and an affine map onto an interval of width
// `data_range` (1 for [0, 1], 2 for [−1, 1]). A bin of the integer data has width
// data_range / levels in model space, so the discrete log-likelihood (a lower bound via the
// dequantised density, as FFJORD and Flow Matching report) is log p(x) + D·log(data_range/levels):
//   bpd = −(log p(x) + D·log(data_range / levels)) / (D·ln 2)
//       = −log p(x) / (D·ln 2) + log2(levels / data_range)   (+8 for [0, 1], +7 for [−1, 1]).
// `dims` is D (e.g. 3·32·32). Elementwise over log_likelihood.
Tensor bits_per_dim(const Tensor& log_likelihood, int64_t dims, double data_range, int64_t levels = 256);

}  // namespace dualflow
