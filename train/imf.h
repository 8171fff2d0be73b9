// Improved MeanFlow (iMF; Geng et al., "Improved Mean Flows: On the Challenges of Fastforward
// Generative Models", 2025): MeanFlow (meanflow.h) with three changes.
//   1. The network has a second head: besides the average velocity u(z, r, t) it predicts the
//      instantaneous velocity v(z, t), and both are trained onto the same target.
//   2. The JVP's tangent along z is the network's own (guided) prediction of v at h = 0 instead
//      of the noisy e - x, and the loss regresses the compound V = u + (t - r) sg(du/dt) onto
//      the target, so u is a velocity-like quantity throughout.
//   3. Classifier-free guidance is a conditioning input: each sample draws a scale omega from a
//      power law on [1, omega_max] and an interval [t_min, t_max]; the network sees
//      (1 - 1/omega, t_min, t_max) and learns the guided velocity
//        v_g = (e - x) + (1 - 1/omega)(v(z, t | c) - v(z, t | null))   for t in [t_min, t_max],
//      e - x elsewhere, so one model samples at any scale chosen at sampling time, at 1 NFE.
//
// Conventions are meanflow.h's: z_t = (1 - t) x + t e, t = 0 data, t = 1 noise, v = e - x. The
// networks also take t (the reference conditions on h alone); the JVP moves t with the trajectory,
// so du/dt is the total derivative either way. Class dropout is MeanFlow's (drop_class_labels: a
// Binomial count of leading rows, which fall among the r = t rows), so the null class is trained
// at h = 0, where the guidance queries it; the reference code drops rows independently.
// The network is a VelocityNet with two heads side by side along dim 1 ([N, 2C, ...] for
// samples [N, C, ...]; [N, 2d] for points) and, for class-conditional models, h given as
// [N, 4] = (t - r, 1 - 1/omega, t_min, t_max). Unconditional models have no guidance: h is
// t - r alone and v_g = e - x.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/dualflow.h"

#include "train/cfm.h"
#include "train/meanflow.h"

namespace dualflow {

// The scalar conditions a class-conditional iMF network takes after the interval.
inline constexpr int64_t kImfConditions = 3;

struct ImfOptions {
  // ---- (t, r) sampler, as MeanFlow's (iMF keeps r != t for half the batch) ----
  TimeDistribution time_distribution = TimeDistribution::LogitNormal;
  double time_mu = -0.4;
  double time_sigma = 1.0;
  double ratio_r_neq_t = 0.5;

  // ---- loss: each head's squared error L gets the adaptive weight sg(1 / (L + c)^p) ----
  double adaptive_p = 1.0;
  double adaptive_c = 0.01;

  // ---- guidance as a conditioning input (class-conditional models) ----
  double class_dropout = 0.1;
  int64_t null_label = -1;  // the models' null class (num_classes); -1: unconditional
  // omega on [1, omega_max] with density proportional to omega^-omega_beta (beta = 1:
  // log-uniform, the reference's default with omega_max = 8).
  double omega_max = 8.0;
  double omega_beta = 1.0;
  // t_min ~ U[0, interval_split), t_max ~ U[interval_split, 1); the r = t rows train on [0, 1].
  double interval_split = 0.5;

  // The MeanFlow options of the (t, r) sampler and the class dropout.
  MeanFlowOptions time_options() const;
  // Refuses out-of-range settings, naming the option, the expected range and the value given.
  void validate() const;
};

// Per-sample guidance conditions, each [N] like the times (undefined: unconditional model).
struct ImfGuidance {
  Tensor omega, t_min, t_max;
  bool defined() const { return omega.defined(); }
};

// The guidance of a whole batch at one scale and interval (sampling).
ImfGuidance constant_guidance(int64_t n, double omega, double t_min, double t_max, TensorOptions options);

// The network's h input: `interval` [N] alone when unconditional, else [N, 4] =
// (interval, 1 - 1/omega, t_min, t_max).
Tensor imf_network_h(const Tensor& interval, const ImfGuidance& guidance);

// The average and instantaneous velocity heads of a network output [N, 2C, ...].
struct ImfHeads {
  Tensor u, v;
};
ImfHeads split_imf_heads(const Tensor& output, const Shape& sample_like);

// omega = inverse CDF of the density ~ omega^-beta on [1, omega_max] at n draws of U[0, 1).
Tensor sample_guidance_scales(int64_t n, double omega_max, double beta, Generator& gen, TensorOptions options);

// The random inputs of one training step on data x [N, ...] with labels (i64 [N] or
// undefined), drawn from `gen` in this order: (t, r) and e as MeanFlow draws them, the class
// dropout, then omega, t_min and t_max (class-conditional only). The r = t rows (the leading
// ones) get the interval [0, 1].
struct ImfDraws {
  Tensor e, t, r;
  Tensor labels;          // as given (the guidance's conditional branch uses them)
  Tensor dropped_labels;  // after class dropout: what the trained pass sees
  ImfGuidance guidance;
};
ImfDraws draw_imf_inputs(const Tensor& x, const Tensor& labels, const ImfOptions& options, Generator& gen);

// The guided target and the JVP's tangent, computed without recording gradients from the
// network's instantaneous-velocity head at h = 0 (interval [0, 1]):
//   omega_eff = omega where t_min <= t <= t_max, else 1;
//   v_c = v(z, t | omega_eff, c), v_u = v(z, t | omega = 1, null)   (one call on 2N rows);
//   v_g = v + (1 - 1/omega_eff)(v_c - v_u), and v on rows whose label was dropped;
//   tangent = v_c.
// Unconditional: tangent = v(z, t), v_g = v (one call on N rows).
struct ImfTarget {
  Tensor tangent, velocity;
};
ImfTarget imf_guided_target(const VelocityNet& net, const Tensor& z, const Tensor& t, const Tensor& v,
                            const Tensor& labels, const Tensor& dropped_labels, const ImfGuidance& guidance,
                            int64_t null_label);

struct ImfLoss {
  Tensor loss;        // scalar: mean_i (w_u,i L_u,i + w_v,i L_v,i), what backward runs on
  Tensor u, v;        // the two heads [N, ...] (on the tape)
  Tensor dudt;        // du/dt along (dz, dr, dt) = (tangent, 0, 1) [N, ...] (no tape); 0 where t = r
  Tensor tangent;     // the network's own v_c
  Tensor velocity;    // the target v_g (no tape)
  Tensor compound;    // V = u + (t - r) sg(du/dt) (on the tape through u)
  Tensor error_u;     // L_u,i = sum over dims of (V - v_g)^2 [N] (no tape)
  Tensor error_v;     // L_v,i = sum over dims of (v - v_g)^2 [N] (no tape)
  Tensor mse;         // scalar mean over batch and dims of (V - v_g)^2
  Tensor v_mse;       // scalar mean over batch and dims of (v - v_g)^2
};

// The iMF loss on data x [N, ...] with the step's draws. The leading rows with r = t (those
// sample_meanflow_times gives r = t) run a plain forward, since (t - r) du/dt vanishes there;
// the rest run one forward-mode JVP with tangents (v_c, 1, h: 1 on the interval, 0 on the
// conditions).
ImfLoss imf_loss(const VelocityNet& net, const Tensor& x, const ImfDraws& draws, const ImfOptions& options);

// One training step's loss: draw_imf_inputs, then imf_loss.
ImfLoss imf_training_loss(const VelocityNet& net, const Tensor& x, const Tensor& labels, const ImfOptions& options,
                          Generator& gen);

// Runs z_r = z_t - (t - r) u(z_t, r, t | guidance) along `time_grid` (as meanflow_sample's)
// from `noise`, without recording gradients; one network evaluation per step. `guidance`
// (defined for class-conditional models) is constant along the grid.
MeanFlowSample imf_sample(const VelocityNet& net, const Tensor& noise, const std::vector<double>& time_grid,
                          const Tensor& labels, const ImfGuidance& guidance);

// The instantaneous velocity in flow-matching time (noise at tau = 0, data at 1) from the
// second head at h = 0, unguided (omega = 1, interval [0, 1]): what `sample --method ode` and
// `nll` integrate. `conditional`: the network takes iMF's guidance conditions.
VelocityNet imf_flow_matching_velocity(const VelocityNet& imf_network, bool conditional);

}  // namespace dualflow
