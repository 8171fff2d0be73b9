// MeanFlow (Geng et al. 2025, "Mean Flows for One-step Generative Modeling"): a network learns
// the average velocity u(z_t, r, t) = 1/(t - r) * integral_r^t v(z_s, s) ds of the flow, so that
// one evaluation jumps from noise to data. This file holds the (t, r) sampler, the training
// loss built from the MeanFlow identity with one forward-mode JVP, classifier-free guidance
// folded into the training target, and one- and few-step sampling.
//
// Conventions are the paper's, the reverse of cfm.h's: z_t = (1 - t) x + t e with e ~ N(0, I),
// so t = 0 is data and t = 1 is noise, and v = dz_t/dt = e - x. Sampling runs from t = 1 down
// to r = 0 by z_r = z_t - (t - r) u(z_t, r, t). Networks are VelocityNets called as
// net(z, t, h = t - r, labels); with h = t - r a change of t by dt and r by dr moves h by
// dt - dr.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "engine/dualflow.h"

#include "train/cfm.h"

namespace dualflow {

// How t and r are drawn before ordering: logit-normal(mu, sigma) = sigmoid(mu + sigma N(0, 1))
// or U[0, 1).
enum class TimeDistribution { LogitNormal, Uniform };

// "logit_normal" or "uniform"; anything else is refused with the list of known names.
TimeDistribution parse_time_distribution(const std::string& name);
const char* time_distribution_name(TimeDistribution distribution);

struct MeanFlowOptions {
  // ---- (t, r) sampler ----
  TimeDistribution time_distribution = TimeDistribution::LogitNormal;
  double time_mu = -0.4;
  double time_sigma = 1.0;
  // Share of the batch that keeps r != t; the other rows get r = t, where the loss is plain
  // flow matching (the paper's "ratio of r != t", 25% by default; the official code's
  // data_proportion is 1 - this).
  double ratio_r_neq_t = 0.25;

  // ---- loss ----
  // The paper's adaptive loss weight sg(1 / (L + c)^p) of each sample's squared error L; p = 0
  // turns it off, p = 1 makes each sample's contribution close to L / (L + c).
  double adaptive_p = 1.0;
  double adaptive_c = 1e-3;

  // ---- classifier-free guidance folded into training (the paper's "mean flows with guidance") ----
  // Probability that a label is replaced by the null class (only when labels are given).
  double class_dropout = 0.1;
  // The null class index (the models use num_classes); needed with labels when class_dropout
  // > 0 or guidance is on. -1: not set.
  int64_t null_label = -1;
  // v_g = omega v + (1 - omega - kappa) u(z, t, t | null) + kappa u(z, t, t | c) replaces v for
  // samples that kept their class and whose t lies in [guidance_t_min, guidance_t_max].
  // omega = 1, kappa = 0 is no guidance; the effective sampling scale is omega / (1 - kappa).
  double guidance_omega = 1.0;
  double guidance_kappa = 0.0;
  double guidance_t_min = 0.0;
  double guidance_t_max = 1.0;

  bool guided() const { return guidance_omega != 1.0 || guidance_kappa != 0.0; }
  // Refuses out-of-range settings, naming the option, the expected range and the value given.
  void validate() const;
};

struct MeanFlowTimes {
  Tensor t;  // [N], t >= r
  Tensor r;  // [N]; the leading floor(N (1 - ratio_r_neq_t)) rows have r = t exactly
};

// t and r drawn independently from the time distribution (t first, then r, each N values from
// `gen`), t = max, r = min; then the leading floor(N * (1 - ratio_r_neq_t)) rows get r = t, as
// in the official code. Deterministic given the generator's state.
MeanFlowTimes sample_meanflow_times(int64_t n, const MeanFlowOptions& options, Generator& gen,
                                    TensorOptions tensor_options = {});

// Class dropout as in the official code: the number of dropped rows is Binomial(N, p) (N draws
// of U[0, 1) from `gen`) and the dropped rows are the leading ones. With sample_meanflow_times'
// layout they fall among the r = t rows, so the null class is trained at h = 0, which is where
// guidance queries it. labels i64 [N] -> labels with dropped rows set to null_label.
Tensor drop_class_labels(const Tensor& labels, double probability, int64_t null_label, Generator& gen);

// The guided velocity of the training target (options.guided() must hold): for rows whose
// label is not the null class and whose t lies in the guidance interval,
//   omega v + (1 - omega - kappa) u(z, t, t | null) + kappa u(z, t, t | c),
// and v elsewhere. The network runs at h = 0 without recording gradients: one call on the batch
// (on twice the batch, both branches at once, when kappa != 0). z [N, ...], t [N], v like z,
// labels i64 [N] (after class dropout).
Tensor meanflow_guided_velocity(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& v,
                                const Tensor& labels, const MeanFlowOptions& options);

struct MeanFlowJvp {
  Tensor u;     // u(z, r, t) [N, ...], on the reverse tape
  Tensor dudt;  // d/dt u(z_t, r, t) along dz/dt = velocity, dr/dt = 0: plain tensor, no tape
};

// (u, du/dt) = jvp(u_theta, (z, r, t), (velocity, 0, 1)) in one pass, i.e. the network
// at (z, t, h = t - r) with tangents (velocity, 1, 1). The tangents are computed off the
// reverse tape (JvpOptions::differentiable_tangents = false).
MeanFlowJvp meanflow_jvp(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& r,
                         const Tensor& velocity, const Tensor& labels = Tensor());

struct MeanFlowLoss {
  Tensor loss;            // scalar: mean_i w_i L_i, what backward runs on
  Tensor u;               // the network's average velocity [N, ...] (on the tape)
  Tensor dudt;            // its total derivative along the trajectory [N, ...] (no tape); 0 where t <= r
  Tensor velocity;        // the velocity in the target and the JVP: v, or v_g with guidance
  Tensor target;          // u_tgt = sg(velocity - clip(t - r, 0, 1) dudt) [N, ...] (no tape)
  Tensor error;           // L_i = sum over dims of (u - u_tgt)^2 [N] (no tape)
  Tensor weight;          // w_i = sg(1 / (L_i + c)^p) [N] (ones when p = 0)
  Tensor mean_error;      // scalar mean_i L_i, the unweighted loss
  Tensor mse;             // scalar mean over batch and dims of (u - u_tgt)^2 = mean_error / dims
  Tensor velocity_error;  // scalar mean_i sum over dims of (u - v)^2, monitoring only (the official v_loss)
};

// The MeanFlow loss on data x [N, ...], noise e (like x) and times t, r [N]:
//   z = (1 - t) x + t e, v = e - x (v_g with guidance),
//   (u, dudt) = meanflow_jvp(net, z, t, r, v_g),
//   u_tgt = sg(v_g - clip(t - r, 0, 1) dudt)   (the MeanFlow identity u = v - (t - r) du/dt,
//                                               the gap clipped as in the official code)
//   L_i = sum_d (u - u_tgt)^2, loss = mean_i sg(1 / (L_i + c)^p) L_i.
// Rows with t <= r, whose target does not use dudt, run a plain forward instead of the JVP (one
// network call for them, one JVP call for the rest). This is exact for networks that treat
// samples independently, as all of models/ do, and saves most of the tangents' time and memory.
// `labels` (i64 [N] or undefined) are fed to the network as given: apply drop_class_labels
// first (meanflow_training_loss does). Only non-null rows get the guided velocity.
MeanFlowLoss meanflow_loss(const VelocityNet& net, const Tensor& x, const Tensor& e, const Tensor& t, const Tensor& r,
                           const MeanFlowOptions& options, const Tensor& labels = Tensor());

// The random inputs of one training step on data x [N, ...]: (t, r), the noise e ~ N(0, I)
// and the labels after class dropout, drawn from `gen` in that order. Deterministic given the
// generator's state.
struct MeanFlowDraws {
  Tensor e, t, r, labels;
};
MeanFlowDraws draw_meanflow_inputs(const Tensor& x, const Tensor& labels, const MeanFlowOptions& options,
                                   Generator& gen);

// One training step's loss on data x [N, ...]: draw_meanflow_inputs, then meanflow_loss.
MeanFlowLoss meanflow_training_loss(const VelocityNet& net, const Tensor& x, const Tensor& labels,
                                    const MeanFlowOptions& options, Generator& gen);

// ---- sampling ----

// One jump z_r = z_t - (t - r) u(z_t, r, t) for the whole batch at scalar times t and r.
Tensor meanflow_step(const VelocityNet& net, const Tensor& z, double t, double r, const Tensor& labels = Tensor());

// `steps` + 1 uniformly spaced times from 1 down to 0.
std::vector<double> meanflow_time_grid(int64_t steps);

struct MeanFlowSample {
  Tensor x;         // the state at the grid's last time
  int64_t nfe = 0;  // network evaluations: one per step
};

// Runs meanflow_step along `time_grid` (at least two times, strictly decreasing, within
// [0, 1]) from `noise` at its first time, without recording gradients. Labels (i64 [N] or
// undefined) go to the network as given: guidance is baked in by training.
MeanFlowSample meanflow_sample(const VelocityNet& net, const Tensor& noise, const std::vector<double>& time_grid,
                               const Tensor& labels = Tensor());
// `steps` uniform steps from t = 1 to t = 0 (1 = the one-step generator).
MeanFlowSample meanflow_sample(const VelocityNet& net, const Tensor& noise, int64_t steps = 1,
                               const Tensor& labels = Tensor());

}  // namespace dualflow
